"""0.27 custom replicate loops: a plugin's ``run_experiment_loop(experiment, replicate_fn)``.

The plugin decides when each replicate runs; the runner still decides what is stored.
``replicate_fn(rep)`` runs every planned condition of replicate ``rep`` and hands the job
results to the runner, which stores them -- not the values the loop returns, which are
only read for results the runner has not seen (a ``replicate_fn`` that ran in another
process, e.g. as a Ray task). What ``replicate_fn`` returns, a :class:`LoopReplicate`, is
0.27's ``ReplicateResult`` and can also be awaited, so both a plain loop
(``replicate_fn(rep)``) and 0.27's documented ``async def`` loop
(``await replicate_fn(rep)``) work.

After the loop:

- ``NotImplemented`` (returned, or the value of an awaited loop) runs every replicate the
  loop did not run serially, as if the plugin had no loop of its own;
- a planned replicate that still has no result makes the run raise an
  :class:`~crystallize.errors.ExecutionError` naming the plugin, once the replicates that
  did run are stored; the conditions missing a replicate are stored as incomplete.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from crystallize.datasources.artifacts import discard_staged
from crystallize.errors import ExecutionError
from crystallize.execution.job import Job, JobResult, run_job
from crystallize.results import ReplicateResult

if TYPE_CHECKING:
    from crystallize.execution.collect import Collector
    from crystallize.experiment import Experiment

__all__ = ["LoopReplicate", "run_custom_loop"]

logger = logging.getLogger(__name__)


@dataclass
class LoopReplicate(ReplicateResult):
    """What ``replicate_fn(rep)`` returns: a ``ReplicateResult`` that may also be awaited.

    ``await replicate_fn(rep)`` gives the result itself, as 0.27's coroutine ``replicate_fn``
    did. ``job_results`` carries the raw job results, so a result that travelled back from
    another process can still be stored.
    """

    job_results: tuple[JobResult, ...] = field(default=(), repr=False, compare=False)

    __hash__ = object.__hash__  # by identity, so asyncio.gather(*results) can key them (0.27 gathered coroutines)

    def __await__(self) -> Generator[Any, None, LoopReplicate]:
        yield from ()
        return self

    @classmethod
    def of(cls, results: Sequence[JobResult], steps: Sequence[Any]) -> LoopReplicate:
        """The bundle of one replicate's job results, with metric lists of its own (editing
        them cannot change what the runner stores)."""
        from crystallize.execution.report import replicate_result

        bundle = replicate_result(results, steps)
        values = {f.name: getattr(bundle, f.name) for f in fields(ReplicateResult)}
        values["baseline_metrics"] = _own_lists(bundle.baseline_metrics)
        values["treatment_metrics"] = {c: _own_lists(m) for c, m in bundle.treatment_metrics.items()}
        return cls(**values, job_results=tuple(results))


def _own_lists(metrics: Mapping[str, list[Any]]) -> dict[str, list[Any]]:
    return {key: list(values) for key, values in metrics.items()}


def run_custom_loop(experiment: Experiment, plugin: Any, jobs: Sequence[Job],
                    collector: Collector) -> ExecutionError | None:
    """Let ``plugin`` drive ``jobs``, store every result, and describe what it left undone.

    Returns
    -------
    ExecutionError or None
        The error naming the plugin and the replicates it never ran (the caller raises it
        after the run is stored), or None when every job has a result.
    """
    by_rep: dict[int, list[Job]] = {}
    for job in jobs:
        by_rep.setdefault(job.replicate, []).append(job)
    seen: dict[tuple[str, int], JobResult] = {}  # a later call of one replicate replaces the earlier

    def replicate_fn(rep: int) -> LoopReplicate:
        results = [run_job(job) for job in by_rep.get(rep, ())]
        for result in results:
            replaced = seen.get((result.condition, result.replicate))
            if replaced is not None:  # its staged files will never be stored
                discard_staged(replaced.artifacts)
            seen[result.condition, result.replicate] = result
        return LoopReplicate.of(results, experiment.pipeline.steps)

    try:
        returned = _call_loop(experiment, plugin, replicate_fn, max(by_rep, default=-1) + 1)
        _take_returned(returned, seen)
    finally:  # what ran is stored, also when the loop raised
        for key in sorted(seen, key=lambda k: (k[1], k[0])):
            collector.add(seen[key])
    rest = [job for job in jobs if (job.condition, job.replicate) not in seen]
    if returned is NotImplemented:
        logger.debug("%s.run_experiment_loop returned NotImplemented: running %d jobs serially",
                     type(plugin).__name__, len(rest))
        for job in rest:
            collector.add(run_job(job))
        return None
    return _unfinished(plugin, rest)


def _call_loop(experiment: Experiment, plugin: Any, replicate_fn: Callable[[int], LoopReplicate],
               replicates: int) -> Any:
    """Call the hook with ``experiment.replicates`` set to the replicates it must cover; await an awaitable."""
    original = experiment.replicates
    experiment.replicates = replicates
    try:
        return _settle(plugin.run_experiment_loop(experiment, replicate_fn))
    finally:
        experiment.replicates = original


def _settle(value: Any) -> Any:
    """``value``, or what it gives when awaited (in a new event loop; in a helper thread
    when this thread already runs one)."""
    if not inspect.isawaitable(value):
        return value

    async def wait() -> Any:
        return await value

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait())
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="crystallize-loop") as pool:
        return pool.submit(asyncio.run, wait()).result()


def _take_returned(returned: Any, seen: dict[tuple[str, int], JobResult]) -> None:
    """Add job results found in the returned values that the runner has not seen
    (``replicate_fn`` ran elsewhere). A lazy iterable is consumed here, so its replicates run."""
    if not isinstance(returned, Iterable) or isinstance(returned, (str, bytes, Mapping)):
        return
    for item in returned:
        if isinstance(item, LoopReplicate):
            for result in item.job_results:
                seen.setdefault((result.condition, result.replicate), result)


def _unfinished(plugin: Any, rest: Sequence[Job]) -> ExecutionError | None:
    if not rest:
        return None
    missing: dict[str, list[int]] = {}
    for job in rest:
        missing.setdefault(job.condition, []).append(job.replicate)
    detail = "; ".join(f"'{c}' replicates {sorted(reps)}" for c, reps in missing.items())
    name = rest[0].definition.get().experiment_name
    error = ExecutionError(
        f"{type(plugin).__name__}.run_experiment_loop returned without running every replicate of experiment "
        f"'{name}' (missing: {detail}); call replicate_fn(rep) for rep in range(experiment.replicates). What ran "
        "is stored, these conditions are stored as incomplete, and strategy='resume' runs only the missing replicates")
    logger.warning("%s", error)
    return error
