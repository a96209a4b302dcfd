"""One-off runs: ``apply`` (in memory), ``debug`` and the ``optimize`` loop."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crystallize.context import FrozenContext
from crystallize.graph.settings import resolve_inputs
from crystallize.names import BASELINE
from crystallize.plugins.builtin import SeedPlugin, default_seed_function
from crystallize.treatments import Treatment

if TYPE_CHECKING:
    from crystallize.experiment import Experiment
    from crystallize.results import Result

__all__ = ["apply_once", "debug_run", "optimize"]


def _named(experiment: Experiment, treatment: Treatment | str | None) -> Treatment | None:
    if treatment is None or isinstance(treatment, Treatment):
        return treatment
    found = next((t for t in experiment.treatments if t.name == treatment), None)
    return found or Treatment(treatment, {})


def apply_once(experiment: Experiment, treatment: Treatment | str | None, *, data: Any = None,
               seed: int | None = None) -> Any:
    """Run the pipeline once for replicate 0 and return the final data; nothing is stored.

    The steps' ``setup`` and ``teardown`` run around it, as in a full run, so keys setup adds
    reach the context.
    """
    setup_ctx = FrozenContext(experiment.initial_ctx)  # a deep copy, private to this call
    steps = experiment.pipeline.steps
    try:
        for step in steps:
            step.setup(setup_ctx)
        return _apply(experiment, treatment, setup_ctx, data=data, seed=seed)
    finally:
        for step in steps:
            step.teardown(setup_ctx)


def _apply(experiment: Experiment, treatment: Treatment | str | None, setup_ctx: FrozenContext, *, data: Any,
           seed: int | None) -> Any:
    chosen = _named(experiment, treatment)
    condition = chosen.name if chosen else BASELINE
    ctx = FrozenContext._trusted({**setup_ctx.as_dict(), "replicate": 0, "condition": condition})
    if chosen is not None:
        chosen.apply(ctx)
    if seed is not None:
        ctx._replace("seed_used", seed)
        plugin = experiment.get_plugin(SeedPlugin)
        (plugin.seed_fn if plugin and plugin.seed_fn else default_seed_function)(seed)
        from crystallize.execution.job import _RngFactory

        ctx.rng_factory = _RngFactory(seed)
    try:
        if data is None:
            ctx._inputs = resolve_inputs(experiment, [condition], None)[condition].artifacts
            data = experiment.datasource.fetch(ctx)
        return experiment.pipeline.run(data, ctx)
    finally:
        if ctx._artifacts is not None:  # nothing is stored: files staged through ctx.artifacts.path() go too
            ctx._artifacts.discard()


def debug_run(experiment: Experiment, treatment: Treatment | str | None, *, verbose: bool = True) -> Result:
    """One replicate, serial, no hypotheses, stored in a fresh temporary folder.

    The folder (``result.run_info["store_root"]``) is kept so the artifact paths in the
    result stay readable; it never mixes with the experiment's real store.
    """
    import logging

    from crystallize.execution.engine import run_experiment
    from crystallize.execution.local import SerialBackend

    from crystallize.plugins.builtin import LoggingPlugin

    log = logging.getLogger("crystallize")
    loggers = [p for p in experiment.plugins if isinstance(p, LoggingPlugin)]
    saved = (log.level, [(p.verbose, p.log_level) for p in loggers])
    if verbose:  # LoggingPlugin.before_run sets the level, so switch the plugins too; restored below
        log.setLevel(logging.DEBUG)
        for p in loggers:
            p.verbose, p.log_level = True, "DEBUG"
    chosen = _named(experiment, treatment)
    try:
        root = Path(tempfile.mkdtemp(prefix="crystallize-debug-"))
        outcome = run_experiment(experiment, treatments=[chosen] if chosen else [], hypotheses=[], replicates=1,
                                 backend=SerialBackend(), store_root=root, versioned=False)
    finally:
        log.setLevel(saved[0])
        for p, (was_verbose, level) in zip(loggers, saved[1]):
            p.verbose, p.log_level = was_verbose, level
    outcome.result.run_info["store_root"] = str(root)
    return outcome.result


def optimize(experiment: Experiment, optimizer: Any, num_trials: int, replicates_per_trial: int = 1) -> Treatment:
    """Ask/tell loop. Trials resume: the baseline runs once, not on every trial (0.27 reran it)."""
    from crystallize.execution.engine import run_experiment

    metric = optimizer.objective.metric
    names = [metric] if isinstance(metric, str) else list(metric)  # several metrics: one value each
    for _ in range(num_trials):
        candidates = list(optimizer.ask())
        outcome = run_experiment(experiment, treatments=candidates, hypotheses=[], replicates=replicates_per_trial,
                                 strategy="resume")
        first = outcome.result.metrics.treatments[candidates[0].name] if candidates else outcome.result.metrics.baseline
        means = {}
        for name in names:
            values = first.metrics.get(name, [])
            means[name] = sum(values) / len(values) if values else float("nan")
        optimizer.tell(means)
    return optimizer.get_best_treatment()
