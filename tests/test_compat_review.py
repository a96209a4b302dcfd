"""Findings of the third 0.27-compatibility review, each pinned by the value a user sees.

Pickling decorated definitions, plain keys in ``Result.to_dict``, 0.27's step-record
shape and tree, the two-key ranking, datasource parameters that never come from the
context, a ``Baseline`` treatment, and files staged with ``ctx.artifacts.path``.
"""

from __future__ import annotations

import importlib
import pickle
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from crystallize import (
    ArtifactPlugin,
    Experiment,
    FrozenContext,
    LoggingPlugin,
    Pipeline,
    SeedPlugin,
    Treatment,
    data_source,
    pipeline_step,
    standalone_context,
)
from crystallize.errors import DuplicateNameError


@data_source
def two_numbers(ctx: FrozenContext) -> list[float]:
    return [1.0, 2.0]


@pipeline_step()
def add_delta(data: list[float], ctx: FrozenContext, delta: float = 0.0) -> list[float]:
    ctx.add("added", True)
    return [x + delta for x in data]


@pipeline_step()
def total(data: list[float], ctx: FrozenContext) -> Any:
    return data, {"total": sum(data)}


def _tree_experiment(**kwargs: Any) -> Experiment:
    return Experiment(datasource=two_numbers(), pipeline=Pipeline([add_delta(), total()]), name="tree",
                      replicates=1, treatments=[Treatment("t", {"delta": 1.0})], **kwargs)


def test_decorated_definitions_pickle_with_the_standard_pickle(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "user_defs.py").write_text(textwrap.dedent("""
        from crystallize import data_source, pipeline_step, treatment

        @pipeline_step()
        def add_delta(data, ctx, delta: float = 0.0):
            return data + delta

        @data_source
        def numbers(ctx, n: int = 3):
            return list(range(n))

        @treatment("louder")
        def louder(ctx):
            ctx.add("delta", 2.0)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    defs = importlib.import_module("user_defs")
    try:
        step = pickle.loads(pickle.dumps(defs.add_delta(delta=7)))
        source = pickle.loads(pickle.dumps(defs.numbers(n=2)))
        chosen = pickle.loads(pickle.dumps(defs.louder()))
        assert (type(step).__name__, step.params, step(1, standalone_context())) == ("Add_DeltaStep", {"delta": 7}, 8)
        assert source.fetch(standalone_context()) == [0, 1]
        ctx = standalone_context()
        chosen.apply(ctx)
        assert (chosen.name, ctx["delta"]) == ("louder", 2.0)
    finally:
        sys.modules.pop("user_defs", None)


def test_to_dict_keys_treatments_by_plain_name() -> None:
    result = _tree_experiment().run()
    assert list(result.metrics.treatments) == ["t (v0)"]  # the suffix lives only here (spec §11)
    assert result.to_dict()["metrics"]["treatments"] == {"t": {"total": [5.0]}}


def test_step_records_have_027_shape() -> None:
    result = _tree_experiment().run()
    first, second = result.provenance["ctx_changes"]["t"][0]
    assert set(first) == {"step", "params", "step_hash", "input_hash", "output_hash", "cache_hit", "ctx_changes"}
    assert first["ctx_changes"] == {"reads": {}, "wrote": {"added": {"before": None, "after": True}}, "metrics": {}}
    assert second["ctx_changes"]["metrics"] == {"total": {"before": (), "after": (5.0,)}}
    assert first["step_hash"] == add_delta().step_hash and (first["input_hash"], first["output_hash"]) == (None, None)


def test_metric_before_and_after_accumulate_over_steps() -> None:
    @pipeline_step()
    def count(data: Any, ctx: FrozenContext) -> Any:
        return data, {"n": 1}

    _, records = Pipeline([count(), count()]).run(0, standalone_context(), return_provenance=True)
    assert [r["ctx_changes"]["metrics"]["n"] for r in records] == [
        {"before": (), "after": (1,)}, {"before": (1,), "after": (1, 1)}]


def test_verbose_pipeline_records_the_context_values_each_step_read() -> None:
    @pipeline_step()
    def reads_by_hand(data: Any, ctx: FrozenContext) -> Any:
        return [x * ctx["factor"] for x in data]

    ctx = standalone_context({"delta": 1.0, "factor": 3})
    data, records = Pipeline([add_delta(), reads_by_hand()]).run([1.0], ctx, verbose=True, return_provenance=True)
    assert data == [6.0]
    assert [r["ctx_changes"]["reads"] for r in records] == [{"delta": 1.0}, {"factor": 3}]
    _, quiet = Pipeline([add_delta()]).run([1.0], standalone_context({"delta": 1.0}), return_provenance=True)
    assert quiet[0]["ctx_changes"]["reads"] == {}


def test_print_tree_groups_reads_writes_and_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    _tree_experiment().run().print_tree("treatment > replicate > step > action")
    printed = capsys.readouterr().out
    lines = [line.strip("│├└─ ") for line in printed.splitlines()]
    assert lines[:2] == ["Experiment Summary", "Treatment 'baseline'"]
    t_part = lines[lines.index("Treatment 't'"):]
    assert t_part == ["Treatment 't'", "Replicate 0", "Step Add_DeltaStep", "Writes", "added: None -> True",
                      "Step TotalStep", "Write Metrics", "total: () -> (5.0,)"]


def test_ranking_is_the_two_key_dict_and_answers_ordered() -> None:
    from crystallize.hypothesis_result import HypothesisResult, Ranking

    ranking = Ranking(best="b", ranked=[("b", 0.01), ("a", 0.5)])
    assert ranking == {"best": "b", "ranked": [("b", 0.01), ("a", 0.5)]} and sorted(ranking) == ["best", "ranked"]
    assert ranking["ordered"] == ranking.get("ordered") == ["b", "a"]
    with pytest.raises(KeyError):
        ranking["nope"]
    back = HypothesisResult.from_dict(HypothesisResult("h", {}, ranking).to_dict())
    assert back.ranking == ranking and back.ranking["ordered"] == ["b", "a"]


def test_datasource_parameters_never_come_from_the_context() -> None:
    @data_source
    def sized(ctx: FrozenContext, size: int = 4) -> list[int]:
        return list(range(size))

    @pipeline_step()
    def length(data: list[int], ctx: FrozenContext) -> Any:
        return data, {"n": len(data)}

    result = Experiment(datasource=sized(), pipeline=Pipeline([length()]), name="ds_params", replicates=1,
                        treatments=[Treatment("bigger", {"size": 10})]).run()
    assert result.metrics.baseline.metrics == {"n": [4]}
    assert result.metrics.treatments["bigger"].metrics == {"n": [4]}
    from_initial = Experiment(datasource=sized(size=2), pipeline=Pipeline([length()]), name="ds_initial",
                              replicates=1, initial_ctx={"size": 7}).run()
    assert from_initial.metrics.baseline.metrics == {"n": [2]}


@pytest.mark.parametrize("name", ["Baseline", "BASELINE"])
def test_a_treatment_named_like_the_baseline_up_to_case_is_rejected(name: str) -> None:
    assert Experiment(datasource=two_numbers(), pipeline=Pipeline([total()]), name="case",
                      treatments=[Treatment("baseline", {"delta": 1.0})]).treatments[0].name == "baseline"
    with pytest.raises(DuplicateNameError, match=f"treatment '{name}' would share a folder with the baseline"):
        Experiment(datasource=two_numbers(), pipeline=Pipeline([total()]), name="case",
                   treatments=[Treatment(name, {"delta": 1.0})])


# --- files staged with ctx.artifacts.path ---------------------------------------------------


@pipeline_step()
def stage_two(data: Any, ctx: FrozenContext) -> Any:
    ctx.artifacts.path("a.bin").write_bytes(b"a" * 10)
    target = ctx.artifacts.path("b.bin")
    if ctx["replicate"] != 1:  # replicate 1 forgets to write its second file
        target.write_bytes(b"b" * 10)
    if ctx["replicate"] == 2:
        raise ValueError("boom after staging")
    return data, {"ok": 1}


def _staging_run(tmp_path: Path, **kwargs: Any) -> Any:
    exp = Experiment(datasource=two_numbers(), pipeline=Pipeline([stage_two()]), name="stage", replicates=4,
                     plugins=[ArtifactPlugin(root_dir=tmp_path / "data"), SeedPlugin(seed=3), *kwargs.pop("plugins", [])])
    return exp.run()


def test_staged_files_move_in_and_a_missing_one_fails_only_its_replicate(tmp_path: Path) -> None:
    result = _staging_run(tmp_path)
    assert result.metrics.baseline.metrics == {"ok": [1, 1]}
    assert sorted(result.errors) == ["baseline_rep_1", "baseline_rep_2"]
    assert "asked for ctx.artifacts.path('b.bin') but wrote no file there" in str(result.errors["baseline_rep_1"])
    v0 = tmp_path / "data" / "stage" / "v0"
    stored = sorted(str(p.relative_to(v0)) for p in v0.rglob("*.bin"))
    assert stored == [f"replicate_{r}/baseline/Stage_TwoStep/{f}" for r in (0, 3) for f in ("a.bin", "b.bin")]
    assert (v0 / "replicate_3" / "baseline" / "Stage_TwoStep" / "b.bin").read_bytes() == b"b" * 10
    staging = tmp_path / "data" / ".staging"
    assert staging.is_dir() and list(staging.iterdir()) == []  # staged next to the store, nothing left behind


def test_staged_files_in_a_process_pool(tmp_path: Path) -> None:
    from crystallize import ParallelExecution

    result = _staging_run(tmp_path, plugins=[ParallelExecution(max_workers=2, executor_type="process")])
    assert (result.metrics.baseline.metrics, sorted(result.errors)) == ({"ok": [1, 1]}, ["baseline_rep_1",
                                                                                      "baseline_rep_2"])
    assert list((tmp_path / "data" / ".staging").iterdir()) == []


def test_logging_plugin_verbose_records_reads_in_a_run() -> None:
    result = _tree_experiment(plugins=[LoggingPlugin(verbose=True)]).run()
    treated = result.provenance["ctx_changes"]["t"][0]
    assert [r["ctx_changes"]["reads"] for r in treated] == [{"delta": 1.0}, {}]
    baseline = result.provenance["ctx_changes"]["baseline"][0]
    assert baseline[0]["ctx_changes"]["reads"] == {}  # the default was used: nothing read (examples §14e)
    quiet = _tree_experiment().run().provenance["ctx_changes"]["t"][0]
    assert quiet[0]["ctx_changes"]["reads"] == {}


def test_logging_plugin_explicit_level_applies_after_handlers_exist() -> None:
    import logging

    log = logging.getLogger("crystallize")
    saved = (log.level, list(log.handlers))
    log.addHandler(logging.NullHandler())
    try:
        log.setLevel(logging.WARNING)
        _tree_experiment().run()
        assert log.level == logging.WARNING  # the default leaves a configured logger alone
        _tree_experiment(plugins=[LoggingPlugin(log_level="DEBUG")]).run()
        assert log.level == logging.DEBUG
    finally:
        log.setLevel(saved[0])
        log.handlers[:] = saved[1]


def test_artifact_fetch_outside_a_run_reads_the_newest_stored_run(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    from crystallize import Artifact
    from crystallize.errors import ArtifactNotFoundError

    model = Artifact("model.txt", loader=lambda path: Path(path).read_text())

    @pipeline_step()
    def save_model(data: Any, ctx: FrozenContext, gain: float = 1.0) -> Any:
        model.write(f"gain={gain} rep={ctx['replicate']}")
        return data

    trainer = Experiment(datasource=two_numbers(), pipeline=Pipeline([save_model()]), name="trainer", replicates=2,
                         treatments=[Treatment("high", {"gain": 3.0})], outputs=[model],
                         plugins=[ArtifactPlugin(root_dir=tmp_path / "data", versioned=True)])
    with pytest.raises(ArtifactNotFoundError, match="no upstream run of 'trainer'"):
        model.fetch(FrozenContext({"replicate": 0, "condition": "baseline"}))
    trainer.run()
    assert model.fetch(FrozenContext({"replicate": 1, "condition": "high"})) == "gain=3.0 rep=1"
    assert model.fetch(FrozenContext({"replicate": 3, "condition": "baseline"})) == "gain=1.0 rep=1"  # 3 % 2
    with caplog.at_level("WARNING", logger="crystallize"):
        assert model.fetch(FrozenContext({"replicate": 0, "condition": "other"})) == "gain=1.0 rep=0"
    assert any("falling back to 'baseline'" in r.getMessage() and "'other'" in r.getMessage() for r in caplog.records)


def _seed_random(seed: int) -> None:
    import random

    random.seed(seed)


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_seeding_shared_random_state_in_threads_is_warned_about(executor: str,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    from crystallize import ParallelExecution

    exp = Experiment(datasource=two_numbers(), pipeline=Pipeline([total()]), name="par", replicates=4,
                     plugins=[SeedPlugin(seed=11, seed_fn=_seed_random),
                              ParallelExecution(executor_type=executor, max_workers=2)])
    with caplog.at_level("WARNING"):
        exp.run()
    warned = [r for r in caplog.records if "not reproducible because 'random' state is shared" in r.getMessage()]
    assert len(warned) == (1 if executor == "thread" else 0)


def test_missing_injected_parameter_names_the_function() -> None:
    @pipeline_step()
    def needs_x(data: Any, ctx: FrozenContext, x: int) -> Any:
        return data

    with pytest.raises(TypeError, match="Dependency Injection Error: Parameter 'x' in step 'needs_x' is not found "
                                        "in the Context and has no default value."):
        needs_x()(1, standalone_context())


def test_small_027_names() -> None:
    from crystallize.utils.cache import CACHE_DIR

    assert Experiment.strategy == "rerun" and Experiment.VALID_EXECUTOR_TYPES == {"thread", "process"}
    assert isinstance(CACHE_DIR, Path)
    exp = _tree_experiment()
    exp.strategy = "resume"
    assert Experiment.strategy == "rerun" and exp.strategy == "resume"


def test_provenance_has_027s_four_keys_and_run_info_the_rest() -> None:
    result = _tree_experiment(plugins=[SeedPlugin(seed=5)]).run()
    assert sorted(result.provenance) == ["ctx_changes", "pipeline_signature", "replicates", "seeds"]
    assert result.run_info == {"version": 0, "conditions": {"baseline": 0, "t": 0}, "blocked": [], "master_seed": 5}
    assert pickle.loads(pickle.dumps(result)).run_info == result.run_info


def test_one_artifact_object_in_the_outputs_of_two_experiments() -> None:
    from crystallize import Artifact, ExperimentGraph

    shared = Artifact("model.txt")

    @pipeline_step()
    def save(data: Any, ctx: FrozenContext) -> Any:
        shared.write(f"from {ctx['condition']}")
        return data

    def build(name: str) -> Experiment:
        return Experiment(datasource=two_numbers(), pipeline=Pipeline([save()]), name=name, outputs=[shared])

    trainer, again = build("trainer"), build("again")  # built one after another: allowed, as in 0.27
    assert shared.producer_name == "again"
    trainer.run()  # running claims the output back
    assert shared.producer_name == "trainer"
    assert shared.fetch(FrozenContext({"replicate": 0, "condition": "baseline"})) == b"from baseline"
    with pytest.raises(DuplicateNameError, match="produced by multiple experiments: 'trainer' and 'again'"):
        ExperimentGraph(trainer, again)
    graph = ExperimentGraph()
    graph.add_experiment(again)
    with pytest.raises(DuplicateNameError, match="'again' and 'trainer'"):
        graph.add_experiment(trainer)


def test_a_graph_keeps_the_producer_it_was_built_with() -> None:
    from crystallize import Artifact, ExperimentGraph

    shared = Artifact("a.txt")

    @pipeline_step()
    def produce(data: Any, ctx: FrozenContext) -> Any:
        shared.write("made")
        return data

    @pipeline_step()
    def consume(data: bytes, ctx: FrozenContext) -> Any:
        return data, {"n": len(data)}

    producer = Experiment(datasource=two_numbers(), pipeline=Pipeline([produce()]), name="p", outputs=[shared])
    consumer = Experiment(datasource=shared, pipeline=Pipeline([consume()]), name="c")
    graph = ExperimentGraph.from_experiments([producer, consumer])
    graph.run(strategy="resume")
    Experiment(datasource=two_numbers(), pipeline=Pipeline([produce()]), name="p2", outputs=[shared]).run()
    assert {name: node.state.name for name, node in graph.status().items()} == {"p": "FRESH", "c": "FRESH"}
    results = graph.run(strategy="rerun")
    assert results["c"].errors == {} and results["c"].metrics.baseline.metrics == {"n": [4]}


def test_optimize_with_several_objective_metrics_tells_each_mean() -> None:
    from crystallize.optimizers import BaseOptimizer, Objective

    @pipeline_step()
    def score(data: list[float], ctx: FrozenContext, bias: float = 0.0) -> Any:
        return data, {"loss": abs(bias - 1.0), "size": len(data) + bias}

    told: list[dict[str, float]] = []

    class Sweep(BaseOptimizer):
        def __init__(self) -> None:
            super().__init__(Objective(metric=["loss", "size"], direction=["minimize", "maximize"]))
            self.biases = [0.0, 1.0]

        def ask(self) -> list[Treatment]:
            return [Treatment(f"bias_{self.biases[len(told)]}", {"bias": self.biases[len(told)]})]

        def tell(self, objective_values: dict[str, float]) -> None:
            told.append(objective_values)

        def get_best_treatment(self) -> Treatment:
            return Treatment("best", {"bias": self.biases[min(range(2), key=lambda i: told[i]["loss"])]})

    experiment = Experiment(datasource=two_numbers(), pipeline=Pipeline([score()]), name="multi_objective")
    best = experiment.optimize(Sweep(), num_trials=2, replicates_per_trial=2)
    assert told == [{"loss": 1.0, "size": 2.0}, {"loss": 0.0, "size": 3.0}]
    assert best.apply_map == {"bias": 1.0}
