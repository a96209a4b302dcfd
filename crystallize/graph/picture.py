"""What a picture of the graph shows: the renderer's frozen value objects.

The graph model describes itself to :mod:`crystallize.graph.render` through
:class:`NodeView`, :class:`EdgeView` and :class:`GraphView` (built by
:mod:`crystallize.graph.views`). This module also holds what the DOT and
Mermaid writers share: the state colours, the layout directions and the
generated node ids (``n0``, ``n1``, ..., never taken from names). Import these
names from :mod:`crystallize.graph.render`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from crystallize.graph.status import NodeState, NodeStatus

__all__ = [
    "RANKDIRS",
    "STATUS_COLOURS",
    "EdgeView",
    "GraphView",
    "NodeView",
    "as_names",
    "check_rankdir",
    "node_ids",
]

#: Fill colour of a node per state; also drawn in the legend, in this order.
STATUS_COLOURS: Mapping[NodeState, str] = MappingProxyType(
    {
        NodeState.FRESH: "#b5e3a0",  # green
        NodeState.STALE: "#f6a552",  # orange
        NodeState.UPSTREAM_STALE: "#f8e37a",  # yellow
        NodeState.NEVER_RUN: "#d3d3d3",  # grey
        NodeState.INCOMPLETE: "#a8d4f5",  # light blue
        NodeState.FAILED: "#ee6a6a",  # red
        NodeState.BLOCKED: "#c8a5e3",  # purple
    }
)

#: Layout directions accepted by :func:`to_dot`, :func:`to_mermaid` and :func:`render`.
RANKDIRS: tuple[str, ...] = ("LR", "TB", "RL", "BT")


def as_names(value: Iterable[str], field: str) -> tuple[str, ...]:
    """Copy a sequence of names into a tuple, refusing a bare string."""
    if isinstance(value, str):
        raise TypeError(f"{field} must be a sequence of names, not the string {value!r}")
    return tuple(value)


@dataclass(frozen=True, slots=True)
class NodeView:
    """What the picture shows of one experiment.

    Attributes
    ----------
    name : str
        Experiment name, shown in bold.
    replicates : int
        Replicate count.
    conditions : tuple of str
        Own treatments, in order; the baseline is implicit and always shown first.
    inherited : tuple of str
        Treatments inherited from upstream nodes.
    disabled : tuple of str
        Treatments toggled off; shown struck through and marked ``(off)``.
    status : NodeStatus or None
        Staleness of the node; ``None`` renders it without status.
    """

    name: str
    replicates: int
    conditions: tuple[str, ...]
    inherited: tuple[str, ...] = ()
    disabled: tuple[str, ...] = ()
    status: NodeStatus | None = None

    def __post_init__(self) -> None:
        for field in ("conditions", "inherited", "disabled"):
            object.__setattr__(self, field, as_names(getattr(self, field), field))


@dataclass(frozen=True, slots=True)
class EdgeView:
    """What the picture shows of one edge ``upstream -> downstream``.

    Attributes
    ----------
    upstream, downstream : str
        Experiment names at both ends.
    artifacts : tuple of str
        Names of the artifacts the edge carries.
    baseline_fallback : tuple of str
        Downstream treatments that read the upstream baseline because the
        upstream node lacks them; shown as ``baseline → <treatment>``.
    """

    upstream: str
    downstream: str
    artifacts: tuple[str, ...] = ()
    baseline_fallback: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for field in ("artifacts", "baseline_fallback"):
            object.__setattr__(self, field, as_names(getattr(self, field), field))


@dataclass(frozen=True, slots=True)
class GraphView:
    """A whole graph as the renderer sees it.

    Attributes
    ----------
    name : str or None
        Graph title, if any.
    nodes : tuple of NodeView
        Nodes in topological order; names are unique.
    edges : tuple of EdgeView
        Edges between those nodes.

    Raises
    ------
    ValueError
        If two nodes share a name or an edge names an unknown node.
    """

    name: str | None
    nodes: tuple[NodeView, ...]
    edges: tuple[EdgeView, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "edges", tuple(self.edges))
        seen: set[str] = set()
        for node in self.nodes:
            if node.name in seen:
                raise ValueError(f"two nodes of the graph view are named {node.name!r}")
            seen.add(node.name)
        for edge in self.edges:
            for end in (edge.upstream, edge.downstream):
                if end not in seen:
                    raise ValueError(
                        f"edge {edge.upstream!r} -> {edge.downstream!r} names {end!r}, "
                        "which is not a node of the graph view"
                    )


def check_rankdir(rankdir: str) -> None:
    """Raise ValueError unless ``rankdir`` is one of :data:`RANKDIRS`."""
    if rankdir not in RANKDIRS:
        raise ValueError(f"rankdir must be one of {', '.join(RANKDIRS)}, not {rankdir!r}")


def node_ids(view: GraphView) -> dict[str, str]:
    """Generated ids ``n0, n1, ...`` keyed by node name, in view order."""
    return {node.name: f"n{index}" for index, node in enumerate(view.nodes)}
