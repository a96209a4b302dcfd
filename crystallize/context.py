"""The add-only execution context handed to treatments, datasources and steps."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from crystallize.errors import ContextMutationError

if TYPE_CHECKING:
    from crystallize.datasources.artifacts import ArtifactLog

__all__ = [
    "FrozenContext",
    "FrozenMetrics",
    "LoggingContext",
    "current_context",
    "standalone_context",
]

_LOGGER = logging.getLogger("crystallize")
_CURRENT: ContextVar[FrozenContext | None] = ContextVar("crystallize_current_context", default=None)


def current_context() -> FrozenContext | None:
    """The context of the step running in this thread or task, if any."""
    return _CURRENT.get()


class FrozenMetrics:
    """Append-only metric lists, one per metric name, with optional tags per value."""

    __slots__ = ("_values", "_tags", "log")

    def __init__(self) -> None:
        self._values: dict[str, list[Any]] = {}
        self._tags: dict[str, dict[int, dict[str, Any]]] = {}  # metric -> value index -> tags (tagged ones only)
        self.log: list[tuple[str, Any]] = []  # every (key, value) in order, for per-step provenance

    def add(self, key: str, value: Any, tags: Mapping[str, Any] | None = None) -> None:
        """Append ``value`` to metric ``key``; ``tags`` are kept beside the value."""
        values = self._values.setdefault(key, [])
        values.append(value)
        if tags:
            self._tags.setdefault(key, {})[len(values) - 1] = dict(tags)
        self.log.append((key, value))

    def tags_at(self, key: str, index: int) -> dict[str, Any]:
        """A copy of the tags of value ``index`` of ``key`` (empty when it has none)."""
        return dict(self._tags.get(key, {}).get(index, {}))

    def __getitem__(self, key: str) -> tuple[Any, ...]:
        return tuple(self._values[key])

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def get_tags(self, key: str) -> tuple[dict[str, Any], ...]:
        """Tags recorded with each value of ``key``, in order (``{}`` for a value without)."""
        return tuple(self.tags_at(key, i) for i in range(len(self._values.get(key, ()))))

    def as_dict(self) -> Mapping[str, tuple[Any, ...]]:
        """Read-only view: metric name -> tuple of values."""
        return MappingProxyType({k: tuple(v) for k, v in self._values.items()})

    def lists(self) -> dict[str, list[Any]]:
        """A copy as plain lists (what results store)."""
        return {k: list(v) for k, v in self._values.items()}

    def take(self) -> dict[str, list[Any]]:
        """Hand the metric lists over without copying; this object is left empty (the job
        runner calls it once a replicate is done, so results own their lists)."""
        values, self._values = self._values, {}
        return values

    def tags(self) -> dict[str, list[dict[str, Any]]] | None:
        """A copy of the tag lists of metrics that carry any tag (``None`` if none do)."""
        if not self._tags:
            return None
        return {k: [self.tags_at(k, i) for i in range(len(self._values.get(k, ())))] for k in self._tags}


class _OutsideRun(Mapping[str, Any]):
    """The empty ``FrozenContext._inputs`` of a context no runner made: an artifact is then
    read from its producer's store. One instance; copies and pickles stay that instance."""

    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __reduce__(self) -> str:
        return "OUTSIDE_RUN"


OUTSIDE_RUN = _OutsideRun()


class FrozenContext:
    """An add-only mapping: new keys may be added, existing keys never change.

    Parameters
    ----------
    initial : Mapping[str, Any], optional
        Starting keys; deep-copied so a run cannot change the caller's objects.
    logger : logging.Logger, optional
        Logger steps may use; defaults to ``logging.getLogger("crystallize")``.

    Notes
    -----
    Reads return the stored object itself (no copy, unlike crystallize-ml 0.27 which
    deep-copied on every read); each replicate-condition gets its own deep copy of the
    initial context, so mutating a value in place cannot leak between runs.

    Examples
    --------
    >>> ctx = FrozenContext({"lr": 0.1})
    >>> ctx.add("batch", 32)
    >>> ctx["batch"], ctx.get("missing", 0)
    (32, 0)
    """

    def __init__(self, initial: Mapping[str, Any] | None = None, logger: logging.Logger | None = None) -> None:
        self._data: dict[str, Any] = copy.deepcopy(dict(initial)) if initial else {}
        self.metrics = FrozenMetrics()
        self.logger = logger or _LOGGER
        self._artifacts: ArtifactLog | None = None
        self.rng_factory: Any = None  # set by the job runner: () -> numpy Generator for `rng` params
        self._inputs: Mapping[str, Any] = OUTSIDE_RUN  # the job runner sets artifact key -> ArtifactInput
        self._staging: str | None = None  # set by the job runner: where ctx.artifacts.path() stages files

    @classmethod
    def _trusted(cls, data: dict[str, Any], logger: logging.Logger | None = None, *,
                 inputs: Mapping[str, Any] | None = None, rng_factory: Any = None,
                 staging: str | None = None) -> FrozenContext:
        """Build around ``data`` without copying (the runner already owns a fresh dict)."""
        ctx = cls.__new__(cls)
        ctx._data, ctx.metrics, ctx.logger = data, FrozenMetrics(), logger or _LOGGER
        ctx._artifacts, ctx.rng_factory, ctx._inputs = None, rng_factory, {} if inputs is None else inputs
        ctx._staging = staging
        return ctx

    @property
    def artifacts(self) -> ArtifactLog:
        """Queue of artifact files written in this run (``ctx.artifacts.add(name, bytes)``)."""
        if self._artifacts is None:
            from crystallize.datasources.artifacts import ArtifactLog

            self._artifacts = ArtifactLog(self._staging)
        return self._artifacts

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if key in self._data:
            raise ContextMutationError(f"Cannot mutate existing key: '{key}'")
        self._data[key] = value

    def add(self, key: str, value: Any) -> None:
        """Add a new key; raises :class:`ContextMutationError` if it exists."""
        self[key] = value

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` when absent."""
        return self._data.get(key, default)

    def as_dict(self) -> Mapping[str, Any]:
        """Read-only view of every key."""
        return MappingProxyType(self._data)

    def record(self, metric: str, value: Any, tags: Mapping[str, Any] | None = None) -> None:
        """Record one metric value (same as ``ctx.metrics.add``)."""
        self.metrics.add(metric, value, tags)

    def _replace(self, key: str, value: Any) -> None:
        """Framework-only overwrite (e.g. ``step_name`` before each step)."""
        self._data[key] = value

    def __repr__(self) -> str:
        return f"FrozenContext({sorted(self._data)})"


class LoggingContext(FrozenContext):
    """A view of a context that records every key read in ``.reads``."""

    def __init__(self, ctx: FrozenContext, logger: logging.Logger | None = None) -> None:
        self._inner = ctx
        self._data = ctx._data
        self.metrics = ctx.metrics
        self.logger = logger or ctx.logger
        self._artifacts = ctx._artifacts
        self.rng_factory = ctx.rng_factory
        self._inputs = ctx._inputs
        self.reads: dict[str, Any] = {}

    @property
    def artifacts(self) -> ArtifactLog:
        return self._inner.artifacts

    def __getitem__(self, key: str) -> Any:
        value = self._inner[key]
        self.reads[key] = value
        self.logger.debug("Read %s -> %r", key, value)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        if key in self._data:
            return self[key]
        return default


def standalone_context(initial: Mapping[str, Any] | None = None, *, logger: logging.Logger | None = None) -> FrozenContext:
    """A context for calling a step outside an experiment, e.g. in a unit test.

    Examples
    --------
    >>> ctx = standalone_context({"bias": 5.0})
    >>> ctx["bias"]
    5.0
    """
    return FrozenContext(initial or {}, logger=logger)
