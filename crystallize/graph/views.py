"""Builds the renderer's value objects from a graph (and, optionally, its status)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from crystallize.graph.inherit import inherited_treatments
from crystallize.graph.render import EdgeView, GraphView, NodeView

if TYPE_CHECKING:
    from crystallize.graph.model import ExperimentGraph

__all__ = ["graph_view"]


def graph_view(graph: ExperimentGraph, *, status: bool = True) -> GraphView:
    """Nodes with their conditions and status, edges with their artifacts.

    An edge notes the downstream treatments the upstream node lacks: those conditions
    read the upstream baseline.
    """
    inherited = inherited_treatments(graph)
    statuses = graph.status() if status else None
    nodes, edges = [], []
    conditions: dict[str, set[str]] = {}
    for name, exp in graph.experiments.items():
        own = tuple(t.name for t in exp.treatments)
        inh = tuple(t.name for t in inherited[name])
        conditions[name] = set(own) | set(inh)
        nodes.append(NodeView(name, exp.replicates, own, inh, tuple(sorted(getattr(exp, "disabled_treatments", ()))),
                              statuses[name] if statuses is not None else None))
    for up in graph.order():
        for down in sorted(graph._graph.successors(up)):
            fallback = tuple(sorted(conditions[down] - conditions[up]))
            edges.append(EdgeView(up, down, graph.artifacts_on(up, down), fallback))
    return GraphView(graph.name, tuple(nodes), tuple(edges))
