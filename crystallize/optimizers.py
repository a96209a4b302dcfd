"""Ask/tell optimisation over treatments (0.27 interface)."""

from __future__ import annotations

import abc
from dataclasses import dataclass

from crystallize.treatments import Treatment

__all__ = ["BaseOptimizer", "Objective"]


@dataclass
class Objective:
    """The metric (or metrics) an optimizer reads; ``direction`` is ``"minimize"`` or
    ``"maximize"`` (one per metric), for the optimizer's own use. With a list of metrics,
    :meth:`BaseOptimizer.tell` receives the mean of each."""

    metric: str | list[str]
    direction: str | list[str] = "minimize"


class BaseOptimizer(abc.ABC):
    """Proposes treatments (:meth:`ask`) and learns from their objective values (:meth:`tell`)."""

    def __init__(self, objective: Objective) -> None:
        self.objective = objective

    @abc.abstractmethod
    def ask(self) -> list[Treatment]:
        """Treatments to try next (the first one is scored)."""

    @abc.abstractmethod
    def tell(self, objective_values: dict[str, float]) -> None:
        """Receive ``{metric: mean over replicates}`` (every objective metric) for the last :meth:`ask`."""

    @abc.abstractmethod
    def get_best_treatment(self) -> Treatment:
        """The best treatment seen."""
