"""The unit of work: one replicate of one condition, as a small picklable job.

A :class:`Job` names its experiment definition through a :class:`DefinitionRef`, which
serialises the definition once per run (cloudpickle) and is rebuilt once per worker
process. The job returns a :class:`JobResult`; only the runner writes the store.
"""

from __future__ import annotations

import copy
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from crystallize.context import FrozenContext
from crystallize.datasources.artifacts import ArtifactInput, ArtifactRecord
from crystallize.datasources.datasource import DataSource
from crystallize.errors import ArtifactNotFoundError, PipelineExecutionError
from crystallize.execution.step_cache import CachePlan, planned
from crystallize.plugins.base import BasePlugin, hook_methods
from crystallize.plugins.builtin import LoggingPlugin
from crystallize.steps import Pipeline, StepRecord, _StepPlan
from crystallize.treatments import Treatment

__all__ = ["DefinitionRef", "Job", "JobError", "JobResult", "RunDefinition", "run_job"]

_WORKER_DEFINITIONS: dict[str, RunDefinition] = {}  # per-process cache of unpickled definitions
_ATOMIC = frozenset({int, float, str, bool, bytes, type(None)})  # deepcopy returns these unchanged


@dataclass(frozen=True, slots=True)
class RunDefinition:
    """What a worker needs to run any replicate-condition of one experiment run."""

    experiment_name: str
    datasource: DataSource
    pipeline: Pipeline
    initial_ctx: Mapping[str, Any]
    treatments: Mapping[str, Treatment]  # condition -> treatment applied (baseline: its override, if any)
    plugins: tuple[BasePlugin, ...] = ()
    seed_fn: Callable[[int], None] | None = None
    experiment: Any = None  # the object hooks receive
    step_cache: CachePlan | None = None  # resolved by the runner (cache folder, code keys)
    shared_ctx: Mapping[str, Any] = field(default_factory=dict)  # keys steps' setup() added: shared, not copied
    # Resolved once per run (and again where the definition is unpickled), not per job:
    replicate_hooks: tuple[Callable[..., Any], ...] = field(init=False, default=())
    step_plan: _StepPlan = field(init=False)
    copy_initial: bool = field(init=False, default=True)  # False: every value is atomic, a dict copy will do

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "replicate_hooks", hook_methods(self.plugins, "before_replicate"))
        verbose = any(isinstance(p, LoggingPlugin) and p.verbose for p in self.plugins)  # 0.27: reads traced
        set_(self, "step_plan", _StepPlan(self.pipeline.steps, hook_methods(self.plugins, "before_step"),
                                          hook_methods(self.plugins, "after_step"), trace_reads=verbose))
        set_(self, "copy_initial", any(type(v) not in _ATOMIC for v in self.initial_ctx.values()))


class DefinitionRef:
    """A run definition shared by all jobs of a run; pickles to bytes once, unpickles once per process."""

    __slots__ = ("key", "_definition", "_payload")

    def __init__(self, key: str, definition: RunDefinition) -> None:
        self.key, self._definition, self._payload = key, definition, None

    def get(self) -> RunDefinition:
        return self._definition

    def payload(self) -> bytes:
        """The cloudpickled definition (computed on first use)."""
        if self._payload is None:
            import cloudpickle

            self._payload = cloudpickle.dumps(self._definition)
        return self._payload

    def __reduce__(self) -> tuple[Any, ...]:
        return (_load_definition, (self.key, self.payload()))


def _load_definition(key: str, payload: bytes) -> DefinitionRef:
    definition = _WORKER_DEFINITIONS.get(key)
    if definition is None:
        import pickle

        definition = pickle.loads(payload)
        if len(_WORKER_DEFINITIONS) > 32:  # bounded: old runs are not needed again
            _WORKER_DEFINITIONS.pop(next(iter(_WORKER_DEFINITIONS)))
        _WORKER_DEFINITIONS[key] = definition
    ref = DefinitionRef.__new__(DefinitionRef)
    ref.key, ref._definition, ref._payload = key, definition, payload
    return ref


# Job and JobResult are treated as immutable but not declared frozen: a frozen dataclass
# builds itself through object.__setattr__, which costs about 0.7 us more per job.
@dataclass(slots=True)
class Job:
    """One replicate of one condition."""

    definition: DefinitionRef
    condition: str
    replicate: int
    seed: int
    inputs: Mapping[str, ArtifactInput] = field(default_factory=dict)
    staging: str | None = None  # folder for ctx.artifacts.path() files, on the store's file system


@dataclass(frozen=True, slots=True)
class JobError:
    """A failure, described so it survives crossing a process boundary."""

    type_name: str
    message: str
    traceback: str
    step: str | None = None
    exception: BaseException | None = None  # the original, when it could travel

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type_name, "message": self.message, "traceback": self.traceback, "step": self.step}


@dataclass(slots=True)
class JobResult:
    """What one job produced; metrics are ``None`` when it failed."""

    condition: str
    replicate: int
    seed: int
    metrics: dict[str, list[Any]] | None
    tags: dict[str, list[Any]] | None = None
    artifacts: tuple[ArtifactRecord, ...] = ()
    error: JobError | None = None
    provenance: tuple[StepRecord, ...] = ()  # compact; crystallize.steps.expand_records makes the dicts

    @property
    def ok(self) -> bool:
        return self.error is None


def _error(exc: BaseException) -> JobError:
    step = exc.step_name if isinstance(exc, PipelineExecutionError) else None
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    original = exc.original_exception if isinstance(exc, PipelineExecutionError) else exc
    return JobError(type(original).__name__, str(original), tb, step, exc)


class _RngFactory:
    """One numpy Generator per job, derived from the replicate seed with SeedSequence
    (built on first use: most jobs never ask for one)."""

    __slots__ = ("seed", "made")

    def __init__(self, seed: int) -> None:
        self.seed, self.made = seed, None

    def __call__(self) -> Any:
        if self.made is None:
            import numpy as np

            self.made = np.random.default_rng(np.random.SeedSequence(self.seed))
        return self.made


def run_job(job: Job) -> JobResult:
    """Run one replicate of one condition and describe the outcome (never raises for user errors)."""
    d = job.definition.get()
    values = copy.deepcopy(dict(d.initial_ctx)) if d.copy_initial else dict(d.initial_ctx)
    if d.shared_ctx:
        values.update(d.shared_ctx)
    values["replicate"], values["condition"] = job.replicate, job.condition
    ctx = FrozenContext._trusted(values, inputs=job.inputs, rng_factory=_RngFactory(job.seed), staging=job.staging)
    records: list[StepRecord] = []
    try:
        treatment = d.treatments.get(job.condition)
        if treatment is not None:
            treatment.apply(ctx)
        values["seed_used"] = job.seed
        if d.seed_fn is not None:
            d.seed_fn(job.seed)
        for hook in d.replicate_hooks:
            hook(d.experiment, ctx)
        data = d.datasource.fetch(ctx)
        if d.step_cache is None:
            d.pipeline._run_plan(d.step_plan, data, ctx, d.experiment, records)
        else:
            with planned(d.pipeline.steps, d.step_cache):
                d.pipeline._run_plan(d.step_plan, data, ctx, d.experiment, records)
    except (Exception, SystemExit) as exc:  # boundary: a user failure (even sys.exit) becomes data
        if ctx._artifacts is not None:
            ctx._artifacts.discard()
        return JobResult(job.condition, job.replicate, job.seed, None, error=_error(exc), provenance=tuple(records))
    log = ctx._artifacts
    if log is not None and log.staging:
        try:
            log.settle()  # each staged path holds a regular file of this run's own
        except ArtifactNotFoundError as exc:
            log.discard()  # the replicate fails: its other files must not reach the store either
            error = JobError(type(exc).__name__, str(exc), str(exc), exc.step_name, exc)
            return JobResult(job.condition, job.replicate, job.seed, None, error=error, provenance=tuple(records))
    artifacts = tuple(log.drain()) if log is not None else ()
    tags = ctx.metrics.tags()
    return JobResult(job.condition, job.replicate, job.seed, ctx.metrics.take(), tags, artifacts, None, tuple(records))


def run_jobs(jobs: Sequence[Job]) -> list[JobResult]:
    """Run several jobs in order (a batch for remote workers)."""
    return [run_job(job) for job in jobs]
