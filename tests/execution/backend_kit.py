"""Experiments and graphs used by the backend tests, at module level so workers can run them.

The module registers itself with cloudpickle to travel by value: Ray workers do not see
the test folder on their ``sys.path``, just as a real cluster does not see a user's laptop.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cloudpickle

from crystallize import (
    Artifact,
    AsyncExecution,
    DataSource,
    Experiment,
    ExperimentGraph,
    ExperimentInput,
    ParallelExecution,
    Pipeline,
    SeedPlugin,
    SerialExecution,
    data_source,
    pipeline_step,
    treatment,
)

cloudpickle.register_pickle_by_value(sys.modules[__name__])

BACKEND_NAMES = ("serial", "thread", "process", "async", "ray")


def execution_plugin(name: str) -> Any:
    """The 0.27-style execution plugin that selects backend ``name`` for one experiment."""
    if name == "ray":
        from crystallize.execution.ray import RayExecution

        return RayExecution()
    plugins = {"serial": SerialExecution, "thread": lambda: ParallelExecution(max_workers=2),
               "process": lambda: ParallelExecution(max_workers=2, executor_type="process"),
               "async": lambda: AsyncExecution(max_workers=2)}
    return plugins[name]()


@data_source
def numbers(ctx: Any, size: int = 3) -> list[int]:
    """``[10r, 10r+1, ...]`` for replicate r."""
    rep = ctx["replicate"]
    return [rep * 10 + i for i in range(size)]


@pipeline_step()
def noisy_mean(data: list[int], ctx: Any, *, rng: Any, scale: float = 1.0) -> Any:
    """Mean plus Gaussian noise from the replicate's generator; records the seed used."""
    noise = float(rng.normal(0.0, scale, size=4).sum())
    return data, {"mean": sum(data) / len(data) + noise, "seed": ctx["seed_used"]}


@pipeline_step()
def fail_at(data: Any, ctx: Any, *, at_replicate: int = -1, in_condition: str = "baseline") -> Any:
    """Raise ``ValueError`` at one replicate of one condition.

    (Parameters are not named ``replicate``/``condition``: those context keys would be injected.)
    """
    if ctx["replicate"] == at_replicate and ctx["condition"] == in_condition:
        raise ValueError(f"planned failure at replicate {at_replicate}")
    return data


@pipeline_step()
def crash_at(data: Any, ctx: Any, *, at_replicate: int = -1, in_condition: str = "baseline") -> Any:
    """Kill the worker process (no cleanup, no exception) at one replicate of one condition."""
    if ctx["replicate"] == at_replicate and ctx["condition"] == in_condition:
        os._exit(7)
    return data


@pipeline_step()
def touch(data: Any, ctx: Any, *, marker: str = "", lock: Any = None) -> Any:
    """Create file ``marker`` (proves that a job ran); ``lock`` is only carried along."""
    Path(marker).write_text("ran")
    return data, {"ran": 1}


@pipeline_step()
def slow_record(data: Any, ctx: Any) -> Any:
    """Take 0.3 s, then record the replicate number."""
    time.sleep(0.3)
    return data, {"rep": ctx["replicate"]}


@pipeline_step()
def use_model(data: Any, ctx: Any, *, model: Any) -> Any:
    """Record which process ran the replicate and which resource object it got."""
    return data, {"pid": os.getpid(), "model_pid": model["pid"]}


def build_model(ctx: Any) -> dict[str, int]:
    """A 'heavy' resource: appends this process id to ``ctx['build_log']`` on every build."""
    with open(ctx["build_log"], "a") as handle:
        handle.write(f"{os.getpid()}\n")
    return {"pid": os.getpid()}


def seeded_experiment(backend: str, *, name: str = "seeded", replicates: int = 4,
                      steps: Sequence[Any] | None = None, initial_ctx: Mapping[str, Any] | None = None) -> Experiment:
    """numbers -> noisy_mean with a baseline and a ``wide`` treatment, master seed 123."""
    return Experiment(numbers(), Pipeline(list(steps) if steps is not None else [noisy_mean()]),
                      plugins=[SeedPlugin(seed=123), execution_plugin(backend)], name=name,
                      treatments=[treatment("wide", {"scale": 5.0})], replicates=replicates,
                      initial_ctx=dict(initial_ctx or {}))


@pipeline_step()
def emit(data: Any, ctx: Any, out: Artifact, *, rng: Any) -> Any:
    """Write one random number as text and record it."""
    value = round(float(rng.random()), 12)
    out.write(repr(value))
    return data, {"value": value, "seed": ctx["seed_used"]}


@pipeline_step()
def add_noise(data: Mapping[str, Any], ctx: Any, out: Artifact, *, rng: Any) -> Any:
    """Read the upstream number, add noise, write it on."""
    total = sum(float(v) for v in data.values()) + round(float(rng.random()), 12)
    out.write(repr(total))
    return data, {"value": total, "seed": ctx["seed_used"]}


@pipeline_step()
def finish(data: Mapping[str, Any], ctx: Any, *, rng: Any) -> Any:
    """Read the upstream number and add a last draw."""
    return data, {"value": sum(float(v) for v in data.values()) + float(rng.random()), "seed": ctx["seed_used"]}


def text_loader(path: Path) -> str:
    """Artifact loader returning the file's text."""
    return Path(path).read_text()


def chain_graph(store: Path, *, loader: Any = text_loader) -> ExperimentGraph:
    """``first -> second -> third``: each reads the previous number and adds a seeded draw."""
    first_out, second_out = Artifact("first.txt", loader=loader), Artifact("second.txt", loader=loader)
    first = Experiment(numbers(), Pipeline([emit(out=first_out)]), name="first", outputs=[first_out], replicates=3,
                       plugins=[SeedPlugin(seed=11)])
    second = Experiment(ExperimentInput(x=first_out), Pipeline([add_noise(out=second_out)]), name="second",
                        outputs=[second_out], replicates=3, plugins=[SeedPlugin(seed=12)],
                        treatments=[treatment("alt", {"unused": 1})])
    third = Experiment(ExperimentInput(x=second_out), Pipeline([finish()]), name="third", replicates=3,
                       plugins=[SeedPlugin(seed=13)])
    graph = ExperimentGraph(first, second, third)
    graph.store_root = store
    return graph


def graph_values(results: Mapping[str, Any]) -> dict[str, Any]:
    """Every node's metrics by condition, plain values only (for comparing backends)."""
    out = {}
    for name, result in results.items():
        out[name] = {"baseline": dict(result.metrics.baseline.metrics)}
        out[name].update({t: dict(m.metrics) for t, m in result.metrics.treatments.items()})
    return out


class CountedSource(DataSource):
    """A source that appends this process id to ``log`` each time it is unpickled."""

    def __init__(self, log: str) -> None:
        self.log = log

    def fetch(self, ctx: Any) -> list[int]:
        return [ctx["replicate"]]

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        with open(state["log"], "a") as handle:
            handle.write(f"{os.getpid()}\n")


@pipeline_step()
def pid_metric(data: Any, ctx: Any) -> Any:
    """Record the process id that ran the replicate."""
    return data, {"pid": os.getpid()}


@pipeline_step()
def stage_file(data: Any, ctx: Any, *, payload: str = "big") -> Any:
    """Write an artifact through a staging path (the large-file route)."""
    path = ctx.artifacts.path("staged.bin")
    path.write_bytes(f"{payload}-{ctx['replicate']}".encode())
    return data, {"staged": 1}


@pipeline_step()
def stage_nothing(data: Any, ctx: Any) -> Any:
    """Ask for a staging path and never write it (a user bug)."""
    ctx.artifacts.path("forgotten.bin")
    return data, {"staged": 0}


def path_and_text(path: Path) -> tuple[str, str]:
    """Artifact loader returning where the file was read and its text."""
    return str(path), Path(path).read_text()


@pipeline_step()
def where_read(data: Mapping[str, Any], ctx: Any) -> Any:
    """Record the upstream value and whether it came from the worker-local input cache."""
    path, text = data["x"]
    return data, {"value": float(text), "from_cache": int("crystallize-ray-inputs" in path)}
