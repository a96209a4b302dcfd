"""Imports an experiment folder's ``*.py`` files (``steps.py``, ``datasources.py``, ...)."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from crystallize.errors import ConfigError
from crystallize.fingerprint._source import USER_MODULE_PREFIX

__all__ = ["load_module"]


def load_module(path: Path) -> ModuleType | None:
    """Import (or re-import) ``path`` under a name unique to its location; ``None`` if absent.

    Modules are registered to pickle by value, so process pools and Ray workers can run
    functions from experiment folders that are not on their ``sys.path``.

    Raises
    ------
    ConfigError
        When importing the file raises; the message names the file and the error.
    """
    if not path.is_file():
        return None
    resolved = path.resolve()
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:10]
    name = f"{USER_MODULE_PREFIX}{digest}_{resolved.stem}".replace("-", "_")
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise ConfigError("cannot be imported", path=path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    folder = str(resolved.parent)
    sys.path.insert(0, folder)  # sibling imports (`from helpers import x`) work while loading
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # boundary: user code
        sys.modules.pop(name, None)
        raise ConfigError(f"importing raised {type(exc).__name__}: {exc}", path=path) from exc
    finally:
        sys.path.remove(folder)
    try:
        import cloudpickle

        cloudpickle.register_pickle_by_value(module)
    except (ImportError, ValueError):
        pass
    return module
