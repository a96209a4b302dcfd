"""Progress events: frozen records the runner emits; the CLI and TUI turn them into bars."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ConditionFinished", "EventSink", "NodeFinished", "NodeStarted", "ReplicateFinished", "RunStarted"]


@dataclass(frozen=True, slots=True)
class NodeStarted:
    """A graph node is about to be planned and run."""

    experiment: str


@dataclass(frozen=True, slots=True)
class RunStarted:
    """An experiment run starts executing ``total`` replicate-conditions into ``version``."""

    experiment: str
    version: int
    total: int
    ran: tuple[str, ...]
    reused: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ReplicateFinished:
    """One replicate of one condition finished (``ok`` is False when it raised)."""

    experiment: str
    condition: str
    replicate: int
    ok: bool


@dataclass(frozen=True, slots=True)
class ConditionFinished:
    """Every replicate of a condition returned."""

    experiment: str
    condition: str
    complete: bool


@dataclass(frozen=True, slots=True)
class NodeFinished:
    """A node finished; ``ran`` is empty when everything was reused."""

    experiment: str
    version: int | None
    ran: tuple[str, ...]
    reused: tuple[str, ...]
    failed: tuple[str, ...]
    blocked: tuple[str, ...]


EventSink = Callable[[object], None]
