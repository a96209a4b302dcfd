"""The usage patterns of examples-0.27.md, section by section, with their observed values.

Where the spec fixes a 0.27 weakness (W-xx) the test asserts the fixed behaviour and
says so in its docstring.
"""

from __future__ import annotations

import asyncio
import hashlib
import pickle
import json
import logging
import random
from pathlib import Path
from typing import Any

import pytest
from foundation_kit import files_under, read_json, scores, shift, summarise

from crystallize import (
    Artifact,
    ArtifactPlugin,
    AsyncExecution,
    BasePlugin,
    Experiment,
    ExperimentGraph,
    ExperimentInput,
    FrozenContext,
    Hypothesis,
    LoggingPlugin,
    ParallelExecution,
    Pipeline,
    PipelineStep,
    SeedPlugin,
    Treatment,
    data_source,
    get_datasource,
    hypothesis,
    list_datasources,
    pipeline_step,
    quick_experiment,
    resource_factory,
    standalone_context,
    treatment,
    verifier,
)
from crystallize.errors import (
    ContextMutationError,
    CycleError,
    DefinitionError,
    MissingMetricError,
    PipelineExecutionError,
)
from crystallize.experiments.optimizers import BaseOptimizer, Objective


def quickstart(**kw: Any) -> Experiment:
    return Experiment(datasource=scores(), pipeline=Pipeline([shift(), summarise()]), name="quickstart",
                      replicates=3, **kw)


# --- section 1: the minimal experiment ---------------------------------------------------

class TestMinimalExperiment:
    def test_metrics_errors_and_provenance(self) -> None:
        res = quickstart().run()
        assert res.metrics.baseline.metrics == {"mean": [1.5, 2.5, 3.5]}
        assert dict(res.metrics.treatments) == {} and res.errors == {}
        assert {"ctx_changes", "pipeline_signature", "replicates", "seeds"} <= set(res.provenance)
        assert res.provenance["replicates"] == 3

    def test_store_layout_and_contents(self, tmp_path: Path) -> None:
        exp = quickstart()
        exp.run()
        v0 = tmp_path / "data" / "quickstart" / "v0"
        assert files_under(v0) == ["_manifest.json", "baseline/.crystallize_complete", "baseline/results.json",
                                   "metadata.json", "run.json"]  # no journal: the run ended before its first batch
        assert read_json(v0 / "metadata.json") == {"replicates": 3, "id": exp.id, "name": "quickstart"}
        assert read_json(v0 / "_manifest.json") == {}
        assert read_json(v0 / "baseline" / "results.json") == {"metrics": {"mean": [1.5, 2.5, 3.5]}}
        assert (v0 / "baseline" / ".crystallize_complete").read_bytes() == b""

    def test_default_plugins_and_step_class_names(self) -> None:
        exp = quickstart()
        kinds = {type(p).__name__ for p in exp.plugins}
        assert kinds == {"ArtifactPlugin", "SeedPlugin", "LoggingPlugin"}
        assert exp.get_plugin(ArtifactPlugin).root_dir == Path("data")
        assert exp.get_plugin(ArtifactPlugin).versioned is False
        assert [type(s).__name__ for s in exp.pipeline.steps] == ["ShiftStep", "SummariseStep"]

    def test_unnamed_experiment_folder_is_the_stable_id(self, tmp_path: Path) -> None:
        exp = Experiment(datasource=scores(), pipeline=Pipeline([shift(), summarise()]))
        expected = hashlib.sha256(pickle.dumps(exp.pipeline.signature())).hexdigest()
        assert exp.pipeline.signature() == "ShiftStep{}|SummariseStep{}"
        assert exp.id == expected and len(exp.id) == 64
        exp.run()
        assert (tmp_path / "data" / expected / "v0" / "baseline" / ".crystallize_complete").exists()

    def test_logs_start_and_summary(self, caplog: pytest.LogCaptureFixture) -> None:
        with caplog.at_level(logging.INFO, logger="crystallize"):
            quickstart().run()
        text = caplog.text
        assert "3 replicates, 0 treatments, 0 hypotheses" in text
        assert "0 errors" in text

    def test_builder_gives_the_same_result(self) -> None:
        exp = (Experiment.builder("quickstart").datasource(scores()).add_step(shift()).add_step(summarise())
               .replicates(3).build())
        assert exp.run().metrics.baseline.metrics == {"mean": [1.5, 2.5, 3.5]}
        exp2 = Experiment.builder("q2").datasource(scores()).pipeline(Pipeline([shift(), summarise()])).build()
        assert exp2.run().metrics.baseline.metrics == {"mean": [1.5]}

    def test_builder_without_datasource(self) -> None:
        with pytest.raises(ValueError, match="datasource must be provided"):
            Experiment.builder("x").add_step(shift()).build()


# --- section 2: treatments ------------------------------------------------------------------

plus_ten = treatment("plus_ten", {"offset": 10.0})


@treatment("scaled_offset")
def scaled_offset(ctx: FrozenContext) -> None:
    ctx.add("offset", 2.5 * (ctx.get("replicate") + 1))


def treatments_demo() -> Experiment:
    return (Experiment.builder("treatments_demo").datasource(scores()).add_step(shift()).add_step(summarise())
            .treatments([plus_ten, scaled_offset()]).replicates(3).build())


class TestTreatments:
    def test_mapping_and_decorated_forms(self) -> None:
        r3 = treatments_demo().run()
        assert list(r3.metrics.treatments) == ["plus_ten (v0)", "scaled_offset (v0)"]
        assert r3.metrics.treatments["plus_ten"].metrics["mean"] == [11.5, 12.5, 13.5]
        assert r3.metrics.treatments["scaled_offset"].metrics["mean"] == [4.0, 7.5, 11.0]

    def test_treatment_helper_shapes(self) -> None:
        assert isinstance(plus_ten, Treatment) and plus_ten.apply_map == {"offset": 10.0}
        made = scaled_offset()
        assert isinstance(made, Treatment) and made.name == "scaled_offset" and made.apply_map == {}
        assert repr(plus_ten) == "Treatment(name='plus_ten')"

    def test_calling_a_treatment_returns_itself(self) -> None:
        """Spec section 2 (0.27 raised TypeError): ``.treatments([boost()])`` works."""
        boost = treatment("boost", {"offset": 1.0})
        assert boost() is boost
        exp = (Experiment.builder("callable").datasource(scores()).add_step(shift()).add_step(summarise())
               .treatments([boost()]).build())
        assert exp.run().metrics.treatments["boost"].metrics["mean"] == [2.5]

    def test_versioned_and_plain_keys_both_work(self) -> None:
        """Section 2b fixed: ``"plus_ten (v0)"`` works and the plain name returns the same object."""
        r3 = treatments_demo().run()
        tm = r3.metrics.treatments
        assert tm["plus_ten (v0)"] is tm["plus_ten"]
        assert tm.get("plus_ten (v0)") is tm.get("plus_ten")
        assert "plus_ten" in tm and "plus_ten (v0)" in tm and "plus_ten (v1)" not in tm
        with pytest.raises(KeyError, match=r"plus_ten \(v1\)"):
            tm["plus_ten (v1)"]

    def test_versioned_key_follows_the_version_written(self, versioned: Any) -> None:
        exp = (Experiment.builder("vk").datasource(scores()).add_step(shift()).add_step(summarise())
               .treatments([plus_ten]).plugins([versioned()]).build())
        exp.run()
        second = exp.run()
        assert list(second.metrics.treatments) == ["plus_ten (v1)"]
        assert second.metrics.treatments["plus_ten"].metrics["mean"] == [11.5]

    def test_per_run_override_and_baseline_treatment(self, tmp_path: Path) -> None:
        exp3 = treatments_demo()
        exp3.run()
        r3b = exp3.run(treatments=[Treatment("baseline", {"offset": -1.0}), Treatment("zero", {})], replicates=2)
        assert r3b.metrics.baseline.metrics["mean"] == [0.5, 1.5]
        assert list(r3b.metrics.treatments) == ["zero (v0)"]
        assert [t.name for t in exp3.treatments] == ["plus_ten", "scaled_offset"]
        v0 = tmp_path / "data" / "treatments_demo" / "v0"
        assert read_json(v0 / "baseline" / "results.json") == {"metrics": {"mean": [0.5, 1.5]}}
        assert read_json(v0 / "metadata.json")["replicates"] == 2
        # W-30 fixed: the unversioned v0 no longer keeps conditions of the previous treatment list
        assert sorted(p.name for p in v0.iterdir() if p.is_dir()) == ["baseline", "zero"]

    def test_baseline_runs_without_treatments(self) -> None:
        """Spec section 2: the baseline always runs, even with no treatments."""
        res = quickstart().run(treatments=[])
        assert res.metrics.baseline.metrics["mean"] == [1.5, 2.5, 3.5]


# --- section 3: context, injection and metrics inside steps -----------------------------------

@pipeline_step()
def tag_and_scale(data: list[float], ctx: FrozenContext, *, factor: float = 1.0, client: Any = None) -> list[float]:
    ctx.add("scaled", True)
    ctx.record("n_items", len(data), tags={"stage": "scale"})
    return [x * factor for x in data]


@pipeline_step()
def needs_key(data: Any, ctx: FrozenContext, *, required_key: float) -> Any:
    return data, {"got": required_key}


@pipeline_step()
def overwrite_offset(data: Any, ctx: FrozenContext) -> Any:
    ctx.add("offset", 1.0)
    return data


class TestContextAndInjection:
    def test_standalone_context_and_tags(self) -> None:
        ctx = standalone_context({"factor": 3.0, "client": resource_factory(lambda ctx: object(), key="client")})
        assert tag_and_scale()([1, 2], ctx) == [3.0, 6.0]
        assert ctx["scaled"] is True
        assert ctx.metrics["n_items"] == (2,)
        assert ctx.metrics.get_tags("n_items") == ({"stage": "scale"},)

    def test_explicit_parameter_beats_context(self) -> None:
        ctx = standalone_context({"factor": 3.0})
        assert tag_and_scale(factor=2.0)([1, 2], ctx) == [2.0, 4.0]

    def test_resource_factory_is_built_once_and_any_argument_name_works(self) -> None:
        """W-12 fixed: a factory whose argument is not called ``ctx`` still works."""
        calls: list[int] = []
        factory = resource_factory(lambda c: calls.append(1) or {"conn": len(calls)}, key="test-once")
        ctx = standalone_context({"client": factory})

        @pipeline_step()
        def use(data: Any, ctx: FrozenContext, *, client: Any) -> Any:
            return client["conn"]

        assert use()(None, ctx) == 1 and use()(None, ctx) == 1 and calls == [1]

    def test_context_supplied_parameter_needs_no_default(self) -> None:
        """W-11 fixed: the factory accepts it; a missing value fails only when the step runs."""
        step = needs_key()
        assert step(None, standalone_context({"required_key": 4.0})) == (None, {"got": 4.0})
        with pytest.raises(TypeError, match="Parameter 'required_key' in step 'needs_key' is not found"):
            step(None, standalone_context())

    def test_unknown_factory_parameter(self) -> None:
        with pytest.raises(TypeError, match="Unknown parameters: nope"):
            tag_and_scale(nope=1)

    def test_context_is_add_only(self) -> None:
        ctx = standalone_context({"k": 1})
        with pytest.raises(ContextMutationError, match="Cannot mutate existing key: 'k'"):
            ctx.add("k", 2)
        with pytest.raises(ContextMutationError, match="Cannot mutate existing key: 'k'"):
            ctx["k"] = 2

    def test_mutation_inside_a_run_is_a_replicate_error(self) -> None:
        exp = Experiment(datasource=scores(), pipeline=Pipeline([overwrite_offset(), summarise()]), name="mut",
                         replicates=2, initial_ctx={"offset": 0.0})
        res = exp.run()
        assert sorted(res.errors) == ["baseline_rep_0", "baseline_rep_1"]
        err = res.errors["baseline_rep_0"]
        assert "Cannot mutate existing key: 'offset'" in str(err)
        assert "Traceback" in err.traceback_str
        assert res.metrics.baseline.metrics == {}

    def test_tags_survive_in_the_run_record(self, tmp_path: Path) -> None:
        """W-19 fixed: tags are kept per replicate in run.json."""
        exp = Experiment(datasource=scores(), pipeline=Pipeline([tag_and_scale(), summarise()]), name="tags")
        exp.run()
        record = read_json(tmp_path / "data" / "tags" / "v0" / "run.json")
        assert record["conditions"]["baseline"]["tags"] == [{"n_items": [{"stage": "scale"}]}]


# --- section 4: hypotheses and verifiers -------------------------------------------------------

@pipeline_step()
def summarise_max(data: list[float], ctx: FrozenContext) -> Any:
    ctx.record("max_seen", max(data))
    return data, {"mean": sum(data) / len(data)}


@verifier
def mean_difference(baseline: Any, treatment: Any, *, threshold: float = 1.0) -> dict[str, Any]:
    b = sum(baseline["mean"]) / len(baseline["mean"])
    t = sum(treatment["mean"]) / len(treatment["mean"])
    gap = t - b
    return {"gap": gap, "significant": gap > threshold, "p_value": 0.01 if gap > threshold else 0.5}


@hypothesis(verifier=mean_difference(threshold=5.0), metrics="mean")
def largest_gap_first(result: Any) -> float:
    return -result["gap"]


@verifier
def exploding(baseline: Any, treatment: Any) -> dict[str, Any]:
    raise ZeroDivisionError("verifier blew up")


def hyp_demo(hypotheses: list[Any]) -> Experiment:
    return Experiment(
        datasource=scores(), pipeline=Pipeline([shift(), summarise_max()]), name="hyp_demo", replicates=3,
        treatments=[Treatment("small", {"offset": 2.0}), Treatment("large", {"offset": 8.0})],
        hypotheses=hypotheses)


class TestHypotheses:
    def test_results_rankings_and_dataframe(self) -> None:
        r = hyp_demo([largest_gap_first, Hypothesis(verifier=mean_difference(), metrics=["mean", "max_seen"],
                                                    name="default_ranker")]).run()
        h = r.get_hypothesis("largest_gap_first")
        assert h.results == {"small": {"gap": 2.0, "significant": False, "p_value": 0.5},
                             "large": {"gap": 8.0, "significant": True, "p_value": 0.01}}
        assert h.ranking["best"] == "large" and h.ranking["ranked"] == [("large", -8.0), ("small", -2.0)]
        ranking = r.get_hypothesis("default_ranker").ranking
        assert ranking["best"] == "small" and ranking["ranked"] == [("small", 0.01), ("large", 0.01)]
        assert list(r.metrics.to_df().columns) == ["condition", "hypothesis", "gap", "significant", "p_value"]
        assert r.get_hypothesis("nope") is None

    def test_summary_log_names_the_best(self, caplog: pytest.LogCaptureFixture) -> None:
        with caplog.at_level(logging.INFO, logger="crystallize"):
            hyp_demo([largest_gap_first]).run()
        assert "Best largest_gap_first: 'large'" in caplog.text

    def test_hypothesis_name_defaults(self) -> None:
        assert Hypothesis(verifier=mean_difference()).name == "hypothesis"
        assert Hypothesis(verifier=mean_difference(), ranker=largest_gap_first.ranker).name == "largest_gap_first"

    def test_hypotheses_without_treatments(self) -> None:
        with pytest.raises(ValueError, match="Cannot verify hypotheses without treatments"):
            quickstart().run(hypotheses=[largest_gap_first])

    def test_missing_metric_is_raised_after_results_are_stored(self, tmp_path: Path) -> None:
        """0.27 wrote nothing; now the run is stored first, then run() raises naming the metric."""
        exp = hyp_demo([Hypothesis(verifier=mean_difference(), metrics="nope")])
        with pytest.raises(MissingMetricError, match="Required metric 'nope' missing"):
            exp.run()
        v0 = tmp_path / "data" / "hyp_demo" / "v0"
        assert read_json(v0 / "large" / "results.json")["metrics"]["mean"] == [9.5, 10.5, 11.5]
        assert read_json(v0 / "run.json")["status"] == "complete"

    def test_failing_verifier_is_recorded_not_raised(self, tmp_path: Path) -> None:
        """W-16 fixed: the run keeps its results; the error is on HypothesisResult.errors."""
        r = hyp_demo([Hypothesis(verifier=exploding(), name="boom"), largest_gap_first]).run()
        boom = r.get_hypothesis("boom")
        assert boom.results == {} and sorted(boom.errors) == ["large", "small"]
        assert boom.errors["large"].startswith("ZeroDivisionError: verifier blew up")
        assert r.get_hypothesis("largest_gap_first").ranking["best"] == "large"
        assert r.metrics.treatments["large"].metrics["mean"] == [9.5, 10.5, 11.5]
        assert (tmp_path / "data" / "hyp_demo" / "v0" / "large" / ".crystallize_complete").exists()


# --- section 5: replicates and seeds ------------------------------------------------------------

@pipeline_step()
def record_seed(data: Any, ctx: FrozenContext) -> Any:
    return data, {"seed": ctx.get("seed_used"), "draw": random.random()}


class TestSeeds:
    def test_replicate_seed_formula(self) -> None:
        exp = Experiment(datasource=scores(), pipeline=Pipeline([shift(), record_seed()]), name="seed_demo",
                         replicates=3, plugins=[SeedPlugin(seed=42)], treatments=[Treatment("t", {"offset": 1.0})])
        res = exp.run()
        assert res.provenance["seeds"] == {"baseline": [42, 31379, 62716], "t": [42, 31379, 62716]}
        assert res.metrics.baseline.metrics["seed"] == [42, 31379, 62716]
        # default seed_fn seeds `random`, so baseline and treatment share draws per replicate
        assert res.metrics.baseline.metrics["draw"] == res.metrics.treatments["t"].metrics["draw"]
        random.seed(31379)
        assert res.metrics.baseline.metrics["draw"][1] == random.random()

    def test_default_run_records_its_master_seed(self, tmp_path: Path) -> None:
        """W-20 fixed: the drawn master seed is in run.json and reused by the next run."""
        exp = Experiment(datasource=scores(), pipeline=Pipeline([record_seed()]), name="drawn", replicates=2)
        first = exp.run()
        record = read_json(tmp_path / "data" / "drawn" / "v0" / "run.json")
        master = record["master_seed"]
        assert isinstance(master, int)
        assert record["conditions"]["baseline"]["seeds"] == [master, (master + 31337) % 2**32]
        assert first.run_info["master_seed"] == master
        again = Experiment(datasource=scores(), pipeline=Pipeline([record_seed()]), name="drawn", replicates=2).run()
        assert again.metrics.baseline.metrics["seed"] == first.metrics.baseline.metrics["seed"]

    @pytest.mark.parametrize(("given", "used"), [(0, 1), (-3, 1), (2, 2)])
    def test_replicate_count_is_clamped(self, given: int, used: int) -> None:
        assert len(quickstart().run(replicates=given).metrics.baseline.metrics["mean"]) == used

    def test_non_int_replicates(self) -> None:
        with pytest.raises(TypeError, match="replicates must be an int, not str"):
            Experiment(datasource=scores(), pipeline=Pipeline([shift()]), replicates="3")  # type: ignore[arg-type]


# --- section 6: artifacts inside one experiment --------------------------------------------------

def to_json_bytes(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def from_json_file(path: Path) -> Any:
    return json.loads(Path(path).read_text())


@data_source
def readings(ctx: FrozenContext) -> list[int]:
    return [10, 20, 30]


@pipeline_step()
def fit_model(data: list[int], ctx: FrozenContext, model: Artifact, *, gain: float = 1.0) -> Any:
    params = {"bias": sum(data) / len(data), "gain": gain}
    model.write(params)
    ctx.artifacts.add("notes.txt", b"fitted")
    return data, {"bias": params["bias"]}


def make_trainer(model_art: Artifact, **kw: Any) -> Experiment:
    return Experiment(datasource=readings(), pipeline=Pipeline([fit_model(model=model_art)]), name="trainer",
                      outputs=[model_art], replicates=kw.pop("replicates", 2),
                      treatments=[Treatment("high_gain", {"gain": 3.0})], **kw)


class SaveWithSelf(PipelineStep):
    """A class-based step writing through an Artifact it holds (0.27 failed: not bound)."""

    def __init__(self, out: Artifact) -> None:
        self.out = out

    @property
    def params(self) -> dict[str, Any]:
        return {}

    def __call__(self, data: Any, ctx: FrozenContext) -> Any:
        self.out.write(b"class-based")
        return data, {"n": len(data)}


@pipeline_step()
def write_twice(data: Any, ctx: FrozenContext) -> Any:
    ctx.artifacts.add("same.txt", b"1")
    ctx.artifacts.add("same.txt", b"2")
    return data


class TestArtifacts:
    def test_result_artifacts_outputs_and_files(self, tmp_path: Path) -> None:
        model_art = Artifact("model.json", writer=to_json_bytes, loader=from_json_file)
        trainer = make_trainer(model_art)
        r = trainer.run()
        v0 = (tmp_path / "data" / "trainer" / "v0").resolve()
        assert r.artifacts == {
            "model.json": {c: v0 / "replicate_0" / c / "Fit_ModelStep" / "model.json" for c in ("baseline", "high_gain")},
            "notes.txt": {c: v0 / "replicate_0" / c / "Fit_ModelStep" / "notes.txt" for c in ("baseline", "high_gain")},
        }
        assert all(p.is_absolute() for per in r.artifacts.values() for p in per.values())
        assert list(trainer.outputs) == ["model.json"]
        assert read_json(v0 / "_manifest.json") == {"model.json": "Fit_ModelStep", "notes.txt": "Fit_ModelStep"}
        assert read_json(v0 / "metadata.json") == {"replicates": 2, "id": trainer.id, "name": "trainer"}
        for rep in (0, 1):
            base = v0 / f"replicate_{rep}"
            assert read_json(base / "baseline" / "Fit_ModelStep" / "model.json") == {"bias": 20.0, "gain": 1.0}
            assert read_json(base / "high_gain" / "Fit_ModelStep" / "model.json") == {"bias": 20.0, "gain": 3.0}
            assert (base / "high_gain" / "Fit_ModelStep" / "notes.txt").read_bytes() == b"fitted"
        assert r.get_artifact("notes.txt")["baseline"].read_bytes() == b"fitted"

    def test_class_based_step_can_write_its_artifact(self, tmp_path: Path) -> None:
        out = Artifact("out.bin")
        exp = Experiment(datasource=readings(), pipeline=Pipeline([SaveWithSelf(out)]), name="cls", outputs=[out])
        res = exp.run()
        assert res.errors == {}
        path = tmp_path / "data" / "cls" / "v0" / "replicate_0" / "baseline" / "SaveWithSelf" / "out.bin"
        assert path.read_bytes() == b"class-based"

    def test_write_outside_a_step(self) -> None:
        with pytest.raises(RuntimeError, match="not bound to context"):
            Artifact("x.bin").write(b"x")

    def test_same_file_twice_fails_that_replicate(self) -> None:
        exp = Experiment(datasource=readings(), pipeline=Pipeline([write_twice()]), name="twice")
        res = exp.run()
        assert list(res.errors) == ["baseline_rep_0"]
        err = res.errors["baseline_rep_0"]
        assert isinstance(err, PipelineExecutionError) and err.step_name == "Write_TwiceStep"
        assert isinstance(err.original_exception, ContextMutationError)
        assert "Artifact 'same.txt' already written" in str(err)

    def test_versioned_runs_and_retention(self, tmp_path: Path) -> None:
        model_art = Artifact("model.json", writer=to_json_bytes, loader=from_json_file)
        exp = Experiment(datasource=readings(), pipeline=Pipeline([fit_model(model=model_art)]), name="ver",
                         outputs=[model_art], plugins=[ArtifactPlugin(root_dir="data", versioned=True,
                                                                      artifact_retention=3, big_file_threshold_mb=10)])
        exp.run()
        exp.run()
        root = tmp_path / "data" / "ver"
        assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["v0", "v1"]
        for v in ("v0", "v1"):
            assert read_json(root / v / "replicate_0" / "baseline" / "Fit_ModelStep" / "model.json")["bias"] == 20.0
            assert (root / v / "baseline" / ".crystallize_complete").exists()
        assert exp.get_plugin(ArtifactPlugin).version == 1


# --- section 7: reading artifacts from another experiment ---------------------------------------

@pipeline_step()
def evaluate(data: Any, ctx: FrozenContext) -> Any:
    m = data["model"]
    return data, {"score": m["bias"] * m["gain"]}


@pipeline_step()
def evaluate_direct(data: Any, ctx: FrozenContext) -> Any:
    return data, {"score": data["bias"] * data["gain"]}


@pipeline_step()
def read_path(data: Path, ctx: FrozenContext) -> Any:
    return data, {"bias_from_file": json.loads(Path(data).read_text())["bias"]}


class TestCrossExperiment:
    def test_graph_edge_from_artifact_identity(self) -> None:
        model_art = Artifact("model.json", writer=to_json_bytes, loader=from_json_file)
        trainer = make_trainer(model_art)
        evaluator = Experiment(datasource=ExperimentInput(model=model_art), pipeline=Pipeline([evaluate()]),
                               name="evaluator", replicates=4)
        graph = ExperimentGraph(trainer, evaluator)
        assert graph.name == "evaluator" and list(graph._graph.edges()) == [("trainer", "evaluator")]
        results = graph.run()
        assert results["evaluator"].metrics.baseline.metrics == {"score": [20.0] * 4}
        assert {k: v.metrics for k, v in results["evaluator"].metrics.treatments.items()} == {
            "high_gain (v0)": {"score": [60.0] * 4}}
        assert results["trainer"].metrics.treatments["high_gain"].metrics == {"bias": [20.0, 20.0]}

    def test_artifact_itself_as_datasource(self) -> None:
        model_art = Artifact("model.json", writer=to_json_bytes, loader=from_json_file)
        evaluator = Experiment(datasource=model_art, pipeline=Pipeline([evaluate_direct()]), name="evaluator")
        results = ExperimentGraph(make_trainer(model_art), evaluator).run()
        assert results["evaluator"].metrics.baseline.metrics == {"score": [20.0]}

    def test_consumer_only_treatment_reads_producer_baseline(self, caplog: pytest.LogCaptureFixture) -> None:
        model_art = Artifact("model.json", writer=to_json_bytes, loader=from_json_file)
        evaluator = Experiment(datasource=ExperimentInput(model=model_art), pipeline=Pipeline([evaluate()]),
                               name="evaluator", treatments=[Treatment("extra", {"bonus": 1})])
        with caplog.at_level(logging.INFO):
            results = ExperimentGraph(make_trainer(model_art), evaluator).run()
        assert results["evaluator"].metrics.treatments["extra"].metrics == {"score": [20.0]}
        # a WARNING as in 0.27 (reference 12.3), once per condition (0.27 warned per replicate)
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert warnings == ["evaluator: artifact model.json for condition 'extra' not found in upstream 'trainer' "
                            "(v0); falling back to 'baseline'."]
        record = read_json(Path("data") / "evaluator" / "v0" / "run.json")
        pins = record["conditions"]["extra"]["upstream"]
        assert pins == [{"producer": "trainer", "artifact": "model.json", "version": 0, "condition": "baseline",
                         "fallback": True}]

    def test_path_based_chaining_creates_an_edge(self) -> None:
        """W-22 fixed: ``artifact_datasource`` sources link the graph without add_dependency."""
        model_art = Artifact("model.json", writer=to_json_bytes, loader=from_json_file)
        trainer = make_trainer(model_art, replicates=1)
        trainer.run()
        paths = trainer.artifact_datasource(step="Fit_ModelStep", name="model.json")
        assert paths.replicates == 1
        reader = Experiment(datasource=paths, pipeline=Pipeline([read_path()]), name="reader")
        assert reader.run().metrics.baseline.metrics == {"bias_from_file": [20.0]}
        graph = ExperimentGraph(trainer, reader)
        assert list(graph._graph.edges()) == [("trainer", "reader")]
        assert graph.run()["reader"].metrics.baseline.metrics == {"bias_from_file": [20.0]}

    def test_path_source_fetch_outside_a_run(self) -> None:
        model_art = Artifact("model.json", writer=to_json_bytes, loader=from_json_file)
        trainer = make_trainer(model_art, replicates=1)
        trainer.run()
        paths = trainer.artifact_datasource(step="Fit_ModelStep", name="model.json")
        got = paths.fetch(FrozenContext({"replicate": 0}))
        assert Path(got).as_posix().endswith("data/trainer/v0/replicate_0/baseline/Fit_ModelStep/model.json")
        assert json.loads(Path(got).read_text())["bias"] == 20.0

    def test_require_metadata(self) -> None:
        model_art = Artifact("model.json")
        trainer = make_trainer(model_art)
        paths = trainer.artifact_datasource(step="Fit_ModelStep", name="model.json", require_metadata=True)
        with pytest.raises(FileNotFoundError, match="metadata.json of 'trainer' not found"):
            paths.replicates  # noqa: B018


# --- section 8: ExperimentGraph built in Python ----------------------------------------------------

@pipeline_step()
def gain_metric(data: Any, ctx: FrozenContext, *, gain: float = 1.0) -> Any:
    return data, {"gain": gain}


def node(name: str) -> Experiment:
    return Experiment(datasource=readings(), pipeline=Pipeline([gain_metric()]), name=name)


class TestPythonGraph:
    def test_explicit_edges_and_order(self) -> None:
        g2 = ExperimentGraph()
        a, b, c = node("exp_a"), node("exp_b"), node("exp_c")
        for e in (a, b, c):
            g2.add_experiment(e)
        g2.add_dependency(c, a)
        g2.add_dependency(c, b)
        assert sorted(g2._graph.edges()) == [("exp_a", "exp_c"), ("exp_b", "exp_c")]
        assert g2.order()[-1] == "exp_c" and g2.name == "exp_c"
        assert sorted(g2.run()) == ["exp_a", "exp_b", "exp_c"]

    def test_progress_callback_and_global_treatments(self) -> None:
        model_art = Artifact("model.json", writer=to_json_bytes, loader=from_json_file)
        evaluator = Experiment(datasource=ExperimentInput(model=model_art), pipeline=Pipeline([evaluate()]),
                               name="evaluator", replicates=4)
        graph = ExperimentGraph(make_trainer(model_art), evaluator)
        events: list[tuple[str, str]] = []

        async def on_progress(status: str, name: str) -> None:
            events.append((status, name))

        asyncio.run(graph.arun(progress_callback=on_progress))
        assert events == [("running", "trainer"), ("completed", "trainer"), ("running", "evaluator"),
                          ("completed", "evaluator")]
        out = graph.run(treatments=[Treatment("only_this", {"gain": 0.5})], replicates=1)
        assert {n: [k.split(" (v")[0] for k in r.metrics.treatments] for n, r in out.items()} == {
            "trainer": ["only_this"], "evaluator": ["only_this"]}
        assert out["evaluator"].metrics.treatments["only_this"].metrics == {"score": [10.0]}

    def test_inherited_treatments_union(self) -> None:
        model_art = Artifact("model.json", writer=to_json_bytes, loader=from_json_file)
        evaluator = Experiment(datasource=ExperimentInput(model=model_art), pipeline=Pipeline([evaluate()]),
                               name="evaluator", treatments=[Treatment("own", {"x": 1})])
        out = ExperimentGraph(make_trainer(model_art), evaluator).run()
        assert sorted(k.split(" (v")[0] for k in out["evaluator"].metrics.treatments) == ["high_gain", "own"]

    def test_graph_errors(self) -> None:
        a, b = node("exp_a"), node("exp_b")
        g = ExperimentGraph()
        g.add_experiment(a)
        g.add_experiment(b)
        g.add_dependency(b, a)
        with pytest.raises(CycleError, match="Experiment graph contains cycles"):
            g.add_dependency(a, b)
        with pytest.raises(KeyError, match="experiment 'ghost' is not in the graph"):
            g.add_dependency("ghost", a)
        shared = Artifact("m.json")
        first = make_trainer(shared)
        second = Experiment(datasource=readings(), pipeline=Pipeline([fit_model(model=shared)]), name="other",
                            outputs=[shared])  # allowed, as in 0.27: the last one built produces it
        assert shared.producer_name == "other"
        with pytest.raises(DefinitionError, match="produced by multiple experiments: 'trainer' and 'other'"):
            ExperimentGraph(first, second)
        assert ExperimentGraph(first).experiments["trainer"] is first and shared.producer_name == "trainer"
        orphan = Artifact("orphan.json")
        consumer = Experiment(datasource=orphan, pipeline=Pipeline([evaluate_direct()]), name="consumer")
        with pytest.raises(ValueError, match="Artifact 'orphan.json' read by 'consumer' has no producing experiment"):
            ExperimentGraph(consumer)
        with pytest.raises(DefinitionError, match="Experiment must have a name"):
            ExperimentGraph().add_experiment(Experiment(datasource=readings(), pipeline=Pipeline([gain_metric()])))

    def test_disconnected_experiments_are_allowed(self) -> None:
        """W-34 fixed: independent pipelines may share a graph."""
        graph = ExperimentGraph(node("exp_a"), node("exp_b"))
        assert graph.name == "ExperimentGraph"
        assert sorted(graph.run()) == ["exp_a", "exp_b"]


# --- section 10: resume ------------------------------------------------------------------------

class StepCounter(BasePlugin):
    """Counts step calls (the 0.27 example used a module-level dict the step mutates; see below)."""

    def __init__(self) -> None:
        self.n = 0

    def before_step(self, experiment: Any, step: Any) -> None:
        self.n += 1


@data_source
def src(ctx: FrozenContext) -> list[int]:
    return [1, 2, 3]


@pipeline_step()
def total(data: list[int], ctx: FrozenContext, *, k: int = 0) -> Any:
    return data, {"total": sum(data) + k}


def resumable(treatments: list[Treatment], counter: StepCounter | None = None) -> Experiment:
    plugins = [SeedPlugin(seed=1)] + ([counter] if counter else [])
    return Experiment(datasource=src(), pipeline=Pipeline([total()]), name="resumable", replicates=2,
                      treatments=treatments, plugins=plugins)


def calls_of(treatments: list[Treatment], **run: Any) -> tuple[int, Any]:
    counter = StepCounter()
    out = resumable(treatments, counter).run(**run)
    return counter.n, out


class TestResume:
    def test_single_experiment_resume(self) -> None:
        n, _ = calls_of([Treatment("a", {"k": 1})])
        assert n == 4
        n, r = calls_of([Treatment("a", {"k": 1})], strategy="resume")
        assert n == 0
        assert r.metrics.baseline.metrics == {"total": [6, 6]}
        assert r.metrics.treatments["a"].metrics == {"total": [7, 7]}
        n, r = calls_of([Treatment("a", {"k": 1}), Treatment("b", {"k": 2})], strategy="resume")
        assert n == 2
        assert {k: v.metrics for k, v in r.metrics.treatments.items()} == {
            "a (v0)": {"total": [7, 7]}, "b (v0)": {"total": [8, 8]}}

    def test_changed_payload_is_rerun(self) -> None:
        """W-04 fixed: 0.27 silently reused a=7; now the changed treatment reruns."""
        resumable([Treatment("a", {"k": 1})]).run()
        n, r = calls_of([Treatment("a", {"k": 100})], strategy="resume")
        assert n == 2
        assert r.metrics.treatments["a"].metrics == {"total": [106, 106]}
        assert r.metrics.baseline.metrics == {"total": [6, 6]}

    def test_full_resume_creates_no_version_and_calls_no_hooks(self, versioned: Any) -> None:
        hooks: list[str] = []

        class Tracer(BasePlugin):
            def before_run(self, e: Any) -> None:
                hooks.append("before_run")

        def build() -> Experiment:
            return Experiment(datasource=src(), pipeline=Pipeline([total()]), name="full", plugins=[
                versioned(), SeedPlugin(seed=1), Tracer()])

        build().run()
        hooks.clear()
        build().run(strategy="resume")
        assert hooks == []
        assert sorted(p.name for p in (Path("data") / "full").iterdir() if p.is_dir()) == ["v0"]

    def test_hypotheses_cover_reused_conditions(self) -> None:
        """W-08 fixed: a partial resume evaluates hypotheses for reused treatments too."""
        hyp = Hypothesis(verifier=mean_gap_total(), metrics="total", name="gap")

        def build(ts: list[Treatment]) -> Experiment:
            return Experiment(datasource=src(), pipeline=Pipeline([total()]), name="hr", replicates=2,
                              treatments=ts, hypotheses=[hyp], plugins=[SeedPlugin(seed=1)])

        build([Treatment("a", {"k": 1})]).run()
        r = build([Treatment("a", {"k": 1}), Treatment("b", {"k": 2})]).run(strategy="resume")
        assert r.get_hypothesis("gap").results == {"a": {"gap": 1.0}, "b": {"gap": 2.0}}


@verifier
def mean_gap_total(baseline: Any, treatment: Any) -> dict[str, Any]:
    return {"gap": sum(treatment["total"]) / len(treatment["total"]) - sum(baseline["total"]) / len(baseline["total"])}


# --- section 11: cacheable steps -------------------------------------------------------------------

@pipeline_step(cacheable=True)
def expensive(data: int, ctx: FrozenContext) -> int:
    ctx.metrics.add("inside", data)
    return data + 1


@pipeline_step()
def final(data: int, ctx: FrozenContext) -> Any:
    return data, {"final": data}


@data_source
def one(ctx: FrozenContext) -> int:
    return 1


@data_source
def pair(ctx: FrozenContext) -> list[int]:
    return [1, 2]


@pipeline_step(cacheable=True)
def add_delta(data: list[float], ctx: FrozenContext, *, delta: float = 0.0) -> list[float]:
    return [x + delta for x in data]


@pipeline_step()
def total_step(data: list[float], ctx: FrozenContext) -> Any:
    return data, {"total": sum(data)}


class TestCacheableSteps:
    def test_side_effects_are_not_lost_on_the_second_run(self) -> None:
        """W-03 fixed: metrics recorded inside a cacheable step are there on every run."""
        e = Experiment(datasource=one(), pipeline=Pipeline([expensive(), final()]), name="cache_demo")
        r1, r2 = e.run(), e.run()
        assert r1.metrics.baseline.metrics == {"inside": [1], "final": [2]}
        assert r2.metrics.baseline.metrics == {"inside": [1], "final": [2]}
        assert [s["step"] for s in r2.provenance["ctx_changes"]["baseline"][0]] == ["ExpensiveStep", "FinalStep"]
        assert [s["cache_hit"] for s in r1.provenance["ctx_changes"]["baseline"][0]] == [False, False]
        assert [s["cache_hit"] for s in r2.provenance["ctx_changes"]["baseline"][0]] == [True, False]

    def test_treatment_gets_its_own_value(self) -> None:
        """W-01 fixed: 0.27 gave the treatment the baseline's cached 3.0; it must be 23.0."""
        e = Experiment(datasource=pair(), pipeline=Pipeline([add_delta(), total_step()]), name="cache_ctx",
                       treatments=[Treatment("boost", {"delta": 10.0})], replicates=2)
        r = e.run()
        again = e.run()
        for res in (r, again):
            assert res.metrics.baseline.metrics == {"total": [3.0, 3.0]}
            assert res.metrics.treatments["boost"].metrics == {"total": [23.0, 23.0]}
        assert [s["cache_hit"] for s in again.provenance["ctx_changes"]["boost"][0]] == [True, False]


# --- section 12: parallel and async execution --------------------------------------------------------

def seed_everything(seed: int) -> None:
    random.seed(seed)


@pipeline_step()
def noisy(data: list[float], ctx: FrozenContext, *, delta: float = 0.0) -> list[float]:
    return [x + delta + random.random() for x in data]


@pipeline_step()
def noisy_rng(data: list[float], ctx: FrozenContext, rng: Any, *, delta: float = 0.0) -> list[float]:
    return [x + delta + float(rng.random()) for x in data]


@pipeline_step()
async def slow_io(data: Any, ctx: FrozenContext) -> Any:
    await asyncio.sleep(0.01)
    return data


@pipeline_step()
def save_blob(data: Any, ctx: FrozenContext) -> Any:
    ctx.artifacts.add("blob.txt", f"rep{ctx['replicate']}-{ctx['condition']}".encode())
    return data


@pipeline_step()
def stage_big(data: Any, ctx: FrozenContext) -> Any:
    ctx.artifacts.path("big.bin").write_bytes(b"y" * 100 + str(ctx["replicate"]).encode())
    return data, {"ok": 1}


def make_par(plugins: list[Any], steps: list[Any], name: str = "par", seed_fn: Any = seed_everything) -> Experiment:
    return Experiment(datasource=readings(), pipeline=Pipeline(steps), name=name,
                      treatments=[Treatment("t", {"delta": 1.0})], replicates=4,
                      plugins=[SeedPlugin(seed=11, seed_fn=seed_fn)] + plugins)


class TestParallel:
    def test_process_pool_matches_serial(self) -> None:
        serial = make_par([], [noisy(), summarise()]).run()
        procs = make_par([ParallelExecution(executor_type="process", max_workers=2)], [noisy(), summarise()]).run()
        assert serial.metrics.baseline.metrics == procs.metrics.baseline.metrics
        assert serial.metrics.treatments["t"].metrics == procs.metrics.treatments["t"].metrics
        assert len(serial.metrics.baseline.metrics["mean"]) == 4

    def test_rng_parameter_is_identical_on_every_backend(self) -> None:
        steps = [noisy_rng(), summarise()]
        serial = make_par([], steps, name="r1").run()
        for i, plugin in enumerate([ParallelExecution(executor_type="thread", max_workers=3), AsyncExecution(),
                                    ParallelExecution(executor_type="process", max_workers=2)]):
            other = make_par([plugin], [noisy_rng(), summarise()], name=f"r{i + 2}").run()
            assert other.metrics.baseline.metrics == serial.metrics.baseline.metrics
            assert other.metrics.treatments["t"].metrics == serial.metrics.treatments["t"].metrics

    def test_async_steps_run_everywhere(self) -> None:
        for i, plugins in enumerate([[], [AsyncExecution()], [ParallelExecution(executor_type="thread")]]):
            res = make_par(plugins, [slow_io(), summarise()], name=f"async{i}").run()
            assert res.metrics.baseline.metrics == {"mean": [20.0] * 4}

    def test_lambda_seed_fn_works_in_a_process_pool(self) -> None:
        """W-13/W-25 fixed: definitions travel with cloudpickle."""
        res = make_par([ParallelExecution(executor_type="process", max_workers=2)], [noisy(), summarise()],
                       seed_fn=lambda s: random.seed(s)).run()
        assert res.errors == {} and len(res.metrics.baseline.metrics["mean"]) == 4

    def test_step_failure_in_a_process_pool_lands_in_errors(self) -> None:
        from foundation_kit import fail_at

        exp = make_par([ParallelExecution(executor_type="process", max_workers=2)],
                       [fail_at(fail_replicate=2), summarise()])
        res = exp.run()
        assert sorted(res.errors) == ["baseline_rep_2", "t_rep_2"]
        assert "boom at replicate 2" in str(res.errors["baseline_rep_2"])
        assert res.metrics.baseline.metrics == {"mean": [20.0] * 3}

    def test_artifacts_written_from_a_process_pool(self, tmp_path: Path) -> None:
        exp = make_par([ParallelExecution(executor_type="process", max_workers=2)], [save_blob(), summarise()])
        res = exp.run()
        assert res.errors == {}
        v0 = tmp_path / "data" / "par" / "v0"
        for rep in range(4):
            for cond in ("baseline", "t"):
                path = v0 / f"replicate_{rep}" / cond / "Save_BlobStep" / "blob.txt"
                assert path.read_bytes() == f"rep{rep}-{cond}".encode()

    def test_staged_artifact_paths_from_a_process_pool(self, tmp_path: Path) -> None:
        res = make_par([ParallelExecution(executor_type="process", max_workers=2)], [stage_big()], name="stg").run()
        assert res.errors == {}
        path = tmp_path / "data" / "stg" / "v0" / "replicate_3" / "t" / "Stage_BigStep" / "big.bin"
        assert path.read_bytes() == b"y" * 100 + b"3"

    def test_process_pool_consumer_reads_upstream_artifacts(self) -> None:
        """W-26 fixed: artifacts keep their pinned inputs when jobs go to other processes."""
        model_art = Artifact("model.json", writer=to_json_bytes, loader=from_json_file)
        pool = [ParallelExecution(executor_type="process", max_workers=2)]
        evaluator = Experiment(datasource=ExperimentInput(model=model_art), pipeline=Pipeline([evaluate()]),
                               name="evaluator", replicates=4, plugins=pool)
        res = ExperimentGraph(make_trainer(model_art, plugins=pool), evaluator).run()["evaluator"]
        assert res.errors == {}
        assert res.metrics.baseline.metrics == {"score": [20.0] * 4}
        assert res.metrics.treatments["high_gain"].metrics == {"score": [60.0] * 4}

    def test_invalid_executor_type(self) -> None:
        with pytest.raises(ValueError, match="executor_type must be one of"):
            ParallelExecution(executor_type="fork")


# --- section 14: optimize, apply, debug, hooks, helpers, persistence -----------------------------------

@data_source
def base_values(ctx: FrozenContext) -> list[float]:
    return [1.0, 2.0, 3.0]


@pipeline_step()
def add_bias(data: list[float], ctx: FrozenContext, *, bias: float = 0.0) -> list[float]:
    return [x + bias for x in data]


@pipeline_step()
def loss(data: list[float], ctx: FrozenContext) -> Any:
    return data, {"loss": abs(sum(data) - 9.0)}


class SweepOptimizer(BaseOptimizer):
    def __init__(self, candidates: list[float], objective: Any) -> None:
        super().__init__(objective)
        self.candidates, self.i, self.history = candidates, 0, []

    def ask(self) -> list[Treatment]:
        b = self.candidates[self.i]
        return [Treatment(f"bias_{b}", {"bias": b})]

    def tell(self, objective_values: dict[str, float]) -> None:
        self.history.append((self.candidates[self.i], objective_values[self.objective.metric]))
        self.i += 1

    def get_best_treatment(self) -> Treatment:
        best, _ = min(self.history, key=lambda kv: kv[1])
        return Treatment("best_bias", {"bias": best})


def opt_demo(**kw: Any) -> Experiment:
    return Experiment(datasource=base_values(), pipeline=Pipeline([add_bias(), loss()]), name="opt_demo", **kw)


class TestSingleShotAndHelpers:
    def test_optimize(self) -> None:
        opt = SweepOptimizer([0.0, 1.0, 2.0], Objective(metric="loss", direction="minimize"))
        best = opt_demo().optimize(opt, num_trials=3, replicates_per_trial=2)
        assert opt.history == [(0.0, 3.0), (1.0, 0.0), (2.0, 3.0)]
        assert best.name == "best_bias" and best.apply_map == {"bias": 1.0}

    def test_apply_unpacks_and_writes_nothing(self, tmp_path: Path) -> None:
        """W-27/W-07 fixed: apply() unpacks (data, metrics) like run() and never touches the store."""
        exp = opt_demo()
        exp.run()
        before = {p: p.read_bytes() for p in (tmp_path / "data").rglob("*") if p.is_file()}
        assert exp.apply(Treatment("best_bias", {"bias": 1.0})) == [2.0, 3.0, 4.0]
        assert exp.apply(data=[0.0]) == [0.0]
        assert exp.apply("unknown") == [1.0, 2.0, 3.0]
        after = {p: p.read_bytes() for p in (tmp_path / "data").rglob("*") if p.is_file()}
        assert after == before

    def test_apply_awaits_async_steps_and_seeds(self) -> None:
        exp = Experiment(datasource=base_values(), pipeline=Pipeline([slow_io(), record_seed()]), name="ap")
        assert exp.apply(seed=5) == [1.0, 2.0, 3.0]

    def test_debug(self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        exp = opt_demo()
        crystallize_logger = logging.getLogger("crystallize")
        before = crystallize_logger.level
        crystallize_logger.setLevel(logging.WARNING)
        try:
            with caplog.at_level(logging.DEBUG):
                r = exp.debug("bias_1.0")
            assert crystallize_logger.level == logging.WARNING  # restored afterwards
        finally:
            crystallize_logger.setLevel(before)
        assert "Rep 1/1 bias_1.0 finished step LossStep" in caplog.text
        assert exp.get_plugin(LoggingPlugin).verbose is False
        assert r.metrics.baseline.metrics == {"loss": [3.0]}
        assert r.metrics.treatments["bias_1.0"].metrics == {"loss": [3.0]}
        assert r.metrics.hypotheses == []
        assert not (tmp_path / "data").exists()
        debug_root = Path(r.run_info["store_root"])  # kept, outside the real store
        assert (debug_root / "opt_demo" / "v0" / "baseline" / ".crystallize_complete").exists()

    def test_hook_order(self) -> None:
        seen: list[str] = []

        class HookTracer(BasePlugin):
            def init_hook(self, e: Any) -> None:
                seen.append("init_hook")

            def before_run(self, e: Any) -> None:
                seen.append("before_run")

            def before_replicate(self, e: Any, ctx: Any) -> None:
                seen.append(f"before_replicate {ctx.get('replicate')} {ctx.get('condition')}")

            def before_step(self, e: Any, step: Any) -> None:
                seen.append(f"before_step {step.__class__.__name__}")

            def after_step(self, e: Any, step: Any, data: Any, ctx: Any) -> None:
                seen.append(f"after_step {step.__class__.__name__}")

            def after_run(self, e: Any, result: Any) -> None:
                seen.append(f"after_run {sorted(result.metrics.treatments)}")

        Experiment(datasource=base_values(), pipeline=Pipeline([add_bias(), loss()]), name="hooks",
                   plugins=[HookTracer()], treatments=[Treatment("b1", {"bias": 1.0})]).run()
        steps = ["before_step Add_BiasStep", "after_step Add_BiasStep", "before_step LossStep", "after_step LossStep"]
        assert seen == ["init_hook", "before_run", "before_replicate 0 baseline", *steps, "before_replicate 0 b1",
                        *steps, "after_run ['b1 (v0)']"]

    def test_custom_run_experiment_loop_gets_a_sync_replicate_fn(self) -> None:
        """W-23/W-24 fixed: replicate_fn is synchronous and returns ReplicateResult."""
        seen: list[Any] = []

        class PrintLoop(BasePlugin):
            def run_experiment_loop(self, experiment: Any, replicate_fn: Any) -> list[Any]:
                out = [replicate_fn(rep) for rep in range(experiment.replicates)]
                seen.extend(out)
                return out

        res = opt_demo(plugins=[PrintLoop()], replicates=2, treatments=[Treatment("b1", {"bias": 1.0})]).run()
        assert [r.baseline_metrics for r in seen] == [{"loss": [3.0]}, {"loss": [3.0]}]
        assert seen[0].treatment_metrics == {"b1": {"loss": [0.0]}}
        assert res.metrics.treatments["b1"].metrics == {"loss": [0.0, 0.0]}

    def test_quick_experiment_and_direct_step_calls(self) -> None:
        out = quick_experiment(lambda cfg, ctx: cfg["k"] * 10 + ctx["replicate"],
                               configs={"low": {"k": 1}, "high": {"k": 2}}, replicates=3, seed=0)
        assert out == {"low": [10, 11, 12], "high": [20, 21, 22]}
        assert quick_experiment(lambda: 5, replicates=2) == {"baseline": [5, 5]}
        ctx = standalone_context({"bias": 5.0})
        assert add_bias()([1.0], ctx) == [6.0]
        assert loss()([1.0, 2.0], ctx) == ([1.0, 2.0], {"loss": 6.0})

    def test_registry(self) -> None:
        @data_source("shared_numbers", register=True)
        def shared_numbers(ctx: FrozenContext) -> list[int]:
            return [7, 8]

        assert "shared_numbers" in list_datasources()
        assert get_datasource("shared_numbers").fetch(standalone_context()) == [7, 8]
        with pytest.raises(KeyError, match="Datasource 'missing' not found"):
            get_datasource("missing")

    def test_result_persistence(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        r = opt_demo(treatments=[Treatment("t", {"bias": 1.0})], plugins=[LoggingPlugin(verbose=True)]).run()
        assert set(json.loads(r.to_json())) == {"artifacts", "errors", "hypotheses", "metrics", "provenance",
                                                "timestamp"}
        assert r.to_json(tmp_path / "result.json") is None
        saved = read_json(tmp_path / "result.json")
        assert saved["metrics"]["treatments"] == {"t": {"loss": [0.0]}}  # plain names outside .treatments
        assert saved["metrics"]["baseline"] == {"loss": [3.0]}
        r.print_tree("treatment > replicate > step > action")
        printed = capsys.readouterr().out
        assert "Treatment 't'" in printed and "Replicate 0" in printed and "Step LossStep" in printed
        with pytest.raises(ValueError, match="unknown level 'bogus'"):
            r.print_tree("bogus")


# --- reference-0.27 details (sections 1-9) that the examples only touch ------------------------------

@pipeline_step()
def who_am_i(data: Any, ctx: FrozenContext) -> Any:
    return data, {"who": ctx["step_name"]}


@pipeline_step()
def path_first(path: Any, ctx: FrozenContext, *, suffix: str = "!") -> Any:
    return f"{path}{suffix}"


class SetupTeardown(PipelineStep):
    """Class-based step recording its setup/teardown calls."""

    def __init__(self, log: list[Any]) -> None:
        self.log = log

    @property
    def params(self) -> dict[str, Any]:
        return {}

    def setup(self, ctx: FrozenContext) -> None:
        self.log.append(("setup", dict(ctx.as_dict())))

    def teardown(self, ctx: FrozenContext) -> None:
        self.log.append(("teardown",))

    def __call__(self, data: Any, ctx: FrozenContext) -> Any:
        return data


class TestReferenceDetails:
    def test_context_copies_initial_and_exposes_a_read_only_view(self) -> None:
        source = {"cfg": {"lr": 0.1}}
        ctx = FrozenContext(source)
        source["cfg"]["lr"] = 9.9
        assert ctx["cfg"] == {"lr": 0.1}
        view = ctx.as_dict()
        with pytest.raises(TypeError):
            view["new"] = 1  # type: ignore[index]
        assert ctx.get("missing", 3) == 3 and "cfg" in ctx
        assert ctx.logger.name == "crystallize"

    def test_framework_keys_in_the_context(self) -> None:
        res = Experiment(datasource=readings(), pipeline=Pipeline([who_am_i(), record_seed()]), name="keys",
                         plugins=[SeedPlugin(seed=4)]).run()
        assert res.metrics.baseline.metrics["who"] == ["Who_Am_IStep"]
        assert res.metrics.baseline.metrics["seed"] == [4]

    def test_step_factory_rules(self) -> None:
        """W-11 fixed: the data parameter may have any name."""
        assert path_first()("x", standalone_context()) == "x!"
        assert path_first(suffix="?").params == {"suffix": "?"} and path_first().params == {}
        with pytest.raises(TypeError, match=r"pipeline_step must be called: use @pipeline_step\(\)"):
            pipeline_step(lambda data, ctx: data)  # type: ignore[arg-type]

    def test_pipeline_helpers(self) -> None:
        from crystallize import inject_from_ctx, pipeline

        p = pipeline(shift(offset=2.0), summarise())
        assert isinstance(p, Pipeline) and p.signature() == Pipeline([shift(offset=2.0), summarise()]).signature()
        assert p.run([1.0], standalone_context()) == [3.0]
        assert [r["step"] for r in p.get_provenance()] == ["ShiftStep", "SummariseStep"]
        assert p.get_provenance()[1]["ctx_changes"]["metrics"] == {"mean": {"before": (), "after": (3.0,)}}

        @inject_from_ctx
        def scale(data: float, ctx: FrozenContext, *, factor: float = 1.0) -> float:
            return data * factor

        assert scale(2.0, standalone_context({"factor": 3.0})) == 6.0

    def test_setup_and_teardown_run_once_per_run(self) -> None:
        log: list[Any] = []
        Experiment(datasource=readings(), pipeline=Pipeline([SetupTeardown(log)]), name="st", replicates=3,
                   initial_ctx={"a": 1}).run()
        assert log == [("setup", {"a": 1}), ("teardown",)]

    def test_data_source_factory_rules(self) -> None:
        @data_source()
        def with_parens(ctx: FrozenContext) -> int:
            return 1

        @data_source
        def needs(ctx: FrozenContext, n: int) -> int:
            return n

        assert with_parens().fetch(standalone_context()) == 1
        assert needs(n=4).fetch(standalone_context()) == 4
        with pytest.raises(TypeError, match="Missing parameters: n"):
            needs()
        with pytest.raises(TypeError, match="Unknown parameters: nope"):  # 0.27 ignored unknown overrides
            scores(nope=1)
        with pytest.raises(ValueError, match="ExperimentInput requires at least one input"):
            ExperimentInput()

    def test_registry_duplicates(self) -> None:
        from crystallize import register_datasource

        register_datasource("nums", readings())
        with pytest.raises(ValueError, match="Datasource 'nums' is already registered"):
            register_datasource("nums", readings())

    def test_callable_treatment_and_bad_payload(self) -> None:
        t = Treatment("fn", lambda ctx: ctx.add("offset", 1.0))
        assert t.apply_map == {}
        ctx = standalone_context()
        t.apply(ctx)
        assert ctx["offset"] == 1.0
        with pytest.raises(TypeError, match="apply must be a mapping or callable, not int"):
            Treatment("x", 3)  # type: ignore[arg-type]

    def test_auto_seed_off_gives_every_replicate_the_master_seed(self) -> None:
        res = Experiment(datasource=scores(), pipeline=Pipeline([record_seed()]), name="fixed", replicates=3,
                         plugins=[SeedPlugin(seed=9, auto_seed=False)]).run()
        assert res.metrics.baseline.metrics["seed"] == [9, 9, 9]

    def test_seed_fn_is_called_with_each_replicate_seed(self) -> None:
        seen: list[int] = []
        Experiment(datasource=scores(), pipeline=Pipeline([shift()]), name="sfn", replicates=2,
                   plugins=[SeedPlugin(seed=1, seed_fn=seen.append)]).run()
        assert seen == [1, 31338]

    def test_run_inside_an_event_loop(self) -> None:
        async def main() -> Any:
            return opt_demo().run().metrics.baseline.metrics

        assert asyncio.run(main()) == {"loss": [3.0]}

    def test_arun(self) -> None:
        assert asyncio.run(opt_demo().arun()).metrics.baseline.metrics == {"loss": [3.0]}

    def test_own_plugin_suppresses_only_that_default(self) -> None:
        exp = opt_demo(plugins=[SeedPlugin(seed=3)])
        assert [type(p).__name__ for p in exp.plugins] == ["SeedPlugin", "ArtifactPlugin", "LoggingPlugin"]
        assert exp.get_plugin(SeedPlugin).seed == 3

    def test_hook_failures(self) -> None:
        class BadRun(BasePlugin):
            def before_run(self, e: Any) -> None:
                raise RuntimeError("no go")

        class BadReplicate(BasePlugin):
            def before_replicate(self, e: Any, ctx: Any) -> None:
                raise RuntimeError("replicate hook")

        with pytest.raises(RuntimeError, match="no go"):
            opt_demo(plugins=[BadRun()]).run()
        res = opt_demo(plugins=[BadReplicate()]).run()
        assert {k: str(v) for k, v in res.errors.items()} == {"baseline_rep_0": "replicate hook"}
        assert res.to_dict()["errors"] == {"baseline_rep_0": "RuntimeError: replicate hook"}

    def test_treatment_metrics_mapping_equality(self) -> None:
        tm = treatments_demo().run().metrics.treatments
        plain = tm.plain()
        assert tm == plain and tm == {f"{k} (v0)": v for k, v in plain.items()}
        assert tm != {"plus_ten": plain["plus_ten"]}
        assert len(tm) == 2 and tm.version_of("plus_ten") == 0

    def test_result_helpers(self) -> None:
        from crystallize.experiments import AggregateData, ExperimentMetrics, ReplicateResult, TreatmentMetrics

        r = hyp_demo([largest_gap_first]).run()
        assert isinstance(r.metrics, ExperimentMetrics)
        assert isinstance(r.metrics.baseline, TreatmentMetrics)
        assert r.metrics.baseline.replicates == [{"max_seen": [3], "mean": [1.5]}, {"max_seen": [4], "mean": [2.5]},
                                                 {"max_seen": [5], "mean": [3.5]}]
        assert r.get_hypothesis("largest_gap_first").get_for_treatment("small")["gap"] == 2.0
        assert AggregateData and ReplicateResult
        assert repr(r).startswith("Result(baseline=['max_seen', 'mean']")

    def test_to_parquet(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Rows ``condition, metric, values, mean``; the engine (pyarrow) is stubbed when absent."""
        pd = pytest.importorskip("pandas")
        written: dict[str, Any] = {}
        monkeypatch.setattr(pd.DataFrame, "to_parquet", lambda self, path: written.update(frame=self, path=path))
        r = opt_demo(treatments=[Treatment("t", {"bias": 1.0})], replicates=2).run()
        r.to_parquet(tmp_path / "r.parquet")
        frame = written["frame"]
        assert written["path"] == tmp_path / "r.parquet"
        assert frame.to_dict("records") == [
            {"condition": "baseline", "metric": "loss", "values": [3.0, 3.0], "mean": 3.0},
            {"condition": "t", "metric": "loss", "values": [0.0, 0.0], "mean": 0.0}]
