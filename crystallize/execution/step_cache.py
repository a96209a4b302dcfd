"""The step cache: a cacheable step's outputs are reused when it runs again on the same inputs.

A step opts in with ``@pipeline_step(cacheable=True)`` (or ``cacheable = True`` on a class).
One cache entry holds everything the step produced, so a hit is indistinguishable from a
run: its return value, the metrics it recorded (``ctx.record``, ``ctx.metrics.add``), the
context keys it added (``ctx.add``), the artifact files it wrote, and the random state it
left behind (its ``rng`` generator, ``random`` and ``numpy.random``).

The key covers (crystallize-ml 0.27's W-01 was a key without the context values):

- the step's code fingerprint (its source and the user code it reaches, or ``version=``)
  and the versions of the third-party packages that code uses;
- its explicit parameters and the values of its injected parameters, read from the
  context after treatments were applied;
- every context key the body reads through ``ctx[...]``, ``ctx.get``, ``in`` or iteration
  (traced with a recording proxy of the context, see below);
- the replicate seed, the random state at the start of the step, and the input data
  (canonical encoding, :func:`crystallize.fingerprint.canonical`).

Reads are only known after a first execution, so entries are found in two steps, as in
ccache's manifests: ``<root>/<static key>/<names>.keys.json`` lists the keys one execution
read, and ``<root>/<static key>/<names>-<values>.entry`` holds the outputs for one set of
values of those keys. The root is ``$CRYSTALLIZE_CACHE_DIR`` (default ``.cache`` in the
working directory) of the process that starts the run: the runner resolves it, and the
code keys, into a :class:`CachePlan` that travels with the jobs, because a worker may
have another working directory and environment (a forkserver, a Ray node) and may hold
step functions by value, without their source file. Files are written to a temporary name and moved
into place, so a reader never sees half an entry; an entry carries a SHA-256 of its body
and a damaged one is a miss. Input data or a read value without a canonical encoding (or
outputs that cannot be pickled) make the step run uncached, never fail (0.27's W-02).

Not tracked: values the step reaches without going through its ``ctx`` argument (for
example ``crystallize.context.current_context()`` in a helper, files it opens, or network).
Declare those with ``version=`` or leave the step uncached.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import random
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from crystallize.context import FrozenContext
from crystallize.errors import FingerprintError
from crystallize.store.atomic import write_bytes

if TYPE_CHECKING:
    from collections.abc import Mapping

    from crystallize.datasources.artifacts import ArtifactLog
    from crystallize.steps import PipelineStep

__all__ = ["CACHE_ENV", "CachePlan", "ReadTracer", "cache_plan", "cache_root", "cached_call", "planned"]

logger = logging.getLogger(__name__)

CACHE_ENV = "CRYSTALLIZE_CACHE_DIR"
_MAGIC = b"crystallize-step-cache 1\n"

Invoke = Callable[["PipelineStep", Any, FrozenContext], Any]

# The runner's CachePlan inside a job: cache folder, and code keys by id() of the job's step objects.
_PLANNED: ContextVar[tuple[Path, Mapping[int, str]] | None] = ContextVar("crystallize_step_cache", default=None)


def cache_root() -> Path:
    """``$CRYSTALLIZE_CACHE_DIR``, else ``.cache`` under the working directory (read on every call)."""
    return Path(os.environ.get(CACHE_ENV) or ".cache")


class ReadTracer(FrozenContext):
    """A view of a context that records which of its existing keys the step reads.

    Writes, metrics and artifacts go to the wrapped context. Keys the step adds itself
    are outputs, not inputs, so reading them back is not recorded.
    """

    def __init__(self, ctx: FrozenContext) -> None:
        self._inner = ctx
        self._data, self.metrics, self.logger = ctx._data, ctx.metrics, ctx.logger
        self._artifacts, self.rng_factory, self._inputs = ctx._artifacts, ctx.rng_factory, ctx._inputs
        self._before = frozenset(ctx._data)
        self.reads: set[str] = set()

    @property
    def artifacts(self) -> ArtifactLog:
        return self._inner.artifacts

    def _note(self, key: object) -> None:
        if isinstance(key, str) and (key in self._before or key not in self._data):
            self.reads.add(key)

    def __getitem__(self, key: str) -> Any:
        self._note(key)
        return self._data[key]

    def get(self, key: str, default: Any = None) -> Any:
        self._note(key)
        return self._data.get(key, default)

    def __contains__(self, key: object) -> bool:
        self._note(key)
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        self.reads.update(self._before)
        return iter(self._data)

    def as_dict(self) -> Mapping[str, Any]:
        self.reads.update(self._before)
        return MappingProxyType(self._data)


# ----------------------------------------------------------------------------------- keys

def _random_state(ctx: FrozenContext, step: PipelineStep) -> dict[str, Any]:
    """Random state the step may consume: its ``rng`` generator, ``random``, ``numpy.random``."""
    state: dict[str, Any] = {"random": random.getstate()}
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        kind, keys, pos, has_gauss, gauss = numpy.random.get_state()
        state["numpy"] = (kind, keys.tobytes(), pos, has_gauss, gauss)
    if "rng" in step.injected_names() and "rng" not in ctx._data and ctx.rng_factory is not None:
        state["rng"] = ctx.rng_factory().bit_generator.state
    return state


def _restore_random(ctx: FrozenContext, state: Mapping[str, Any]) -> None:
    random.setstate(state["random"])
    numpy = sys.modules.get("numpy")
    if numpy is not None and "numpy" in state:
        kind, keys, pos, has_gauss, gauss = state["numpy"]
        numpy.random.set_state((kind, numpy.frombuffer(keys, dtype=numpy.uint32), pos, has_gauss, gauss))
    if "rng" in state and ctx.rng_factory is not None:
        ctx.rng_factory().bit_generator.state = state["rng"]


def _code_key(step: PipelineStep) -> str:
    """The step's code fingerprint and the versions of the packages it uses (FingerprintError without source)."""
    from crystallize.fingerprint import canonical, code_fingerprint, environment_fingerprint, tagged_digest

    target = step.code_target()
    code = code_fingerprint(step if target is type(step) else target, version=step.version)
    return tagged_digest("step-cache-code", code.digest, canonical(environment_fingerprint(code.packages)))


@dataclass(frozen=True, slots=True)
class CachePlan:
    """What the runner resolves for the step cache of one run and sends to every job.

    A worker process may have inherited another working directory and environment (a
    forkserver, a Ray node) and may hold step functions by value, without a source file.

    Attributes
    ----------
    root : str
        Absolute cache folder (``$CRYSTALLIZE_CACHE_DIR`` or ``./.cache`` of the runner).
    codes : tuple[str or None, ...]
        Code key per pipeline step (``None``: not cacheable, or no readable source).
    """

    root: str
    codes: tuple[str | None, ...]


def cache_plan(steps: Sequence[PipelineStep]) -> CachePlan | None:
    """Resolve the cache folder and the code keys of the cacheable steps; ``None`` if none is cacheable."""
    if not any(step.cacheable for step in steps):
        return None
    codes: list[str | None] = []
    for step in steps:
        try:
            codes.append(_code_key(step) if step.cacheable else None)
        except FingerprintError:
            codes.append(None)
    return CachePlan(str(cache_root().resolve()), tuple(codes))


@contextmanager
def planned(steps: Sequence[PipelineStep], plan: CachePlan | None) -> Iterator[None]:
    """Use ``plan`` (from :func:`cache_plan`) for ``steps`` while the block runs."""
    if plan is None:
        yield
        return
    codes = {id(s): k for s, k in zip(steps, plan.codes) if k is not None}
    token = _PLANNED.set((Path(plan.root), codes))
    try:
        yield
    finally:
        _PLANNED.reset(token)


def _static_key(step: PipelineStep, data: Any, ctx: FrozenContext, start: Mapping[str, Any]) -> str:
    """Everything known before the step runs (raises FingerprintError when something cannot be encoded)."""
    from crystallize.fingerprint import canonical, tagged_digest

    planned = _PLANNED.get()
    code = (planned[1].get(id(step)) if planned else None) or _code_key(step)
    injected = {n: ctx._data[n] for n in step.injected_names() if n in ctx._data}
    return tagged_digest(
        "step-cache", step.name, code,
        canonical(step.params, key=f"{step.name} parameters"), canonical(injected, key=f"{step.name} injected"),
        canonical(ctx._data.get("seed_used"), key="seed_used"), canonical(start, key="random state"),
        canonical(data, key=f"input data of {step.name}"))


def _values_key(ctx: FrozenContext, names: list[str]) -> str:
    """Digest of the current values of the keys one execution read (absent keys count as absent)."""
    from crystallize.fingerprint import canonical, tagged_digest

    parts = [b"present:" + canonical(ctx._data[n], key=n) if n in ctx._data else b"absent" for n in names]
    return tagged_digest("step-cache-reads", *names, *parts)


def _names_key(names: list[str]) -> str:
    return hashlib.sha256(json.dumps(names).encode()).hexdigest()[:32]


# ----------------------------------------------------------------------------------- entries

@dataclass
class _Outputs:
    """What one execution of a step produced, besides what it returned."""

    added: list[tuple[str, Any]] = field(default_factory=list)
    metrics: list[tuple[str, Any, dict[str, Any]]] = field(default_factory=list)
    artifacts: list[tuple[str, bytes]] = field(default_factory=list)


class _Watch:
    """Notes the context, metrics and artifact log before a step, to collect what it added."""

    def __init__(self, ctx: FrozenContext) -> None:
        self.ctx = ctx
        self.keys = len(ctx._data)
        self.log = len(ctx.metrics.log)
        self.counts = {k: len(v) for k, v in ctx.metrics._values.items()}
        self.files = len(ctx._artifacts) if ctx._artifacts is not None else 0

    def outputs(self) -> _Outputs | None:
        """The step's outputs; ``None`` (not cached) when a staged artifact is not a regular
        file (missing, a folder, ...): the job then fails that replicate with a clear message."""
        ctx, seen = self.ctx, dict(self.counts)
        added = [(k, ctx._data[k]) for k in list(ctx._data)[self.keys:] if k != "step_name"]
        metrics = []
        for key, value in ctx.metrics.log[self.log:]:
            index = seen.get(key, 0)
            seen[key] = index + 1
            metrics.append((key, value, ctx.metrics.tags_at(key, index)))
        files = []
        for record in list(ctx._artifacts or ())[self.files:]:
            if record.data is None and (record.staged is None or not record.staged.is_file()):
                return None
            files.append((record.name, record.data if record.data is not None else record.staged.read_bytes()))
        return _Outputs(added, metrics, files)


def _encode_entry(payload: dict[str, Any]) -> bytes | None:
    import cloudpickle

    try:
        body = cloudpickle.dumps(payload)
    except Exception as exc:  # boundary: anything unpicklable just means "not cached"
        logger.debug("step cache: outputs cannot be pickled (%s); not stored", exc)
        return None
    return _MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n" + body


def _decode_entry(path: Path) -> dict[str, Any] | None:
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    head, _, body = raw[len(_MAGIC):].partition(b"\n")
    if not raw.startswith(_MAGIC) or hashlib.sha256(body).hexdigest().encode() != head:
        logger.warning("step cache: ignoring damaged entry %s", path)
        return None
    try:
        return pickle.loads(body)  # noqa: S301 - our own entry, checked against its SHA-256
    except Exception as exc:  # boundary: e.g. a class that no longer exists
        logger.debug("step cache: entry %s cannot be loaded (%s)", path, exc)
        return None


def _lookup(folder: Path, ctx: FrozenContext) -> dict[str, Any] | None:
    if not folder.is_dir():
        return None
    for listing in sorted(folder.glob("*.keys.json")):
        try:
            names = list(json.loads(listing.read_text())["keys"])
            entry = folder / f"{listing.name[:-len('.keys.json')]}-{_values_key(ctx, names)}.entry"
        except (OSError, ValueError, KeyError, TypeError, FingerprintError):
            continue
        found = _decode_entry(entry) if entry.exists() else None
        if found is not None:
            return found
    return None


def _restore(found: Mapping[str, Any], ctx: FrozenContext) -> Any:
    for key, value in found["added"]:
        ctx.add(key, value)
    for key, value, tags in found["metrics"]:
        ctx.metrics.add(key, value, tags or None)
    for name, content in found["artifacts"]:
        ctx.artifacts.add(name, content)
    _restore_random(ctx, found["random"])
    return found["out"]


def _store(folder: Path, tracer: ReadTracer, out: Any, outputs: _Outputs, after: Mapping[str, Any]) -> None:
    names = sorted(tracer.reads)
    try:
        values = _values_key(tracer._inner, names)
    except FingerprintError as exc:
        logger.debug("step cache: a value the step read has no canonical encoding (%s); not stored", exc)
        return
    body = _encode_entry({"out": out, "added": outputs.added, "metrics": outputs.metrics,
                          "artifacts": outputs.artifacts, "random": after})
    if body is None:
        return
    prefix = _names_key(names)
    try:
        write_bytes(folder / f"{prefix}.keys.json", json.dumps({"keys": names}).encode())
        write_bytes(folder / f"{prefix}-{values}.entry", body)
    except OSError as exc:
        logger.warning("step cache: cannot write %s (%s); continuing uncached", folder, exc)


def cached_call(step: PipelineStep, data: Any, ctx: FrozenContext, invoke: Invoke) -> tuple[Any, bool]:
    """Run ``invoke(step, data, ctx)`` through the step cache.

    Parameters
    ----------
    step : PipelineStep
        A step with ``cacheable`` true.
    data : Any
        Its input.
    ctx : FrozenContext
        The replicate's context (after treatments).
    invoke : Callable
        Runs the step (awaiting async steps) and returns what it returned.

    Returns
    -------
    tuple[Any, bool]
        What the step returned (or would have), and whether it came from the cache.
    """
    start = _random_state(ctx, step)
    planned = _PLANNED.get()
    try:
        folder = (planned[0] if planned else cache_root()) / _static_key(step, data, ctx, start)
    except FingerprintError as exc:
        logger.debug("step cache: %s runs uncached: %s", step.name, exc)
        return invoke(step, data, ctx), False
    found = _lookup(folder, ctx)
    if found is not None:
        return _restore(found, ctx), True
    watch, tracer = _Watch(ctx), ReadTracer(ctx)
    out = invoke(step, data, tracer)
    outputs = watch.outputs()
    if outputs is not None:
        _store(folder, tracer, out, outputs, _random_state(ctx, step))
    return out, False
