"""Staleness value objects (spec section 4): states, reasons and plans.

These are pure data. ``graph/plan.py`` computes them; the CLI, TUI and renderer
turn them into words and colours.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

__all__ = [
    "ConditionStatus",
    "GraphStatus",
    "NodeState",
    "NodeStatus",
    "RunPlan",
    "StaleKind",
    "StaleReason",
]


class NodeState(enum.Enum):
    """Where a node (or one condition of it) stands against the store."""

    FRESH = "fresh"  # stored outputs match the definition: reuse them
    STALE = "stale"  # own inputs changed: will run
    UPSTREAM_STALE = "upstream stale"  # own inputs match, an upstream node reruns: may run
    NEVER_RUN = "never run"  # nothing stored
    INCOMPLETE = "incomplete"  # a run stopped before every replicate finished
    FAILED = "failed"  # a replicate failed in the last run
    BLOCKED = "blocked"  # an upstream condition it reads failed


class StaleKind(enum.Enum):
    """Why something must run; the value is a short English phrase."""

    CODE_CHANGED = "code changed"
    PARAMS_CHANGED = "a parameter changed"
    TREATMENT_CHANGED = "treatment changed"
    DATA_CHANGED = "input data changed"
    UPSTREAM_CHANGED = "an upstream artifact changed"
    REPLICATES_CHANGED = "replicate count changed"
    SEED_CHANGED = "seed changed"
    ENVIRONMENT_CHANGED = "environment changed"
    NEW_CONDITION = "new condition"
    INCOMPLETE = "incomplete"
    FAILED = "failed"
    NEVER_RUN = "never run"
    FORCED = "forced"


@dataclass(frozen=True, slots=True)
class StaleReason:
    """One cause of staleness.

    Attributes
    ----------
    kind : StaleKind
        The category.
    detail : str
        A sentence naming the step, key, file or upstream node.
    upstream : str or None
        The node the cause came from, for root-cause chains.
    """

    kind: StaleKind
    detail: str
    upstream: str | None = None


def _plain(key: str) -> str:
    """Strip a ``" (vN)"`` result-key suffix."""
    head, sep, tail = key.rpartition(" (v")
    return head if sep and tail.endswith(")") and tail[:-1].isdigit() else key


@dataclass(frozen=True, slots=True)
class ConditionStatus:
    """Status of one condition (baseline or a treatment) of one experiment."""

    condition: str
    state: NodeState
    reasons: tuple[StaleReason, ...] = ()
    missing_replicates: tuple[int, ...] = ()
    version: int | None = None  # version holding the stored outputs, if any


class _ConditionMap(Mapping[str, ConditionStatus]):
    """Conditions keyed by plain name; ``"name (vN)"`` is accepted too."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, ConditionStatus]) -> None:
        self._items = dict(items)

    def __getitem__(self, key: str) -> ConditionStatus:
        return self._items[key] if key in self._items else self._items[_plain(key)]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._items!r})"


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """Status of one experiment node; ``reasons`` is empty when fresh."""

    experiment: str
    state: NodeState
    reasons: tuple[StaleReason, ...] = ()
    conditions: Mapping[str, ConditionStatus] = field(default_factory=lambda: _ConditionMap({}))

    def __post_init__(self) -> None:
        if not isinstance(self.conditions, _ConditionMap):
            object.__setattr__(self, "conditions", _ConditionMap(self.conditions))

    @property
    def to_run(self) -> tuple[str, ...]:
        """Conditions that are not fresh, in definition order."""
        return tuple(n for n, c in self.conditions.items() if c.state is not NodeState.FRESH)


class GraphStatus(Mapping[str, NodeStatus]):
    """Node statuses keyed by experiment name, in topological order."""

    __slots__ = ("_nodes",)

    def __init__(self, nodes: Mapping[str, NodeStatus]) -> None:
        self._nodes = dict(nodes)

    def __getitem__(self, key: str) -> NodeStatus:
        return self._nodes[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._nodes)

    def __len__(self) -> int:
        return len(self._nodes)

    @property
    def fresh(self) -> bool:
        """True when every node is fresh."""
        return all(n.state is NodeState.FRESH for n in self._nodes.values())

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v.state.name}" for k, v in self._nodes.items())
        return f"GraphStatus({inner})"


@dataclass(frozen=True, slots=True)
class RunPlan:
    """What a run will do: ``will_run`` is stale now, ``may_run`` waits on upstream hashes."""

    status: GraphStatus
    will_run: tuple[str, ...] = ()
    may_run: tuple[str, ...] = ()
    fresh: tuple[str, ...] = ()
