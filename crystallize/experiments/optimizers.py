"""0.27 import path ``crystallize.experiments.optimizers``."""

from crystallize.optimizers import BaseOptimizer, Objective

__all__ = ["BaseOptimizer", "Objective"]
