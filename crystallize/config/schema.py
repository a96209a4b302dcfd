"""The keys a config may contain, and small validators that name the file and key at fault."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from crystallize.errors import ConfigError

__all__ = ["CLI_KEYS", "EXPERIMENT_KEYS", "GRAPH_KEYS", "HYPOTHESIS_KEYS", "OUTPUT_KEYS", "STORE_KEYS",
           "check_keys", "expect", "parse_store"]

EXPERIMENT_KEYS = frozenset({"name", "description", "replicates", "datasource", "steps", "outputs", "treatments",
                             "hypotheses", "cli", "initial_ctx", "seed", "files", "strategy", "store", "backend",
                             "workers"})
GRAPH_KEYS = frozenset({"name", "description", "seed", "backend", "workers", "store"})
OUTPUT_KEYS = frozenset({"file_name", "writer", "loader"})
HYPOTHESIS_KEYS = frozenset({"name", "verifier", "metrics", "params", "correction"})
CLI_KEYS = frozenset({"group", "priority", "icon", "color", "hidden"})
STORE_KEYS = frozenset({"root", "versioned", "retention", "durable"})


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def check_keys(data: Mapping[str, Any], allowed: frozenset[str], *, path: Path, where: str) -> None:
    """Reject keys not in ``allowed``, suggesting the closest valid one."""
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; allowed: {', '.join(sorted(allowed))}"
            raise ConfigError(f"unknown key '{key}'{hint}", path=path, key=_join(where, str(key)))


def expect(value: Any, types: type | tuple[type, ...], *, path: Path, key: str) -> Any:
    """Return ``value`` if it has one of ``types`` (``bool`` never counts as ``int``)."""
    types = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool) and bool not in types:
        ok = False
    else:
        ok = isinstance(value, types)
    if not ok:
        names = " or ".join("mapping" if t is dict else "list" if t is list else t.__name__ for t in types)
        article = "an" if names[0] in "aeiou" else "a"
        raise ConfigError(f"must be {article} {names}, not {type(value).__name__} ({value!r})", path=path, key=key)
    return value


def parse_store(value: Any, *, path: Path, default: Path) -> dict[str, Any]:
    """``store: {root, versioned, retention, durable}``; ``root`` is relative to the file's folder."""
    out: dict[str, Any] = {"root": default, "versioned": True, "retention": None, "durable": False}
    if value is None:
        return out
    expect(value, dict, path=path, key="store")
    check_keys(value, STORE_KEYS, path=path, where="store")
    if "root" in value:
        root = Path(expect(value["root"], str, path=path, key="store.root"))
        out["root"] = root if root.is_absolute() else path.parent / root
    for key, kind in (("versioned", bool), ("retention", int), ("durable", bool)):
        if key in value:
            out[key] = expect(value[key], kind, path=path, key=f"store.{key}")
    return out
