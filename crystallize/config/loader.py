"""YAML -> the same Experiment and ExperimentGraph objects Python users build (spec section 7).

Layout: a graph folder holds sibling experiment folders (each with ``config.yaml`` and
``datasources.py``, ``steps.py``, ``outputs.py``, ``verifiers.py``) and an optional
``graph.yaml``. Every mistake is a :class:`ConfigError` naming the file and key path.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from crystallize.config.modules import load_module
from crystallize.config.schema import (
    EXPERIMENT_KEYS,
    GRAPH_KEYS,
    check_graph_settings,
    check_keys,
    expect,
    parse_store,
)
from crystallize.config.yamlfile import read_yaml
from crystallize.datasources.artifacts import Artifact
from crystallize.errors import ConfigError, CrystallizeError, DefinitionError
from crystallize.names import validate_name

__all__ = ["ExperimentConfig", "find_configs", "load_experiment", "load_graph"]


@dataclass
class ExperimentConfig:
    """One parsed ``config.yaml`` before graph references are resolved."""

    path: Path
    data: dict[str, Any]
    name: str
    modules: dict[str, ModuleType | None] = field(default_factory=dict)
    refs: dict[str, tuple[str, str]] = field(default_factory=dict)  # alias -> (experiment, output alias)


def find_configs(root: Path) -> list[Path]:
    """Every ``config.yaml`` below ``root`` (sorted), skipping hidden folders and stores."""
    found = []
    for path in sorted(Path(root).rglob("config.yaml")):
        rel = path.relative_to(root).parts[:-1]
        if not any(part.startswith(".") or part in ("data", "__pycache__") for part in rel):
            found.append(path)
    return found


def _read_config(path: Path) -> ExperimentConfig:
    data = read_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"must be a mapping of keys, not {type(data).__name__}", path=path)
    check_keys(data, EXPERIMENT_KEYS, path=path, where="")
    name = data.get("name", path.parent.name)
    expect(name, str, path=path, key="name")
    try:
        validate_name(name, what="experiment")
    except CrystallizeError as exc:
        raise ConfigError(str(exc), path=path, key="name") from exc
    modules = {stem: load_module(path.parent / f"{stem}.py") for stem in ("datasources", "steps", "outputs", "verifiers")}
    return ExperimentConfig(path, data, name, modules)


def _state(path: Path) -> set[str]:
    """Treatments toggled off in the TUI (``config.state.json`` beside ``config.yaml``)."""
    state = path.parent / "config.state.json"
    if not state.exists():
        return set()
    try:
        return set(json.loads(state.read_text()).get("inactive_treatments", []))
    except (OSError, ValueError, AttributeError) as exc:
        raise ConfigError(f"unreadable treatment state: {exc}", path=state) from exc


def load_experiment(path: Path, *, store_root: Path | None = None, upstream: Mapping[str, Any] | None = None,
                    settings: Mapping[str, Any] | None = None) -> Any:
    """Load one experiment from ``config.yaml`` (or its folder).

    ``upstream`` maps experiment names to already-built experiments so that
    ``"exp#output"`` references resolve to the producer's real :class:`Artifact`;
    without it a reference is an error naming the key.
    """
    from crystallize.config.build import build_experiment

    path = Path(path)
    if path.is_dir():
        path = path / "config.yaml"
    config = _read_config(path)
    return build_experiment(config, store_root=store_root, upstream=upstream or {}, inactive=_state(path),
                            settings=settings or {})


def _graph_settings(folder: Path) -> dict[str, Any]:
    path = folder / "graph.yaml"
    if not path.exists():
        return {}
    data = read_yaml(path) or {}
    if not isinstance(data, dict):
        raise ConfigError("must be a mapping of keys", path=path)
    check_keys(data, GRAPH_KEYS, path=path, where="")
    check_graph_settings(data, path=path)
    return {"path": path, **data}


def _sibling_configs(folder: Path) -> list[Path]:
    return sorted(p / "config.yaml" for p in folder.iterdir() if (p / "config.yaml").is_file())


def _order(configs: dict[str, ExperimentConfig]) -> list[str]:
    """Producers before consumers (Kahn's algorithm over references)."""
    import networkx as nx

    g = nx.DiGraph()
    g.add_nodes_from(configs)
    for name, cfg in configs.items():
        for alias, (producer, _output) in cfg.refs.items():
            if producer not in configs:
                raise ConfigError(f"reference to unknown experiment '{producer}' (have {sorted(configs)})",
                                  path=cfg.path, key=f"datasource.{alias}")
            g.add_edge(producer, name)
    try:
        return list(nx.lexicographical_topological_sort(g))
    except nx.NetworkXUnfeasible:
        edges = nx.find_cycle(g)
        from crystallize.errors import CycleError

        producer, consumer = edges[-1]  # the reference that closes the cycle
        alias = next(a for a, (p, _) in configs[consumer].refs.items() if p == producer)
        raise CycleError([u for u, _ in edges], where=f"{configs[consumer].path} [datasource.{alias}]") from None


def _collect(paths: list[Path]) -> dict[str, ExperimentConfig]:
    from crystallize.config.build import scan_refs

    configs: dict[str, ExperimentConfig] = {}
    for path in paths:
        cfg = _read_config(path)
        if cfg.name in configs:
            raise ConfigError(f"experiment name '{cfg.name}' is also used by {configs[cfg.name].path}", path=path,
                              key="name")
        cfg.refs = scan_refs(cfg)
        configs[cfg.name] = cfg
    return configs


def _siblings(configs: Mapping[str, ExperimentConfig], *, besides: str) -> str:
    """``"a, b (folder b_dir)"``: the experiments other than ``besides`` that a reference may name."""
    return ", ".join(name if cfg.path.parent.name == name else f"{name} (folder {cfg.path.parent.name})"
                     for name, cfg in sorted(configs.items()) if name != besides) or "none"


def _resolve_refs(configs: dict[str, ExperimentConfig]) -> None:
    """Point every ``exp#output`` reference at a sibling: by ``name:``, else by folder name (spec section 11).

    Raises
    ------
    ConfigError
        When no sibling has that name or folder; the message lists the siblings.
    """
    by_folder = {cfg.path.parent.name: name for name, cfg in configs.items()}
    for cfg in configs.values():
        for alias, (producer, output) in cfg.refs.items():
            target = producer if producer in configs else by_folder.get(producer)
            if target is None:
                siblings = _siblings(configs, besides=cfg.name)
                raise ConfigError(f"reference to unknown experiment '{producer}'; no sibling has that name or "
                                  f"folder (siblings: {siblings})", path=cfg.path, key=f"datasource.{alias}")
            cfg.refs[alias] = (target, output)


def load_graph(path: Path) -> Any:
    """Load a graph: a folder of experiment folders, an experiment folder, or one ``config.yaml``.

    With a single experiment (file or folder), its siblings are searched for the
    experiments it references, transitively. A reference ``exp#output`` names a sibling
    by its ``name:``, or else by its folder name. The store root is ``<graph folder>/data``
    and stores are versioned.
    """
    from crystallize.config.build import build_experiment
    from crystallize.graph.model import ExperimentGraph

    path = Path(path)
    if not path.exists():
        raise ConfigError("no such file or folder", path=path)
    start = path / "config.yaml" if path.is_dir() and (path / "config.yaml").is_file() else path
    folder = start.parent.parent if start.is_file() else start
    paths = _sibling_configs(folder) if folder.is_dir() else []
    if start.is_file() and start.resolve() not in {p.resolve() for p in paths}:
        paths.append(start)
    if not paths:
        raise ConfigError("no experiment folders (sub-folders with config.yaml) found", path=path)
    configs = _collect(paths)
    _resolve_refs(configs)
    if start.is_file():
        configs = _needed(configs, _read_name(start, configs))
    graph_cfg = _graph_settings(folder)
    store = parse_store(graph_cfg.get("store"), path=graph_cfg.get("path", folder / "graph.yaml"), default=folder / "data")
    built: dict[str, Any] = {}
    for name in _order(configs):
        cfg = configs[name]
        built[name] = build_experiment(cfg, store_root=store["root"], upstream=built, inactive=_state(cfg.path),
                                       settings={**graph_cfg, "store": store})
    try:
        graph = ExperimentGraph(name=graph_cfg.get("name"))
        graph._add_all(built[n] for n in _order(configs))
    except CrystallizeError:
        raise
    except ValueError as exc:
        raise DefinitionError(str(exc)) from exc
    _check_hypotheses_have_treatments(graph)
    graph.store_root, graph.versioned = store["root"], store["versioned"]
    graph.seed, graph.backend, graph.workers = graph_cfg.get("seed"), graph_cfg.get("backend"), graph_cfg.get("workers")
    graph.description = graph_cfg.get("description")
    graph.source = path
    return graph


def _check_hypotheses_have_treatments(graph: Any) -> None:
    """A hypothesis compares treatments with the baseline: a node needs one, own or inherited."""
    from crystallize.graph.inherit import inherited_treatments

    inherited = inherited_treatments(graph)
    for name, exp in graph.experiments.items():
        if exp.hypotheses and not (exp.treatments or getattr(exp, "disabled_treatments", ()) or inherited[name]):
            raise ConfigError("hypotheses need at least one treatment (own or inherited from upstream experiments)",
                              path=getattr(exp, "config_path", name), key="hypotheses")


def _read_name(start: Path, configs: dict[str, ExperimentConfig]) -> str:
    return next(n for n, c in configs.items() if c.path.resolve() == start.resolve())


def _needed(configs: dict[str, ExperimentConfig], root: str) -> dict[str, ExperimentConfig]:
    """``root`` and every experiment it references, transitively (iterative)."""
    keep, todo = set(), [root]
    while todo:
        name = todo.pop()
        if name in keep or name not in configs:
            continue
        keep.add(name)
        todo.extend(producer for producer, _ in configs[name].refs.values())
    return {n: c for n, c in configs.items() if n in keep}
