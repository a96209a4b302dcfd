"""Backends on this machine (serial, threads, processes, asyncio) and their 0.27 plugins."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import pickle
import sys
import threading
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from crystallize.errors import ExecutionError
from crystallize.execution.job import Job, JobError, JobResult, run_job
from crystallize.execution.workers import WorkerPool
from crystallize.plugins.base import BasePlugin

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from multiprocessing.context import BaseContext

    from crystallize.execution.backend import Backend
    from crystallize.experiment import Experiment
    from crystallize.results import ReplicateResult

__all__ = ["AsyncBackend", "AsyncExecution", "ParallelExecution", "ProcessBackend", "SerialBackend",
           "SerialExecution", "ThreadBackend"]

logger = logging.getLogger(__name__)


GUARD_HINT = ("a script that starts runs at import time needs an `if __name__ == \"__main__\":` guard, "
              "because worker processes import the main module again")


def refuse_while_bootstrapping() -> None:
    """Fail fast when a worker process, still importing the main module, tries to start a run.

    Without a main guard, every worker process (and the fork server) would run the user's
    script again; such a run could wait forever on the store lock the real run holds.

    Raises
    ------
    ExecutionError
        When called while this process is being bootstrapped by ``multiprocessing``.
    """
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise ExecutionError(f"a run was started while a worker process imported the main module; {GUARD_HINT}")


class SerialBackend:
    """Runs each job immediately in the calling thread."""

    remote, capacity = False, 1

    def __init__(self) -> None:
        refuse_while_bootstrapping()

    def submit(self, job: Job) -> Future[JobResult]:
        future: Future[JobResult] = Future()
        future.set_result(run_job(job))
        return future

    def close(self) -> None:
        pass


class ThreadBackend:
    """Runs jobs on a thread pool (steps that release the GIL or wait on I/O)."""

    remote = False

    def __init__(self, max_workers: int | None = None) -> None:
        refuse_while_bootstrapping()
        self.capacity = max_workers or min(32, (os.cpu_count() or 1) + 4)
        self._pool = ThreadPoolExecutor(self.capacity, thread_name_prefix="crystallize")

    def submit(self, job: Job) -> Future[JobResult]:
        return self._pool.submit(run_job, job)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class AsyncBackend:
    """An asyncio event loop in its own thread; synchronous jobs are offloaded with ``to_thread``."""

    remote = False

    def __init__(self, max_workers: int | None = None) -> None:
        refuse_while_bootstrapping()
        self.capacity = max_workers or min(32, (os.cpu_count() or 1) + 4)
        self._loop = asyncio.new_event_loop()
        self._loop.set_default_executor(ThreadPoolExecutor(self.capacity, thread_name_prefix="crystallize-async"))
        self._thread = threading.Thread(target=self._loop.run_forever, name="crystallize-loop", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> Future[JobResult]:
        """Schedule ``job`` on the loop; once submitted it runs to the end (a cancel cannot drop its result)."""
        outer: Future[JobResult] = Future()
        outer.set_running_or_notify_cancel()
        inner = asyncio.run_coroutine_threadsafe(asyncio.to_thread(run_job, job), self._loop)
        inner.add_done_callback(lambda f: _copy_outcome(f, outer))
        return outer

    def close(self) -> None:
        async def drain() -> None:
            await self._loop.shutdown_default_executor()

        asyncio.run_coroutine_threadsafe(drain(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


def _copy_outcome(source: Future[JobResult], target: Future[JobResult]) -> None:
    error = CancelledError("the event loop stopped before the job finished") if source.cancelled() \
        else source.exception()
    if error is not None:
        target.set_exception(error)
    else:
        target.set_result(source.result())


def _run_job_remote(job: Job) -> JobResult:
    """Worker-side wrapper: drop an exception object that could not travel back."""
    result = run_job(job)
    if result.error is not None and result.error.exception is not None:
        try:
            pickle.loads(pickle.dumps(result.error.exception))  # must also load in the runner
        except Exception:
            err = result.error
            result = JobResult(result.condition, result.replicate, result.seed, None,
                               error=JobError(err.type_name, err.message, err.traceback, err.step),
                               provenance=result.provenance)
    return result


def _start_method() -> str:
    # fork is unsafe with threads (and gone from macOS defaults); forkserver is Linux's safe fast option.
    return "forkserver" if sys.platform.startswith("linux") else "spawn"


def _context(method: str) -> BaseContext:
    """The multiprocessing context; a fork server imports crystallize once, so workers start warm."""
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        # Takes effect when this process first starts its fork server; "__main__" is the default.
        # numpy: the default seed_fn seeds numpy.random in every job.
        context.set_forkserver_preload(["__main__", "crystallize.execution.local", "cloudpickle", "numpy"])
    return context


class ProcessBackend:
    """Runs jobs in worker processes, one job per worker at a time.

    A worker that dies (segfault, ``os._exit``, out of memory) fails only the job it was
    running, with :class:`~crystallize.errors.WorkerCrashError`; a new worker takes its place
    and the run goes on. Each worker keeps its ``resource_factory`` resources and the
    unpickled run definition for the jobs that follow.

    Parameters
    ----------
    max_workers : int, optional
        Number of worker processes; default: the CPU count.
    start_method : str, optional
        ``"forkserver"`` (Linux default) or ``"spawn"`` (elsewhere); ``fork`` is unsafe
        with the runner's threads.
    """

    remote = True

    def __init__(self, max_workers: int | None = None, *, start_method: str | None = None) -> None:
        if max_workers is not None and max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, not {max_workers}")
        refuse_while_bootstrapping()
        self.capacity = max_workers or max(1, (os.cpu_count() or 2))
        self._pool = WorkerPool(self.capacity, _context(start_method or _start_method()), _run_job_remote)

    def submit(self, job: Job) -> Future[JobResult]:
        """Queue ``job`` for the next free worker."""
        return self._pool.submit(job)

    def close(self) -> None:
        """Wait for queued jobs, then stop the workers."""
        self._pool.close()


class _ExecutionPlugin(BasePlugin):
    """A plugin that chooses a backend; its 0.27 ``run_experiment_loop`` still works when called directly."""

    def make_backend(self) -> Backend:
        raise NotImplementedError

    def run_experiment_loop(self, experiment: Experiment,
                            replicate_fn: Callable[[int], ReplicateResult]) -> Sequence[ReplicateResult]:
        return [replicate_fn(rep) for rep in range(experiment.replicates)]


class SerialExecution(_ExecutionPlugin):
    """Run replicates one after another in this thread (the default)."""

    def __init__(self, progress: bool = False) -> None:
        self.progress = progress

    def make_backend(self) -> Backend:
        return SerialBackend()


class ParallelExecution(_ExecutionPlugin):
    """Run replicate-conditions concurrently on threads or processes.

    Parameters
    ----------
    max_workers : int, optional
        Pool size; default: CPU count (processes) or CPU count + 4 (threads).
    executor_type : {"thread", "process"}
        Threads share memory (and global random state); processes need picklable
        definitions (cloudpickle is used, so lambdas are fine).
    progress : bool
        Kept for 0.27 compatibility; progress is reported through events.

    Raises
    ------
    ValueError
        For an unknown ``executor_type``.
    """

    VALID_EXECUTOR_TYPES = ("thread", "process")

    def __init__(self, max_workers: int | None = None, executor_type: str = "thread", progress: bool = False) -> None:
        if executor_type not in self.VALID_EXECUTOR_TYPES:
            raise ValueError(f"executor_type must be one of {self.VALID_EXECUTOR_TYPES}, not {executor_type!r}")
        if max_workers is not None and max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, not {max_workers}")
        self.max_workers, self.executor_type, self.progress = max_workers, executor_type, progress

    def make_backend(self) -> Backend:
        if self.executor_type == "process":
            return ProcessBackend(self.max_workers)
        return ThreadBackend(self.max_workers)


class AsyncExecution(_ExecutionPlugin):
    """Run replicate-conditions concurrently from an asyncio loop (sync steps go to threads)."""

    def __init__(self, progress: bool = False, max_workers: int | None = None) -> None:
        self.progress, self.max_workers = progress, max_workers

    def make_backend(self) -> Backend:
        return AsyncBackend(self.max_workers)
