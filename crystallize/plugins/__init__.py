"""Plugins (also the 0.27 import path ``crystallize.plugins``)."""

from __future__ import annotations

from typing import Any

from crystallize.plugins.base import BasePlugin
from crystallize.plugins.builtin import ArtifactPlugin, LoggingPlugin, SeedPlugin, default_seed_function

__all__ = ["ArtifactPlugin", "AsyncExecution", "BasePlugin", "LoggingPlugin", "ParallelExecution", "SeedPlugin",
           "SerialExecution", "default_seed_function", "load_all_metrics", "load_metrics"]

_LAZY = {"AsyncExecution": "crystallize.execution.local", "ParallelExecution": "crystallize.execution.local",
         "SerialExecution": "crystallize.execution.local", "load_metrics": "crystallize.store.reader",
         "load_all_metrics": "crystallize.store.reader"}


def __getattr__(name: str) -> Any:
    # Execution plugins live in crystallize.execution, which imports this package's base module.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'crystallize.plugins' has no attribute {name!r}")
