"""Pure staleness decisions: which conditions and replicates must run, and why.

:func:`plan_conditions` compares each condition's fingerprint parts with the stored run
record and returns a :class:`ConditionPlan` per condition. :func:`graph_status` and
:func:`plan_graph` do that for every node of a graph, in topological order, without
recursion (a 10,000-node chain is fine). Nothing here writes to the store; the only
file planning may write is the input-file hash cache.

How a condition is decided (first match wins):

1. an upstream condition it reads failed or did not finish -> ``BLOCKED``;
2. ``force`` or ``strategy="rerun"`` -> ``STALE`` (``FORCED``);
3. nothing stored -> ``NEVER_RUN``, or ``STALE`` with ``NEW_CONDITION`` when other
   conditions of the experiment are stored;
4. a fingerprint part differs -> ``STALE``, one reason per part (an upstream artifact
   that only gained replicates the stored ones never read does not count);
5. every replicate stored -> ``FRESH`` (a lowered replicate count reuses the first ones);
6. some replicates failed -> ``FAILED``; the count was raised -> ``STALE``
   (``REPLICATES_CHANGED``); otherwise ``INCOMPLETE``. Only the missing replicates run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from crystallize.errors import FingerprintError
from crystallize.graph.fingerprints import CodeMemo, NodeParts, condition_parts, diff_parts, fingerprint_of, node_parts
from crystallize.graph.status import (
    ConditionStatus,
    GraphStatus,
    NodeState,
    NodeStatus,
    RunPlan,
    StaleKind,
    StaleReason,
)
from crystallize.store.reader import OlderRecords
from crystallize.store.record import ConditionOutcome, RunRecord
from crystallize.store.stored import StoredCondition, stored_condition

if TYPE_CHECKING:
    from crystallize.experiment import Experiment
    from crystallize.fingerprint import FileHashCache
    from crystallize.graph.model import ExperimentGraph
    from crystallize.graph.settings import ConditionInputs, RunSettings, UpstreamRun

__all__ = [
    "ConditionPlan",
    "forced_nodes",
    "graph_status",
    "node_status",
    "plan_conditions",
    "plan_graph",
    "root_cause",
    "selected_nodes",
    "stored_view",
]


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
    finalize : bool
        Nothing to execute, but the stored replicates (all recovered from the journal of
        an interrupted run) still need their ``results.json``, marker and record.
    """

    status: ConditionStatus
    run: tuple[int, ...]
    reuse: StoredCondition | None = None
    parts: dict[str, str] = field(default_factory=dict)
    fingerprint: str | None = None
    finalize: bool = False

    @property
    def name(self) -> str:
        return self.status.condition

    @property
    def executes(self) -> bool:
        """The run writes this condition: replicates to execute, or stored ones to finalise."""
        return bool(self.run) or self.finalize


def _status(name: str, state: NodeState, reasons: tuple[StaleReason, ...] = (), missing: tuple[int, ...] = (),
            version: int | None = None) -> ConditionStatus:
    return ConditionStatus(name, state, reasons, missing, version)


def _shared(experiment: Experiment, settings: RunSettings, cache: FileHashCache, memo: CodeMemo) -> NodeParts | None:
    """Parts every condition shares; ``None`` under ``rerun`` when some value cannot be fingerprinted."""
    try:
        return node_parts(experiment, settings, cache, memo)
    except FingerprintError:
        if settings.strategy == "resume":
            raise
        return None


def _parts(experiment: Experiment, settings: RunSettings, name: str, inputs: ConditionInputs, cache: FileHashCache,
           shared: NodeParts | None, memo: CodeMemo) -> tuple[dict[str, str], str | None]:
    """Parts and fingerprint; under ``rerun`` an unencodable value only makes it not reusable."""
    if shared is None:
        return {}, None
    try:
        parts = condition_parts(experiment, settings, name, inputs, cache, shared=shared, memo=memo)
    except FingerprintError:
        if settings.strategy == "resume":
            raise
        return {}, None
    return parts, fingerprint_of(parts)


def _changes(stored: StoredCondition, parts: dict[str, str], inputs: ConditionInputs,
             name: str) -> tuple[StaleReason, ...]:
    """Reasons the stored condition differs from ``parts``; upstream growth it never read is ignored."""
    record = stored.record
    if record.outcome is ConditionOutcome.BLOCKED:
        pin = next((p.producer for p in record.upstream), None)
        return (StaleReason(StaleKind.NEVER_RUN, f"condition '{name}' was blocked in its last run and never ran",
                            upstream=pin),)
    if record.fingerprint is None or not record.inputs:
        return (StaleReason(StaleKind.PARAMS_CHANGED, f"condition '{name}' was stored as not reusable "
                            "(a value had no canonical encoding)"),)
    grown = {f"upstream:{c.key}" for c in inputs.content
             if c.extends(record.inputs.get(f"upstream:{c.key}"), record.replicates)}
    old = {k: v for k, v in record.inputs.items() if k not in grown}
    return diff_parts(old, {k: v for k, v in parts.items() if k not in grown}, condition=name)


def _missing(name: str, stored: StoredCondition, replicates: int) -> tuple[ConditionStatus, tuple[int, ...]]:
    """Every part matches: decide between FRESH, FAILED, REPLICATES_CHANGED and INCOMPLETE."""
    version, record = stored.version, stored.record
    missing = stored.missing(replicates)
    if not missing and record.outcome is not ConditionOutcome.COMPLETE:  # see ConditionPlan.finalize
        reason = StaleReason(StaleKind.INCOMPLETE, f"every replicate finished in v{version}, but the run stopped "
                             "before recording them; a resume records them without running anything")
        return _status(name, NodeState.INCOMPLETE, (reason,), (), version), ()
    if not missing:
        return _status(name, NodeState.FRESH, version=version), ()
    if record.outcome is ConditionOutcome.FAILED:
        failed = sorted(int(r) for r in record.errors)
        reason = StaleReason(StaleKind.FAILED, f"replicates {failed} failed in v{version}")
        return _status(name, NodeState.FAILED, (reason,), missing, version), missing
    if record.outcome is ConditionOutcome.COMPLETE and record.replicates < replicates and stored.ok:
        reason = StaleReason(StaleKind.REPLICATES_CHANGED, f"replicates {record.replicates} -> {replicates}")
        return _status(name, NodeState.STALE, (reason,), missing, version), missing
    reason = StaleReason(StaleKind.INCOMPLETE, f"replicates {list(missing)} missing from v{version}")
    return _status(name, NodeState.INCOMPLETE, (reason,), missing, version), missing


def _decide(name: str, stored: StoredCondition | None, parts: dict[str, str], inputs: ConditionInputs,
            replicates: int, others_stored: bool) -> tuple[ConditionStatus, tuple[int, ...], StoredCondition | None]:
    everything = tuple(range(replicates))
    if stored is None:
        kind = StaleKind.NEW_CONDITION if others_stored else StaleKind.NEVER_RUN
        state = NodeState.STALE if others_stored else NodeState.NEVER_RUN
        return _status(name, state, (StaleReason(kind, f"condition '{name}' has no stored run"),), everything), \
            everything, None
    reasons = _changes(stored, parts, inputs, name)
    if reasons:
        version = stored.version if stored.version >= 0 else None
        return _status(name, NodeState.STALE, reasons, everything, version), everything, None
    status, run = _missing(name, stored, replicates)
    return status, run, stored


def _older_match(settings: RunSettings, name: str, fingerprint: str, older: OlderRecords) -> StoredCondition | None:
    """A complete condition with this fingerprint in an older version, every replicate's files present."""
    record = older.complete(name, fingerprint, settings.master_seed)
    if record is None:
        return None
    stored = stored_condition(settings.store, name, record)
    return stored if not stored.missing(settings.replicates) else None


def _blocked_plan(name: str, inputs: ConditionInputs, replicates: int, stored: bool) -> ConditionPlan:
    """Cannot run now: an upstream condition it reads did not complete. Nothing stored reads NEVER_RUN."""
    everything = tuple(range(replicates))
    if not stored:
        reason = StaleReason(StaleKind.NEVER_RUN, f"condition '{name}' has no stored run; it waits for "
                             f"{inputs.blocked}", upstream=inputs.blocked_by)
        return ConditionPlan(_status(name, NodeState.NEVER_RUN, (reason,), everything), ())
    reason = StaleReason(inputs.blocked_kind or StaleKind.FAILED, inputs.blocked or "", upstream=inputs.blocked_by)
    return ConditionPlan(_status(name, NodeState.BLOCKED, (reason,), everything), ())


def plan_conditions(experiment: Experiment, settings: RunSettings, inputs: Mapping[str, ConditionInputs],
                    cache: FileHashCache, *, force: bool = False, memo: CodeMemo | None = None) -> dict[str, ConditionPlan]:
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
    memo : CodeMemo, optional
        Code fingerprints shared by the nodes of one status or run call.

    Returns
    -------
    dict[str, ConditionPlan]
        In condition order (baseline first).

    Raises
    ------
    UnhashableValueError, FingerprintError
        Under ``strategy="resume"`` only, naming the key or object at fault.
    """
    memo = memo or CodeMemo()
    previous = settings.previous
    stored_names = set(previous.conditions) if previous is not None else set()
    everything = tuple(range(settings.replicates))
    shared = _shared(experiment, settings, cache, memo)
    older: OlderRecords | None = None  # read only when the newest record cannot serve a condition
    plans: dict[str, ConditionPlan] = {}
    for name in settings.conditions:
        if inputs[name].blocked:
            plans[name] = _blocked_plan(name, inputs[name], settings.replicates, name in stored_names)
            continue
        parts, fingerprint = _parts(experiment, settings, name, inputs[name], cache, shared, memo)
        if force or settings.strategy == "rerun" or fingerprint is None:
            detail = "forced" if force else f"strategy={settings.strategy}" if fingerprint else "not reusable"
            plans[name] = ConditionPlan(_status(name, NodeState.STALE, (StaleReason(StaleKind.FORCED, detail),),
                                                everything), everything, None, parts, fingerprint)
            continue
        record = previous.conditions.get(name) if previous is not None else None
        stored = stored_condition(settings.store, name, record) if record is not None else None
        status, run, reuse = _decide(name, stored, parts, inputs[name], settings.replicates,
                                     bool(stored_names - {name}))
        if run and previous is not None:
            older = older or OlderRecords(settings.store, previous.version)
            kept = _older_match(settings, name, fingerprint, older)
            if kept is not None:
                status, run, reuse = _status(name, NodeState.FRESH, version=kept.version), (), kept
        finalize = not run and status.state is NodeState.INCOMPLETE
        plans[name] = ConditionPlan(status, run, reuse, parts, fingerprint, finalize)
    return plans


def _check_names(graph: ExperimentGraph, names: Sequence[str], what: str) -> None:
    for name in names:
        if name not in graph:
            raise KeyError(f"{what}: no experiment named '{name}' in the graph (have {graph.order()})")


def selected_nodes(graph: ExperimentGraph, only: Sequence[str] | None, upto: str | None) -> set[str]:
    """Nodes a run executes: all, ``only`` these, or ``upto`` a node and its ancestors.

    Raises
    ------
    KeyError
        For a name that is not a node of ``graph``.
    ValueError
        When both ``only`` and ``upto`` are given (their meaning together would be a guess).
    """
    if only and upto:
        raise ValueError("give either only= (--only) or upto= (--upto), not both")
    chosen = set(graph.order())
    if only:
        _check_names(graph, only, "only")
        chosen &= set(only)
    if upto:
        _check_names(graph, [upto], "upto")
        chosen &= graph.ancestors(upto) | {upto}
    return chosen


def forced_nodes(graph: ExperimentGraph, force: Sequence[str] | bool | None) -> set[str]:
    """Nodes to rerun even when fresh: all with ``True``, else the names given.

    Raises
    ------
    KeyError
        For a name that is not a node of ``graph``.
    """
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


def _waiting(status: ConditionStatus, upstream_running: Sequence[str]) -> ConditionStatus:
    """A fresh or blocked condition whose upstream input will be rebuilt may run: UPSTREAM_STALE.

    Whether it runs is decided at run time, from the new upstream artifact hashes (a
    blocked condition runs once the upstream condition it reads completes).
    """
    if status.state not in (NodeState.FRESH, NodeState.BLOCKED) or not upstream_running:
        return status
    culprit = status.reasons[0].upstream if status.state is NodeState.BLOCKED else None
    if culprit is not None and culprit not in upstream_running:
        return status
    first = culprit or upstream_running[0]
    reason = StaleReason(StaleKind.UPSTREAM_CHANGED,
                         f"upstream '{first}' will rerun; this reruns only if its artifacts change", upstream=first)
    return ConditionStatus(status.condition, NodeState.UPSTREAM_STALE, (reason,), status.missing_replicates,
                           status.version)


def node_status(name: str, plans: Mapping[str, ConditionPlan],
                waiting_on: Mapping[str, Sequence[str]] | None = None) -> NodeStatus:
    """Aggregate condition plans into a node status (worst state first; reasons deduplicated).

    Parameters
    ----------
    name : str
        The node.
    plans : Mapping[str, ConditionPlan]
        Its condition plans.
    waiting_on : Mapping[str, Sequence[str]], optional
        Per condition, the upstream nodes that will rerun what it reads (sorted); a fresh
        condition with any becomes ``UPSTREAM_STALE``.
    """
    waiting_on = waiting_on or {}
    conditions = {n: _waiting(p.status, waiting_on.get(n, ())) for n, p in plans.items()}
    reasons: list[StaleReason] = []
    for cond in conditions.values():
        reasons.extend(r for r in cond.reasons if r not in reasons)
    state = _node_state(conditions)
    return NodeStatus(name, state, () if state is NodeState.FRESH else tuple(reasons), conditions)


def _upstream_waits(upstream: Sequence[str], inputs: Mapping[str, ConditionInputs],
                    nodes: Mapping[str, NodeStatus]) -> dict[str, list[str]]:
    """Per condition, the upstream nodes whose conditions it reads (or would read) are not fresh.

    A condition reads the upstream condition of its own name, else the upstream baseline;
    an upstream node it reads no artifact from (an ordering edge) counts when not fresh.
    """
    waits: dict[str, list[str]] = {}
    for condition, given in inputs.items():
        read = {p.producer: p.condition for p in given.pins}
        found = []
        for up in upstream:
            node = nodes[up]
            if up not in read:
                stale = node.state is not NodeState.FRESH
            else:
                states = [node.conditions[c].state for c in {condition, read[up]} if c in node.conditions]
                stale = any(s is not NodeState.FRESH for s in states)
            if stale:
                found.append(up)
        waits[condition] = found
    return waits


def graph_status(graph: ExperimentGraph, *, strategy: str = "resume", forced: set[str] | None = None) -> GraphStatus:
    """Status of every node, in topological order, without running anything.

    Upstream inputs are the newest stored runs; a node whose own inputs match but whose
    upstream will rerun is ``UPSTREAM_STALE`` (its fate is decided by the new artifact
    hashes at run time). Iterative over the topological order, so depth is unlimited.

    Raises
    ------
    UnhashableValueError, FingerprintError
        When a value or some code cannot be fingerprinted (the message names it).
    """
    from crystallize.fingerprint import FileHashCache
    from crystallize.graph.inherit import inherited_treatments, node_seed
    from crystallize.graph.settings import UpstreamRun, resolve_inputs, resolve_settings

    graph.claim_outputs()
    experiments, inherited = graph.experiments, inherited_treatments(graph)
    runs: dict[str, UpstreamRun] = {}
    nodes: dict[str, NodeStatus] = {}
    caches: dict[Path, FileHashCache] = {}
    memo = CodeMemo()
    for name, exp in experiments.items():
        settings = resolve_settings(exp, strategy=strategy, inherited=inherited[name], store_root=graph.store_root,
                                    versioned=graph.versioned, graph_seed=node_seed(graph.seed, name))
        upstream = graph.upstream(name)
        inputs = resolve_inputs(exp, list(settings.conditions), {u: runs[u] for u in upstream if u in runs}
                                if upstream else None)
        root = settings.store.root
        cache = caches.setdefault(root, FileHashCache(root / ".file-hashes.json"))
        plans = plan_conditions(exp, settings, inputs, cache, force=name in (forced or set()), memo=memo)
        nodes[name] = node_status(name, plans, _upstream_waits(upstream, inputs, nodes))
        if settings.previous is not None:
            runs[name] = UpstreamRun(settings.store, _as_reused(settings.previous, plans))
    for cache in caches.values():
        cache.save()
    return GraphStatus(nodes)


def stored_view(experiment: Experiment, settings: RunSettings, upstream: Mapping[str, UpstreamRun] | None,
                cache: FileHashCache, memo: CodeMemo) -> UpstreamRun | None:
    """What downstream nodes read from a node that does not run (outside ``only=``): its
    newest record, with the conditions a resume would reuse from older versions mapped
    there, so a run reads what :meth:`ExperimentGraph.status` promised. ``None`` when the
    node has no stored run; the plain newest record when it cannot be planned."""
    from crystallize.graph.settings import UpstreamRun, resolve_inputs

    if settings.previous is None:
        return None
    try:
        inputs = resolve_inputs(experiment, list(settings.conditions), upstream)
        plans = plan_conditions(experiment, settings, inputs, cache, memo=memo)
    except FingerprintError:
        return UpstreamRun(settings.store, settings.previous)
    return UpstreamRun(settings.store, _as_reused(settings.previous, plans))


def _as_reused(previous: RunRecord, plans: Mapping[str, ConditionPlan]) -> RunRecord:
    """``previous`` with each condition that will be reused as is mapped to the record that
    holds it (an older version, when the planner looked back), as a resume would write it;
    downstream nodes read through this map."""
    moved = {n: p.reuse.record for n, p in plans.items()
             if p.reuse is not None and not p.executes and p.reuse.record is not previous.conditions.get(n)}
    return dataclasses.replace(previous, conditions={**previous.conditions, **moved}) if moved else previous


def plan_graph(graph: ExperimentGraph, *, strategy: str = "resume", only: Sequence[str] | None = None,
               upto: str | None = None, force: Sequence[str] | bool | None = None) -> RunPlan:
    """Split the selected nodes into ``will_run``, ``may_run`` and ``fresh``.

    Raises
    ------
    KeyError
        For a name in ``only``, ``upto`` or ``force`` that is not a node.
    """
    chosen = selected_nodes(graph, only, upto)
    status = graph_status(graph, strategy=strategy, forced=forced_nodes(graph, force))
    order = [n for n in status if n in chosen]
    will = tuple(n for n in order if status[n].state not in (NodeState.FRESH, NodeState.UPSTREAM_STALE))
    may = tuple(n for n in order if status[n].state is NodeState.UPSTREAM_STALE)
    fresh = tuple(n for n in order if status[n].state is NodeState.FRESH)
    return RunPlan(status, will, may, fresh)


def root_cause(status: GraphStatus, name: str) -> tuple[str, StaleReason] | None:
    """Follow ``reason.upstream`` from node ``name`` back to where its staleness starts.

    Parameters
    ----------
    status : GraphStatus
    name : str
        A node of the graph.

    Returns
    -------
    tuple[str, StaleReason] or None
        The node where the chain ends and its reason there; ``None`` when ``name`` is fresh.
        The chain ends at a reason without ``upstream`` (a cause of the node's own), or where
        the upstream node has no reasons of its own (e.g. it reran already).
    """
    reasons = status[name].reasons
    if not reasons:
        return None
    seen = {name}
    while True:
        own = next((r for r in reasons if r.upstream is None), None)
        if own is not None:
            return name, own
        nxt = reasons[0].upstream
        if nxt not in status or nxt in seen or not status[nxt].reasons:  # type: ignore[operator]
            return name, reasons[0]
        name, reasons = nxt, status[nxt].reasons  # type: ignore[index,assignment]
        seen.add(name)
