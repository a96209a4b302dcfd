"""Runs an ExperimentGraph: nodes in topological order, each reading exactly the upstream
version produced (or reused) in this graph run."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crystallize.execution.engine import ExperimentOutcome, run_experiment
from crystallize.execution.events import EventSink, NodeFinished, NodeStarted
from crystallize.execution.select import make_backend
from crystallize.graph.inherit import inherited_treatments, node_seed
from crystallize.graph.plan import forced_nodes, selected_nodes
from crystallize.graph.settings import UpstreamRun, stored_upstream
from crystallize.store.record import ConditionOutcome

if TYPE_CHECKING:
    from crystallize.graph.model import ExperimentGraph
    from crystallize.results import Result
    from crystallize.treatments import Treatment

__all__ = ["GraphOutcome", "run_graph"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GraphOutcome:
    """Results and per-node outcomes of one graph run."""

    results: dict[str, Result]
    outcomes: dict[str, ExperimentOutcome]

    @property
    def failed(self) -> tuple[str, ...]:
        """Nodes with a failed or blocked condition."""
        bad = (ConditionOutcome.FAILED, ConditionOutcome.BLOCKED, ConditionOutcome.INCOMPLETE)
        return tuple(n for n, o in self.outcomes.items() if any(c.outcome in bad for c in o.record.conditions.values()))


def _finished(name: str, outcome: ExperimentOutcome) -> NodeFinished:
    conds = outcome.record.conditions
    return NodeFinished(name, outcome.version, outcome.ran, tuple(n for n, p in outcome.plans.items() if not p.run),
                        tuple(n for n, c in conds.items() if c.outcome is ConditionOutcome.FAILED),
                        tuple(n for n, c in conds.items() if c.outcome is ConditionOutcome.BLOCKED))


def run_graph(graph: ExperimentGraph, *, treatments: Sequence[Treatment] | None = None, replicates: int | None = None,
              strategy: str | None = None, only: Sequence[str] | None = None, upto: str | None = None,
              force: Sequence[str] | bool | None = None, backend: Any = None,
              on_event: EventSink | None = None) -> GraphOutcome:
    """Run ``graph`` (see :meth:`ExperimentGraph.run`)."""
    chosen, forced = selected_nodes(graph, only, upto), forced_nodes(graph, force)
    inherited = inherited_treatments(graph, treatments)
    shared, owned = make_backend(backend if backend is not None else graph.backend, graph.workers)
    runs: dict[str, UpstreamRun] = {}
    outcomes: dict[str, ExperimentOutcome] = {}
    deferred: BaseException | None = None
    try:
        for name in graph.order():
            experiment = graph.experiments[name]
            if name not in chosen:
                stored = stored_upstream(experiment, graph.store_root)
                if stored is not None:
                    runs[name] = stored
                continue
            if on_event:
                on_event(NodeStarted(name))
            outcome = run_experiment(
                experiment, treatments=treatments, replicates=replicates, strategy=strategy,
                inherited=inherited[name], upstream={u: runs[u] for u in graph.upstream(name) if u in runs},
                backend=shared, store_root=graph.store_root, versioned=graph.versioned,
                graph_seed=node_seed(graph.seed, name), force=name in forced, on_event=on_event)
            outcomes[name], runs[name] = outcome, outcome.upstream_run
            deferred = deferred or outcome.deferred
            if on_event:
                on_event(_finished(name, outcome))
    finally:
        if owned and shared is not None:
            shared.close()
    if deferred is not None:
        raise deferred
    return GraphOutcome({n: o.result for n, o in outcomes.items()}, outcomes)
