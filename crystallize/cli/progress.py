"""A rich progress display fed by the runner's events."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from crystallize.execution.events import NodeFinished, NodeStarted, ReplicateFinished, RunStarted

__all__ = ["RunProgress"]


class RunProgress:
    """One bar over nodes and one over the current node's replicate-conditions."""

    def __init__(self, console: Console, total_nodes: int) -> None:
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), console=console, transient=True)
        self._nodes = self._progress.add_task("graph", total=total_nodes)
        self._current: TaskID | None = None
        self.finished: list[NodeFinished] = []

    def __enter__(self) -> RunProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.__exit__(*exc)

    def __call__(self, event: object) -> None:
        if isinstance(event, NodeStarted):
            self._progress.update(self._nodes, description=f"graph: {escape(event.experiment)}")
        elif isinstance(event, RunStarted):
            if self._current is not None:
                self._progress.remove_task(self._current)
            self._current = self._progress.add_task(f"  {escape(event.experiment)} v{event.version}", total=event.total)
        elif isinstance(event, ReplicateFinished) and self._current is not None:
            self._progress.advance(self._current)
        elif isinstance(event, NodeFinished):
            self.finished.append(event)
            self._progress.advance(self._nodes)
