"""A name -> data source lookup that users fill explicitly (``register_datasource``)."""

from __future__ import annotations

from crystallize.datasources.datasource import DataSource

__all__ = ["clear_registry", "get_datasource", "list_datasources", "register_datasource", "unregister_datasource"]

_REGISTRY: dict[str, DataSource] = {}


def register_datasource(name: str, source: DataSource) -> None:
    """Register ``source`` under ``name``; a taken name raises ``ValueError``."""
    if name in _REGISTRY:
        raise ValueError(f"Datasource '{name}' is already registered")
    _REGISTRY[name] = source


def get_datasource(name: str) -> DataSource:
    """The source registered as ``name``; ``KeyError`` lists the known names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"Datasource '{name}' not found; registered: {sorted(_REGISTRY)}") from None


def unregister_datasource(name: str) -> None:
    """Remove ``name`` from the registry (no error if absent)."""
    _REGISTRY.pop(name, None)


def list_datasources() -> list[str]:
    """Registered names, sorted."""
    return sorted(_REGISTRY)


def clear_registry() -> None:
    """Remove every registered source."""
    _REGISTRY.clear()
