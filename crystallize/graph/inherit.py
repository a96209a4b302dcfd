"""Treatment propagation: a node runs its own treatments plus every ancestor's, by name."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from crystallize.errors import DefinitionError

if TYPE_CHECKING:
    from crystallize.graph.model import ExperimentGraph
    from crystallize.treatments import Treatment

__all__ = ["inherited_treatments", "node_seed"]


def _same(a: Treatment, b: Treatment) -> bool:
    pa, pb = a.payload, b.payload
    if isinstance(pa, Mapping) and isinstance(pb, Mapping):
        return dict(pa) == dict(pb)
    return pa is pb or (getattr(pa, "__code__", None) is not None and getattr(pa, "__code__", None) is getattr(pb, "__code__", None))


def _check_payloads(order: Sequence[str], experiments: Mapping[str, Any]) -> None:
    """Raise when one treatment name has two different payloads in the graph."""
    owner: dict[str, tuple[str, Treatment]] = {}
    for name in order:
        for t in experiments[name].treatments:
            seen = owner.get(t.name)
            if seen is not None and not _same(seen[1], t):
                raise DefinitionError(f"treatment '{t.name}' has different payloads in experiments "
                                      f"'{seen[0]}' and '{name}'; rename one of them")
            owner.setdefault(t.name, (name, t))


def inherited_treatments(graph: ExperimentGraph, override: Sequence[Treatment] | None = None) -> dict[str, list[Treatment]]:
    """For each node, the treatments it inherits from its ancestors (in topological order).

    Parameters
    ----------
    graph : ExperimentGraph
    override : Sequence[Treatment], optional
        A ``run(treatments=...)`` list; it replaces every node's own, so nothing is inherited.

    Raises
    ------
    DefinitionError
        When one treatment name has two different payloads in two nodes (names both).
    """
    experiments = graph.experiments  # one topological sort, not one per lookup
    order = list(experiments)
    if override is not None:
        return {name: [] for name in order}
    _check_payloads(order, experiments)
    position = {name: i for i, name in enumerate(order)}
    # Walk the order once, passing each node's visible treatments to its children: for each
    # name keep the earliest definition by (ancestor position, index in its list). Linear in
    # nodes x treatment names, so a 10,000-node chain stays fast.
    visible: dict[str, dict[str, tuple[int, int, Treatment]]] = {}
    out: dict[str, list[Treatment]] = {}
    for name in order:
        merged: dict[str, tuple[int, int, Treatment]] = {}
        for parent in graph.upstream(name):
            for key, entry in visible[parent].items():
                if key not in merged or entry[:2] < merged[key][:2]:
                    merged[key] = entry
        own = experiments[name].treatments
        own_names = {t.name for t in own}
        out[name] = [e[2] for e in sorted((e for k, e in merged.items() if k not in own_names), key=lambda e: e[:2])]
        for index, t in enumerate(own):
            merged.setdefault(t.name, (position[name], index, t))
        visible[name] = merged
    return out


def node_seed(graph_seed: int | None, name: str) -> int | None:
    """``SeedSequence(graph_seed, spawn_key=<name>)`` as one 32-bit seed (``None`` without a graph seed)."""
    if graph_seed is None:
        return None
    import hashlib

    import numpy as np

    key = tuple(int.from_bytes(hashlib.sha256(name.encode()).digest()[i:i + 4], "little") for i in (0, 4))
    return int(np.random.SeedSequence(graph_seed, spawn_key=key).generate_state(1)[0])
