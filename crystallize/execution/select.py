"""Backends by name, for the CLI, YAML and ``graph.run(backend=...)``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crystallize.execution.backend import Backend

__all__ = ["BACKENDS", "make_backend"]

BACKENDS = ("serial", "thread", "process", "async", "ray")


def make_backend(spec: Any, workers: int | None = None) -> tuple[Backend | None, bool]:
    """Turn a name or instance into a backend; returns ``(backend, owned)``.

    ``None`` lets each experiment use its own execution plugin. ``owned`` tells the
    caller to close the backend when done.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the valid ones).
    """
    from crystallize.execution import local

    if spec is None:
        return None, False
    if not isinstance(spec, str):
        return spec, False
    if spec == "serial":
        return local.SerialBackend(), True
    if spec == "thread":
        return local.ThreadBackend(workers), True
    if spec == "process":
        return local.ProcessBackend(workers), True
    if spec == "async":
        return local.AsyncBackend(workers), True
    if spec == "ray":
        from crystallize.execution.ray import RayExecution

        return RayExecution().make_backend(), True
    raise ValueError(f"unknown backend {spec!r}; choose one of {', '.join(BACKENDS)}")
