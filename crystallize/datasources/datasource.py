"""Data sources: where each replicate's input comes from."""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from crystallize.context import FrozenContext
from crystallize.steps import _MISSING, ResourceFactoryWrapper, _Signature

__all__ = ["DataSource", "ExperimentInput", "MultiArtifactDataSource", "data_source"]


class DataSource(abc.ABC):
    """Produces the data a pipeline starts from, once per replicate and condition.

    ``replicates`` (optional) suggests a replicate count; ``files`` lists input files
    whose content is part of the experiment's fingerprint; ``version`` replaces the
    code part of the fingerprint.
    """

    replicates: int | None = None
    files: tuple[Path, ...] = ()
    version: str | None = None
    extra_files: tuple[Path, ...] = ()  # declared in YAML (``files:``), relative to config.yaml

    @abc.abstractmethod
    def fetch(self, ctx: FrozenContext) -> Any:
        """Return the data for the replicate and condition described by ``ctx``."""

    @property
    def params(self) -> dict[str, Any]:
        """Parameters that identify this source (empty for hand-written classes)."""
        return {}

    def code_target(self) -> Callable[..., Any] | type:
        """The object whose source defines the source (the function, or the class)."""
        return type(self)


class _FunctionSource(DataSource):
    """Base of the classes :func:`data_source` generates."""

    fn: Callable[..., Any]
    _sig: _Signature
    _factory: Callable[..., DataSource]

    def __init__(self, params: Mapping[str, Any]) -> None:
        self._params = dict(params)

    @property
    def params(self) -> dict[str, Any]:
        return dict(self._params)

    def fetch(self, ctx: FrozenContext) -> Any:
        if not self._sig.names:
            return self.fn(ctx)
        # explicit > rng > default, as in 0.27: no context injection for datasource parameters,
        # so a treatment changes what the steps see, never the data itself
        kwargs: dict[str, Any] = {}
        for name, default in zip(self._sig.names, self._sig.defaults):
            if name in self._params:
                value = self._params[name]
                kwargs[name] = value(ctx) if isinstance(value, ResourceFactoryWrapper) else value
            elif name == "rng" and ctx.rng_factory is not None:
                kwargs[name] = ctx.rng_factory()
            elif name == "rng" and "rng" in ctx._data:  # outside a run, a context may bring one
                kwargs[name] = ctx._data["rng"]
            elif default is not _MISSING:
                kwargs[name] = default
            else:
                raise TypeError(f"datasource '{type(self).__name__}' takes `rng`: run it in an experiment, or "
                                "give the context an 'rng' key")
        return self.fn(ctx, **kwargs)

    def code_target(self) -> Callable[..., Any]:
        return self.fn

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_source, (type(self)._factory, self._params))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self._params.items())})"


def _rebuild_source(factory: Callable[..., DataSource], params: Mapping[str, Any]) -> DataSource:
    return factory(**params)


def _source_signature(fn: Callable[..., Any]) -> _Signature:
    """The first parameter is the context; the rest are parameters with defaults."""
    sig = _Signature.of(fn)
    names = tuple(n for n in sig.names if n != (sig.data_param or "ctx"))
    defaults = tuple(d for n, d in zip(sig.names, sig.defaults) if n in names)
    return _Signature(None, False, names, defaults)


def data_source(fn: Callable[..., Any] | str | None = None, *, register: bool = False,
                files: Sequence[str | Path] = (), version: str | None = None) -> Any:
    """Turn ``fn(ctx, **params)`` into a data-source factory.

    Usable as ``@data_source``, ``@data_source()``, ``@data_source("name", register=True)``.

    Parameters
    ----------
    fn : Callable or str, optional
        The function, or a registry name when used with arguments.
    register : bool
        Register an instance built with default parameters under the name
        (``get_datasource(name)``). Skipped when some parameter has no default.
    files : Sequence[str or Path]
        Input files the source reads; relative paths are relative to the folder of the
        module that defines ``fn``. Their content is part of the fingerprint.
    version : str, optional
        Declared code version, replacing the source digest in fingerprints.

    Raises
    ------
    TypeError
        From the factory: unknown keyword (``"Unknown parameters: ..."``) or a parameter
        without default and without value (``"Missing parameters: ..."``).

    Examples
    --------
    >>> @data_source
    ... def numbers(ctx, size: int = 3):
    ...     return list(range(size))
    >>> numbers(size=2).fetch(FrozenContext({}))
    [0, 1]
    """
    if callable(fn):
        return _make_source_factory(fn, None, register, files, version)

    def decorate(func: Callable[..., Any]) -> Callable[..., DataSource]:
        return _make_source_factory(func, fn, register, files, version)

    return decorate


def _make_source_factory(fn: Callable[..., Any], name: str | None, register: bool,
                         files: Sequence[str | Path], version: str | None) -> Callable[..., DataSource]:
    sig = _source_signature(fn)
    base = Path(getattr(fn, "__code__").co_filename).parent if hasattr(fn, "__code__") else Path.cwd()
    resolved = tuple(Path(f) if Path(f).is_absolute() else base / f for f in files)
    cls = type(f"{fn.__name__.title()}Source", (_FunctionSource,), {
        "fn": staticmethod(fn), "_sig": sig, "files": resolved, "version": version,
        "__module__": fn.__module__, "__doc__": fn.__doc__,
    })

    def factory(**params: Any) -> DataSource:
        unknown = sorted(set(params) - set(sig.names))
        if unknown:
            raise TypeError(f"Unknown parameters: {', '.join(unknown)}")
        missing = [n for n, d in zip(sig.names, sig.defaults) if d is _MISSING and n not in params and n != "rng"]
        if missing:
            raise TypeError(f"Missing parameters: {', '.join(missing)}")
        return cls(params)

    cls._factory = factory
    # the factory takes the function's place in its module, so pickle finds it by reference there
    factory.__name__, factory.__qualname__, factory.__module__ = fn.__name__, fn.__qualname__, fn.__module__
    factory.__doc__, factory.__wrapped__ = fn.__doc__, fn  # type: ignore[attr-defined]
    if register:
        from crystallize.datasources.registry import register_datasource

        try:
            register_datasource(name or fn.__name__, factory())
        except TypeError:
            pass  # parameters without defaults: nothing sensible to register
    return factory


class ExperimentInput(DataSource):
    """Several named inputs; ``fetch`` returns ``{alias: source.fetch(ctx)}``.

    Parameters
    ----------
    **inputs : DataSource
        Sources by alias; upstream :class:`Artifact` values create graph edges.

    Raises
    ------
    ValueError
        If no input is given, or artifact inputs disagree on their replicate counts.
    """

    def __init__(self, **inputs: DataSource) -> None:
        if not inputs:
            raise ValueError("ExperimentInput requires at least one input")
        for alias, source in inputs.items():
            if not isinstance(source, DataSource):
                raise TypeError(f"input {alias!r} is {source!r}, not a DataSource (call the factory?)")
        self.inputs = dict(inputs)

    def fetch(self, ctx: FrozenContext) -> dict[str, Any]:
        return {alias: source.fetch(ctx) for alias, source in self.inputs.items()}

    @property
    def required_outputs(self) -> list[Any]:
        """The upstream artifacts among the inputs."""
        from crystallize.datasources.artifacts import Artifact

        found: list[Any] = []
        for source in self.inputs.values():
            found.extend([source] if isinstance(source, Artifact) else getattr(source, "required_outputs", []))
        return found

    @property
    def replicates(self) -> int | None:  # type: ignore[override]
        counts = {a.replicates for a in self.required_outputs if a.replicates}
        if len(counts) > 1:
            raise ValueError(f"Conflicting replicates across artifacts: {sorted(counts)}")
        return counts.pop() if counts else None

    @property
    def files(self) -> tuple[Path, ...]:  # type: ignore[override]
        return tuple(f for s in self.inputs.values() for f in (*s.files, *s.extra_files))


MultiArtifactDataSource = ExperimentInput
