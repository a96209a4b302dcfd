"""Bad input, in Python and YAML: each mistake fails early with a message naming the culprit,
or (inside a run) is recorded as data while everything else finishes.

The run killed with SIGKILL mid-way is in ``tests/test_store.py::TestKilledRun``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from foundation_kit import fail_at, read_json, scores, shift, summarise, write_folder

from crystallize import (
    Artifact,
    Experiment,
    ExperimentGraph,
    FrozenContext,
    Hypothesis,
    ParallelExecution,
    Pipeline,
    SeedPlugin,
    Treatment,
    data_source,
    get_datasource,
    pipeline_step,
    treatment,
    verifier,
)
from crystallize.errors import (
    ConfigError,
    ContextMutationError,
    CrystallizeError,
    CycleError,
    DefinitionError,
    DuplicateNameError,
    InvalidNameError,
    PipelineExecutionError,
)
from crystallize.stats import welch_t_test

BAD_NAMES = [("a/b", "contains '/'"), ("..", r"contains '\.\.'"), ("x..y", r"contains '\.\.'"),
             ("nul\x00byte", r"contains '\\x00'"), ("", "must not be empty"), ("back\\slash", "contains"),
             (".hidden", "starts with '.'"), ("replicate_3", "reserved for replicate folders"),
             ("t (v2)", "reserved for versioned result keys")]


def experiment(name: str = "exp", **kw: Any) -> Experiment:
    kw.setdefault("plugins", [SeedPlugin(seed=1)])
    return Experiment(datasource=scores(), pipeline=Pipeline(kw.pop("steps", [shift(), summarise()])), name=name,
                      **kw)


# --- names that become path segments ------------------------------------------------------------

class TestNames:
    @pytest.mark.parametrize(("bad", "why"), BAD_NAMES)
    def test_experiment_name(self, bad: str, why: str) -> None:
        with pytest.raises(InvalidNameError, match=f"invalid experiment name .*{why}"):
            experiment(bad)

    @pytest.mark.parametrize(("bad", "why"), BAD_NAMES)
    def test_treatment_name(self, bad: str, why: str) -> None:
        with pytest.raises(InvalidNameError, match=f"invalid treatment name .*{why}"):
            Treatment(bad, {"k": 1})
        with pytest.raises(InvalidNameError, match=f"invalid treatment name .*{why}"):
            treatment(bad, {"k": 1})
        with pytest.raises(InvalidNameError, match=f"invalid treatment name .*{why}"):
            treatment(bad)

    @pytest.mark.parametrize(("bad", "why"), BAD_NAMES[:5])
    def test_artifact_and_step_names(self, bad: str, why: str) -> None:
        with pytest.raises(InvalidNameError, match=f"invalid artifact name .*{why}"):
            Artifact(bad)
        with pytest.raises(InvalidNameError, match=f"invalid step name .*{why}"):
            experiment().artifact_datasource(step=bad, name="x.json")

    def test_invalid_name_is_a_value_error_naming_the_value(self) -> None:
        with pytest.raises(ValueError, match=r"invalid experiment name '\.\./escape'"):
            experiment("../escape")
        with pytest.raises(InvalidNameError, match="must be a str, not int"):
            experiment(3)  # type: ignore[arg-type]

    def test_artifact_written_under_a_bad_name_fails_that_replicate(self, tmp_path: Path) -> None:
        @pipeline_step()
        def escape(data: Any, ctx: FrozenContext) -> Any:
            ctx.artifacts.add("../../evil.txt", b"x")
            return data

        res = experiment("esc", steps=[escape(), summarise()]).run()
        assert list(res.errors) == ["baseline_rep_0"]
        assert "invalid artifact name '../../evil.txt'" in str(res.errors["baseline_rep_0"])
        assert not list(tmp_path.rglob("evil.txt"))

    def test_treatment_names_equal_up_to_case(self) -> None:
        with pytest.raises(DuplicateNameError, match="treatments 'Boost' and 'boost' would share a folder"):
            experiment(treatments=[Treatment("Boost", {"k": 1}), Treatment("boost", {"k": 2})])

    def test_yaml_experiment_name(self, tmp_path: Path) -> None:
        write_folder(tmp_path / "g" / "a", {"config.yaml": "name: a/b\ndatasource: {x: numbers}\nsteps: [s]\n"})
        with pytest.raises(ConfigError, match=r"config\.yaml \[name\]: invalid experiment name 'a/b': contains '/'"):
            Experiment.from_yaml(tmp_path / "g" / "a" / "config.yaml")

    def test_yaml_treatment_name(self, tmp_path: Path) -> None:
        folder = write_folder(tmp_path / "g" / "a", {**GOOD, "config.yaml": GOOD["config.yaml"] + (
            "treatments:\n  ../up: {k: 1}\n")})
        with pytest.raises(ConfigError, match=r"\[treatments\.\.\./up\]: invalid treatment name '\.\./up'"):
            Experiment.from_yaml(folder / "config.yaml")


# --- failures inside a run are data ---------------------------------------------------------------

class TestRunFailures:
    def test_step_that_raises(self, tmp_path: Path) -> None:
        exp = experiment("raiser", steps=[shift(), fail_at(fail_replicate=1, fail_condition="t"), summarise()],
                         replicates=3, treatments=[Treatment("t", {"offset": 1.0}), Treatment("u", {"offset": 2.0})])
        res = exp.run()
        assert list(res.errors) == ["t_rep_1"]
        err = res.errors["t_rep_1"]
        assert isinstance(err, PipelineExecutionError) and str(err.original_exception) == "boom at replicate 1"
        assert (err.experiment, err.condition, err.replicate, err.step) == ("raiser", "t", 1, "Fail_AtStep")
        assert "RuntimeError: boom at replicate 1" in err.traceback_str
        assert res.metrics.treatments["t"].metrics["mean"] == [2.5, 4.5]  # replicates 0 and 2 finished
        assert res.metrics.treatments["u"].metrics["mean"] == [3.5, 4.5, 5.5]
        assert res.metrics.baseline.metrics["mean"] == [1.5, 2.5, 3.5]
        record = read_json(tmp_path / "data" / "raiser" / "v0" / "run.json")
        assert record["conditions"]["t"]["outcome"] == "failed"
        assert record["conditions"]["u"]["outcome"] == "complete"

    def test_failing_datasource(self) -> None:
        @data_source
        def broken(ctx: FrozenContext) -> Any:
            raise OSError("disk gone")

        res = Experiment(datasource=broken(), pipeline=Pipeline([summarise()]), name="ds", replicates=2).run()
        assert sorted(res.errors) == ["baseline_rep_0", "baseline_rep_1"]
        assert isinstance(res.errors["baseline_rep_0"], OSError)
        assert res.errors["baseline_rep_0"].condition == "baseline"

    def test_treatment_overwriting_an_existing_key_fails_only_its_condition(self) -> None:
        exp = experiment("clash", initial_ctx={"offset": 0.0}, replicates=2,
                         treatments=[Treatment("clash", {"offset": 5.0}), Treatment("fine", {"other": 1})])
        res = exp.run()
        assert sorted(res.errors) == ["clash_rep_0", "clash_rep_1"]
        err = res.errors["clash_rep_0"]
        assert isinstance(err, ContextMutationError)
        assert str(err) == "Cannot mutate existing key: 'offset'"
        assert res.metrics.baseline.metrics["mean"] == [1.5, 2.5]
        assert res.metrics.treatments["fine"].metrics["mean"] == [1.5, 2.5]
        assert res.metrics.treatments["clash"].metrics == {}

    def test_verifier_that_raises_keeps_the_run(self, tmp_path: Path) -> None:
        @verifier
        def broken(baseline: Any, treatment: Any) -> Any:
            raise KeyError("no such column")

        exp = experiment("vr", replicates=3, treatments=[Treatment("t", {"offset": 1.0})],
                         hypotheses=[Hypothesis(verifier=broken(), metrics="mean", name="bad"),
                                     Hypothesis(verifier=welch_t_test(), metrics="mean", name="good")])
        res = exp.run()
        bad = res.get_hypothesis("bad")
        assert bad.results == {} and bad.errors == {"t": "KeyError: 'no such column'"}
        assert bad.ranking["best"] is None
        # means [1.5, 2.5, 3.5] vs [2.5, 3.5, 4.5]: t = 1.2247, df = 4 (statsmodels ttest_ind, unequal var)
        assert res.get_hypothesis("good").results["t"]["p_value"] == pytest.approx(0.28786, abs=1e-5)
        record = read_json(tmp_path / "data" / "vr" / "v0" / "run.json")
        assert record["status"] == "complete"
        assert record["hypotheses"][0]["errors"] == {"t": "KeyError: 'no such column'"}

    def test_ranker_that_raises(self) -> None:
        def ranker(result: Any) -> float:
            raise ValueError("cannot rank")

        exp = experiment("rk", replicates=2, treatments=[Treatment("t", {"offset": 1.0})],
                         hypotheses=[Hypothesis(verifier=welch_t_test(), metrics="mean", ranker=ranker, name="h")])
        h = exp.run().get_hypothesis("h")
        assert h.errors == {"ranker": "ValueError: cannot rank"} and "t" in h.results

    def test_unpicklable_user_exception_from_a_process_pool(self) -> None:
        """An exception whose constructor cannot be replayed by pickle still lands in errors."""
        res = experiment("pp", steps=[raise_odd(), summarise()], replicates=2,
                         plugins=[SeedPlugin(seed=1), ParallelExecution(executor_type="process", max_workers=2)]).run()
        assert list(res.errors) == ["baseline_rep_1"]
        err = res.errors["baseline_rep_1"]
        assert str(err) == "OddError: odd replicate 1: nope"
        assert (err.exception_type, err.step, err.replicate) == ("OddError", "Raise_OddStep", 1)
        assert type(err).__name__ == "ExecutionError"  # not a WorkerCrashError: the pool survived
        assert res.metrics.baseline.metrics["mean"] == [1.5]


class OddError(Exception):
    def __init__(self, replicate: int, detail: str) -> None:  # two arguments: default pickling fails
        super().__init__(f"odd replicate {replicate}: {detail}")


@pipeline_step()
def raise_odd(data: Any, ctx: FrozenContext) -> Any:
    if ctx["replicate"] % 2:
        raise OddError(ctx["replicate"], "nope")
    return data


# --- definition mistakes in Python ----------------------------------------------------------------

@pipeline_step()
def emit(data: Any, ctx: FrozenContext, out: Artifact) -> Any:
    out.write(b"x")
    return data


def producer_reading(name: str, source: Any, out: Artifact) -> Experiment:
    return Experiment(datasource=source, pipeline=Pipeline([emit(out=out)]), name=name, outputs=[out])


class TestDefinitions:
    def test_cycle_through_artifacts(self) -> None:
        a_out, b_out = Artifact("a.bin"), Artifact("b.bin")
        a = producer_reading("a", b_out, a_out)
        b = producer_reading("b", a_out, b_out)
        with pytest.raises(CycleError, match="Experiment graph contains cycles: (a -> b -> a|b -> a -> b)") as info:
            ExperimentGraph(a, b)
        assert set(info.value.cycle) == {"a", "b"}

    def test_duplicate_experiment_names(self) -> None:
        with pytest.raises(DuplicateNameError, match="two experiments are named 'same'"):
            ExperimentGraph(experiment("same"), experiment("same"))

    def test_unknown_registered_datasource(self) -> None:
        with pytest.raises(KeyError, match="Datasource 'nope' not found; registered"):
            get_datasource("nope")

    def test_uncalled_factories(self) -> None:
        with pytest.raises(TypeError, match="did you forget to call the step factory"):
            Pipeline([shift])
        with pytest.raises(TypeError, match="did you forget to call the datasource factory"):
            Experiment(datasource=scores, pipeline=Pipeline([shift()]))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="is a verifier factory; call it"):
            Hypothesis(verifier=welch_t_test)

    def test_empty_pipeline_and_bad_strategy(self) -> None:
        with pytest.raises(ValueError, match="Pipeline must contain at least one step"):
            Pipeline([])
        with pytest.raises(ValueError, match="experiment 'exp': strategy must be one of"):
            experiment().run(strategy="sometimes")

    def test_graph_node_names_in_run_options(self) -> None:
        graph = ExperimentGraph(experiment("only"))
        with pytest.raises(KeyError, match="ghost"):
            graph.run(only=["ghost"])

    def test_every_error_is_a_crystallize_error(self) -> None:
        for exc in (InvalidNameError("x", "y"), ConfigError("m", path="p"), CycleError(["a"])):
            assert isinstance(exc, CrystallizeError) and isinstance(exc, ValueError)


# --- YAML mistakes -----------------------------------------------------------------------------------

GOOD = {
    "config.yaml": "name: a\ndatasource:\n  nums: numbers\nsteps:\n  - total\n",
    "datasources.py": """
        from crystallize import data_source

        @data_source
        def numbers(ctx):
            return [1, 2, 3]
    """,
    "steps.py": """
        from crystallize import pipeline_step

        @pipeline_step()
        def total(data, ctx):
            return data, {"total": sum(data)}
    """,
}


def yaml_experiment(tmp_path: Path, config: str, **files: str) -> Path:
    folder = write_folder(tmp_path / "graph" / "a", {**GOOD, **files, "config.yaml": config})
    return folder / "config.yaml"


class TestYaml:
    def test_good_config_loads(self, tmp_path: Path) -> None:
        exp = Experiment.from_yaml(yaml_experiment(tmp_path, GOOD["config.yaml"]))
        assert exp.run().metrics.baseline.metrics == {"total": [6]}

    def test_unknown_step(self, tmp_path: Path) -> None:
        path = yaml_experiment(tmp_path, "name: a\ndatasource: {nums: numbers}\nsteps: [totl]\n")
        with pytest.raises(ConfigError, match=r"a/config\.yaml \[steps\[0\]\]: 'totl' not found in steps\.py "
                                              r"\(did you mean 'total'\? available: total\)"):
            Experiment.from_yaml(path)

    def test_unknown_datasource(self, tmp_path: Path) -> None:
        path = yaml_experiment(tmp_path, "name: a\ndatasource: {nums: numbrs}\nsteps: [total]\n")
        with pytest.raises(ConfigError, match=r"\[datasource\.nums\]: 'numbrs' not found in datasources\.py "
                                              r"\(did you mean 'numbers'\?"):
            Experiment.from_yaml(path)

    def test_duplicate_key(self, tmp_path: Path) -> None:
        path = yaml_experiment(tmp_path, GOOD["config.yaml"] + "replicates: 2\nreplicates: 3\n")
        with pytest.raises(ConfigError, match=r"config\.yaml \[replicates\]: duplicate key \(line 7; first on line 6\)"):
            Experiment.from_yaml(path)

    def test_cycle_between_experiment_folders(self, tmp_path: Path) -> None:
        for name, other in (("a", "b"), ("b", "a")):
            write_folder(tmp_path / "graph" / name, {
                **GOOD, "config.yaml": f"name: {name}\ndatasource: {{up: '{other}#out'}}\nsteps: [total]\n"})
        with pytest.raises(CycleError, match=r"Experiment graph contains cycles: a -> b -> a \(closed at .*"
                                             r"graph/a/config\.yaml \[datasource\.up\]\)"):
            ExperimentGraph.from_yaml(tmp_path / "graph")

    def test_duplicate_experiment_names_in_a_graph_folder(self, tmp_path: Path) -> None:
        write_folder(tmp_path / "graph" / "one", {**GOOD, "config.yaml": GOOD["config.yaml"]})
        write_folder(tmp_path / "graph" / "two", {**GOOD, "config.yaml": GOOD["config.yaml"]})
        with pytest.raises(ConfigError, match=r"two/config\.yaml \[name\]: experiment name 'a' is also used by "
                                              r".*one/config\.yaml"):
            ExperimentGraph.from_yaml(tmp_path / "graph")

    def test_reference_to_unknown_experiment(self, tmp_path: Path) -> None:
        path = yaml_experiment(tmp_path, "name: a\ndatasource: {up: 'ghost#out'}\nsteps: [total]\n")
        with pytest.raises(ConfigError, match=r"\[datasource\.up\]: reference to unknown experiment 'ghost'"):
            ExperimentGraph.from_yaml(path.parent.parent)

    def test_unknown_verifier(self, tmp_path: Path) -> None:
        config = GOOD["config.yaml"] + "treatments: {t: {k: 1}}\nhypotheses:\n  - verifier: welch\n    metrics: total\n"
        with pytest.raises(ConfigError, match=r"\[hypotheses\[0\]\.verifier\]: verifier 'welch' not found"):
            Experiment.from_yaml(yaml_experiment(tmp_path, config))
