"""The step cache (crystallize/execution/step_cache.py): what a key covers and what a hit restores."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from userkit import UserModules

from crystallize import (Artifact, ArtifactPlugin, Experiment, FrozenContext, Pipeline, PipelineStep, SeedPlugin,
                         data_source, pipeline_step, treatment)
from crystallize.execution.step_cache import CACHE_ENV, ReadTracer, cache_root


class Calls:
    """Counts executions; the declared fingerprint keeps the counter out of the code digest."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def hit(self, name: str) -> None:
        self.log.append(name)

    def take(self) -> list[str]:
        taken, self.log[:] = list(self.log), []
        return taken

    def __crystallize_fingerprint__(self) -> bytes:
        return b"calls"


CALLS = Calls()
OUT = Artifact("seen.json")


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    CALLS.take()
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


@data_source
def numbers(ctx, n: int = 3):
    return [1.0, 2.0, 3.0][:n]


@pipeline_step(cacheable=True)
def add_delta(data, ctx, delta: float = 0.0):
    CALLS.hit("add_delta")
    return [x + delta for x in data]


@pipeline_step(cacheable=True)
def scaled(data, ctx):
    CALLS.hit("scaled")
    return [x * ctx.get("scale", 1.0) for x in data]


@pipeline_step(cacheable=True)
def side_effects(data, ctx):
    CALLS.hit("side_effects")
    ctx.record("inside", sum(data), tags={"kind": "sum"})
    ctx.add("doubled", [2 * x for x in data])
    OUT.write(json.dumps(data))
    return data, {"returned": len(data)}


@pipeline_step(cacheable=True)
def passthrough(data, ctx):
    CALLS.hit("passthrough")
    return data


@pipeline_step(cacheable=True)
def reads_handle(data, ctx):
    CALLS.hit("reads_handle")
    ctx.get("handle")
    return data


@pipeline_step()
def total(data, ctx):
    return data, {"total": sum(data)}


@pipeline_step(cacheable=True)
def noisy(data, ctx, rng=None):
    CALLS.hit("noisy")
    return [x + float(rng.random()) + float(np.random.random()) for x in data]


@pipeline_step()
def after_noise(data, ctx, rng=None):
    return data, {"rng": float(rng.random()), "global": float(np.random.random())}


def context(**values: Any) -> FrozenContext:
    """A replicate context as the job runner builds it (values are not copied)."""
    return FrozenContext._trusted({"replicate": 0, "condition": "baseline", "seed_used": 1, **values})


def run(steps: list[PipelineStep], data: Any, ctx: FrozenContext) -> tuple[Any, list[dict[str, Any]]]:
    return Pipeline(steps).run(data, ctx, return_provenance=True)


def experiment(steps: list[PipelineStep], name: str = "cached", **kwargs: Any) -> Experiment:
    kwargs.setdefault("plugins", [SeedPlugin(seed=3)])
    return Experiment(numbers(), steps, name=name, replicates=2, **kwargs)


# ----------------------------------------------------------------------------------- the key

def test_injected_values_after_treatments_are_part_of_the_key():
    """0.27's W-01: the treatment's delta reached the step but not the key."""
    exp = experiment([add_delta(), total()], treatments=[treatment("boost", {"delta": 10.0})])
    first = exp.run()
    assert CALLS.take() == ["add_delta"] * 4
    assert first.metrics.baseline.metrics["total"] == [6.0, 6.0]
    assert first.metrics.treatments["boost"].metrics["total"] == [36.0, 36.0]
    again = exp.run()
    assert CALLS.take() == []
    assert again.metrics.treatments["boost"].metrics["total"] == [36.0, 36.0]


def test_keys_read_with_ctx_get_are_traced():
    assert run([scaled()], [1.0], context(scale=2.0))[0] == [2.0]
    assert run([scaled()], [1.0], context(scale=2.0))[0] == [2.0]
    assert CALLS.take() == ["scaled"]
    assert run([scaled()], [1.0], context(scale=3.0))[0] == [3.0]
    assert run([scaled()], [1.0], context())[0] == [1.0]  # absent is a value too
    assert CALLS.take() == ["scaled", "scaled"]
    assert run([scaled()], [1.0], context(scale=2.0))[0] == [2.0]
    assert CALLS.take() == []


@pytest.mark.parametrize("change", [{"seed_used": 2}, {"data": [1.0, 5.0]}, {"params": {"delta": 1.0}}],
                         ids=["seed", "input-data", "explicit-param"])
def test_seed_input_data_and_parameters_are_part_of_the_key(change):
    run([add_delta()], [1.0, 2.0], context())
    assert CALLS.take() == ["add_delta"]
    values = {k: v for k, v in change.items() if k == "seed_used"}
    out, _ = run([add_delta(**change.get("params", {}))], change.get("data", [1.0, 2.0]), context(**values))
    assert CALLS.take() == ["add_delta"]
    assert out == [x + change.get("params", {}).get("delta", 0.0) for x in change.get("data", [1.0, 2.0])]


def test_a_comment_edit_hits_and_a_body_or_helper_edit_misses(tmp_path):
    modules = UserModules(tmp_path / "code")
    (tmp_path / "code").mkdir()
    source = ("from crystallize import pipeline_step\n\nFACTOR = 2.0\n\n\ndef helper(x):\n    return x * FACTOR\n\n\n"
              "@pipeline_step(cacheable=True)\ndef step(data, ctx):\n    return [helper(x) for x in data]\n")
    try:
        module = modules.write("cached_steps", source)
        assert run([module.step()], [1.0], context())[1][0]["cache_hit"] is False
        module = modules.edit("cached_steps", "def step(data, ctx):\n", "def step(data, ctx):  # note\n")
        assert run([module.step()], [1.0], context())[1][0]["cache_hit"] is True
        module = modules.edit("cached_steps", "return x * FACTOR", "return x * FACTOR + 1")
        out, records = run([module.step()], [1.0], context())
        assert (out, records[0]["cache_hit"]) == ([3.0], False)
        module = modules.edit("cached_steps", "FACTOR = 2.0", "FACTOR = 4.0")
        out, records = run([module.step()], [1.0], context())
        assert (out, records[0]["cache_hit"]) == ([5.0], False)
    finally:
        modules.close()


class Offset(PipelineStep):
    cacheable = True

    def __init__(self, by: float) -> None:
        self.by = by

    @property
    def params(self) -> dict[str, Any]:
        return {}

    def __call__(self, data, ctx):
        CALLS.hit("offset")
        return [x + self.by for x in data]


def test_a_class_step_is_keyed_on_its_attributes():
    assert run([Offset(1.0)], [1.0], context())[0] == [2.0]
    assert run([Offset(2.0)], [1.0], context())[0] == [3.0]
    assert run([Offset(1.0)], [1.0], context())[0] == [2.0]
    assert CALLS.take() == ["offset", "offset"]


# ----------------------------------------------------------------------------------- what a hit restores

def test_a_hit_restores_metrics_context_keys_and_artifacts():
    """0.27's W-03: metrics, ctx.add keys and artifacts of a cached step were lost on a hit."""
    first = context()
    data, records = run([side_effects(), total()], [1.0, 2.0], first)
    assert records[0]["cache_hit"] is False
    second = context()
    again, records = run([side_effects(), total()], [1.0, 2.0], second)
    assert CALLS.take() == ["side_effects"]
    assert (again, records[0]["cache_hit"], records[1]["cache_hit"]) == (data, True, False)
    assert second.metrics.lists() == first.metrics.lists() == {"inside": [3.0], "returned": [2], "total": [3.0]}
    assert second.metrics.get_tags("inside") == ({"kind": "sum"},)
    assert second["doubled"] == [2.0, 4.0]
    assert [(r.name, r.data, r.step_name) for r in second.artifacts] == [("seen.json", b"[1.0, 2.0]", "Side_EffectsStep")]
    assert records[0]["ctx_changes"]["wrote"] == {"doubled": {"before": None, "after": [2.0, 4.0]}}


def test_a_hit_in_a_run_stores_the_same_files_and_results(tmp_path):
    plugins = [ArtifactPlugin(root_dir=tmp_path / "store", versioned=True), SeedPlugin(seed=3)]
    exp = experiment([side_effects(), total()], outputs=[OUT], plugins=plugins)
    first = exp.run()
    again = exp.run()
    assert CALLS.take() == ["side_effects"] * 2
    assert again.metrics.baseline.replicates == first.metrics.baseline.replicates
    assert again.artifacts["seen.json"]["baseline"].read_bytes() == b"[1.0, 2.0, 3.0]"
    assert again.artifacts["seen.json"]["baseline"].parent.parent.parent.parent.name == "v1"


def test_a_hit_leaves_the_random_state_as_the_step_would():
    exp = experiment([noisy(), after_noise()])
    first = exp.run()
    again = exp.run()
    assert CALLS.take() == ["noisy"] * 2
    assert again.metrics.baseline.replicates == first.metrics.baseline.replicates
    assert len({m["rng"][0] for m in first.metrics.baseline.replicates}) == 2  # per-replicate streams


# ----------------------------------------------------------------------------------- running uncached

def test_data_without_a_canonical_encoding_runs_uncached(cache_dir):
    """0.27's W-02: unpicklable data crashed every step; here the cacheable step just runs."""
    lock = threading.Lock()
    for _ in range(2):
        out, records = run([passthrough()], {"lock": lock}, context())
        assert out == {"lock": lock} and records[0]["cache_hit"] is False
    assert CALLS.take() == ["passthrough", "passthrough"]
    assert not list(cache_dir.rglob("*.entry"))
    for _ in range(2):  # a value the step never reads does not matter
        run([passthrough()], [1.0], context(handle=lock))
    assert CALLS.take() == ["passthrough"]


def test_a_read_value_or_outputs_that_cannot_be_stored_run_uncached(cache_dir):
    lock = threading.Lock()
    for _ in range(2):
        assert run([reads_handle()], [1.0], context(handle=lock))[0] == [1.0]
    assert CALLS.take() == ["reads_handle", "reads_handle"]

    @pipeline_step(cacheable=True)
    def returns_lock(data, ctx):
        CALLS.hit("returns_lock")
        return lock

    for _ in range(2):
        assert run([returns_lock()], [1.0], context())[0] is lock
    assert CALLS.take() == ["returns_lock", "returns_lock"]
    assert not list(cache_dir.rglob("*.entry"))


# ----------------------------------------------------------------------------------- the files

def test_the_cache_root_is_the_env_var_else_dot_cache_in_the_working_directory(tmp_path, monkeypatch, cache_dir):
    run([add_delta()], [1.0], context())
    assert cache_root() == cache_dir and any(cache_dir.rglob("*.entry"))
    monkeypatch.delenv(CACHE_ENV)
    assert cache_root() == Path(".cache")
    run([add_delta()], [1.0], context())
    assert CALLS.take() == ["add_delta", "add_delta"]
    assert any((tmp_path / ".cache").rglob("*.entry"))  # conftest runs each test in tmp_path


def test_entries_are_atomic_and_a_damaged_one_is_a_miss(cache_dir):
    run([add_delta()], [1.0], context())
    (entry,) = cache_dir.rglob("*.entry")
    assert not list(cache_dir.rglob("*.tmp"))
    entry.write_bytes(entry.read_bytes()[:-3] + b"xyz")
    out, records = run([add_delta()], [1.0], context())
    assert (out, records[0]["cache_hit"]) == ([1.0], False)
    assert run([add_delta()], [1.0], context())[1][0]["cache_hit"] is True
    assert CALLS.take() == ["add_delta", "add_delta"]


def test_the_read_tracer_records_only_inputs():
    ctx = context(a=1, b=2)
    tracer = ReadTracer(ctx)
    tracer.add("mine", 3)
    assert (tracer["a"], tracer.get("missing"), "b" in tracer, tracer["mine"]) == (1, None, True, 3)
    assert tracer.reads == {"a", "missing", "b"}
    assert ctx["mine"] == 3
    list(tracer)
    assert tracer.reads == {"a", "b", "missing", "replicate", "condition", "seed_used"}


def test_workers_that_get_steps_by_value_still_hit(tmp_path, cache_dir):
    """YAML step modules travel to process workers by value, without a source file: the runner
    computes the code part of the key and sends it along."""
    import cloudpickle

    from crystallize import ParallelExecution

    modules = UserModules(tmp_path / "code")
    (tmp_path / "code").mkdir()
    source = ("from crystallize import pipeline_step\n\n\n@pipeline_step(cacheable=True)\n"
              "def square(data, ctx, delta: float = 0.0):\n    return [x * x + delta for x in data]\n")
    try:
        module = modules.write("by_value", source)
        cloudpickle.register_pickle_by_value(module)
        plugins = [ParallelExecution(executor_type="process", max_workers=2), SeedPlugin(seed=3)]
        exp = experiment([module.square(), total()], plugins=plugins, treatments=[treatment("t", {"delta": 1.0})])
        first, again = exp.run(), exp.run()
    finally:
        cloudpickle.unregister_pickle_by_value(module)
        modules.close()
    hits = [steps[0]["cache_hit"] for reps in again.provenance["ctx_changes"].values() for steps in reps.values()]
    assert hits == [True] * 4
    assert len(list(cache_dir.rglob("*.entry"))) == 4  # two conditions x two replicates
    assert again.metrics.treatments["t"].metrics == first.metrics.treatments["t"].metrics == {"total": [17.0, 17.0]}
