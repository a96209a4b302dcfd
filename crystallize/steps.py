"""Pipeline steps, parameter injection, shared resources and the pipeline itself."""

from __future__ import annotations

import abc
import asyncio
import inspect
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from crystallize.context import _CURRENT, FrozenContext, LoggingContext
from crystallize.errors import PipelineExecutionError

__all__ = [
    "Pipeline",
    "PipelineStep",
    "ResourceFactoryWrapper",
    "inject_from_ctx",
    "pipeline",
    "pipeline_step",
    "resource_factory",
]

_MISSING = object()
_RESOURCES: dict[object, Any] = {}  # per-process cache of resource_factory results
_RESOURCES_LOCK = threading.Lock()


class ResourceFactoryWrapper:
    """A context value that builds a heavy resource once per process.

    Parameters
    ----------
    fn : Callable
        Builds the resource. Called with the context when it takes a positional
        argument (any name), else with no arguments.
    key : str, optional
        Cache key; defaults to the function's qualified name and code location.
    """

    def __init__(self, fn: Callable[..., Any], *, key: str | None = None) -> None:
        self.fn, self.key = fn, key
        self._takes_ctx = _positional_count(fn) >= 1

    def _cache_key(self) -> object:
        if self.key is not None:
            return self.key
        code = getattr(self.fn, "__code__", None)
        return (getattr(self.fn, "__qualname__", repr(self.fn)), getattr(code, "co_filename", ""),
                getattr(code, "co_firstlineno", 0))

    def __call__(self, ctx: FrozenContext | None = None) -> Any:
        key = self._cache_key()
        with _RESOURCES_LOCK:
            if key in _RESOURCES:
                return _RESOURCES[key]
        value = self.fn(ctx) if self._takes_ctx else self.fn()
        with _RESOURCES_LOCK:
            return _RESOURCES.setdefault(key, value)

    def __reduce__(self) -> tuple[Any, ...]:
        return (ResourceFactoryWrapper, (self.fn,), {"key": self.key})

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        self.key = state["key"]

    def __crystallize_fingerprint__(self) -> bytes:
        return f"resource:{self.key or getattr(self.fn, '__qualname__', '?')}".encode()


def resource_factory(fn: Callable[..., Any], *, key: str | None = None) -> ResourceFactoryWrapper:
    """Wrap ``fn`` so the resource it builds is created once per worker process.

    Put the wrapper in the context (``initial_ctx`` or a treatment); a step parameter
    with the same name receives the built resource.

    Examples
    --------
    >>> client = resource_factory(lambda ctx: {"conn": 1}, key="client")
    >>> client(None) is client(None)
    True
    """
    return ResourceFactoryWrapper(fn, key=key)


def _positional_count(fn: Callable[..., Any]) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 1
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in params if p.kind in kinds)


@dataclass(frozen=True, slots=True)
class _Signature:
    """How to call a step function: which parameter is data, which are injected."""

    data_param: str | None
    takes_ctx: bool
    names: tuple[str, ...]  # injectable keyword parameters, in order
    defaults: tuple[object, ...]  # _MISSING when a parameter has no default
    ctx_second: bool = False  # ``fn(data, ctx)`` may be called positionally

    @classmethod
    def of(cls, fn: Callable[..., Any]) -> _Signature:
        params = list(inspect.signature(fn).parameters.values())
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        data = positional[0].name if positional and positional[0].name != "ctx" else None
        rest = [p for p in params if p.name not in (data, "ctx") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        defaults = tuple(_MISSING if p.default is p.empty else p.default for p in rest)
        ctx_second = data is not None and len(positional) >= 2 and positional[1].name == "ctx"
        return cls(data, any(p.name == "ctx" for p in params), tuple(p.name for p in rest), defaults, ctx_second)


def _resolve(sig: _Signature, explicit: Mapping[str, Any], ctx: FrozenContext, owner: str) -> dict[str, Any]:
    """Keyword arguments for one call: explicit > context > ``rng`` > default."""
    kwargs: dict[str, Any] = {}
    data = ctx._data
    for name, default in zip(sig.names, sig.defaults):
        if name in explicit:
            value = explicit[name]
        elif name in data:
            value = data[name]
        elif name == "rng" and ctx.rng_factory is not None:
            value = ctx.rng_factory()
        elif default is not _MISSING:
            value = default
        else:
            raise TypeError(
                f"Dependency Injection Error: Parameter '{name}' in step '{owner}' is not found in the "
                "Context and has no default value."
            )
        if isinstance(value, ResourceFactoryWrapper):
            value = value(ctx)
        kwargs[name] = value
    if sig.takes_ctx and not sig.ctx_second:  # a second positional ctx is passed by position (it may be /-only)
        kwargs["ctx"] = ctx
    return kwargs


def _call(fn: Callable[..., Any], sig: _Signature, data: Any, ctx: FrozenContext, kwargs: dict[str, Any]) -> Any:
    """Call a step function with ``kwargs`` from :func:`_resolve`."""
    if sig.ctx_second:
        return fn(data, ctx, **kwargs)
    return fn(data, **kwargs) if sig.data_param else fn(**kwargs)


def inject_from_ctx(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate ``fn(data, ctx, **params)`` so missing params come from the context.

    Examples
    --------
    >>> @inject_from_ctx
    ... def scale(data, ctx, *, factor=1.0):
    ...     return data * factor
    >>> from crystallize.context import FrozenContext
    >>> scale(2, FrozenContext({"factor": 3.0}))
    6.0
    """
    sig = _Signature.of(fn)

    def wrapper(data: Any, ctx: FrozenContext, **explicit: Any) -> Any:
        return _call(fn, sig, data, ctx, _resolve(sig, explicit, ctx, fn.__name__))

    wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
    wrapper.__name__ = fn.__name__
    return wrapper


class PipelineStep(abc.ABC):
    """One transformation in a pipeline: ``step(data, ctx) -> data`` or ``(data, metrics)``.

    Subclass it for class-based steps, or use :func:`pipeline_step` on a function.
    ``version`` (class attribute or set by the decorator) replaces the code part of the
    step's fingerprint.
    """

    cacheable: bool = False
    version: str | None = None

    @abc.abstractmethod
    def __call__(self, data: Any, ctx: FrozenContext) -> Any:
        """Run the step."""

    @property
    @abc.abstractmethod
    def params(self) -> dict[str, Any]:
        """Explicit parameters (part of the step's identity)."""

    @property
    def name(self) -> str:
        """Folder name of the step's artifacts: the class name."""
        return type(self).__name__

    def setup(self, ctx: FrozenContext) -> None:  # noqa: B027 - optional hook
        """Called once per run with the initial context, before any replicate."""

    def teardown(self, ctx: FrozenContext) -> None:  # noqa: B027 - optional hook
        """Called once per run after every replicate, also when a replicate failed."""

    @property
    def step_hash(self) -> str:
        """Fingerprint of the step's code and explicit parameters (SHA-256 hex)."""
        from crystallize.fingerprint import code_fingerprint, tagged_digest, canonical

        code = code_fingerprint(self.code_target(), version=self.version)
        return tagged_digest("step", self.name, code.digest, canonical(self.params, key=self.name))

    def code_target(self) -> Callable[..., Any] | type:
        """The object whose source defines the step (the function, or the class)."""
        return type(self)

    def injected_names(self) -> tuple[str, ...]:
        """Parameters this step reads from the context (empty for class-based steps)."""
        return ()


class _FunctionStep(PipelineStep):
    """Base of the classes that :func:`pipeline_step` generates."""

    fn: Callable[..., Any]
    _sig: _Signature
    _factory: Callable[..., PipelineStep]

    def __init__(self, explicit: Mapping[str, Any]) -> None:
        self._explicit = dict(explicit)

    @property
    def params(self) -> dict[str, Any]:
        return dict(self._explicit)

    def __call__(self, data: Any, ctx: FrozenContext) -> Any:
        return _call(self.fn, self._sig, data, ctx, _resolve(self._sig, self._explicit, ctx, self.fn.__name__))

    def code_target(self) -> Callable[..., Any]:
        return self.fn

    def injected_names(self) -> tuple[str, ...]:
        return tuple(n for n in self._sig.names if n not in self._explicit)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_step, (type(self)._factory, self._explicit))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._explicit.items())
        return f"{self.name}({args})"


def _rebuild_step(factory: Callable[..., PipelineStep], explicit: Mapping[str, Any]) -> PipelineStep:
    return factory(**explicit)


def pipeline_step(cacheable: bool = False, *, version: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., PipelineStep]]:
    """Turn a function into a step factory.

    Parameters
    ----------
    cacheable : bool
        Reuse outputs of identical calls across runs (step cache).
    version : str, optional
        Declares the step's code version; replaces the source digest in fingerprints,
        so a refactor that keeps behaviour can say so.

    Returns
    -------
    Callable
        A decorator; the decorated name becomes a factory ``name(**params) -> PipelineStep``
        whose class is ``fn.__name__.title() + "Step"`` (e.g. ``add_delta`` -> ``Add_DeltaStep``).

    Raises
    ------
    TypeError
        From the factory, when given a keyword the function does not accept
        (``"Unknown parameters: ..."``).

    Notes
    -----
    The first positional parameter receives the data, unless it is named ``ctx``: then
    the step takes the context and no data (``def step(ctx, data)`` looks ``data`` up in
    the context). ``ctx`` is optional. Every other parameter is resolved per call:
    explicit value, then the context key of the same name, then ``rng`` (a seeded
    ``numpy.random.Generator``), then the default. Unlike crystallize-ml 0.27, a
    context-supplied parameter needs no default and the data parameter may have any name.

    Examples
    --------
    >>> @pipeline_step()
    ... def add_delta(data, ctx, *, delta: float = 0.0):
    ...     return [x + delta for x in data]
    >>> step = add_delta(delta=2.0)
    >>> type(step).__name__, step([1.0], FrozenContext({}))
    ('Add_DeltaStep', [3.0])
    """
    if callable(cacheable) and not isinstance(cacheable, bool):
        raise TypeError("pipeline_step must be called: use @pipeline_step()")

    def decorate(fn: Callable[..., Any]) -> Callable[..., PipelineStep]:
        sig = _Signature.of(fn)
        cls = type(f"{fn.__name__.title()}Step", (_FunctionStep,), {
            "fn": staticmethod(fn), "_sig": sig, "cacheable": cacheable, "version": version,
            "_maybe_async": inspect.iscoroutinefunction(fn),
            "__module__": fn.__module__, "__doc__": fn.__doc__,
        })

        def factory(**explicit: Any) -> PipelineStep:
            unknown = sorted(set(explicit) - set(sig.names))
            if unknown:
                raise TypeError(f"Unknown parameters: {', '.join(unknown)}")
            return cls(explicit)

        cls._factory = factory
        # the factory takes the function's place in its module, so pickle finds it by reference there
        factory.__name__, factory.__qualname__, factory.__module__ = fn.__name__, fn.__qualname__, fn.__module__
        factory.__doc__, factory.__wrapped__ = fn.__doc__, fn  # type: ignore[attr-defined]
        factory.step_class = cls  # type: ignore[attr-defined]
        return factory

    return decorate


def _await(value: Any) -> Any:
    """Finish an async step's awaitable from synchronous code."""
    async def wait() -> Any:
        return await value

    return asyncio.run(wait())


class Pipeline:
    """An ordered, non-empty list of steps.

    Parameters
    ----------
    steps : Sequence[PipelineStep]
        The steps, run in order; each receives the previous one's data.

    Raises
    ------
    ValueError
        If ``steps`` is empty.
    TypeError
        If an element is not a :class:`PipelineStep` (e.g. a factory that was not called).
    """

    def __init__(self, steps: Sequence[PipelineStep]) -> None:
        steps = list(steps)
        if not steps:
            raise ValueError("Pipeline must contain at least one step.")
        for i, step in enumerate(steps):
            if not isinstance(step, PipelineStep):
                hint = " (did you forget to call the step factory?)" if callable(step) else ""
                raise TypeError(f"pipeline step {i} is {step!r}, not a PipelineStep{hint}")
        self.steps = steps
        self._provenance: tuple[Sequence[PipelineStep], list[StepRecord]] = ((), [])  # steps as run, records

    def signature(self) -> str:
        """Stable text identity: each step's class name and explicit parameters, ``|``-joined.

        Shaped as in crystallize-ml 0.27 (``"ShiftStep{'offset': 1.5}|SummariseStep{}"``),
        with two changes so the text is the same in every process: parameters are sorted
        by name, and values other than str, int, float, bool and None appear by type name
        only, never with a memory address (0.27's did, W-14).
        """
        def show(value: Any) -> str:
            return repr(value) if isinstance(value, (str, int, float, bool, type(None))) else type(value).__name__

        return "|".join(s.name + "{" + ", ".join(f"{k!r}: {show(v)}" for k, v in sorted(s.params.items())) + "}"
                        for s in self.steps)

    def get_provenance(self) -> list[dict[str, Any]]:
        """Step records of the last :meth:`run` of this pipeline object (see :func:`expand_records`)."""
        return expand_records(*self._provenance)

    def run(self, data: Any, ctx: FrozenContext, *, verbose: bool = False, experiment: Any = None,
            plugins: Sequence[Any] = (), return_provenance: bool = False, **_ignored: Any) -> Any:
        """Run every step on ``data``; metrics returned by steps go to ``ctx.metrics``.

        ``verbose=True`` records the context values each step reads (provenance ``reads``).

        Raises
        ------
        PipelineExecutionError
            Wrapping the first exception a step raises; ``.step_name`` names it.
        """
        plan = _StepPlan(self.steps, [p.before_step for p in plugins], [p.after_step for p in plugins],
                         trace_reads=verbose)
        records: list[StepRecord] = []
        data = self._run_plan(plan, data, ctx, experiment, records)
        return (data, expand_records(plan.steps, records)) if return_provenance else data

    async def arun(self, data: Any, ctx: FrozenContext, **kwargs: Any) -> Any:
        """Async form of :meth:`run` (steps run in a worker thread)."""
        return await asyncio.to_thread(self.run, data, ctx, **kwargs)

    def _run_plan(self, plan: _StepPlan, data: Any, ctx: FrozenContext, experiment: Any,
                  records: list[StepRecord]) -> Any:
        """:meth:`run` with the per-run decisions already taken (the job runner reuses one plan).

        Compact step records (see :data:`StepRecord`) are appended to ``records`` as each
        step finishes, so a failing step leaves the records of the steps before it.
        """
        self._provenance = (plan.steps, records)
        token = _CURRENT.set(ctx)
        try:
            return _run_steps(plan, data, ctx, experiment, records)
        finally:
            _CURRENT.reset(token)


class _PlannedStep:
    """One step with what running it needs resolved once per run."""

    __slots__ = ("step", "name", "call", "cacheable", "index", "quiet", "injected")

    def __init__(self, step: PipelineStep, index: int) -> None:
        self.step, self.name, self.cacheable, self.index = step, step.name, step.cacheable, index
        call = _direct_call(step)
        self.call = _awaiting(call) if getattr(step, "_maybe_async", True) else call
        self.quiet: StepRecord = (index, False, None, None)  # a run that changed nothing (immutable, shared)
        sig, explicit = getattr(step, "_sig", None), getattr(step, "_explicit", {})
        # parameters a function step may take from the context (its reads, when reads are traced)
        self.injected = tuple(n for n in sig.names if n not in explicit and n != "rng") if sig else ()


class _StepPlan:
    """Steps and the plugin step hooks to call, resolved once per run.

    Parameters
    ----------
    steps : Sequence[PipelineStep]
        The pipeline's steps.
    before, after : Sequence[Callable]
        Bound ``before_step`` and ``after_step`` hooks, in plugin order.
    trace_reads : bool
        Record the context values each step reads (``LoggingPlugin(verbose=True)``, 0.27's
        ``reads`` in provenance); each step then sees a recording view of the context.
    """

    __slots__ = ("steps", "before", "after", "planned", "trace_reads")

    def __init__(self, steps: Sequence[PipelineStep], before: Sequence[Callable[..., Any]] = (),
                 after: Sequence[Callable[..., Any]] = (), trace_reads: bool = False) -> None:
        self.steps, self.before, self.after = tuple(steps), tuple(before), tuple(after)
        self.planned = tuple(_PlannedStep(step, index) for index, step in enumerate(self.steps))
        self.trace_reads = trace_reads

    def __reduce__(self) -> tuple[Any, ...]:
        # the fast calls are rebuilt, not pickled
        return (_StepPlan, (self.steps, self.before, self.after, self.trace_reads))


def _direct_call(step: PipelineStep) -> Callable[[Any, FrozenContext], Any]:
    """A callable equivalent to ``step(data, ctx)`` with fewer layers; parameters that cannot
    change during a run (explicit values) are resolved here, once."""
    if type(step).__call__ is not _FunctionStep.__call__:
        return step
    fn, sig = step.fn, step._sig  # type: ignore[attr-defined]
    explicit = step._explicit  # type: ignore[attr-defined]
    if not all(n in explicit and not isinstance(explicit[n], ResourceFactoryWrapper) for n in sig.names):
        # some parameter comes from the context: resolved per call
        return lambda data, ctx: _call(fn, sig, data, ctx, _resolve(sig, explicit, ctx, fn.__name__))
    fixed = {n: explicit[n] for n in sig.names}
    if sig.ctx_second:
        # the common ``def step(data, ctx)`` needs no wrapper at all
        return fn if not fixed else lambda data, ctx: fn(data, ctx, **fixed)
    if sig.takes_ctx:
        if sig.data_param:
            return lambda data, ctx: fn(data, ctx=ctx, **fixed)
        return lambda data, ctx: fn(ctx=ctx, **fixed)
    if sig.data_param:
        return lambda data, ctx: fn(data, **fixed)
    return lambda data, ctx: fn(**fixed)


def _awaiting(call: Callable[[Any, FrozenContext], Any]) -> Callable[[Any, FrozenContext], Any]:
    """``call``, finishing the awaitable an async step returns."""
    def run(data: Any, ctx: FrozenContext) -> Any:
        out = call(data, ctx)
        return _await(out) if inspect.isawaitable(out) else out

    return run


def _run_steps(plan: _StepPlan, data: Any, ctx: FrozenContext, experiment: Any,
               records: list[StepRecord]) -> Any:
    values, metrics = ctx._data, ctx.metrics
    log = metrics.log
    for planned in plan.planned:
        step, name = planned.step, planned.name
        values["step_name"] = name
        for hook in plan.before:
            hook(experiment, step)
        n_keys, n_metrics = len(values), len(log)
        call_ctx, reads = ctx, None
        if plan.trace_reads:
            call_ctx = LoggingContext(ctx)
            reads = {n: values[n] for n in planned.injected if n in values}
        try:
            if planned.cacheable:
                out, hit = _cached_call(step, data, call_ctx)
            else:
                out, hit = planned.call(data, call_ctx), False
        except (Exception, SystemExit) as exc:  # sys.exit in a step fails the replicate, not the run
            raise PipelineExecutionError(name, exc) from exc
        if reads is not None:
            reads.update((k, v) for k, v in call_ctx.reads.items() if k != "step_name")
        if ctx._artifacts is not None:
            ctx._artifacts.label_new(name)
        if type(out) is tuple and len(out) == 2 and (type(out[1]) is dict or isinstance(out[1], Mapping)):
            data = out[0]  # (data, metrics)
            for key, value in out[1].items():
                metrics.add(key, value)
        else:
            data = out
        if reads:
            records.append((planned.index, hit, _wrote(values, n_keys) if len(values) > n_keys else None,
                            tuple(log[n_metrics:]) if len(log) > n_metrics else None, reads))
        elif hit or len(values) > n_keys or len(log) > n_metrics:
            records.append((planned.index, hit, _wrote(values, n_keys) if len(values) > n_keys else None,
                            tuple(log[n_metrics:]) if len(log) > n_metrics else None))
        else:
            records.append(planned.quiet)
        for hook in plan.after:
            hook(experiment, step, data, ctx)
    return data


def _cached_call(step: PipelineStep, data: Any, ctx: FrozenContext) -> tuple[Any, bool]:
    from crystallize.execution.step_cache import cached_call  # the step cache lives with the runner

    return cached_call(step, data, ctx, _invoke)


def _invoke(step: PipelineStep, data: Any, ctx: FrozenContext) -> Any:
    """Call a step, finishing an async step's awaitable."""
    out = step(data, ctx)
    if getattr(step, "_maybe_async", True) and inspect.isawaitable(out):
        out = _await(out)
    return out


StepRecord = tuple[Any, ...]
"""What running one step changed, compactly: ``(step index, cache hit, context keys written,
(metric, value) pairs logged)``, ``None`` for nothing, plus a fifth item, the context values
read, when reads are traced and the step read any. Replicates keep these: tuples of plain
values, which the garbage collector stops tracking, so thousands cost little to keep;
:func:`expand_records` turns them into the records users see."""


def expand_records(steps: Sequence[PipelineStep], records: Iterable[StepRecord]) -> list[dict[str, Any]]:
    """Step records as 0.27 shows them, each a new dict.

    Parameters
    ----------
    steps : Sequence[PipelineStep]
        The pipeline's steps (records refer to them by index).
    records : Iterable[StepRecord]
        Compact records of one pipeline run.

    Returns
    -------
    list of dict
        Per step run, 0.27's record: ``{"step": name, "params": {name: plain value or repr},
        "step_hash": str, "input_hash": None, "output_hash": None, "cache_hit": bool,
        "ctx_changes": {"reads": {key: value}, "wrote": {key: {"before": None, "after": value}},
        "metrics": {name: {"before": tuple, "after": tuple}}}}``. ``before`` of a written
        key is always ``None`` (the context is add-only); a metric's ``before``/``after``
        are its values in this replicate before and after the step. ``reads`` is filled
        only when the run traced reads (``LoggingPlugin(verbose=True)``). The data hashes
        are not computed (0.27 pickled every step's input and output for them, W-02).
    """
    out = []
    hashes: dict[int, str | None] = {}
    so_far: dict[str, tuple[Any, ...]] = {}  # metric values of the replicate up to the current step
    for record in records:
        index, hit, wrote, metrics = record[:4]
        step = steps[index]
        if index not in hashes:
            hashes[index] = _step_hash_or_none(step)
        params = {k: v if isinstance(v, (str, int, float, bool, type(None))) else repr(v) for k, v in step.params.items()}
        changes: dict[str, dict[str, Any]] = {"reads": dict(record[4]) if len(record) > 4 and record[4] else {}}
        changes["wrote"] = {k: {"before": None, "after": v} for k, v in wrote.items()} if wrote else {}
        changes["metrics"] = {}
        for name, values in (_grouped(metrics) if metrics else {}).items():
            before = so_far.get(name, ())
            so_far[name] = after = before + tuple(values)
            changes["metrics"][name] = {"before": before, "after": after}
        out.append({"step": step.name, "params": params, "step_hash": hashes[index], "input_hash": None,
                    "output_hash": None, "cache_hit": hit, "ctx_changes": changes})
    return out


def _step_hash_or_none(step: PipelineStep) -> str | None:
    try:
        return step.step_hash
    except Exception:  # boundary: provenance is read after the run; a step whose source is gone has no hash
        return None


def _wrote(values: dict[str, Any], n_keys: int) -> dict[str, Any]:
    """Context keys added since there were ``n_keys``."""
    return {k: values[k] for k in list(values)[n_keys:] if k != "step_name"}


def _grouped(pairs: Iterable[tuple[str, Any]]) -> dict[str, list[Any]]:
    """``(metric, value)`` pairs grouped by metric, in order."""
    grouped: dict[str, list[Any]] = {}
    for key, value in pairs:
        grouped.setdefault(key, []).append(value)
    return grouped


def pipeline(*steps: PipelineStep) -> Pipeline:
    """Build a :class:`Pipeline` from steps given as arguments."""
    return Pipeline(list(steps))
