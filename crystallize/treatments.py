"""Treatments: named context additions that define a condition next to the baseline."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, overload

from crystallize.context import FrozenContext
from crystallize.names import validate_name

__all__ = ["Treatment", "treatment"]


class _MappingApplier:
    """Picklable applier that adds each key of a mapping to the context."""

    __slots__ = ("mapping",)

    def __init__(self, mapping: Mapping[str, Any]) -> None:
        self.mapping = dict(mapping)

    def __call__(self, ctx: FrozenContext) -> None:
        for key, value in self.mapping.items():
            ctx.add(key, value)


class Treatment:
    """A named condition: context keys (or a function adding them) applied before a replicate.

    Parameters
    ----------
    name : str
        Condition name; also a folder name and result key, so validated as a path
        segment. ``"baseline"`` modifies the baseline condition instead.
    apply : Mapping[str, Any] or Callable[[FrozenContext], Any]
        Keys to add, or a function that adds them.
    version : str, optional
        Declared version of a callable payload, replacing its code digest in fingerprints.

    Raises
    ------
    InvalidNameError
        For a name that cannot be a path segment.
    TypeError
        If ``apply`` is neither a mapping nor callable.

    Notes
    -----
    Treatments only add keys. Writing a key that already exists (for example one from
    ``initial_ctx``) raises :class:`ContextMutationError` inside that condition's
    replicates, which are recorded as failed; other conditions are unaffected.
    Calling a treatment returns itself, so ``treatments([t])`` and ``treatments([t()])``
    both work.

    Examples
    --------
    >>> t = Treatment("boost", {"delta": 10.0})
    >>> t() is t, t.apply_map
    (True, {'delta': 10.0})
    """

    def __init__(self, name: str, apply: Mapping[str, Any] | Callable[[FrozenContext], Any],
                 *, version: str | None = None) -> None:
        self.name = validate_name(name, what="treatment")
        if isinstance(apply, Mapping):
            self._applier: Callable[[FrozenContext], Any] = _MappingApplier(apply)
        elif callable(apply):
            self._applier = apply
        else:
            raise TypeError(f"treatment {name!r}: apply must be a mapping or callable, not {type(apply).__name__}")
        self.version = version
        self._factory: Callable[[], Treatment] | None = None  # set by @treatment: pickles by reference

    def __reduce__(self) -> Any:
        # A decorated treatment's function is shadowed in its module by the factory, so
        # pickle can only find it through the factory.
        if self._factory is not None:
            return self._factory, ()
        return object.__reduce__(self)

    def apply(self, ctx: FrozenContext) -> None:
        """Add this treatment's keys to ``ctx``."""
        self._applier(ctx)

    @property
    def apply_map(self) -> dict[str, Any]:
        """The mapping payload (``{}`` for callable treatments)."""
        return dict(self._applier.mapping) if isinstance(self._applier, _MappingApplier) else {}

    @property
    def payload(self) -> Mapping[str, Any] | Callable[[FrozenContext], Any]:
        """The mapping, or the callable, that defines the treatment (for fingerprints)."""
        return self.apply_map if isinstance(self._applier, _MappingApplier) else self._applier

    def __call__(self) -> Treatment:
        return self

    def __repr__(self) -> str:
        return f"Treatment(name={self.name!r})"


@overload
def treatment(name: str, apply: Mapping[str, Any] | Callable[[FrozenContext], Any]) -> Treatment: ...
@overload
def treatment(name: str, apply: None = None) -> Callable[[Callable[[FrozenContext], Any]], Callable[[], Treatment]]: ...


def treatment(name: str, apply: Mapping[str, Any] | Callable[[FrozenContext], Any] | None = None,
              *, version: str | None = None) -> Any:
    """Make a treatment from a mapping, or decorate a function ``fn(ctx)`` into a factory.

    Examples
    --------
    >>> boost = treatment("boost_total", {"delta": 10.0})
    >>> @treatment("dynamic_delta")
    ... def dynamic_delta(ctx):
    ...     ctx.add("delta", ctx.get("delta", 0) + 1.0)
    >>> boost.name, dynamic_delta().name
    ('boost_total', 'dynamic_delta')
    """
    if apply is not None:
        return Treatment(name, apply, version=version)
    validate_name(name, what="treatment")

    def decorate(fn: Callable[[FrozenContext], Any]) -> Callable[[], Treatment]:
        def factory() -> Treatment:
            made = Treatment(name, fn, version=version)
            made._factory = factory
            return made

        factory.__name__, factory.__qualname__, factory.__module__ = fn.__name__, fn.__qualname__, fn.__module__
        factory.__doc__, factory.__wrapped__ = fn.__doc__, fn  # type: ignore[attr-defined]
        return factory

    return decorate
