"""The keys a config may contain, and small validators that name the file and key at fault."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from crystallize.errors import ConfigError

__all__ = ["CLI_KEYS", "NODE_STORE_KEYS", "check_graph_settings", "string_keys", "EXPERIMENT_KEYS", "GRAPH_KEYS", "HYPOTHESIS_KEYS", "OUTPUT_KEYS", "STORE_KEYS",
           "check_keys", "expect", "parse_store"]

EXPERIMENT_KEYS = frozenset({"name", "description", "replicates", "datasource", "steps", "outputs", "treatments",
                             "hypotheses", "cli", "initial_ctx", "seed", "files", "strategy", "store", "backend",
                             "workers"})
GRAPH_KEYS = frozenset({"name", "description", "seed", "backend", "workers", "store"})
OUTPUT_KEYS = frozenset({"file_name", "writer", "loader"})
HYPOTHESIS_KEYS = frozenset({"name", "verifier", "metrics", "params", "correction"})
CLI_KEYS = frozenset({"group", "priority", "icon", "color", "hidden"})
STORE_KEYS = frozenset({"root", "versioned", "retention", "durable"})  # graph.yaml
NODE_STORE_KEYS = frozenset({"versioned", "retention", "durable"})  # config.yaml: the root is the graph's


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def check_keys(data: Mapping[str, Any], allowed: frozenset[str], *, path: Path, where: str) -> None:
    """Reject keys not in ``allowed``, suggesting the closest valid one."""
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; allowed: {', '.join(sorted(allowed))}"
            raise ConfigError(f"unknown key '{key}'{hint}", path=path, key=_join(where, str(key)))


def string_keys(mapping: Mapping[Any, Any], *, path: Path, key: str) -> None:
    """Reject mapping keys that YAML did not read as strings (``off: 1`` gives ``False``)."""
    for name in mapping:
        if not isinstance(name, str):
            hint = " (YAML reads yes/no/on/off/true/false as booleans; quote the key)" if isinstance(name, bool) else ""
            raise ConfigError(f"key {name!r} is not a string{hint}", path=path, key=f"{key}.{name}")


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


def parse_store(value: Any, *, path: Path, default: Mapping[str, Any] | Path,
                allowed: frozenset[str] = STORE_KEYS) -> dict[str, Any]:
    """``store: {root, versioned, retention, durable}`` over ``default`` (a mapping, or a root path).

    ``root`` is relative to the file's folder.
    """
    base = {"root": default, "versioned": True, "retention": 3, "durable": False} if isinstance(default, Path) \
        else dict(default)
    out: dict[str, Any] = base
    if value is None:
        return out
    expect(value, dict, path=path, key="store")
    check_keys(value, allowed, path=path, where="store")
    if "root" in value:
        root = Path(expect(value["root"], str, path=path, key="store.root"))
        out["root"] = root if root.is_absolute() else path.parent / root
    for key, kind in (("versioned", bool), ("retention", int), ("durable", bool)):
        if key in value:
            out[key] = expect(value[key], kind, path=path, key=f"store.{key}")
    return out


def check_graph_settings(data: Mapping[str, Any], *, path: Path) -> None:
    """Types of the ``graph.yaml`` keys (the store is checked by :func:`parse_store`)."""
    from crystallize.execution.select import BACKENDS

    for key, kind in (("name", str), ("description", str), ("seed", int), ("workers", int), ("backend", str)):
        if data.get(key) is not None:
            expect(data[key], kind, path=path, key=key)
    if data.get("backend") is not None and data["backend"] not in BACKENDS:
        raise ConfigError(f"unknown backend {data['backend']!r}; choose one of {', '.join(BACKENDS)}", path=path,
                          key="backend")
    if data.get("workers") is not None and data["workers"] < 1:
        raise ConfigError("must be at least 1", path=path, key="workers")
