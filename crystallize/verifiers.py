"""Verifiers: functions that compare baseline and treatment samples.

A *verifier* is a callable ``verifier(baseline, treatment) -> result`` where both
arguments map a metric name to its samples. :func:`verifier` turns a plain
function with extra keyword parameters into a factory of picklable
:class:`VerifierCallable` objects; :class:`crystallize.hypothesis.Hypothesis`
calls them once per treatment. Both names are re-exported by
:mod:`crystallize.hypothesis`, where crystallize-ml 0.27 kept them.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["VerifierCallable", "verifier"]

_SAMPLE_NAMES = ("baseline_samples", "treatment_samples", "baseline", "treatment")

Samples = Mapping[str, Sequence[Any]]


class VerifierCallable:
    """A verifier function with its parameters bound.

    Calling it runs ``fn(baseline, treatment, **params)``. Instances made by a
    :func:`verifier` factory pickle as "call this factory with these
    parameters", so they travel to worker processes even though the module
    name of the function now refers to the factory.

    Parameters
    ----------
    fn : Callable
        The verifier function; its first two positional parameters receive the
        baseline and treatment samples.
    params : Mapping[str, Any]
        Keyword arguments bound by the factory.
    paired : bool, optional
        True when the verifier pairs baseline and treatment values by
        replicate index (see :meth:`Hypothesis.evaluate`).
    factory : Callable, optional
        The factory that created this object, used for pickling.
    """

    __slots__ = ("fn", "params", "paired", "_factory")

    def __init__(
        self,
        fn: Callable[..., Any],
        params: Mapping[str, Any] | None = None,
        *,
        paired: bool = False,
        factory: Callable[..., VerifierCallable] | None = None,
    ) -> None:
        self.fn = fn
        self.params: dict[str, Any] = dict(params or {})
        self.paired = bool(paired)
        self._factory = factory

    def __call__(self, baseline: Samples, treatment: Samples) -> Mapping[str, Any]:
        """Run the verifier on one pair of metric mappings."""
        return self.fn(baseline, treatment, **self.params)

    def __reduce__(self) -> tuple[Any, ...]:
        if self._factory is not None:
            return (_call_factory, (self._factory, dict(self.params)))
        return (_rebuild_callable, (self.fn, dict(self.params), self.paired))

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in self.params.items())
        return f"{getattr(self.fn, '__name__', 'verifier')}({args})"


def _call_factory(factory: Callable[..., VerifierCallable], params: dict[str, Any]) -> VerifierCallable:
    return factory(**params)


def _rebuild_callable(fn: Callable[..., Any], params: dict[str, Any], paired: bool) -> VerifierCallable:
    return VerifierCallable(fn, params, paired=paired)


@dataclass(frozen=True, slots=True)
class _VerifierSignature:
    """Which keyword parameters a verifier function accepts and requires."""

    name: str
    accepted: frozenset[str]
    required: frozenset[str]
    any_keyword: bool

    @classmethod
    def of(cls, fn: Callable[..., Any]) -> _VerifierSignature:
        params = list(inspect.signature(fn).parameters.values())
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        named = [p.name for p in params if p.name in _SAMPLE_NAMES]
        samples = named if len(named) == 2 else [p.name for p in positional[:2]]
        if len(samples) < 2 and not any(p.kind is p.VAR_POSITIONAL for p in params):
            raise TypeError(
                f"verifier {fn.__name__!r} must accept two positional arguments "
                "(baseline samples, treatment samples)"
            )
        keyword = [
            p for p in params
            if p.name not in samples and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        return cls(
            name=getattr(fn, "__name__", "verifier"),
            accepted=frozenset(p.name for p in keyword),
            required=frozenset(p.name for p in keyword if p.default is p.empty),
            any_keyword=any(p.kind is p.VAR_KEYWORD for p in params),
        )

    def check(self, params: Mapping[str, Any]) -> None:
        """Raise ``TypeError`` for unknown or missing parameters."""
        unknown = sorted(set(params) - self.accepted)
        if unknown and not self.any_keyword:
            raise TypeError(
                f"Unknown parameters: {', '.join(unknown)} (verifier {self.name!r} accepts: "
                f"{', '.join(sorted(self.accepted)) or 'none'})"
            )
        missing = sorted(self.required - set(params))
        if missing:
            raise TypeError(f"Missing required parameters: {', '.join(missing)} (verifier {self.name!r})")


def verifier(
    fn: Callable[..., Any] | None = None, *, paired: bool = False
) -> Callable[..., Any]:
    """Turn a function into a factory of :class:`VerifierCallable` objects.

    Usable as ``@verifier`` and ``@verifier(paired=True)``. The decorated name
    becomes a factory: ``factory(**params)`` checks the parameters and returns
    a :class:`VerifierCallable` that calls ``fn(baseline, treatment, **params)``.

    Parameters
    ----------
    fn : Callable, optional
        ``fn(baseline, treatment, **params)``. Parameters named
        ``baseline_samples``/``treatment_samples`` or ``baseline``/``treatment``
        receive the samples; otherwise the first two positional parameters do.
    paired : bool, optional
        Mark the verifier as pairing values by replicate index.

    Returns
    -------
    Callable
        The factory (or, without ``fn``, a decorator producing it). It carries
        ``.fn`` and ``.paired``.

    Raises
    ------
    TypeError
        When the factory is called with unknown parameters
        (``"Unknown parameters: ..."``) or without a required one
        (``"Missing required parameters: ..."``), or when ``fn`` does not take
        two sample arguments.

    Examples
    --------
    >>> @verifier
    ... def gap(baseline, treatment, *, threshold=1.0):
    ...     diff = sum(treatment["m"]) / len(treatment["m"]) - sum(baseline["m"]) / len(baseline["m"])
    ...     return {"gap": diff, "significant": diff > threshold}
    >>> gap(threshold=0.5)({"m": [1.0, 2.0]}, {"m": [3.0, 4.0]})
    {'gap': 2.0, 'significant': True}
    """
    if fn is None:
        return functools.partial(verifier, paired=paired)
    signature = _VerifierSignature.of(fn)

    def factory(**params: Any) -> VerifierCallable:
        signature.check(params)
        return VerifierCallable(fn, params, paired=paired, factory=factory)

    functools.update_wrapper(factory, fn)
    factory.fn = fn  # type: ignore[attr-defined]
    factory.paired = paired  # type: ignore[attr-defined]
    factory.is_verifier_factory = True  # type: ignore[attr-defined]
    return factory
