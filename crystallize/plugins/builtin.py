"""The default plugins: seeding, logging and artifact-store settings."""

from __future__ import annotations

import functools
import logging
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crystallize.plugins.base import BasePlugin

if TYPE_CHECKING:
    from crystallize.experiment import Experiment
    from crystallize.results import Result
    from crystallize.steps import PipelineStep

__all__ = ["ArtifactPlugin", "LoggingPlugin", "SeedPlugin", "default_seed_function", "replicate_seed"]

logger = logging.getLogger("crystallize")

# 0.27's console format; the name is fixed because the runner logs through child loggers
_FORMAT = "%(asctime)s - crystallize - %(levelname)s - %(message)s"


def default_seed_function(seed: int) -> None:
    """Seed ``random`` and ``numpy.random`` (global state; prefer an ``rng`` parameter)."""
    random.seed(seed)
    _numpy_seed()(seed % (2**32 - 1))


@functools.cache
def _numpy_seed() -> Callable[[int], None]:
    """``numpy.random.seed``, imported on first use (numpy is not imported with crystallize)."""
    import numpy as np

    return np.random.seed


def replicate_seed(master: int, replicate: int, *, auto_seed: bool = True) -> int:
    """0.27's per-replicate seed: ``(master + replicate * 31337) % 2**32``.

    Examples
    --------
    >>> [replicate_seed(42, r) for r in range(3)]
    [42, 31379, 62716]
    """
    return (master + replicate * 31337) % 2**32 if auto_seed else master


class SeedPlugin(BasePlugin):
    """Seeding settings.

    Parameters
    ----------
    seed : int, optional
        Master seed. When ``None`` a seed is drawn once per experiment, recorded in
        ``run.json`` and reused by later runs until you set one.
    auto_seed : bool
        Give each replicate its own seed (``replicate_seed``); otherwise all share ``seed``.
    seed_fn : Callable[[int], None], optional
        Called with each replicate's seed to seed other libraries; defaults to
        :func:`default_seed_function`.
    """

    def __init__(self, seed: int | None = None, auto_seed: bool = True,
                 seed_fn: Callable[[int], None] | None = None) -> None:
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int, not {type(seed).__name__}")
        self.seed, self.auto_seed, self.seed_fn = seed, auto_seed, seed_fn


class LoggingPlugin(BasePlugin):
    """Logs a run's start, per-step progress (``verbose``) and summary to logger ``crystallize``.

    Parameters
    ----------
    verbose : bool
        Log each step as it finishes, and record in provenance the context values each
        step reads (``ctx_changes["reads"]``, as in 0.27).
    log_level : str
        Level of logger ``crystallize`` during runs. The default (``"INFO"``) is set only
        when the logger has no handler yet, so an application's or the CLI's logging
        configuration stays; any other level is set at every run.
    """

    def __init__(self, verbose: bool = False, log_level: str = "INFO") -> None:
        self.verbose = verbose
        self.log_level = log_level if isinstance(log_level, str) and hasattr(logging, log_level.upper()) else "INFO"
        self.replicates: int | None = None  # replicates of the run in progress (set by the runner)
        self._start = 0.0

    def before_run(self, experiment: Experiment) -> None:
        level = getattr(logging, self.log_level.upper())
        if not logger.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter(_FORMAT))
            logger.addHandler(handler)
            logger.setLevel(level)
        elif level != logging.INFO:
            # a level asked for explicitly wins; the default leaves a configured logger alone
            # (an application's or the CLI's)
            logger.setLevel(level)
        self._start = time.perf_counter()  # the runner logs the run's resolved settings

    def _idle_hooks(self) -> frozenset[str]:
        """Hooks that do nothing with the current settings; runners skip them."""
        own = type(self).after_step is LoggingPlugin.after_step and "after_step" not in self.__dict__
        return frozenset({"after_step"}) if own and not self.verbose else frozenset()

    def after_step(self, experiment: Experiment, step: PipelineStep, data: Any, ctx: Any) -> None:
        if self.verbose:
            logger.debug("Rep %s/%s %s finished step %s", ctx.get("replicate", 0) + 1,
                         self.replicates or experiment.replicates, ctx.get("condition"), step.name)

    def after_run(self, experiment: Experiment, result: Result) -> None:
        # 0.27's line first (a pattern written for 0.27's log still matches), then which experiment
        best = ", ".join(f"{h.name}: {h.ranking.get('best')!r}" for h in result.metrics.hypotheses)
        logger.info("Completed in %.1fs; %s%d errors; %s", time.perf_counter() - self._start,
                    f"Best {best}; " if best else "", len(result.errors), experiment.name or experiment.id)


def _env_default(value: Any, default: Any, env: str, cast: Callable[[str], Any]) -> Any:
    """0.27 rule: the environment overrides only while the argument is at its default."""
    raw = os.environ.get(env)
    return cast(raw) if value == default and raw else value


class ArtifactPlugin(BasePlugin):
    """Where and how an experiment's store is kept.

    Parameters
    ----------
    root_dir : str or Path
        Store root; the experiment's folder is ``<root_dir>/<experiment name>``.
    versioned : bool
        ``True``: every run that executes something writes a new ``v<N>``.
        ``False``: the single version ``v0`` is rewritten in place.
    artifact_retention : int
        Versions kept whole (``CRYSTALLIZE_ARTIFACT_RETENTION`` overrides the default);
        older ones keep only their results. Versions still referenced are never pruned.
    big_file_threshold_mb : float
        In kept versions other than the newest, files larger than this (MB) are
        removed (``CRYSTALLIZE_BIG_FILE_THRESHOLD_MB`` overrides the default).
    durable : bool
        ``fsync`` every file and folder written (survives power loss, slower).
    """

    def __init__(self, root_dir: str | Path = "data", versioned: bool = False, artifact_retention: int = 3,
                 big_file_threshold_mb: float = 10, *, durable: bool = False) -> None:
        self.root_dir = Path(root_dir)
        self.versioned = versioned
        self.artifact_retention = int(_env_default(artifact_retention, 3, "CRYSTALLIZE_ARTIFACT_RETENTION", int))
        self.big_file_threshold_mb = float(
            _env_default(big_file_threshold_mb, 10, "CRYSTALLIZE_BIG_FILE_THRESHOLD_MB", float))
        self.durable = durable
        self.version: int | None = None  # version written by the last run, as in 0.27
