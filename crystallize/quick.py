"""``quick_experiment``: try a function over configs and replicates without any setup."""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable, Mapping
from typing import Any

from crystallize.context import FrozenContext

__all__ = ["quick_experiment"]


def _caller(fn: Callable[..., Any]) -> Callable[[Any, FrozenContext], Any]:
    params = list(inspect.signature(fn).parameters)
    if not params:
        return lambda cfg, ctx: fn()
    if len(params) >= 2:
        return lambda cfg, ctx: fn(cfg, ctx)
    if params[0] == "ctx":
        return lambda cfg, ctx: fn(ctx)
    return lambda cfg, ctx: fn(cfg)


def quick_experiment(fn: Callable[..., Any], configs: Mapping[str, Any] | None = None, replicates: int = 1, *,
                     seed: int | None = None, verbose: bool = False) -> dict[str, list[Any]]:
    """Call ``fn`` for every config and replicate; return ``{config name: [outputs]}``.

    ``fn`` may take ``(config)``, ``(config, ctx)``, ``(ctx)`` or nothing; ``ctx`` holds
    ``replicate``, ``condition`` and ``seed``. With ``seed``, replicate ``i`` seeds
    ``random`` and ``numpy.random`` with ``seed + i * 31337``. Nothing is stored.

    Examples
    --------
    >>> quick_experiment(lambda cfg, ctx: cfg["k"] * 10 + ctx["replicate"],
    ...                  configs={"low": {"k": 1}, "high": {"k": 2}}, replicates=3, seed=0)
    {'low': [10, 11, 12], 'high': [20, 21, 22]}
    """
    call = _caller(fn)
    out: dict[str, list[Any]] = {}
    for name, cfg in (configs or {"baseline": None}).items():
        for rep in range(max(1, replicates)):
            rep_seed = None if seed is None else seed + rep * 31337
            if rep_seed is not None:
                random.seed(rep_seed)
                import numpy as np

                np.random.seed(rep_seed % (2**32 - 1))
            ctx = FrozenContext({"replicate": rep, "condition": name, "seed": rep_seed})
            out.setdefault(name, []).append(call(cfg, ctx))
    return out
