"""Backends on this machine (serial, threads, processes, asyncio) and their 0.27 plugins."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import pickle
import sys
import threading
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

from crystallize.errors import WorkerCrashError
from crystallize.execution.job import Job, JobError, JobResult, run_job
from crystallize.plugins.base import BasePlugin

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from crystallize.execution.backend import Backend
    from crystallize.experiment import Experiment
    from crystallize.results import ReplicateResult

__all__ = ["AsyncBackend", "AsyncExecution", "ParallelExecution", "ProcessBackend", "SerialBackend",
           "SerialExecution", "ThreadBackend"]

logger = logging.getLogger(__name__)


class SerialBackend:
    """Runs each job immediately in the calling thread."""

    remote, capacity = False, 1

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
        self.capacity = max_workers or min(32, (os.cpu_count() or 1) + 4)
        self._loop = asyncio.new_event_loop()
        self._loop.set_default_executor(ThreadPoolExecutor(self.capacity, thread_name_prefix="crystallize-async"))
        self._thread = threading.Thread(target=self._loop.run_forever, name="crystallize-loop", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> Future[JobResult]:
        return asyncio.run_coroutine_threadsafe(asyncio.to_thread(run_job, job), self._loop)

    def close(self) -> None:
        async def drain() -> None:
            await self._loop.shutdown_default_executor()

        asyncio.run_coroutine_threadsafe(drain(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


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


class ProcessBackend:
    """Runs jobs in worker processes; a dead worker fails only the jobs it had, then the pool restarts."""

    remote = True

    def __init__(self, max_workers: int | None = None, *, start_method: str | None = None) -> None:
        self.capacity = max_workers or max(1, (os.cpu_count() or 2))
        self._context = multiprocessing.get_context(start_method or _start_method())
        self._lock = threading.Lock()
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.capacity, mp_context=self._context)

    def submit(self, job: Job) -> Future[JobResult]:
        outer: Future[JobResult] = Future()
        with self._lock:
            pool = self._pool
            inner = pool.submit(_run_job_remote, job)
        inner.add_done_callback(lambda f: self._settle(f, outer, job, pool))
        return outer

    def _settle(self, inner: Future[JobResult], outer: Future[JobResult], job: Job, pool: ProcessPoolExecutor) -> None:
        exc = inner.exception()
        if exc is None:
            outer.set_result(inner.result())
            return
        if isinstance(exc, BrokenProcessPool):
            self._restart(pool)
            crash = WorkerCrashError(
                f"worker process died while running {job.condition} replicate {job.replicate} (segfault, os._exit "
                "or out of memory; a script that starts runs at import time needs an "
                "`if __name__ == \"__main__\":` guard, because worker processes re-import the main module)")
            error = JobError("WorkerCrashError", str(crash), f"{type(exc).__name__}: {exc}", None, crash)
        else:
            error = JobError(type(exc).__name__, str(exc), repr(exc), None, exc)
        outer.set_result(JobResult(job.condition, job.replicate, job.seed, None, error=error))

    def _restart(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is broken:
                logger.warning("a worker process died; restarting the process pool")
                broken.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()

    def close(self) -> None:
        with self._lock:
            self._pool.shutdown(wait=True)


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
