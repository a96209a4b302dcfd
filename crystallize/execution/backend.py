"""The backend contract: run jobs somewhere and hand back futures of their results."""

from __future__ import annotations

from concurrent.futures import Future
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from crystallize.execution.job import Job, JobResult

__all__ = ["Backend"]


@runtime_checkable
class Backend(Protocol):
    """Runs :class:`Job` objects.

    Attributes
    ----------
    remote : bool
        True when jobs leave this process (definitions must pickle).
    capacity : int
        Jobs worth keeping in flight at once.
    """

    remote: bool
    capacity: int

    def submit(self, job: Job) -> Future[JobResult]:
        """Start ``job``; the future never raises for a user error (it is in the result)."""
        ...

    def close(self) -> None:
        """Release workers."""
        ...
