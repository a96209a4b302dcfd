"""A pool of worker processes that each run one job at a time, so a crash is pinned to its job.

``concurrent.futures.ProcessPoolExecutor`` marks the whole pool broken when one worker
dies and fails every pending future, including jobs that never started. This pool keeps
one pipe per worker and knows which job each worker holds: when a worker dies, only that
job fails (with :class:`~crystallize.errors.WorkerCrashError`), a fresh worker takes its
place, and queued jobs carry on.

A run definition is sent to each worker once (the first job of that run it receives); later
jobs name it by key. Workers ignore SIGINT, so Ctrl-C in a terminal lets in-flight jobs
finish while the runner stops submitting.
"""

from __future__ import annotations

import collections
import logging
import pickle
import signal
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from crystallize.errors import ExecutionError, WorkerCrashError
from crystallize.execution.job import DefinitionRef, Job, JobError, JobResult, _load_definition

__all__ = ["WorkerPool"]

logger = logging.getLogger(__name__)

_KNOWN_DEFINITIONS = 8  # run definitions a worker keeps; older ones are forgotten
_GUARD_HINT = ("a script that starts runs at import time needs an `if __name__ == \"__main__\":` guard, "
               "because worker processes import the main module again")
_CRASH_HINT = f"segfault, os._exit or out of memory; {_GUARD_HINT}"


def _worker_main(conn: Connection, run: Callable[[Job], JobResult]) -> None:
    """Worker loop: receive ``(key, payload, forget, condition, replicate, seed, inputs, staging)``, answer a
    JobResult."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    refs: dict[str, DefinitionRef] = {}
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        key, payload, forget, condition, replicate, seed, inputs, staging = message
        for old in forget:
            refs.pop(old, None)
        try:
            if payload is not None:
                refs[key] = _load_definition(key, payload)
            result = run(Job(refs[key], condition, replicate, seed, inputs, staging))
        except Exception as exc:  # boundary: a definition that will not load is this job's failure
            result = _failed(condition, replicate, seed, exc)
        _answer(conn, result)


def _answer(conn: Connection, result: JobResult) -> None:
    try:
        data = pickle.dumps(result)
    except Exception as exc:  # boundary: e.g. a metric value that cannot be pickled
        data = pickle.dumps(_failed(result.condition, result.replicate, result.seed, exc))
    conn.send_bytes(data)


def _failed(condition: str, replicate: int, seed: int, exc: BaseException) -> JobResult:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return JobResult(condition, replicate, seed, None, error=JobError(type(exc).__name__, str(exc), text, None))


@dataclass(eq=False)
class _Worker:
    """Runner-side handle of one worker process."""

    process: Any
    conn: Connection
    known: collections.OrderedDict[str, None] = field(default_factory=collections.OrderedDict)
    job: tuple[Job, Future[JobResult]] | None = None
    silent: bool = False  # its pipe closed: only the exit sentinel is worth waiting for


class WorkerPool:
    """Up to ``size`` worker processes fed from one queue by a dispatcher thread.

    Parameters
    ----------
    size : int
        Maximum number of worker processes (started on demand).
    context : multiprocessing context
        Gives the start method (``forkserver`` or ``spawn``).
    run : Callable[[Job], JobResult]
        Module-level function the workers call for each job.
    """

    def __init__(self, size: int, context: Any, run: Callable[[Job], JobResult]) -> None:
        self.size, self._context, self._run = size, context, run
        self._lock = threading.Lock()
        self._queue: collections.deque[tuple[Job, Future[JobResult]]] = collections.deque()
        self._workers: list[_Worker] = []
        self._wake_read, self._wake_write = context.Pipe(duplex=False)
        self._closing = False
        self._thread = threading.Thread(target=self._dispatch, name="crystallize-workers", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> Future[JobResult]:
        """Queue ``job``; the future resolves to its result (a crash is a failed result)."""
        future: Future[JobResult] = Future()
        with self._lock:
            if self._closing:
                raise RuntimeError("the worker pool is closed")
            if not self._workers:
                self._start_all()
            self._queue.append((job, future))
        self._wake_write.send_bytes(b"")
        return future

    def _start_all(self) -> None:
        """Start every worker in the caller's thread, so a start failure reaches the caller."""
        try:
            for _ in range(self.size):
                self._start_worker()
        except Exception as exc:  # boundary: e.g. a process started while the main module is still importing
            raise ExecutionError(f"could not start worker processes ({type(exc).__name__}: {exc}); "
                                 f"{_GUARD_HINT}") from exc

    def close(self) -> None:
        """Let queued and running jobs finish, then stop every worker."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
        self._wake_write.send_bytes(b"")
        self._thread.join()

    # dispatcher thread -------------------------------------------------------------------
    def _dispatch(self) -> None:
        try:
            while True:
                self._assign()
                with self._lock:
                    if self._closing and not self._queue and not any(w.job for w in self._workers):
                        break
                self._wait_once()
        except BaseException as exc:  # a dispatcher bug must not leave futures waiting forever
            logger.exception("worker pool dispatcher failed")
            self._fail_running(exc)
            raise
        finally:
            self._stop_workers()

    def _fail_running(self, exc: BaseException) -> None:
        for worker in self._workers:
            if worker.job is not None:
                job, future = worker.job
                worker.job = None
                future.set_result(_failed(job.condition, job.replicate, job.seed, exc))

    def _assign(self) -> None:
        """Hand queued jobs to idle workers, starting workers up to ``size``."""
        while True:
            with self._lock:
                if not self._queue:
                    return
                worker = next((w for w in self._workers if w.job is None), None)
                failure = None
                if worker is None and len(self._workers) < self.size:
                    try:
                        worker = self._start_worker()  # replaces a worker that died
                    except Exception as exc:  # boundary: fail the job that needed it, keep the pool
                        failure = ExecutionError(f"could not start a worker process ({exc})")
                if worker is None and failure is None:
                    return
                job, future = self._queue.popleft()
            if not future.set_running_or_notify_cancel():  # cancelled while queued
                continue
            if failure is not None:
                future.set_result(_failed(job.condition, job.replicate, job.seed, failure))
            else:
                self._send(worker, job, future)

    def _start_worker(self) -> _Worker:
        parent, child = self._context.Pipe(duplex=True)
        process = self._context.Process(target=_worker_main, args=(child, self._run), daemon=True,
                                        name="crystallize-worker")
        process.start()
        child.close()
        worker = _Worker(process, parent)
        self._workers.append(worker)
        return worker

    def _send(self, worker: _Worker, job: Job, future: Future[JobResult]) -> None:
        key = job.definition.key
        payload, forget = None, []
        if key not in worker.known:
            payload = job.definition.payload()
            worker.known[key] = None
            while len(worker.known) > _KNOWN_DEFINITIONS:
                forget.append(worker.known.popitem(last=False)[0])
        try:
            worker.conn.send((key, payload, tuple(forget), job.condition, job.replicate, job.seed, dict(job.inputs),
                              job.staging))
        except OSError:
            pass  # the worker is dead; its exit sentinel reports the crash for this job
        except Exception as exc:  # pickling failed before anything was written to the pipe
            worker.known.pop(key, None)
            future.set_result(_failed(job.condition, job.replicate, job.seed, exc))
            return
        worker.job = (job, future)

    def _wait_once(self) -> None:
        with self._lock:
            workers = list(self._workers)
        waiting: dict[Any, tuple[str, _Worker | None]] = {self._wake_read: ("wake", None)}
        for worker in workers:
            if worker.job is not None and not worker.silent:
                waiting[worker.conn] = ("result", worker)
            waiting[worker.process.sentinel] = ("exit", worker)
        ready = wait(list(waiting))
        for kind, worker in sorted((waiting[r] for r in ready), key=lambda item: item[0] != "result"):
            if kind == "wake":
                while self._wake_read.poll():
                    self._wake_read.recv_bytes()
            elif kind == "result":
                self._receive(worker)
            elif worker in self._workers:
                self._replace(worker)

    def _receive(self, worker: _Worker) -> None:
        job, future = worker.job
        try:
            result = pickle.loads(worker.conn.recv_bytes())
        except (EOFError, OSError):
            worker.silent = True  # died while answering: the exit sentinel reports the crash
            return
        except Exception as exc:  # boundary: a result that will not load in the runner
            result = _failed(job.condition, job.replicate, job.seed, exc)
        worker.job = None
        future.set_result(result)

    def _replace(self, dead: _Worker) -> None:
        """A worker exited: fail the job it held and forget it (a new one starts on demand)."""
        with self._lock:
            self._workers.remove(dead)
        dead.conn.close()
        code = dead.process.exitcode
        if dead.job is None:
            logger.warning("worker process %s exited with code %s while idle", dead.process.pid, code)
            return
        job, future = dead.job
        logger.warning("worker process %s died (exit code %s) running %s replicate %s; starting a new one",
                       dead.process.pid, code, job.condition, job.replicate)
        crash = WorkerCrashError(f"worker process died (exit code {code}) while running {job.condition} "
                                 f"replicate {job.replicate} ({_CRASH_HINT})")
        future.set_result(JobResult(job.condition, job.replicate, job.seed, None, error=JobError(
            "WorkerCrashError", str(crash), f"WorkerCrashError: {crash}", None, crash)))

    def _stop_workers(self) -> None:
        with self._lock:
            self._closing = True
        for worker in self._workers:
            try:
                worker.conn.send(None)
            except OSError:
                pass
        for worker in self._workers:
            worker.process.join(timeout=5)
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join()
            worker.conn.close()
        self._workers.clear()
        self._wake_read.close()
        self._wake_write.close()
        # any job still queued here was submitted after close began; fail it rather than hang
        while self._queue:
            job, future = self._queue.popleft()
            if future.set_running_or_notify_cancel():
                future.set_result(_failed(job.condition, job.replicate, job.seed,
                                          RuntimeError("the worker pool closed before this job started")))
