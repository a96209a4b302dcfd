"""Runs one experiment: plan, execute the stale replicate-conditions, persist, assemble the Result.

This module owns the loop, not the rules: which conditions and replicates run is decided
by :func:`crystallize.graph.plan.plan_conditions`.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import logging
import os
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crystallize.context import FrozenContext
from crystallize.errors import SerializationError, StoreError
from crystallize.execution.collect import Collector, ConditionRun
from crystallize.execution.events import EventSink, RunStarted
from crystallize.execution.job import DefinitionRef, Job, JobResult, RunDefinition, run_job
from crystallize.execution.local import SerialBackend, refuse_while_bootstrapping
from crystallize.execution.loop import run_custom_loop
from crystallize.execution.step_cache import cache_plan
from crystallize.execution.report import assemble
from crystallize.graph.settings import (ConditionInputs, RunSettings, UpstreamRun, resolve_inputs, resolve_settings,
                                       run_store)
from crystallize.graph.plan import ConditionPlan, plan_conditions
from crystallize.plugins.base import overrides_loop
from crystallize.plugins.builtin import ArtifactPlugin, LoggingPlugin, replicate_seed
from crystallize.store.layout import ExperimentStore
from crystallize.store.record import RunRecord
from crystallize.store.retention import prune_versions
from crystallize.store.writer import VersionWriter

if TYPE_CHECKING:
    from crystallize.execution.backend import Backend
    from crystallize.experiment import Experiment
    from crystallize.graph.fingerprints import CodeMemo
    from crystallize.hypothesis import Hypothesis
    from crystallize.results import Result
    from crystallize.treatments import Treatment

__all__ = ["ExperimentOutcome", "run_experiment"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ExperimentOutcome:
    """One experiment run: its Result, run record and store, and what ran or was reused."""

    result: Result
    record: RunRecord
    store: ExperimentStore
    plans: Mapping[str, ConditionPlan]
    version: int | None  # version written; None when everything was reused
    deferred: BaseException | None = None  # raised by run() once everything is stored

    @property
    def upstream_run(self) -> UpstreamRun:
        return UpstreamRun(self.store, self.record)

    @property
    def ran(self) -> tuple[str, ...]:
        return tuple(n for n, p in self.plans.items() if p.executes)


def run_experiment(experiment: Experiment, *, treatments: Sequence[Treatment] | None = None,
                   hypotheses: Sequence[Hypothesis] | None = None, replicates: int | None = None,
                   strategy: str | None = None, inherited: Sequence[Treatment] = (),
                   upstream: Mapping[str, UpstreamRun] | None = None, backend: Backend | None = None,
                   store_root: Path | None = None, versioned: bool | None = None, graph_seed: int | None = None,
                   force: bool = False, on_event: EventSink | None = None,
                   graph_name: str | None = None, memo: CodeMemo | None = None) -> ExperimentOutcome:
    """Plan and run one experiment (see :meth:`Experiment.run` for the user-facing contract).

    ``memo`` shares code fingerprints between the nodes of one graph run.
    """
    refuse_while_bootstrapping()  # before any lock: a worker importing an unguarded script must not wait on it
    with _fewer_young_collections():
        return _plan_and_run(experiment, treatments=treatments, hypotheses=hypotheses, replicates=replicates,
                             strategy=strategy, inherited=inherited, upstream=upstream, backend=backend,
                             store_root=store_root, versioned=versioned, graph_seed=graph_seed, force=force,
                             on_event=on_event, graph_name=graph_name, memo=memo)


def _plan_and_run(experiment: Experiment, *, treatments: Sequence[Treatment] | None,
                  hypotheses: Sequence[Hypothesis] | None, replicates: int | None, strategy: str | None,
                  inherited: Sequence[Treatment], upstream: Mapping[str, UpstreamRun] | None, backend: Backend | None,
                  store_root: Path | None, versioned: bool | None, graph_seed: int | None, force: bool,
                  on_event: EventSink | None, graph_name: str | None = None,
                  memo: CodeMemo | None = None) -> ExperimentOutcome:
    def settings_now() -> RunSettings:
        return resolve_settings(experiment, treatments=treatments, hypotheses=hypotheses, replicates=replicates,
                                strategy=strategy, inherited=inherited, store_root=store_root, versioned=versioned,
                                graph_seed=graph_seed, graph_name=graph_name)

    store, is_versioned = run_store(experiment, store_root=store_root, versioned=versioned)
    lock_path = str(store.lock_path)
    held = _HELD.__dict__.setdefault("paths", set())
    if not is_versioned and lock_path in held:  # waiting would never end: this thread holds the lock already
        raise StoreError(f"experiment '{experiment.store_name}' started a run of itself (from one of its own "
                         "steps or hooks); run another experiment there, or give this one versioned=True",
                         path=lock_path)
    stamp = _record_stamp(store)
    settings = settings_now()
    inputs, plans = _plan(experiment, settings, upstream, force, memo)
    if not _writes(settings, plans):  # nothing to write: no lock needed
        return assemble(experiment, settings, plans, inputs, {}, None)
    if is_versioned:  # a new version folder per run: nothing shared to guard
        return _execute(experiment, settings, plans, inputs, backend, on_event)
    store.dir.mkdir(parents=True, exist_ok=True)
    with _experiment_lock(lock_path):
        held.add(lock_path)
        try:
            if _record_stamp(store) != stamp:  # another run of this store finished meanwhile: plan from its record
                settings = settings_now()
                inputs, plans = _plan(experiment, settings, upstream, force, memo)
                if not _writes(settings, plans):
                    return assemble(experiment, settings, plans, inputs, {}, None)
            return _execute(experiment, settings, plans, inputs, backend, on_event)
        finally:
            held.discard(lock_path)


def _writes(settings: RunSettings, plans: Mapping[str, ConditionPlan]) -> bool:
    """Does this run write anything: a condition to execute, or a reused condition held by a
    version other than the one the newest record names (found by looking back; the new
    record must say where it is, or readers of the newest record would miss it)."""
    if any(p.executes for p in plans.values()):
        return True
    held = settings.previous.conditions if settings.previous is not None else {}
    return any(p.reuse is not None and (n not in held or held[n].version != p.reuse.version)
               for n, p in plans.items())


def _record_stamp(store: ExperimentStore) -> tuple[int, int] | None:
    """Identifies the unversioned store's ``run.json`` as it is now (changes when a run writes it)."""
    try:
        stat = store.run_json(0).stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _plan(experiment: Experiment, settings: RunSettings, upstream: Mapping[str, UpstreamRun] | None, force: bool,
          memo: CodeMemo | None) -> tuple[dict[str, ConditionInputs], dict[str, ConditionPlan]]:
    """Upstream pins and a plan per condition (writes only the input-file hash cache)."""
    from crystallize.fingerprint import FileHashCache

    inputs = resolve_inputs(experiment, list(settings.conditions), upstream)
    cache = FileHashCache(settings.store.root / ".file-hashes.json")
    plans = plan_conditions(experiment, settings, inputs, cache, force=force, memo=memo)
    cache.save()
    return inputs, plans


def _open_version(settings: RunSettings) -> tuple[int, bool]:
    """Reserve ``v<N+1>`` (versioned) or reuse ``v0`` (unversioned; the caller holds its lock).

    Returns the version and whether its folder was created just now (so holds nothing yet).
    """
    store = settings.store
    if settings.versioned:
        return store.reserve_version(), True
    newer = [v for v in store.versions() if v > 0]
    if newer:
        raise StoreError(f"versioned=False but versions {newer} exist; use ArtifactPlugin(versioned=True) "
                         "or another root_dir", path=store.dir)
    try:
        store.version_dir(0).mkdir()
    except FileExistsError:
        return 0, False
    return 0, True


_HELD = threading.local()  # .paths: the experiment locks this thread holds


def _experiment_lock(path: str) -> Any:
    """A new ``filelock.FileLock`` on the experiment's lock file.

    One object per run, not per thread (``thread_local=False`` costs about a third less
    per acquire): each object opens its own descriptor, so two runs in one process
    exclude each other just as two processes do. An explicit mode without group/other
    write bits spares filelock a probe file per new lock.
    """
    from filelock import FileLock

    return FileLock(path, mode=0o644, thread_local=False)


def _prepare_unversioned(settings: RunSettings, plans: Mapping[str, ConditionPlan], writer: VersionWriter) -> None:
    """Before rewriting ``v0`` in place: unmark what will be rewritten and drop inactive conditions."""
    previous = settings.previous.conditions if settings.previous else {}
    for name in previous:
        if name not in plans:
            writer.clear_condition(name)
    for name, plan in plans.items():
        if not plan.executes:
            continue
        if plan.reuse is not None and plan.reuse.version == 0:
            settings.store.marker(0, name).unlink(missing_ok=True)
            continue  # kept replicates stay in place; reruns overwrite their own files
        writer.clear_condition(name)


def _condition_runs(settings: RunSettings, plans: Mapping[str, ConditionPlan],
                    inputs: Mapping[str, ConditionInputs]) -> dict[str, ConditionRun]:
    runs = {}
    for name, plan in plans.items():
        if not plan.executes:
            continue
        kept = {r: s for r, s in plan.reuse.ok.items() if r < settings.replicates and r not in plan.run} \
            if plan.reuse is not None else {}
        runs[name] = ConditionRun(plan, inputs[name], settings.replicates, kept)
    return runs


def _definition(experiment: Experiment, settings: RunSettings, setup: _Setup, remote: bool) -> DefinitionRef:
    definition = RunDefinition(
        experiment_name=settings.name, datasource=experiment.datasource, pipeline=experiment.pipeline,
        initial_ctx=experiment.initial_ctx, shared_ctx=setup.shared, treatments={k: v for k, v in settings.conditions.items() if v is not None},
        plugins=tuple(experiment.plugins), seed_fn=settings.seed_fn, experiment=experiment,
        step_cache=cache_plan(experiment.pipeline.steps))
    ref = DefinitionRef(f"{settings.name}:{uuid.uuid4().hex}", definition)
    if remote:
        _preflight(ref, experiment, settings, setup)
    return ref


def _preflight(ref: DefinitionRef, experiment: Experiment, settings: RunSettings, setup: _Setup) -> None:
    """Serialise the definition before any work, naming the part that will not travel."""
    import cloudpickle

    try:
        ref.payload()
        return
    except Exception as exc:  # boundary: find and name the culprit
        cause = exc
    parts: list[tuple[str, Any]] = [("datasource", experiment.datasource)]
    parts += [(f"step '{s.name}'", s) for s in experiment.pipeline.steps]
    parts += [(f"initial_ctx key '{k}'", v) for k, v in experiment.initial_ctx.items()]
    parts += [(setup.origin(k), v) for k, v in setup.shared.items()]
    parts += [(f"treatment '{k}'", v) for k, v in settings.conditions.items() if v is not None]
    parts += [(f"plugin {type(p).__name__}", p) for p in experiment.plugins]
    for what, obj in parts:
        try:
            cloudpickle.dumps(obj)
        except Exception as exc:
            raise SerializationError(f"{what} of experiment '{settings.name}'", exc) from exc
    raise SerializationError(f"experiment '{settings.name}'", cause) from cause


@dataclass(frozen=True, slots=True)
class _Setup:
    """The keys the steps' ``setup`` added to the context (``shared``), which every
    replicate-condition context receives as they are: shared within a process, not copied
    (they are resources built once, as 0.27 merged them); ``added`` names the step that
    added each key, for errors."""

    shared: Mapping[str, Any]
    added: Mapping[str, str]  # key -> step name

    def origin(self, key: str) -> str:
        step = self.added.get(key)
        return f"initial_ctx key '{key}'" if step is None else f"context key '{key}' (added by {step}.setup)"


def _setup_context(experiment: Experiment, settings: RunSettings) -> FrozenContext:
    """The context ``step.setup`` receives; a value that cannot be copied is named (jobs copy it too)."""
    try:
        return FrozenContext(experiment.initial_ctx)
    except Exception as exc:  # boundary: name the culprit key
        cause: Exception = exc
    for key, value in experiment.initial_ctx.items():
        try:
            copy.deepcopy(value)
        except Exception as exc:
            raise SerializationError(f"initial_ctx key '{key}' of experiment '{settings.name}'", exc) from exc
    raise cause


def _run_setup(experiment: Experiment, ctx: FrozenContext) -> _Setup:
    """Call every step's ``setup(ctx)`` and collect the keys they add (process and Ray
    backends pickle them once per worker; :func:`_preflight` names one that will not)."""
    added: dict[str, str] = {}
    for step in experiment.pipeline.steps:
        step.setup(ctx)
        for key in ctx:
            if key not in added and key not in experiment.initial_ctx:
                added[key] = step.name
    return _Setup({key: ctx[key] for key in added}, added)


def _jobs(ref: DefinitionRef, settings: RunSettings, runs: Mapping[str, ConditionRun]) -> Iterator[Job]:
    """Replicate-major order, so early replicates of every condition finish first.

    A generator: each job is made when the backend takes it, so finished jobs do not
    pile up for the garbage collector to walk.
    """
    wanted = {(name, r) for name, run in runs.items() for r in run.plan.run}
    master, auto = settings.master_seed, settings.auto_seed
    staging = os.path.abspath(settings.store.staging_dir)
    for r in range(settings.replicates):
        seed = replicate_seed(master, r, auto_seed=auto)
        for name, run in runs.items():
            if (name, r) in wanted:
                yield Job(ref, name, r, seed, run.inputs.artifacts, staging)


class _GcSettings:
    """Shared by overlapping runs (threads): the first run in changes the collector's
    settings, the last one out restores them."""

    lock = threading.Lock()
    depth = 0
    saved: tuple[int, ...] = ()
    froze = False


@contextmanager
def _fewer_young_collections(threshold: int = 50_000) -> Iterator[None]:
    """Make the cyclic GC cheaper while results accumulate.

    Each replicate allocates a few dozen small, long-lived objects (metrics, records);
    with CPython's default generation-0 threshold (700) that triggers a young collection
    every few replicates that finds nothing to free, and the older generations'
    collections keep walking every object the process already had (modules, numpy, the
    user's data). So the threshold is raised to 50,000 (a young collection every few
    thousand replicates) and the objects that existed before the run are frozen (``gc.freeze``:
    left out of collections until the run ends) -- unless the process already froze
    objects of its own, which stay as they are. Cyclic garbage made during the run is
    still collected, in larger batches. Overlapping runs share one change; the last to
    finish restores the previous settings.
    """
    with _GcSettings.lock:
        if _GcSettings.depth == 0:
            _GcSettings.saved = gc.get_threshold()
            _GcSettings.froze = gc.get_freeze_count() == 0
            gc.set_threshold(max(_GcSettings.saved[0], threshold), *_GcSettings.saved[1:])
            if _GcSettings.froze:
                gc.freeze()
        _GcSettings.depth += 1
    try:
        yield
    finally:
        with _GcSettings.lock:
            _GcSettings.depth -= 1
            if _GcSettings.depth == 0:
                if _GcSettings.froze:
                    gc.unfreeze()
                gc.set_threshold(*_GcSettings.saved)


def _dispatch(backend: Backend, jobs: Iterable[Job], collector: Collector) -> None:
    """Keep the backend busy; persist each result as it arrives. Ctrl-C stops submitting."""
    pending: set[Future[JobResult]] = set()
    window = max(1, backend.capacity * 2)
    try:
        inline = isinstance(backend, SerialBackend)
        for job in jobs:
            if inline:  # no future needed: run here, persist now
                collector.add(run_job(job))
                continue
            future = backend.submit(job)
            if future.done():
                collector.add(future.result())
                continue
            pending.add(future)
            if len(pending) >= window:
                pending = _collect_some(pending, collector)
    except KeyboardInterrupt:
        logger.warning("interrupted: letting %d running replicates finish, then stopping", len(pending))
        for f in pending:
            f.cancel()
        raise
    finally:
        pending = {f for f in pending if not f.cancelled()}
        while pending:
            pending = _collect_some(pending, collector)


def _collect_some(pending: set[Future[JobResult]], collector: Collector) -> set[Future[JobResult]]:
    """Wait for at least one result and persist it; returns the futures still pending.

    While waiting, buffered journal entries are flushed once they are due, so a
    replicate that finished long before a crash is never lost with the buffer.
    """
    while True:
        done, pending = wait(pending, timeout=collector.writer.flush_due_in(), return_when=FIRST_COMPLETED)
        if done:
            break
        collector.writer.flush()
    for f in done:
        collector.add(f.result())
    return pending


def _warn_shared_random_state(settings: RunSettings, backend: Backend | None) -> None:
    """Threads share ``random``/``numpy.random``: seeding them per replicate cannot be reproducible
    (a user's ``seed_fn`` seeds shared state too, so it is warned about as well, as in 0.27)."""
    if backend is not None and not backend.remote and backend.capacity > 1 and settings.seed_fn is not None:
        logger.warning("%s: SeedPlugin with replicates running concurrently in one process is not reproducible "
                       "because 'random' state is shared; take an `rng` parameter, or use "
                       "executor_type='process'", settings.name)


def _warn_shadowed_treatment_keys(experiment: Experiment, settings: RunSettings) -> None:
    """A treatment key that a step also receives explicitly never reaches that step."""
    for condition, treatment in settings.conditions.items():
        if treatment is None:
            continue
        for step in experiment.pipeline.steps:
            for key in sorted(set(treatment.apply_map) & set(step.params)):
                logger.warning("%s: treatment '%s' sets '%s', but step '%s' is given %s= explicitly, so that step "
                               "ignores the treatment's value", settings.name, condition, key, step.name, key)


def _backend_for(experiment: Experiment, backend: Backend | None) -> tuple[Backend | None, Any, bool]:
    """The backend to use, a 0.27 custom-loop plugin (if any), and whether we own the backend."""
    if backend is not None:
        return backend, None, False
    chosen = next((p for p in reversed(experiment.plugins) if overrides_loop(p)), None)
    if chosen is None:
        return SerialBackend(), None, True
    if hasattr(chosen, "make_backend"):
        return chosen.make_backend(), None, True
    return None, chosen, False


def _run_jobs(settings: RunSettings, plans: Mapping[str, ConditionPlan], ref: DefinitionRef,
              runs: Mapping[str, ConditionRun], collector: Collector, backend: Backend | None, custom: Any,
              experiment: Experiment, on_event: EventSink | None) -> BaseException | None:
    """Run every planned job on ``backend`` (or through the custom loop ``custom``); the collector stores each result.

    Returns the error to raise once everything is stored when a custom loop skipped
    replicates, else ``None``.
    """
    jobs = _jobs(ref, settings, runs)
    if on_event:
        reused = tuple(n for n, p in plans.items() if not p.executes)
        total = sum(len(run.plan.run) for run in runs.values())
        on_event(RunStarted(settings.name, collector.writer.version, total, tuple(runs), reused))
    collector.finish_idle()  # conditions with nothing to execute, only stored replicates to record
    if backend is None:  # _backend_for found a 0.27 custom loop instead
        return run_custom_loop(experiment, custom, list(jobs), collector)
    _dispatch(backend, jobs, collector)
    return None


def _execute(experiment: Experiment, settings: RunSettings, plans: Mapping[str, ConditionPlan],
             inputs: Mapping[str, ConditionInputs], backend: Backend | None, on_event: EventSink | None) -> ExperimentOutcome:
    from crystallize.execution.report import finish_run, log_fallbacks, running_record

    for plugin in experiment.plugins:
        if isinstance(plugin, LoggingPlugin):
            plugin.replicates = settings.replicates  # its step lines count this run's replicates
        plugin.before_run(experiment)
    # 0.27's line first (a pattern written for 0.27's log still matches), then which experiment and what runs
    logger.info("Experiment: %d replicates, %d treatments, %d hypotheses (seed=%d); %s: running %s",
                settings.replicates, len(settings.conditions) - 1, len(settings.hypotheses), settings.master_seed,
                settings.name, ", ".join(n if p.run else f"{n} (recording its finished replicates)"
                                         for n, p in plans.items() if p.executes))
    setup_ctx = _setup_context(experiment, settings)
    with ExitStack() as stack:
        stack.callback(lambda: [step.teardown(setup_ctx) for step in experiment.pipeline.steps])
        setup = _run_setup(experiment, setup_ctx)
        chosen, custom, owned = _backend_for(experiment, backend)
        if owned and chosen is not None:
            stack.callback(chosen.close)
        # serialise (remote backends) before the version is reserved: a SerializationError leaves no trace
        ref = _definition(experiment, settings, setup, remote=bool(chosen is not None and chosen.remote))
        version, fresh = _open_version(settings)
        artifact_plugin = experiment.get_plugin(ArtifactPlugin)
        if artifact_plugin is not None:
            artifact_plugin.version = version
        writer = VersionWriter(settings.store, version, durable=settings.durable)
        if not fresh:
            _prepare_unversioned(settings, plans, writer)
        runs = _condition_runs(settings, plans, inputs)
        collector = Collector(settings.name, writer, runs, on_event)
        collector.carry_over(settings.store)
        log_fallbacks(settings.name, runs)
        running = running_record(settings, plans, runs, version)
        # a killed run then reads INCOMPLETE, and v0's older record never vouches for files being rewritten
        writer.write_record(running, replace=not fresh)
        _warn_shared_random_state(settings, chosen)
        _warn_shadowed_treatment_keys(experiment, settings)
        try:
            unfinished = _run_jobs(settings, plans, ref, runs, collector, chosen, custom, experiment, on_event)
        except BaseException:  # a custom loop, a hook or Ctrl-C: store what ran, then propagate
            writer.flush()  # the journal first: it still holds the work if writing the record fails too
            finish_run(experiment, settings, plans, inputs, runs, writer, running, stopped=True)
            raise
        writer.flush(final=collector.finished)
        outcome = finish_run(experiment, settings, plans, inputs, runs, writer, running)
        if unfinished is not None:
            outcome = dataclasses.replace(outcome, deferred=unfinished)
    if settings.versioned:
        prune_versions(settings.store, keep=settings.retention, big_file_mb=settings.big_file_mb)
    for plugin in experiment.plugins:
        plugin.after_run(experiment, outcome.result)
    return outcome
