"""The one timing rule every benchmark here uses."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_of(repeat: int, work: Callable[[], object]) -> float:
    """Smallest wall-clock time of ``repeat`` calls of ``work``, in seconds (the run least
    disturbed by other load on the machine)."""
    best = float("inf")
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best
