"""YAML folder experiments and graphs: examples-0.27 section 9 with its observed values, plus
the extensions of spec section 7 and the errors every config mistake must raise."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from foundation_kit import PRODUCER, read_json, write_folder

from crystallize import ArtifactPlugin, Experiment, ExperimentGraph, SeedPlugin
from crystallize.errors import ConfigError
from crystallize.graph.inherit import node_seed


CONSUMER = {
    "config.yaml": """
        name: consumer
        replicates: 4
        datasource:
          producer_summary: producer#summary
        steps:
          - inspect_summary
        treatments:
          extra:
            bonus: 1
        hypotheses:
          - name: bigger_is_bigger
            verifier: mean_gap
            metrics: seen
    """,
    "datasources.py": "",
    "steps.py": """
        from crystallize import pipeline_step

        @pipeline_step()
        def inspect_summary(data, ctx, *, bonus: int = 0):
            return data, {"seen": data["producer_summary"]["total"] + bonus, "rep": ctx.get("replicate")}
    """,
    "verifiers.py": """
        from crystallize import verifier

        @verifier
        def mean_gap(baseline, treatment):
            b = sum(baseline["seen"]) / len(baseline["seen"])
            t = sum(treatment["seen"]) / len(treatment["seen"])
            return {"gap": t - b, "p_value": 0.0 if t > b else 1.0}
    """,
}


@pytest.fixture
def experiments(tmp_path: Path) -> Path:
    """The section 9 layout: ``experiments/producer`` and ``experiments/consumer``."""
    root = tmp_path / "experiments"
    write_folder(root / "producer", PRODUCER)
    write_folder(root / "consumer", CONSUMER)
    return root


def metrics_of(result: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    return result.metrics.baseline.metrics, {k: v.metrics for k, v in result.metrics.treatments.items()}


# --- examples-0.27 section 9 ---------------------------------------------------------------------

class TestSection9:
    def test_graph_from_a_consumer_config(self, experiments: Path) -> None:
        graph = ExperimentGraph.from_yaml("experiments/consumer/config.yaml")
        assert sorted(graph._graph.nodes) == ["consumer", "producer"]
        assert list(graph._graph.edges()) == [("producer", "consumer")]
        assert graph.name == "consumer"
        res = graph.run()
        assert metrics_of(res["producer"]) == ({"total": [6, 6]}, {"bigger (v0)": {"total": [18, 18]}})
        assert metrics_of(res["consumer"]) == (
            {"seen": [6, 6, 6, 6], "rep": [0, 1, 2, 3]},
            {"bigger (v0)": {"seen": [18, 18, 18, 18], "rep": [0, 1, 2, 3]},
             "extra (v0)": {"seen": [7, 7, 7, 7], "rep": [0, 1, 2, 3]}})
        h = res["consumer"].get_hypothesis("bigger_is_bigger")
        assert h.results == {"bigger": {"gap": 12.0, "p_value": 0.0}, "extra": {"gap": 1.0, "p_value": 0.0}}
        assert h.ranking["best"] == "bigger" and h.ranking["ranked"] == [("bigger", 0.0), ("extra", 0.0)]

    def test_store_goes_under_the_graph_folder_and_is_versioned(self, experiments: Path, tmp_path: Path) -> None:
        """Spec section 11: YAML graphs store in ``<graph folder>/data`` (0.27 used the CWD), versioned."""
        ExperimentGraph.from_yaml(experiments / "consumer").run()
        ExperimentGraph.from_yaml(experiments / "consumer").run()
        store = experiments / "data"
        assert not (tmp_path / "data").exists()
        assert sorted(p.name for p in (store / "producer").iterdir() if p.is_dir()) == ["v0", "v1"]
        v0 = store / "producer" / "v0"
        assert read_json(v0 / "_manifest.json") == {"summary.json": "Produce_SummaryStep"}
        assert read_json(v0 / "replicate_1" / "bigger" / "Produce_SummaryStep" / "summary.json") == {"total": 18}
        for cond in ("baseline", "bigger", "extra"):
            assert (store / "consumer" / "v0" / cond / ".crystallize_complete").exists()
        pins = read_json(store / "consumer" / "v1" / "run.json")["conditions"]["extra"]["upstream"]
        assert pins == [{"producer": "producer", "artifact": "summary.json", "version": 1, "condition": "baseline",
                         "fallback": True}]

    def test_single_experiment_and_whole_folder(self, experiments: Path) -> None:
        single = Experiment.from_yaml("experiments/producer/config.yaml")
        assert single.name == "producer" and list(single.outputs) == ["summary"]
        assert [t.name for t in single.treatments] == ["bigger"]
        assert single.get_plugin(ArtifactPlugin).versioned is True
        assert single.run().metrics.baseline.metrics == {"total": [6, 6]}
        whole = ExperimentGraph.from_yaml("experiments")
        assert whole.order() == ["producer", "consumer"]

    def test_consumer_alone_cannot_resolve_its_reference(self, experiments: Path) -> None:
        with pytest.raises(ConfigError, match=r"consumer/config\.yaml \[datasource\.producer_summary\]: reference "
                                              r"'producer#summary' needs ExperimentGraph\.from_yaml"):
            Experiment.from_yaml(experiments / "consumer" / "config.yaml")

    def test_visualize_returns_dot(self, experiments: Path) -> None:
        dot = ExperimentGraph.visualize_from_yaml(experiments / "consumer" / "config.yaml")
        assert dot.startswith("digraph") and "producer" in dot and "consumer" in dot

    def test_reference_by_name_when_folder_differs(self, tmp_path: Path) -> None:
        """W-36 fixed: refs resolve by ``name:`` among siblings, whatever the folder is called."""
        root = tmp_path / "g"
        write_folder(root / "prod_folder", PRODUCER)
        write_folder(root / "consumer", CONSUMER)
        res = ExperimentGraph.from_yaml(root).run()
        assert res["consumer"].metrics.baseline.metrics["seen"] == [6, 6, 6, 6]

    def test_disabled_treatments_from_state_file(self, experiments: Path) -> None:
        (experiments / "consumer" / "config.state.json").write_text(json.dumps({"inactive_treatments": ["extra"]}))
        graph = ExperimentGraph.from_yaml(experiments)
        consumer = graph.experiments["consumer"]
        assert consumer.disabled_treatments == ("extra",)
        res = graph.run()
        assert sorted(res["consumer"].metrics.treatments.plain()) == ["bigger"]


# --- extensions: parameters, built-ins, seeds, files, graph.yaml ------------------------------------------

PARAMS = {
    "config.yaml": """
        name: params
        replicates: 3
        seed: 11
        datasource:
          values: {ramp: {start: 10, step: 2}}
        files:
          - input.txt
        steps:
          - add: {amount: 0.5}
          - measure
        treatments:
          shifted: {offset: 5.0}
        hypotheses:
          - name: shifted_up
            verifier: welch_t_test
            metrics: m
            params: {alternative: greater}
          - name: local
            verifier: gap_at_least
            metrics: m
            params: {minimum: 4.0}
    """,
    "input.txt": "hello\n",
    "datasources.py": """
        from crystallize import data_source

        @data_source
        def ramp(ctx, start: int = 0, step: int = 1):
            return [start + step * ctx["replicate"]]
    """,
    "steps.py": """
        from crystallize import pipeline_step

        @pipeline_step()
        def add(data, ctx, *, amount: float, offset: float = 0.0):
            return [x + amount + offset for x in data]

        @pipeline_step()
        def measure(data, ctx):
            return data, {"m": data[0], "seed": ctx["seed_used"]}
    """,
    "verifiers.py": """
        from crystallize import verifier

        @verifier
        def gap_at_least(baseline, treatment, *, minimum: float = 0.0):
            gap = sum(treatment["m"]) / len(treatment["m"]) - sum(baseline["m"]) / len(baseline["m"])
            return {"gap": gap, "p_value": 0.0 if gap >= minimum else 1.0}
    """,
}


class TestExtensions:
    def test_parameters_builtin_verifier_seed_and_files(self, tmp_path: Path) -> None:
        folder = write_folder(tmp_path / "g" / "params", PARAMS)
        exp = Experiment.from_yaml(folder / "config.yaml")
        assert exp.datasource.params == {"start": 10, "step": 2}
        assert exp.pipeline.steps[0].params == {"amount": 0.5}
        assert exp.get_plugin(SeedPlugin).seed == 11
        assert exp.datasource.extra_files == (folder / "input.txt",)
        res = exp.run()
        assert res.metrics.baseline.metrics["m"] == [10.5, 12.5, 14.5]
        assert res.metrics.treatments["shifted"].metrics["m"] == [15.5, 17.5, 19.5]
        assert res.metrics.baseline.metrics["seed"] == [11, 11 + 31337, 11 + 2 * 31337]
        welch = res.get_hypothesis("shifted_up").results["shifted"]
        # t = 3.0619, df = 4, one-sided (statsmodels ttest_ind, unequal var, alternative="larger")
        assert welch["p_value"] == pytest.approx(0.018795, abs=1e-6)
        assert res.get_hypothesis("local").results["shifted"] == {"gap": 5.0, "p_value": 0.0}

    def test_declared_file_edit_makes_the_experiment_stale(self, tmp_path: Path) -> None:
        from crystallize.graph.status import NodeState, StaleKind

        folder = write_folder(tmp_path / "g" / "params", PARAMS)
        Experiment.from_yaml(folder / "config.yaml").run()
        assert Experiment.from_yaml(folder / "config.yaml").status().state is NodeState.FRESH
        (folder / "input.txt").write_text("changed\n")
        status = Experiment.from_yaml(folder / "config.yaml").status()
        assert status.state is NodeState.STALE
        assert status.reasons[0].kind is StaleKind.DATA_CHANGED

    def test_graph_yaml_name_seed_and_store(self, tmp_path: Path) -> None:
        root = tmp_path / "g"
        write_folder(root, {"graph.yaml": "name: demo\nseed: 2024\nstore: {root: results, versioned: false}\n"})
        config = PARAMS["config.yaml"].replace("        seed: 11\n", "")
        write_folder(root / "params", {**PARAMS, "config.yaml": config})
        graph = ExperimentGraph.from_yaml(root)
        assert (graph.name, graph.seed, graph.store_root, graph.versioned) == ("demo", 2024, root / "results", False)
        res = graph.run()
        master = node_seed(2024, "params")
        assert master == int(np.random.SeedSequence(2024, spawn_key=_key("params")).generate_state(1)[0])
        assert res["params"].metrics.baseline.metrics["seed"] == [(master + r * 31337) % 2**32 for r in range(3)]
        assert read_json(root / "results" / "params" / "v0" / "run.json")["master_seed"] == master
        graph.run()
        assert sorted(p.name for p in (root / "results" / "params").iterdir() if p.is_dir()) == ["v0"]

    def test_graph_store_retention_and_node_backend(self, tmp_path: Path) -> None:
        from crystallize import ArtifactPlugin, ParallelExecution

        root = tmp_path / "g"
        write_folder(root, {"graph.yaml": "store: {retention: 1, durable: true}\ndescription: a demo\n"})
        config = PARAMS["config.yaml"].rstrip(" ") + "        backend: thread\n        workers: 2\n"
        write_folder(root / "params", {**PARAMS, "config.yaml": config})
        graph = ExperimentGraph.from_yaml(root)
        exp = graph.experiments["params"]
        plugin = exp.get_plugin(ArtifactPlugin)
        assert (plugin.artifact_retention, plugin.durable, plugin.root_dir) == (1, True, root / "data")
        execution = exp.get_plugin(ParallelExecution)
        assert (execution.executor_type, execution.max_workers) == ("thread", 2)
        assert graph.description == "a demo"
        node_override = PARAMS["config.yaml"].rstrip(" ") + "        store: {retention: 5}\n"
        write_folder(root / "params", {**PARAMS, "config.yaml": node_override})
        assert ExperimentGraph.from_yaml(root).experiments["params"].get_plugin(ArtifactPlugin).artifact_retention == 5

    @pytest.mark.parametrize(("graph_yaml", "key", "message"), [
        ("backend: gpu\n", "backend", "unknown backend 'gpu'"),
        ("workers: 0\n", "workers", "must be at least 1"),
        ("seed: soon\n", "seed", "must be an int"),
        ("store: {root: r, colour: red}\n", "store.colour", "unknown key 'colour'"),
    ])
    def test_graph_yaml_errors(self, tmp_path: Path, graph_yaml: str, key: str, message: str) -> None:
        root = tmp_path / "g"
        write_folder(root, {"graph.yaml": graph_yaml})
        write_folder(root / "params", PARAMS)
        with pytest.raises(ConfigError, match=rf"graph\.yaml \[{re.escape(key)}\]: {message}"):
            ExperimentGraph.from_yaml(root)

    def test_node_store_root_is_rejected(self, tmp_path: Path) -> None:
        config = PARAMS["config.yaml"].rstrip(" ") + "        store: {root: elsewhere}\n"
        folder = write_folder(tmp_path / "g" / "params", {**PARAMS, "config.yaml": config})
        with pytest.raises(ConfigError, match=r"\[store\.root\]: unknown key 'root'"):
            Experiment.from_yaml(folder / "config.yaml")

    def test_baseline_and_empty_treatments(self, tmp_path: Path) -> None:
        config = PARAMS["config.yaml"].replace("shifted: {offset: 5.0}", "baseline: {offset: 1.0}\n          same:")
        folder = write_folder(tmp_path / "g" / "params", {**PARAMS, "config.yaml": config.split("        hypotheses:")[0]})
        res = Experiment.from_yaml(folder / "config.yaml").run()
        assert res.metrics.baseline.metrics["m"] == [11.5, 13.5, 15.5]
        assert list(res.metrics.treatments) == ["same (v0)"]
        assert res.metrics.treatments["same"].metrics["m"] == [10.5, 12.5, 14.5]

    def test_list_form_datasource_and_initial_ctx(self, tmp_path: Path) -> None:
        config = """
            name: listed
            datasource:
              - a: {ramp: {start: 1}}
              - b: {ramp: {start: 100}}
            initial_ctx: {amount: 0.25}
            steps:
              - both
        """
        steps = """
            from crystallize import pipeline_step

            @pipeline_step()
            def both(data, ctx, *, amount: float):
                return data, {"sum": data["a"][0] + data["b"][0] + amount}
        """
        folder = write_folder(tmp_path / "g" / "listed", {"config.yaml": config, "steps.py": steps,
                                                          "datasources.py": PARAMS["datasources.py"]})
        res = Experiment.from_yaml(folder / "config.yaml").run()
        assert res.metrics.baseline.metrics == {"sum": [101.25]}


def _key(name: str) -> tuple[int, int]:
    import hashlib

    digest = hashlib.sha256(name.encode()).digest()
    return (int.from_bytes(digest[0:4], "little"), int.from_bytes(digest[4:8], "little"))


# --- config errors: each names the file and key ---------------------------------------------------------

def params_with(tmp_path: Path, old: str, new: str, **files: str) -> Path:
    config = PARAMS["config.yaml"].replace(old, new)
    assert config != PARAMS["config.yaml"] or old == new
    return write_folder(tmp_path / "g" / "params", {**PARAMS, **files, "config.yaml": config}) / "config.yaml"


class TestConfigErrors:
    def test_unknown_top_level_key_with_suggestion(self, tmp_path: Path) -> None:
        path = params_with(tmp_path, "replicates: 3", "replicats: 3")
        with pytest.raises(ConfigError, match=r"params/config\.yaml \[replicats\]: unknown key 'replicats'; "
                                              r"did you mean 'replicates'\?"):
            Experiment.from_yaml(path)

    def test_unknown_nested_key(self, tmp_path: Path) -> None:
        path = params_with(tmp_path, "params: {minimum: 4.0}", "params: {minimum: 4.0}\n            metric: m")
        with pytest.raises(ConfigError, match=r"\[hypotheses\[1\]\.metric\]: unknown key 'metric'; "
                                              r"did you mean 'metrics'\?"):
            Experiment.from_yaml(path)

    def test_unknown_graph_yaml_key(self, tmp_path: Path) -> None:
        write_folder(tmp_path / "g", {"graph.yaml": "name: demo\nsed: 1\n"})
        write_folder(tmp_path / "g" / "params", PARAMS)
        with pytest.raises(ConfigError, match=r"graph\.yaml \[sed\]: unknown key 'sed'; did you mean 'seed'\?"):
            ExperimentGraph.from_yaml(tmp_path / "g")

    @pytest.mark.parametrize(("old", "new", "key", "message"), [
        ("replicates: 3", "replicates: three", "replicates", "must be an int, not str"),
        ("replicates: 3", "replicates: true", "replicates", "must be an int, not bool"),
        ("seed: 11", "seed: 1.5", "seed", "must be an int, not float"),
        ("files:\n          - input.txt", "files: input.txt", "files", "must be a list, not str"),
        ("treatments:\n          shifted: {offset: 5.0}", "treatments:\n          shifted: 5", "treatments.shifted",
         "must be a mapping, not int"),
        ("steps:\n          - add: {amount: 0.5}\n          - measure", "steps: measure", "steps",
         "must be a list, not str"),
    ])
    def test_bad_types(self, tmp_path: Path, old: str, new: str, key: str, message: str) -> None:
        path = params_with(tmp_path, old, new)
        with pytest.raises(ConfigError, match=rf"config\.yaml \[{key.replace('.', chr(92) + '.')}\]: {message}"):
            Experiment.from_yaml(path)

    def test_bad_store_type(self, tmp_path: Path) -> None:
        path = params_with(tmp_path, "seed: 11", "seed: 11\n        store: {versioned: maybe}")
        with pytest.raises(ConfigError, match=r"\[store\.versioned\]: must be a bool, not str"):
            Experiment.from_yaml(path)

    def test_missing_factory(self, tmp_path: Path) -> None:
        path = params_with(tmp_path, "values: {ramp:", "values: {rampp:")
        with pytest.raises(ConfigError, match=r"\[datasource\.values\]: 'rampp' not found in datasources\.py "
                                              r"\(did you mean 'ramp'\? available: ramp\)"):
            Experiment.from_yaml(path)

    def test_bad_factory_parameter(self, tmp_path: Path) -> None:
        path = params_with(tmp_path, "step: 2}}", "stride: 2}}")
        with pytest.raises(ConfigError, match=r"\[datasource\.values\.ramp\]: Unknown parameters: stride"):
            Experiment.from_yaml(path)
        path = params_with(tmp_path, "- add: {amount: 0.5}", "- add: {amt: 0.5}")
        with pytest.raises(ConfigError, match=r"\[steps\[0\]\]: Unknown parameters: amt"):
            Experiment.from_yaml(path)

    def test_bad_verifier_params(self, tmp_path: Path) -> None:
        path = params_with(tmp_path, "params: {alternative: greater}", "params: {alternativ: greater}")
        with pytest.raises(ConfigError, match=r"\[hypotheses\[0\]\.params\]: .*alternativ"):
            Experiment.from_yaml(path)

    def test_missing_steps_py(self, tmp_path: Path) -> None:
        path = params_with(tmp_path, "seed: 11", "seed: 11")
        (path.parent / "steps.py").unlink()
        with pytest.raises(ConfigError, match=r"\[steps\[0\]\]: 'add' needs steps\.py beside config\.yaml, "
                                              r"which does not exist"):
            Experiment.from_yaml(path)

    def test_missing_datasource_section_and_steps(self, tmp_path: Path) -> None:
        folder = write_folder(tmp_path / "g" / "x", {"config.yaml": "name: x\nsteps: [a]\n"})
        with pytest.raises(ConfigError, match=r"x/config\.yaml \[datasource\]: config\.yaml must define a "
                                              r"'datasource' section"):
            Experiment.from_yaml(folder / "config.yaml")
        (folder / "config.yaml").write_text("name: x\ndatasource: {a: ramp}\n")
        with pytest.raises(ConfigError, match=r"\[steps\]: must list at least one step"):
            Experiment.from_yaml(folder / "config.yaml")

    def test_duplicate_keys_with_line_numbers(self, tmp_path: Path) -> None:
        path = params_with(tmp_path, "shifted: {offset: 5.0}", "shifted: {offset: 5.0}\n          shifted: {offset: 6}")
        with pytest.raises(ConfigError, match=r"\[treatments\.shifted\]: duplicate key \(line 13; first on line 12\)"):
            Experiment.from_yaml(path)
        nested = params_with(tmp_path, "{start: 10, step: 2}", "{start: 10, start: 2}")
        with pytest.raises(ConfigError, match=r"\[datasource\.values\.ramp\.start\]: duplicate key \(line 5; "
                                              r"first on line 5\)"):
            Experiment.from_yaml(nested)

    def test_invalid_yaml_syntax(self, tmp_path: Path) -> None:
        path = params_with(tmp_path, "replicates: 3", "replicates: [3")
        with pytest.raises(ConfigError, match=r"params/config\.yaml: invalid YAML at line \d+, column \d+"):
            Experiment.from_yaml(path)

    def test_unknown_output_used_by_a_step(self, tmp_path: Path) -> None:
        root = tmp_path / "g"
        config = PRODUCER["config.yaml"].replace("- produce_summary", "- produce_summary: {summary: sumary}")
        write_folder(root / "producer", {**PRODUCER, "config.yaml": config})
        with pytest.raises(ConfigError, match=r"\[steps\[0\]\.summary\]: output 'sumary' requested by step "
                                              r"'produce_summary' is not in outputs"):
            Experiment.from_yaml(root / "producer" / "config.yaml")

    def test_unknown_output_in_a_reference(self, experiments: Path) -> None:
        config = CONSUMER["config.yaml"].replace("producer#summary", "producer#summry")
        (experiments / "consumer" / "config.yaml").write_text(config)
        with pytest.raises(ConfigError, match=r"consumer/config\.yaml \[datasource\.producer_summary\]: experiment "
                                              r"'producer' has no output 'summry' \(outputs: summary\)"):
            ExperimentGraph.from_yaml(experiments)

    def test_importing_a_broken_module(self, tmp_path: Path) -> None:
        path = params_with(tmp_path, "seed: 11", "seed: 11", **{"steps.py": "raise RuntimeError('bad import')\n"})
        with pytest.raises(ConfigError, match=r"params/steps\.py: importing raised RuntimeError: bad import"):
            Experiment.from_yaml(path)


def test_boolean_yaml_keys_are_rejected(tmp_path: Path) -> None:
    config = PARAMS["config.yaml"].replace("shifted: {offset: 5.0}", "shifted: {off: 5.0}")
    folder = write_folder(tmp_path / "g" / "params", {**PARAMS, "config.yaml": config})
    with pytest.raises(ConfigError, match=r"\[treatments\.shifted\.False\]: key False is not a string \(YAML reads"):
        Experiment.from_yaml(folder / "config.yaml")


def test_overlong_names_are_rejected_with_their_key(tmp_path: Path) -> None:
    config = PARAMS["config.yaml"].replace("name: params", "name: " + "x" * 300)
    folder = write_folder(tmp_path / "g" / "params", {**PARAMS, "config.yaml": config})
    with pytest.raises(ConfigError, match=r"\[name\]: .*longer than 200 bytes"):
        Experiment.from_yaml(folder / "config.yaml")


def test_hypotheses_without_treatments_fail_at_load(tmp_path: Path) -> None:
    config = PARAMS["config.yaml"].replace("        treatments:\n          shifted: {offset: 5.0}\n", "")
    root = tmp_path / "g"
    write_folder(root / "params", {**PARAMS, "config.yaml": config})
    with pytest.raises(ConfigError, match=r"params/config\.yaml \[hypotheses\]: hypotheses need at least one treatment"):
        ExperimentGraph.from_yaml(root)


def test_unknown_hypothesis_metric_names_experiment_and_hypothesis(tmp_path: Path) -> None:
    from crystallize.errors import MissingMetricError

    config = PARAMS["config.yaml"].replace("metrics: m\n            params: {alternative: greater}",
                                           "metrics: nosuch\n            params: {alternative: greater}")
    root = tmp_path / "g"
    write_folder(root / "params", {**PARAMS, "config.yaml": config})
    graph = ExperimentGraph.from_yaml(root)
    with pytest.raises(MissingMetricError, match=r"'nosuch' missing .*\(experiment 'params', hypothesis 'shifted_up'\)"):
        graph.run()
    assert (root / "data" / "params" / "v0" / "shifted" / ".crystallize_complete").exists()  # stored first
