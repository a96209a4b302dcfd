"""The per-run step plan and per-job fast paths behave like the plain step call."""

from __future__ import annotations

import pickle
from typing import Any

import cloudpickle
import pytest

from crystallize import (
    ArtifactPlugin,
    Experiment,
    FrozenContext,
    Pipeline,
    SeedPlugin,
    data_source,
    pipeline_step,
    resource_factory,
    treatment,
)
from crystallize.errors import PipelineExecutionError
from crystallize.execution.job import RunDefinition
from crystallize.plugins import BasePlugin, LoggingPlugin
from crystallize.plugins.base import hook_methods
from crystallize.steps import _direct_call


@data_source
def numbers(ctx: Any) -> list[int]:
    return [1, 2, 3]


@data_source
def sized(ctx: Any, size: int = 2) -> list[int]:
    return list(range(size))


@pipeline_step()
def scale(data: list[int], ctx: Any, *, factor: int = 1) -> list[int]:
    return [x * factor for x in data]


@pipeline_step()
def shift(data: list[int], *, delta: int) -> list[int]:
    return [x + delta for x in data]


@pipeline_step()
def constant(*, value: int = 5) -> int:
    return value


@pipeline_step()
def note(data: Any, ctx: Any) -> tuple[Any, dict[str, Any]]:
    ctx.add("seen_step", ctx["step_name"])
    ctx.record("calls", 1)
    return data, {"total": sum(data)}


@pipeline_step()
async def later(data: list[int]) -> list[int]:
    return data[::-1]


# --- hook selection -------------------------------------------------------------------


class AfterOnly(BasePlugin):
    def after_step(self, experiment: Any, step: Any, data: Any, ctx: Any) -> None:
        pass


class ChattyLogging(LoggingPlugin):
    def after_step(self, experiment: Any, step: Any, data: Any, ctx: Any) -> None:
        pass


def test_hook_methods_keeps_only_hooks_that_act() -> None:
    after, base = AfterOnly(), BasePlugin()
    assert hook_methods([base, after], "after_step") == (after.after_step,)
    assert hook_methods([base, after], "before_step") == ()


def test_hook_methods_sees_a_hook_set_on_the_instance() -> None:
    plugin = BasePlugin()
    plugin.before_step = lambda experiment, step: None  # type: ignore[method-assign]
    assert hook_methods([plugin], "before_step") == (plugin.before_step,)


def test_quiet_logging_plugin_is_skipped_per_step_unless_verbose_or_overridden() -> None:
    assert hook_methods([LoggingPlugin()], "after_step") == ()
    assert len(hook_methods([LoggingPlugin(verbose=True)], "after_step")) == 1
    assert len(hook_methods([ChattyLogging()], "after_step")) == 1


def test_step_hooks_see_the_step_name_in_order(tmp_path: Any) -> None:
    seen: list[str] = []

    class Watch(BasePlugin):
        def before_step(self, experiment: Any, step: Any) -> None:
            seen.append(f"before {step.name}")

        def after_step(self, experiment: Any, step: Any, data: Any, ctx: Any) -> None:
            seen.append(f"after {ctx['step_name']} {data}")

    Experiment(numbers(), [scale(factor=2), note()], [Watch(), ArtifactPlugin(root_dir=tmp_path)], name="hooks").run()
    assert seen == ["before ScaleStep", "after ScaleStep [2, 4, 6]", "before NoteStep", "after NoteStep [2, 4, 6]"]


# --- direct calls ---------------------------------------------------------------------


def test_direct_call_matches_the_step_call() -> None:
    ctx = FrozenContext({"factor": 3, "value": 9})
    for step, data in [(scale(), [1]), (scale(factor=2), [1]), (shift(delta=1), [1]), (constant(), None),
                       (constant(value=1), None)]:
        assert _direct_call(step)(data, ctx) == step(data, ctx)


@pipeline_step()
def ctx_keyword(data: list[int], *, ctx: Any) -> list[int]:
    return data + [ctx["extra"]]


@pipeline_step()
def ctx_first(ctx: Any) -> int:
    return ctx["extra"]


def test_a_plain_data_ctx_step_is_called_without_a_wrapper() -> None:
    step = note()
    assert _direct_call(step) is step.fn  # positional (data, ctx), nothing to inject
    ctx = FrozenContext({"step_name": "NoteStep"})
    assert _direct_call(step)([1, 2], ctx) == ([1, 2], {"total": 3})
    assert ctx["seen_step"] == "NoteStep" and ctx.metrics["calls"] == (1,)
    assert _direct_call(scale()) is not scale().fn  # a parameter to inject: resolved per call


def test_other_ctx_shapes_still_get_the_context() -> None:
    ctx = FrozenContext({"extra": 7})
    assert _direct_call(ctx_keyword())([1], ctx) == [1, 7]
    assert _direct_call(ctx_first())(None, ctx) == 7


def test_context_parameters_are_resolved_per_call() -> None:
    call = _direct_call(scale())
    assert call([1], FrozenContext({"factor": 2})) == [2]
    assert call([1], FrozenContext({"factor": 4})) == [4]


def test_explicit_resource_factory_is_called_each_time() -> None:
    calls: list[int] = []
    factory = resource_factory(lambda: calls.append(1) or 7, key="fast-path-test")
    call = _direct_call(scale(factor=factory))
    assert call([1], FrozenContext({})) == [7] and call([1], FrozenContext({})) == [7]
    assert calls == [1]  # built once per process, looked up per call


def test_missing_context_parameter_names_the_step() -> None:
    with pytest.raises(TypeError, match="Parameter 'delta' in step 'shift'"):
        _direct_call(shift())([1], FrozenContext({}))


def test_pipeline_runs_async_steps_and_names_failures() -> None:
    assert Pipeline([later()]).run([1, 2], FrozenContext({})) == [2, 1]
    with pytest.raises(PipelineExecutionError) as info:
        Pipeline([scale(), shift()]).run([1], FrozenContext({}))
    assert info.value.step_name == "ShiftStep"


# --- provenance and jobs --------------------------------------------------------------


def test_provenance_records_what_each_step_wrote(tmp_path: Any) -> None:
    exp = Experiment(numbers(), [scale(factor=2), note()], [ArtifactPlugin(root_dir=tmp_path)], name="prov")
    exp.run()
    scale_step, note_step = exp.pipeline.steps
    assert exp.pipeline.get_provenance() == [
        {"step": "ScaleStep", "params": {"factor": 2}, "step_hash": scale_step.step_hash, "input_hash": None,
         "output_hash": None, "cache_hit": False, "ctx_changes": {"reads": {}, "wrote": {}, "metrics": {}}},
        {"step": "NoteStep", "params": {}, "step_hash": note_step.step_hash, "input_hash": None,
         "output_hash": None, "cache_hit": False,
         "ctx_changes": {"reads": {}, "wrote": {"seen_step": {"before": None, "after": "NoteStep"}},
                         "metrics": {"calls": {"before": (), "after": (1,)}, "total": {"before": (), "after": (12,)}}}},
    ]
    assert len(scale_step.step_hash) == 64 and scale_step.step_hash != note_step.step_hash


def test_treatments_and_seeds_reach_the_steps(tmp_path: Any) -> None:
    exp = Experiment(sized(size=3), [scale(), note()], [SeedPlugin(seed=0), ArtifactPlugin(root_dir=tmp_path)],
                     name="cond", replicates=2, treatments=[treatment("triple", {"factor": 3})])
    result = exp.run()
    assert result.metrics.baseline.metrics["total"] == [3, 3]
    assert result.metrics.treatments["triple"].metrics["total"] == [9, 9]


def test_initial_context_values_are_copied_per_job_unless_atomic(tmp_path: Any) -> None:
    @pipeline_step()
    def grow(data: Any, ctx: Any, *, bag: list[int], label: str) -> tuple[Any, dict[str, Any]]:
        bag.append(1)
        return data, {"size": len(bag), "label": label}

    exp = Experiment(numbers(), [grow()], [ArtifactPlugin(root_dir=tmp_path)], name="copy", replicates=3,
                     initial_ctx={"bag": [], "label": "x"})
    assert exp.run().metrics.baseline.metrics == {"size": [1, 1, 1], "label": ["x", "x", "x"]}
    assert exp.initial_ctx["bag"] == []


def test_run_definition_pickles_and_rebuilds_its_step_plan() -> None:
    watch = AfterOnly()
    pipeline = Pipeline([scale(factor=2), note()])
    definition = RunDefinition("pick", numbers(), pipeline, {}, {}, plugins=(watch, LoggingPlugin()))
    copy = pickle.loads(cloudpickle.dumps(definition))
    assert [p.step for p in copy.step_plan.planned] == copy.pipeline.steps
    assert copy.step_plan.after == (copy.plugins[0].after_step,)
    ctx, records = FrozenContext({}), []
    assert copy.pipeline._run_plan(copy.step_plan, [1], ctx, None, records) == [2]
    assert [index for index, *_ in records] == [0, 1]  # one compact record per step


def test_provenance_records_of_replicates_are_independent(tmp_path: Any) -> None:
    exp = Experiment(numbers(), [scale(factor=2), note()], [ArtifactPlugin(root_dir=tmp_path)], name="own",
                     replicates=2)
    changes = exp.run().provenance["ctx_changes"]["baseline"]
    changes[0][0]["ctx_changes"]["wrote"]["flag"] = True  # a user annotating replicate 0 only
    assert changes[1][0]["ctx_changes"] == {"reads": {}, "wrote": {}, "metrics": {}}


def _posonly(data, ctx, /, *, bump=0):  # type: ignore[no-untyped-def]
    return data, {"x": data + ctx["base"] + bump}


def test_a_positional_only_ctx_works_on_every_path(tmp_path: Any) -> None:
    plain, cached = pipeline_step()(_posonly), pipeline_step(cacheable=True)(_posonly)
    ctx = FrozenContext({"base": 2, "bump": 1})
    assert plain()(1, ctx) == (1, {"x": 4}) and _direct_call(plain())(1, ctx) == (1, {"x": 4})
    assert _direct_call(plain(bump=5))(1, ctx) == (1, {"x": 8})
    for index, step in enumerate((plain(), cached())):
        exp = Experiment(single(), [step], [ArtifactPlugin(root_dir=tmp_path)], name=f"posonly{index}",
                         initial_ctx={"base": 10})
        assert exp.run().metrics.baseline.metrics == {"x": [11]}


@data_source
def single(ctx: Any) -> int:
    return 1


def test_ctx_changes_read_like_a_dict_and_pickle_as_one(tmp_path: Any) -> None:
    exp = Experiment(numbers(), [scale(factor=2), note()], [ArtifactPlugin(root_dir=tmp_path)], name="lazy",
                     replicates=2)
    changes = exp.run().provenance["ctx_changes"]
    scale_step, note_step = exp.pipeline.steps
    note_record = {"step": "NoteStep", "params": {}, "step_hash": note_step.step_hash, "input_hash": None,
                   "output_hash": None, "cache_hit": False,
                   "ctx_changes": {"reads": {}, "wrote": {"seen_step": {"before": None, "after": "NoteStep"}},
                                   "metrics": {"calls": {"before": (), "after": (1,)},
                                               "total": {"before": (), "after": (12,)}}}}
    scale_record = {"step": "ScaleStep", "params": {"factor": 2}, "step_hash": scale_step.step_hash,
                    "input_hash": None, "output_hash": None, "cache_hit": False,
                    "ctx_changes": {"reads": {}, "wrote": {}, "metrics": {}}}
    expected = {"baseline": {0: [scale_record, note_record], 1: [scale_record, note_record]}}
    assert changes == expected and dict(changes) == expected and list(changes) == ["baseline"]
    assert changes["baseline"] is changes["baseline"]  # built once, then kept
    restored = pickle.loads(pickle.dumps(changes))
    assert type(restored) is dict and restored == expected
    assert repr(changes) == repr(expected)


def test_pipeline_run_returns_step_records_as_dicts() -> None:
    ctx = FrozenContext({"replicate": 0, "condition": "baseline"})
    data, records = Pipeline([scale(factor=3), note()]).run([1], ctx, return_provenance=True)
    assert data == [3] and [r["step"] for r in records] == ["ScaleStep", "NoteStep"]
    assert records[1]["ctx_changes"] == {"reads": {}, "wrote": {"seen_step": {"before": None, "after": "NoteStep"}},
                                         "metrics": {"calls": {"before": (), "after": (1,)},
                                                     "total": {"before": (), "after": (3,)}}}


def test_tags_are_kept_only_for_tagged_values_and_read_back_in_order() -> None:
    from crystallize.context import FrozenMetrics

    metrics = FrozenMetrics()
    metrics.add("loss", 1.0)
    metrics.add("loss", 0.5, {"epoch": 2})
    metrics.add("acc", 0.9)
    assert metrics.get_tags("loss") == ({}, {"epoch": 2}) and metrics.get_tags("acc") == ({},)
    assert metrics.tags() == {"loss": [{}, {"epoch": 2}]}
    metrics.tags()["loss"][1]["epoch"] = 99  # copies: the stored tags do not change
    assert metrics.tags_at("loss", 1) == {"epoch": 2}
    assert FrozenMetrics().tags() is None


@pipeline_step()
def explode(data: Any, ctx: Any) -> Any:
    raise ValueError("boom")


def test_provenance_is_plain_json_ready_data_built_from_the_steps_as_run(tmp_path: Any) -> None:
    import json

    import yaml

    exp = Experiment(numbers(), [scale(factor=2), note()], [ArtifactPlugin(root_dir=tmp_path)], name="plain",
                     replicates=2)
    result = exp.run()
    exp.pipeline.steps.insert(0, shift(delta=1))  # edited after the run: the result still tells what ran
    assert json.loads(json.dumps(result.provenance["ctx_changes"]))["baseline"]["0"][0]["step"] == "ScaleStep"
    assert yaml.safe_load(yaml.safe_dump(result.provenance["ctx_changes"]))["baseline"][1][1]["step"] == "NoteStep"
    assert type(result.provenance["ctx_changes"]) is dict
    assert [r["step"] for r in exp.pipeline.get_provenance()] == ["ScaleStep", "NoteStep"]


def test_a_failed_replicate_keeps_the_records_of_the_steps_before_the_failure(tmp_path: Any) -> None:
    exp = Experiment(numbers(), [scale(factor=2), explode()], [ArtifactPlugin(root_dir=tmp_path)], name="half")
    result = exp.run()
    assert "boom" in str(result.errors["baseline_rep_0"])
    assert [r["step"] for r in result.provenance["ctx_changes"]["baseline"][0]] == ["ScaleStep"]


def test_a_cyclic_metric_value_survives_to_json(tmp_path: Any) -> None:
    import json

    @pipeline_step()
    def loop(data: Any, ctx: Any) -> Any:
        cycle: list[Any] = []
        cycle.append(cycle)
        return data, {"cycle": cycle}

    result = Experiment(numbers(), [loop()], [ArtifactPlugin(root_dir=tmp_path)], name="cyc").run()
    assert json.loads(result.to_json())["metrics"]["baseline"]["cycle"] == [["[[...]]"]]



def test_a_result_pickles_before_its_provenance_was_read(tmp_path: Any) -> None:
    result = Experiment(numbers(), [scale(factor=2)], [ArtifactPlugin(root_dir=tmp_path)], name="pk").run()
    restored = pickle.loads(pickle.dumps(result))  # the deferred step records are built on the way
    assert restored.provenance["ctx_changes"]["baseline"][0][0]["step"] == "ScaleStep"
    assert restored.metrics.baseline.metrics == result.metrics.baseline.metrics
