"""Plugin hooks (crystallize-ml 0.27 names and order)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crystallize.context import FrozenContext
    from crystallize.experiment import Experiment
    from crystallize.results import ReplicateResult, Result
    from crystallize.steps import PipelineStep

__all__ = ["BasePlugin", "hook_methods", "overrides_loop"]


class BasePlugin:
    """Base class for plugins; override only the hooks you need.

    Hook order for one run: ``init_hook`` (when the experiment is built), ``before_run``,
    then for every replicate and condition ``before_replicate`` -> for each step
    ``before_step`` / ``after_step``, and finally ``after_run``. ``init_hook``,
    ``before_run`` and ``after_run`` run in the runner's process; the per-replicate hooks
    run where the replicate runs (on a copy of the plugin in worker processes).
    """

    def init_hook(self, experiment: Experiment) -> None:
        """Called once when the experiment is constructed."""

    def before_run(self, experiment: Experiment) -> None:
        """Called at the start of a run that executes something."""

    def before_replicate(self, experiment: Experiment, ctx: FrozenContext) -> None:
        """Called before each replicate of each condition, after the treatment is applied."""

    def before_step(self, experiment: Experiment, step: PipelineStep) -> None:
        """Called before each step."""

    def after_step(self, experiment: Experiment, step: PipelineStep, data: Any, ctx: FrozenContext) -> None:
        """Called after each step, with its output data."""

    def after_run(self, experiment: Experiment, result: Result) -> None:
        """Called once the run's results are stored and hypotheses verified."""

    def run_experiment_loop(self, experiment: Experiment,
                            replicate_fn: Callable[[int], ReplicateResult]) -> Sequence[ReplicateResult] | Any:
        """Replace the replicate loop: run ``replicate_fn(rep)`` for every ``rep`` in
        ``range(experiment.replicates)`` and return the results in replicate order.

        ``replicate_fn(rep)`` runs replicate ``rep`` of every condition and returns a
        ``ReplicateResult`` that can also be awaited, so this method may be a plain function
        calling ``replicate_fn(rep)`` or, as in 0.27, an ``async def`` that does
        ``await replicate_fn(rep)``. The runner stores what ``replicate_fn`` produced; the
        returned list is not read back for values. Return ``NotImplemented`` to run the
        replicates serially instead. A replicate never run makes the run raise
        ``ExecutionError`` naming this plugin, after the replicates that ran are stored.
        """
        return NotImplemented


def overrides_loop(plugin: BasePlugin) -> bool:
    """True when ``plugin`` defines its own ``run_experiment_loop``."""
    return type(plugin).run_experiment_loop is not BasePlugin.run_experiment_loop


def hook_methods(plugins: Iterable[Any], hook: str) -> tuple[Callable[..., Any], ...]:
    """The bound ``hook`` method of each plugin that acts on it, in order.

    Runners resolve these once per run, so per-replicate and per-step loops call only
    hooks that do something.

    Examples
    --------
    >>> class Watch(BasePlugin):
    ...     def after_step(self, experiment, step, data, ctx):
    ...         pass
    >>> len(hook_methods([Watch(), BasePlugin()], "after_step")), hook_methods([Watch()], "before_step")
    (1, ())
    """
    return tuple(getattr(p, hook) for p in plugins if _acts_on(p, hook))


def _acts_on(plugin: Any, hook: str) -> bool:
    """True when the plugin (class or instance) defines ``hook`` other than as the no-op and,
    through an optional ``_idle_hooks()``, does not declare it idle for its current settings."""
    if hook not in getattr(plugin, "__dict__", ()) and getattr(type(plugin), hook, None) is getattr(BasePlugin, hook):
        return False
    idle = getattr(plugin, "_idle_hooks", None)
    return idle is None or hook not in idle()
