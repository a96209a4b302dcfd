"""Runs an ExperimentGraph: nodes in topological order, each reading exactly the upstream
version produced (or reused) in this graph run."""

from __future__ import annotations

import graphlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crystallize.execution.engine import ExperimentOutcome, run_experiment
from crystallize.execution.events import EventSink, NodeFinished, NodeStarted
from crystallize.execution.select import make_backend
from crystallize.graph.fingerprints import CodeMemo
from crystallize.graph.inherit import inherited_treatments, node_seed
from crystallize.fingerprint import FileHashCache
from crystallize.graph.plan import forced_nodes, selected_nodes, stored_view
from crystallize.graph.settings import UpstreamRun, resolve_settings
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
    deferred: BaseException | None = None  # e.g. MissingMetricError, raised by graph.run() after storing

    @property
    def failed(self) -> tuple[str, ...]:
        """Nodes with a failed or blocked condition."""
        bad = (ConditionOutcome.FAILED, ConditionOutcome.BLOCKED, ConditionOutcome.INCOMPLETE)
        return tuple(n for n, o in self.outcomes.items() if any(c.outcome in bad for c in o.record.conditions.values()))


def _finished(name: str, outcome: ExperimentOutcome) -> NodeFinished:
    conds = outcome.record.conditions
    return NodeFinished(name, outcome.version, outcome.ran, tuple(n for n, p in outcome.plans.items() if not p.executes),
                        tuple(n for n, c in conds.items() if c.outcome is ConditionOutcome.FAILED),
                        tuple(n for n, c in conds.items() if c.outcome is ConditionOutcome.BLOCKED))


@dataclass
class _Scheduler:
    """Starts each node as soon as its upstream nodes are done; independent nodes overlap
    when the backend has room for more than one job."""

    graph: ExperimentGraph
    chosen: set[str]
    run_node: Callable[[str, dict[str, UpstreamRun]], ExperimentOutcome]
    stored_node: Callable[[str, dict[str, UpstreamRun]], UpstreamRun | None]  # a node outside ``chosen``
    parallel: int
    on_event: EventSink | None

    def run(self) -> dict[str, ExperimentOutcome]:
        sorter = graphlib.TopologicalSorter({n: self.graph.upstream(n) for n in self.graph.order()})
        sorter.prepare()
        runs: dict[str, UpstreamRun] = {}
        outcomes: dict[str, ExperimentOutcome] = {}
        running: dict[Future[ExperimentOutcome], str] = {}
        with ThreadPoolExecutor(max(1, self.parallel), thread_name_prefix="crystallize-node") as pool:
            try:
                while sorter.is_active():
                    for name in sorted(sorter.get_ready()):
                        upstream = {u: runs[u] for u in self.graph.upstream(name) if u in runs}
                        if name not in self.chosen:
                            stored = self.stored_node(name, upstream)
                            if stored is not None:
                                runs[name] = stored
                            sorter.done(name)
                            continue
                        if self.parallel > 1:
                            running[pool.submit(self.run_node, name, upstream)] = name
                        else:  # one at a time: run here (plain stack traces, no thread hop)
                            running[_done(self.run_node, name, upstream)] = name
                    if not running:
                        continue
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in finished:
                        name = running.pop(future)
                        outcomes[name] = future.result()  # a definition error stops the graph here
                        runs[name] = outcomes[name].upstream_run
                        if self.on_event:
                            self.on_event(_finished(name, outcomes[name]))
                        sorter.done(name)
            finally:
                for future in running:
                    future.cancel()
        return {n: outcomes[n] for n in self.graph.order() if n in outcomes}


def _done(fn: Callable[..., ExperimentOutcome], *args: Any) -> Future[ExperimentOutcome]:
    """Call ``fn`` now and wrap its outcome (or exception) in a finished future."""
    future: Future[ExperimentOutcome] = Future()
    try:
        future.set_result(fn(*args))
    except BaseException as exc:  # re-raised by future.result() in the scheduler loop
        future.set_exception(exc)
    return future


def run_graph(graph: ExperimentGraph, *, treatments: Sequence[Treatment] | None = None, replicates: int | None = None,
              strategy: str | None = None, only: Sequence[str] | None = None, upto: str | None = None,
              force: Sequence[str] | bool | None = None, backend: Any = None,
              on_event: EventSink | None = None) -> GraphOutcome:
    """Run ``graph`` (see :meth:`ExperimentGraph.run`).

    Nodes run in topological order; with a shared backend of capacity > 1 independent
    nodes run at the same time. Each node reads exactly the upstream run produced (or
    reused) in this graph run; nodes outside ``only``/``upto`` are read from the store.
    """
    graph.claim_outputs()
    chosen, forced = selected_nodes(graph, only, upto), forced_nodes(graph, force)
    inherited = inherited_treatments(graph, treatments)
    shared, owned = make_backend(backend if backend is not None else graph.backend, graph.workers)
    experiments, graph_name = graph.experiments, graph.name  # once: per node, each would be quadratic
    memo = CodeMemo()  # a step function shared by many nodes is fingerprinted once per graph run

    def run_node(name: str, upstream: dict[str, UpstreamRun]) -> ExperimentOutcome:
        if on_event:
            on_event(NodeStarted(name))
        return run_experiment(
            experiments[name], treatments=treatments, replicates=replicates, strategy=strategy,
            inherited=inherited[name], upstream=upstream, backend=shared, store_root=graph.store_root,
            versioned=graph.versioned, graph_seed=node_seed(graph.seed, name), force=name in forced, on_event=on_event,
            graph_name=graph_name, memo=memo)

    def stored_node(name: str, upstream: dict[str, UpstreamRun]) -> UpstreamRun | None:
        experiment = experiments[name]
        settings = resolve_settings(experiment, treatments=treatments, strategy="resume", inherited=inherited[name],
                                    store_root=graph.store_root, versioned=graph.versioned,
                                    graph_seed=node_seed(graph.seed, name), graph_name=graph_name)
        cache = FileHashCache(settings.store.root / ".file-hashes.json")  # as a node that runs plans (engine._plan)
        view = stored_view(experiment, settings, upstream if graph.upstream(name) else None, cache, memo)
        cache.save()
        return view

    parallel = shared.capacity if shared is not None else 1
    try:
        outcomes = _Scheduler(graph, chosen, run_node, stored_node, parallel, on_event).run()
    finally:
        if owned and shared is not None:
            shared.close()
    deferred = next((o.deferred for o in outcomes.values() if o.deferred is not None), None)
    return GraphOutcome({n: o.result for n, o in outcomes.items()}, outcomes, deferred)
