"""Backends by name, for the CLI (``--backend``), YAML (``graph.yaml`` ``backend:``) and ``graph.run(backend=...)``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crystallize.execution.backend import Backend

__all__ = ["BACKENDS", "make_backend"]

BACKENDS = ("serial", "thread", "process", "async", "ray")


def make_backend(spec: Any, workers: int | None = None) -> tuple[Backend | None, bool]:
    """Turn a name, an execution plugin or a backend into a backend; returns ``(backend, owned)``.

    Parameters
    ----------
    spec : str, execution plugin, Backend or None
        A name from :data:`BACKENDS`; a plugin with ``make_backend()`` (``ParallelExecution``,
        ``RayExecution``, ...); a ready backend (used as is, not owned); or ``None``, which lets
        each experiment use its own execution plugin.
    workers : int, optional
        Pool size for ``thread``, ``process`` and ``async``; for ``ray``, a cap on jobs in flight.

    Returns
    -------
    tuple[Backend or None, bool]
        The backend, and whether the caller must close it when done.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the valid ones) or ``workers < 1``.
    MissingDependencyError
        For ``"ray"`` when Ray is not installed.

    Examples
    --------
    >>> backend, owned = make_backend("thread", workers=2)
    >>> backend.capacity, owned
    (2, True)
    >>> backend.close()
    """
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, not {workers}")
    if spec is None:
        return None, False
    if isinstance(spec, str):
        return _by_name(spec, workers), True
    if callable(getattr(spec, "make_backend", None)):
        return spec.make_backend(), True
    return spec, False


def _by_name(name: str, workers: int | None) -> Backend:
    from crystallize.execution import local

    if name == "serial":
        return local.SerialBackend()
    if name == "thread":
        return local.ThreadBackend(workers)
    if name == "process":
        return local.ProcessBackend(workers)
    if name == "async":
        return local.AsyncBackend(workers)
    if name == "ray":
        from crystallize.execution.ray import RayBackend

        return RayBackend(max_in_flight=workers)
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
