"""Pure staleness decisions: which conditions and replicates of an experiment must run, and why.

``plan_conditions`` compares each condition's fingerprint parts with the stored run
record and returns a :class:`ConditionPlan` per condition. It reads the store and writes
nothing except the input-file hash cache.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from crystallize.errors import FingerprintError
from crystallize.graph.fingerprints import condition_parts, diff_parts, fingerprint_of
from crystallize.graph.status import (
    ConditionStatus,
    GraphStatus,
    NodeState,
    NodeStatus,
    RunPlan,
    StaleKind,
    StaleReason,
)
from crystallize.store.record import ConditionOutcome
from crystallize.store.stored import StoredCondition, stored_condition

if TYPE_CHECKING:
    from crystallize.graph.model import ExperimentGraph
    from crystallize.graph.settings import ConditionInputs, RunSettings, UpstreamRun
    from crystallize.experiment import Experiment
    from crystallize.fingerprint import FileHashCache

__all__ = ["ConditionPlan", "forced_nodes", "graph_status", "node_status", "plan_conditions", "plan_graph", "selected_nodes"]


@dataclass(frozen=True, slots=True)
class ConditionPlan:
    """What to do for one condition.

    Attributes
    ----------
    status : ConditionStatus
        State and reasons (FRESH when nothing runs).
    run : tuple[int, ...]
        Replicate indices to execute.
    reuse : StoredCondition or None
        Stored replicates kept (all of them when ``run`` is empty).
    parts : dict[str, str]
        Fingerprint parts now (empty when the condition is not reusable).
    fingerprint : str or None
        Fingerprint now; ``None`` when some value has no canonical encoding.
    """

    status: ConditionStatus
    run: tuple[int, ...]
    reuse: StoredCondition | None = None
    parts: dict[str, str] = field(default_factory=dict)
    fingerprint: str | None = None

    @property
    def name(self) -> str:
        return self.status.condition


def _status(name: str, state: NodeState, reasons: tuple[StaleReason, ...] = (), missing: tuple[int, ...] = (),
            version: int | None = None) -> ConditionStatus:
    return ConditionStatus(name, state, reasons, missing, version)


def _parts(experiment: Experiment, settings: RunSettings, name: str, inputs: ConditionInputs,
           cache: FileHashCache) -> tuple[dict[str, str], str | None]:
    """Parts and fingerprint; under ``rerun`` an unencodable value only makes it not reusable."""
    try:
        parts = condition_parts(experiment, settings, name, inputs, cache)
    except FingerprintError:
        if settings.strategy == "resume":
            raise
        return {}, None
    return parts, fingerprint_of(parts)


def _decide(name: str, stored: StoredCondition | None, parts: dict[str, str], replicates: int,
            others_stored: bool) -> tuple[ConditionStatus, tuple[int, ...], StoredCondition | None]:
    everything = tuple(range(replicates))
    if stored is None:
        kind = StaleKind.NEW_CONDITION if others_stored else StaleKind.NEVER_RUN
        state = NodeState.STALE if others_stored else NodeState.NEVER_RUN
        return _status(name, state, (StaleReason(kind, f"condition '{name}' has no stored run"),), everything), everything, None
    version = stored.version
    reasons = diff_parts(stored.record.inputs, parts)
    if reasons:
        return _status(name, NodeState.STALE, reasons, everything, version), everything, None
    missing = stored.missing(replicates)
    if not missing:
        return _status(name, NodeState.FRESH, version=version), (), stored
    outcome = stored.record.outcome
    if outcome is ConditionOutcome.FAILED:
        failed = sorted(int(r) for r in stored.record.errors)
        reason = StaleReason(StaleKind.FAILED, f"replicates {failed} failed in v{version}")
        return _status(name, NodeState.FAILED, (reason,), missing, version), missing, stored
    if outcome is ConditionOutcome.COMPLETE and stored.record.replicates < replicates:
        reason = StaleReason(StaleKind.REPLICATES_CHANGED, f"replicates {stored.record.replicates} -> {replicates}")
        return _status(name, NodeState.STALE, (reason,), missing, version), missing, stored
    reason = StaleReason(StaleKind.INCOMPLETE, f"replicates {list(missing)} missing from v{version}")
    return _status(name, NodeState.INCOMPLETE, (reason,), missing, version), missing, stored


def plan_conditions(experiment: Experiment, settings: RunSettings, inputs: Mapping[str, ConditionInputs],
                    cache: FileHashCache, *, force: bool = False) -> dict[str, ConditionPlan]:
    """Plan every active condition of one experiment run.

    Parameters
    ----------
    experiment : Experiment
    settings : RunSettings
        Resolved conditions, replicates, strategy and the previous run record.
    inputs : Mapping[str, ConditionInputs]
        Pinned upstream inputs per condition (their content digests are fingerprint parts).
    cache : FileHashCache
        Input-file hash cache (the only thing planning may write).
    force : bool
        Run every condition (``StaleKind.FORCED``).

    Returns
    -------
    dict[str, ConditionPlan]
        In condition order (baseline first).

    Raises
    ------
    UnhashableValueError, FingerprintError
        Under ``strategy="resume"`` only, naming the key or object at fault.
    """
    previous = settings.previous
    stored_names = set(previous.conditions) if previous is not None else set()
    everything = tuple(range(settings.replicates))
    plans: dict[str, ConditionPlan] = {}
    for name in settings.conditions:
        blocked = inputs[name].blocked
        if blocked:
            reason = StaleReason(StaleKind.UPSTREAM_CHANGED, blocked, upstream=inputs[name].blocked_by)
            plans[name] = ConditionPlan(_status(name, NodeState.BLOCKED, (reason,), everything), ())
            continue
        parts, fingerprint = _parts(experiment, settings, name, inputs[name], cache)
        if force or settings.strategy == "rerun" or fingerprint is None:
            reason = StaleReason(StaleKind.FORCED, "forced" if force else f"strategy={settings.strategy}")
            plans[name] = ConditionPlan(_status(name, NodeState.STALE, (reason,), everything), everything, None,
                                        parts, fingerprint)
            continue
        record = previous.conditions.get(name) if previous is not None else None
        stored = stored_condition(settings.store, name, record) if record is not None else None
        status, run, reuse = _decide(name, stored, parts, settings.replicates, bool(stored_names - {name}))
        plans[name] = ConditionPlan(status, run, reuse, parts, fingerprint)
    return plans


def _check_names(graph: ExperimentGraph, names: Sequence[str], what: str) -> None:
    for name in names:
        if name not in graph:
            raise KeyError(f"{what}: no experiment named '{name}' in the graph (have {graph.order()})")


def selected_nodes(graph: ExperimentGraph, only: Sequence[str] | None, upto: str | None) -> set[str]:
    """Nodes a run executes: all, ``only`` these, or ``upto`` a node and its ancestors."""
    chosen = set(graph.order())
    if only:
        _check_names(graph, only, "only")
        chosen &= set(only)
    if upto:
        _check_names(graph, [upto], "upto")
        chosen &= graph.ancestors(upto) | {upto}
    return chosen


def forced_nodes(graph: ExperimentGraph, force: Sequence[str] | bool | None) -> set[str]:
    if force is True:
        return set(graph.order())
    if not force:
        return set()
    _check_names(graph, list(force), "force")  # type: ignore[arg-type]
    return set(force)  # type: ignore[arg-type]


_SEVERITY = (NodeState.FAILED, NodeState.BLOCKED, NodeState.INCOMPLETE, NodeState.STALE, NodeState.NEVER_RUN,
             NodeState.UPSTREAM_STALE, NodeState.FRESH)


def _node_state(conditions: Mapping[str, ConditionStatus]) -> NodeState:
    states = {c.state for c in conditions.values()}
    if states == {NodeState.NEVER_RUN}:
        return NodeState.NEVER_RUN
    if NodeState.NEVER_RUN in states:
        states = (states - {NodeState.NEVER_RUN}) | {NodeState.STALE}
    return next(s for s in _SEVERITY if s in states)


def _waiting(status: ConditionStatus, running: Mapping[str, set[str]], inputs: ConditionInputs) -> ConditionStatus:
    """A fresh (or blocked) condition whose upstream input will be rebuilt may run: UPSTREAM_STALE.

    ``running`` maps each upstream node to its conditions that are not fresh. A condition
    waits when an upstream node will run the condition it reads, or will run its own name
    (which it would read instead of a baseline fallback).
    """
    if status.state not in (NodeState.FRESH, NodeState.BLOCKED):
        return status
    name = status.condition
    read = {(p.producer, p.condition) for p in inputs.pins}
    culprits = sorted(node for node, conds in running.items()
                      if name in conds or any((node, c) in read for c in conds)
                      or (status.state is NodeState.BLOCKED and node == inputs.blocked_by and conds))
    if not culprits:
        return status
    reason = StaleReason(StaleKind.UPSTREAM_CHANGED,
                         f"upstream '{culprits[0]}' will rerun; this reruns only if its artifacts change",
                         upstream=culprits[0])
    return ConditionStatus(name, NodeState.UPSTREAM_STALE, (reason,), status.missing_replicates, status.version)


def node_status(name: str, plans: Mapping[str, ConditionPlan], inputs: Mapping[str, ConditionInputs],
                running: Mapping[str, set[str]]) -> NodeStatus:
    """Aggregate condition plans into a node status (worst state first; reasons deduplicated)."""
    conditions = {n: _waiting(p.status, running, inputs[n]) for n, p in plans.items()}
    reasons: list[StaleReason] = []
    for cond in conditions.values():
        reasons.extend(r for r in cond.reasons if r not in reasons)
    state = _node_state(conditions)
    return NodeStatus(name, state, () if state is NodeState.FRESH else tuple(reasons), conditions)


def graph_status(graph: ExperimentGraph, *, strategy: str = "resume", forced: set[str] | None = None) -> GraphStatus:
    """Status of every node, in topological order, without running anything.

    Upstream inputs are the newest stored runs; a node whose own inputs match but whose
    upstream will rerun is ``UPSTREAM_STALE`` (its fate is decided by the new artifact
    hashes). Iterative over the topological order, so depth is unlimited.
    """
    from crystallize.fingerprint import FileHashCache
    from crystallize.graph.inherit import inherited_treatments, node_seed
    from crystallize.graph.settings import UpstreamRun, resolve_inputs, resolve_settings

    inherited = inherited_treatments(graph)
    runs: dict[str, UpstreamRun] = {}
    nodes: dict[str, NodeStatus] = {}
    running: dict[str, set[str]] = {}
    caches: dict[Path, FileHashCache] = {}
    for name in graph.order():
        exp = graph.experiments[name]
        settings = resolve_settings(exp, strategy=strategy, inherited=inherited[name], store_root=graph.store_root,
                                    versioned=graph.versioned, graph_seed=node_seed(graph.seed, name))
        inputs = resolve_inputs(exp, list(settings.conditions), {u: runs[u] for u in graph.upstream(name) if u in runs})
        root = settings.store.root
        cache = caches.setdefault(root, FileHashCache(root / ".file-hashes.json"))
        plans = plan_conditions(exp, settings, inputs, cache, force=name in (forced or set()))
        upstream_running = {u: running[u] for u in graph.upstream(name) if running.get(u)}
        nodes[name] = node_status(name, plans, inputs, upstream_running)
        running[name] = {c for c, s in nodes[name].conditions.items() if s.state is not NodeState.FRESH}
        if settings.previous is not None:
            runs[name] = UpstreamRun(settings.store, settings.previous)
    for cache in caches.values():
        cache.save()
    return GraphStatus(nodes)


def plan_graph(graph: ExperimentGraph, *, strategy: str = "resume", only: Sequence[str] | None = None,
               upto: str | None = None, force: Sequence[str] | bool | None = None) -> RunPlan:
    """Split the selected nodes into ``will_run``, ``may_run`` and ``fresh``."""
    chosen = selected_nodes(graph, only, upto)
    status = graph_status(graph, strategy=strategy, forced=forced_nodes(graph, force))
    order = [n for n in status if n in chosen]
    will = tuple(n for n in order if status[n].state not in (NodeState.FRESH, NodeState.UPSTREAM_STALE))
    may = tuple(n for n in order if status[n].state is NodeState.UPSTREAM_STALE)
    fresh = tuple(n for n in order if status[n].state is NodeState.FRESH)
    return RunPlan(status, will, may, fresh)
