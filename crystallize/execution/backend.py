"""The backend contract: run jobs somewhere and hand back futures of their results.

Implementations: :class:`~crystallize.execution.local.SerialBackend`,
:class:`~crystallize.execution.local.ThreadBackend`,
:class:`~crystallize.execution.local.AsyncBackend`,
:class:`~crystallize.execution.local.ProcessBackend` and
:class:`~crystallize.execution.ray.RayBackend`; :func:`crystallize.execution.select.make_backend`
builds one by name.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from crystallize.execution.job import Job, JobResult

__all__ = ["Backend"]


@runtime_checkable
class Backend(Protocol):
    """Runs :class:`~crystallize.execution.job.Job` objects.

    A backend never writes the store: the runner persists each
    :class:`~crystallize.execution.job.JobResult` it hands back.

    Attributes
    ----------
    remote : bool
        True when jobs leave this process. The runner then serialises the run definition
        before submitting anything, so a value that cannot travel raises
        :class:`~crystallize.errors.SerializationError` naming it, before any work.
    capacity : int
        Jobs worth keeping in flight at once (the runner submits up to twice this many);
        a graph also runs up to this many independent nodes at the same time.
    """

    remote: bool
    capacity: int

    def submit(self, job: Job) -> Future[JobResult]:
        """Start ``job``.

        The future resolves to a ``JobResult`` and never raises: a failing step, a worker
        that died (:class:`~crystallize.errors.WorkerCrashError`) or a result that could not
        travel back is described in ``JobResult.error``. ``Future.cancel()`` succeeds only
        for a job that has not started; a started job always finishes (Ctrl-C keeps it).
        """
        ...

    def close(self) -> None:
        """Wait for submitted jobs, then release workers (only resources this backend started)."""
        ...
