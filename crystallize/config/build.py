"""Builds Experiment objects from parsed ``config.yaml`` data."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from crystallize.config.schema import (
    CLI_KEYS,
    HYPOTHESIS_KEYS,
    NODE_STORE_KEYS,
    OUTPUT_KEYS,
    check_keys,
    string_keys,
    expect,
    parse_store,
)
from crystallize.datasources.artifacts import Artifact
from crystallize.datasources.datasource import DataSource, ExperimentInput
from crystallize.errors import ConfigError, CrystallizeError

if TYPE_CHECKING:
    from crystallize.config.loader import ExperimentConfig
    from crystallize.experiment import Experiment

__all__ = ["build_experiment", "scan_refs"]


def _entries(cfg: ExperimentConfig) -> dict[str, Any]:
    """``datasource`` as ``{alias: value}`` (a mapping, or a list of one-key mappings)."""
    if "datasource" not in cfg.data:
        raise ConfigError("config.yaml must define a 'datasource' section", path=cfg.path, key="datasource")
    raw = cfg.data["datasource"]
    if isinstance(raw, list):
        merged: dict[str, Any] = {}
        for i, item in enumerate(raw):
            expect(item, dict, path=cfg.path, key=f"datasource[{i}]")
            merged.update(item)
        raw = merged
    expect(raw, dict, path=cfg.path, key="datasource")
    if not raw:
        raise ConfigError("must name at least one datasource", path=cfg.path, key="datasource")
    return raw


def scan_refs(cfg: ExperimentConfig) -> dict[str, tuple[str, str]]:
    """``{alias: (experiment, output)}`` for ``"experiment#output"`` datasource entries."""
    refs = {}
    for alias, value in _entries(cfg).items():
        if isinstance(value, str) and "#" in value:
            producer, _, output = value.partition("#")
            if not producer or not output:
                raise ConfigError(f"reference {value!r} must look like 'experiment#output'", path=cfg.path,
                                  key=f"datasource.{alias}")
            refs[str(alias)] = (producer, output)
    return refs


def _function(module: ModuleType | None, name: Any, *, cfg: ExperimentConfig, file: str, key: str) -> Any:
    if not isinstance(name, str):
        raise ConfigError(f"must name a function in {file}, not {name!r}", path=cfg.path, key=key)
    if module is None:
        raise ConfigError(f"'{name}' needs {file} beside config.yaml, which does not exist", path=cfg.path, key=key)
    fn = getattr(module, name, None)
    if fn is None or not callable(fn):
        names = _defined_in(module)
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError(f"'{name}' not found in {file} ({hint}available: {', '.join(names) or 'none'})",
                          path=cfg.path, key=key)
    return fn


def _defined_in(module: ModuleType) -> list[str]:
    """Public callables defined in ``module`` itself (not the ones it imports)."""
    return sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                  and getattr(inspect.unwrap(v), "__module__", None) == module.__name__)


def _call(factory: Any, params: Any, *, cfg: ExperimentConfig, key: str) -> Any:
    params = {} if params is None else expect(params, dict, path=cfg.path, key=key)
    string_keys(params, path=cfg.path, key=key)
    try:
        return factory(**params)
    except (TypeError, ValueError, CrystallizeError) as exc:
        raise ConfigError(str(exc), path=cfg.path, key=key) from exc


def _source(cfg: ExperimentConfig, alias: str, value: Any, upstream: Mapping[str, Any]) -> DataSource:
    key = f"datasource.{alias}"
    if isinstance(value, str) and "#" in value:
        producer_name, _, output = value.partition("#")
        producer_name, output = cfg.refs.get(alias, (producer_name, output))  # resolved by the graph loader
        producer = upstream.get(producer_name)
        if producer is None:
            raise ConfigError(f"reference '{value}' needs ExperimentGraph.from_yaml (no experiment "
                              f"'{producer_name}' loaded)", path=cfg.path, key=key)
        if output not in producer.outputs:
            raise ConfigError(f"experiment '{producer_name}' has no output '{output}' (outputs: "
                              f"{', '.join(producer.outputs) or 'none'})", path=cfg.path, key=key)
        return producer.outputs[output]
    if isinstance(value, dict):
        if len(value) != 1:
            raise ConfigError("a parameterised datasource is one mapping {factory: {param: value}}", path=cfg.path,
                              key=key)
        (name, params), = value.items()
        factory = _function(cfg.modules["datasources"], name, cfg=cfg, file="datasources.py", key=key)
        return _call(factory, params, cfg=cfg, key=f"{key}.{name}")
    factory = _function(cfg.modules["datasources"], value, cfg=cfg, file="datasources.py", key=key)
    return _call(factory, None, cfg=cfg, key=key)


def _datasource(cfg: ExperimentConfig, upstream: Mapping[str, Any]) -> DataSource:
    entries = _entries(cfg)
    sources = {str(alias): _source(cfg, str(alias), value, upstream) for alias, value in entries.items()}
    for alias, source in sources.items():
        if not isinstance(source, DataSource):
            raise ConfigError(f"'{entries[alias]}' did not return a DataSource (decorate it with @data_source)",
                              path=cfg.path, key=f"datasource.{alias}")
    if len(sources) == 1 and not cfg.refs:
        return next(iter(sources.values()))
    return ExperimentInput(**sources)


def _outputs(cfg: ExperimentConfig) -> dict[str, Artifact]:
    raw = cfg.data.get("outputs") or {}
    expect(raw, dict, path=cfg.path, key="outputs")
    out: dict[str, Artifact] = {}
    for alias, spec in raw.items():
        key = f"outputs.{alias}"
        spec = {} if spec is None else expect(spec, dict, path=cfg.path, key=key)
        check_keys(spec, OUTPUT_KEYS, path=cfg.path, where=key)
        funcs = {role: _function(cfg.modules["outputs"], spec[role], cfg=cfg, file="outputs.py", key=f"{key}.{role}")
                 for role in ("loader", "writer") if role in spec}
        file_name = expect(spec.get("file_name", alias), str, path=cfg.path, key=f"{key}.file_name")
        try:
            out[str(alias)] = Artifact(file_name, loader=funcs.get("loader"), writer=funcs.get("writer"))
        except CrystallizeError as exc:
            raise ConfigError(str(exc), path=cfg.path, key=key) from exc
    return out


def _artifact_params(factory: Any) -> list[str]:
    fn = inspect.unwrap(factory)
    return [n for n, p in inspect.signature(fn).parameters.items() if p.annotation in (Artifact, "Artifact")]


def _steps(cfg: ExperimentConfig, outputs: Mapping[str, Artifact]) -> tuple[list[Any], set[str]]:
    raw = cfg.data.get("steps") or []
    expect(raw, list, path=cfg.path, key="steps")
    if not raw:
        raise ConfigError("must list at least one step", path=cfg.path, key="steps")
    steps, used = [], set()
    for i, entry in enumerate(raw):
        key = f"steps[{i}]"
        name, params = (entry, {}) if isinstance(entry, str) else _one(entry, cfg=cfg, key=key)
        factory = _function(cfg.modules["steps"], name, cfg=cfg, file="steps.py", key=key)
        params = dict(params or {})
        for param in _artifact_params(factory):
            alias = params.get(param, param if param in outputs else None)
            if alias is None:
                continue
            if alias not in outputs:
                raise ConfigError(f"output '{alias}' requested by step '{name}' is not in outputs", path=cfg.path,
                                  key=f"{key}.{param}")
            params[param] = outputs[alias]
            used.add(alias)
        steps.append(_call(factory, params, cfg=cfg, key=key))
    return steps, used


def _one(entry: Any, *, cfg: ExperimentConfig, key: str) -> tuple[str, Any]:
    if not isinstance(entry, dict) or len(entry) != 1:
        raise ConfigError("a step is a name or a one-key mapping {name: {param: value}}", path=cfg.path, key=key)
    (name, params), = entry.items()
    return str(name), params


def _treatments(cfg: ExperimentConfig, inactive: set[str]) -> tuple[list[Any], list[str]]:
    from crystallize.treatments import Treatment

    raw = cfg.data.get("treatments") or {}
    expect(raw, dict, path=cfg.path, key="treatments")
    active, disabled = [], []
    for name, payload in raw.items():
        key = f"treatments.{name}"
        payload = {} if payload is None else expect(payload, dict, path=cfg.path, key=key)
        string_keys(payload, path=cfg.path, key=key)
        if str(name) in inactive:
            disabled.append(str(name))
            continue
        try:
            active.append(Treatment(str(name), payload))
        except CrystallizeError as exc:
            raise ConfigError(str(exc), path=cfg.path, key=key) from exc
    return active, disabled


def _verifier(cfg: ExperimentConfig, name: Any, key: str) -> Any:
    from crystallize.stats import BUILTIN_VERIFIERS

    module = cfg.modules["verifiers"]
    if isinstance(name, str) and module is not None and callable(getattr(module, name, None)):
        return getattr(module, name)
    if isinstance(name, str) and name in BUILTIN_VERIFIERS:
        return BUILTIN_VERIFIERS[name]
    local = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_")) if module else []
    raise ConfigError(f"verifier {name!r} not found in verifiers.py or the built-ins "
                      f"({', '.join(local + sorted(BUILTIN_VERIFIERS))})", path=cfg.path, key=key)


def _hypotheses(cfg: ExperimentConfig) -> list[Any]:
    from crystallize.hypothesis import Hypothesis

    raw = cfg.data.get("hypotheses") or []
    expect(raw, list, path=cfg.path, key="hypotheses")
    out = []
    for i, spec in enumerate(raw):
        key = f"hypotheses[{i}]"
        expect(spec, dict, path=cfg.path, key=key)
        check_keys(spec, HYPOTHESIS_KEYS, path=cfg.path, where=key)
        if "verifier" not in spec:
            raise ConfigError("missing 'verifier'", path=cfg.path, key=key)
        factory = _verifier(cfg, spec["verifier"], f"{key}.verifier")
        verifier = _call(factory, spec.get("params"), cfg=cfg, key=f"{key}.params")
        try:
            out.append(Hypothesis(verifier=verifier, metrics=spec.get("metrics"), name=spec.get("name", "hypothesis"),
                                  correction=spec.get("correction")))
        except (TypeError, ValueError, CrystallizeError) as exc:
            raise ConfigError(str(exc), path=cfg.path, key=key) from exc
    return out


def _files(cfg: ExperimentConfig, source: DataSource) -> None:
    raw = cfg.data.get("files")
    if raw is None:
        return
    expect(raw, list, path=cfg.path, key="files")
    paths = []
    for i, item in enumerate(raw):
        p = Path(expect(item, str, path=cfg.path, key=f"files[{i}]"))
        paths.append(p if p.is_absolute() else cfg.path.parent / p)
    source.extra_files = tuple(paths)  # type: ignore[attr-defined]


def _plugins(cfg: ExperimentConfig, store_root: Path | None, settings: Mapping[str, Any]) -> list[Any]:
    from crystallize.plugins.builtin import ArtifactPlugin, SeedPlugin

    defaults = settings.get("store") or {"root": store_root or cfg.path.parent.parent / "data", "versioned": True,
                                         "retention": 3, "durable": False}
    store = parse_store(cfg.data.get("store"), path=cfg.path, default=defaults, allowed=NODE_STORE_KEYS)
    plugins: list[Any] = [ArtifactPlugin(root_dir=store["root"], versioned=store["versioned"],
                                         artifact_retention=store["retention"], durable=store["durable"])]
    execution = _execution_plugin(cfg)
    if execution is not None:
        plugins.append(execution)
    seed = cfg.data.get("seed")
    if seed is not None:
        plugins.append(SeedPlugin(seed=expect(seed, int, path=cfg.path, key="seed")))
    return plugins


def _execution_plugin(cfg: ExperimentConfig) -> Any:
    """``backend``/``workers`` in config.yaml: this experiment's own execution plugin
    (a graph-level backend, from graph.yaml or ``--backend``, takes precedence)."""
    backend, workers = cfg.data.get("backend"), cfg.data.get("workers")
    if backend is None:
        if workers is not None:
            raise ConfigError("'workers' needs a 'backend'", path=cfg.path, key="workers")
        return None
    from crystallize.execution.local import AsyncExecution, ParallelExecution, SerialExecution

    if workers is not None and workers < 1:
        raise ConfigError("must be at least 1", path=cfg.path, key="workers")
    if backend == "serial":
        return SerialExecution()
    if backend in ("thread", "process"):
        return ParallelExecution(max_workers=workers, executor_type=backend)
    if backend == "async":
        return AsyncExecution(max_workers=workers)
    if backend == "ray":
        from crystallize.execution.ray import RayExecution

        return RayExecution()
    raise ConfigError(f"unknown backend {backend!r}; choose serial, thread, process, async or ray", path=cfg.path,
                      key="backend")


def _check_misc(cfg: ExperimentConfig) -> None:
    data = cfg.data
    cli = data.get("cli") or {}
    expect(cli, dict, path=cfg.path, key="cli")
    check_keys(cli, CLI_KEYS, path=cfg.path, where="cli")
    for key, kind in (("group", str), ("priority", int), ("icon", str), ("color", str), ("hidden", bool)):
        if cli.get(key) is not None:
            expect(cli[key], kind, path=cfg.path, key=f"cli.{key}")
    if "replicates" in data:
        expect(data["replicates"], int, path=cfg.path, key="replicates")
    if data.get("strategy") not in (None, "resume", "rerun"):
        raise ConfigError("must be 'resume' or 'rerun'", path=cfg.path, key="strategy")
    for key, kind in (("description", str), ("initial_ctx", dict), ("backend", str), ("workers", int)):
        if data.get(key) is not None:
            expect(data[key], kind, path=cfg.path, key=key)
    for key in ("initial_ctx", "treatments"):
        if isinstance(data.get(key), dict):
            string_keys(data[key], path=cfg.path, key=key)


def build_experiment(cfg: ExperimentConfig, *, store_root: Path | None, upstream: Mapping[str, Any],
                     inactive: set[str], settings: Mapping[str, Any]) -> Experiment:
    """Turn one parsed config into an :class:`Experiment` (``ConfigError`` names file and key)."""
    from crystallize.experiment import Experiment

    _check_misc(cfg)
    cfg.refs = cfg.refs or scan_refs(cfg)
    outputs = _outputs(cfg)
    steps, used = _steps(cfg, outputs)
    unused = sorted(set(outputs) - used)
    if unused:
        raise ConfigError(f"outputs not used by any step: {', '.join(unused)}", path=cfg.path, key="outputs")
    source = _datasource(cfg, upstream)
    _files(cfg, source)
    treatments, disabled = _treatments(cfg, inactive)
    hypotheses, plugins = _hypotheses(cfg), _plugins(cfg, store_root, settings)
    try:
        exp = Experiment(source, steps, plugins, name=cfg.name, description=cfg.data.get("description"),
                         initial_ctx=cfg.data.get("initial_ctx"), treatments=treatments, hypotheses=hypotheses,
                         replicates=cfg.data.get("replicates", 1))
    except ConfigError:
        raise
    except (TypeError, ValueError, CrystallizeError) as exc:
        raise ConfigError(str(exc), path=cfg.path) from exc
    exp.outputs = {}
    for alias, artifact in outputs.items():
        exp._add_output(alias, artifact)
    exp.strategy = cfg.data.get("strategy", "rerun")
    exp.disabled_treatments = tuple(disabled)  # type: ignore[attr-defined]
    exp.config_path = cfg.path  # type: ignore[attr-defined]
    exp.cli = dict(cfg.data.get("cli") or {})  # type: ignore[attr-defined]
    return exp
