"""The example graphs under ``graphs/`` run, and their results make sense.

Each test works on a copy of the graph folder in a temporary directory, so the store
(``<graph folder>/data``) never lands in the checkout.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from crystallize import ExperimentGraph
from crystallize.graph.status import NodeState, StaleKind

REPO = Path(__file__).resolve().parents[1]
BREAST_CANCER = REPO / "graphs" / "breast_cancer"
N_TUMOURS = 569  # rows of sklearn.datasets.load_breast_cancer


def copy_graph(source: Path, target_dir: Path) -> Path:
    """Copy a graph folder without its store or caches; return the copy."""
    target = target_dir / source.name
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("data", "__pycache__", "config.state.json"))
    return target


def load_npy(path: Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


def run_record(folder: Path, experiment: str, version: int = 0) -> dict[str, Any]:
    return json.loads((folder / "data" / experiment / f"v{version}" / "run.json").read_text())


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ExperimentGraph, dict[str, Any]]:
    """The default graph, copied and run once with its own settings (10 replicates)."""
    folder = copy_graph(BREAST_CANCER, tmp_path_factory.mktemp("examples"))
    graph = ExperimentGraph.from_yaml(folder)
    return folder, graph, graph.run()


class TestBreastCancerDefinition:
    def test_three_nodes_in_order_with_a_fan_in(self) -> None:
        graph = ExperimentGraph.from_yaml(BREAST_CANCER)
        assert graph.name == "breast_cancer"
        assert graph.order() == ["split", "features", "train"]
        assert graph.upstream("train") == ["features", "split"]
        assert graph.artifacts_on("split", "features") == ("test_mask.npy",)
        assert graph.artifacts_on("split", "train") == ("test_mask.npy",)
        assert graph.artifacts_on("features", "train") == ("features.npy",)

    def test_settings_from_graph_yaml(self) -> None:
        graph = ExperimentGraph.from_yaml(BREAST_CANCER)
        assert graph.seed == 2024
        assert graph.versioned is True
        assert Path(graph.store_root) == BREAST_CANCER / "data"

    def test_treatments_live_where_they_act(self) -> None:
        experiments = ExperimentGraph.from_yaml(BREAST_CANCER).experiments
        assert [t.name for t in experiments["split"].treatments] == []
        assert [t.name for t in experiments["features"].treatments] == ["pca"]
        assert [t.name for t in experiments["train"].treatments] == ["strong_reg", "weak_reg"]
        assert {e.replicates for e in experiments.values()} == {10}


class TestBreastCancerRun:
    def test_every_condition_present_with_every_replicate(self, ran: Any) -> None:
        _, _, results = ran
        assert sorted(results) == ["features", "split", "train"]
        assert results["split"].metrics.treatments.plain() == {}
        assert sorted(results["features"].metrics.treatments.plain()) == ["pca"]
        assert sorted(results["train"].metrics.treatments.plain()) == ["pca", "strong_reg", "weak_reg"]
        assert list(results["train"].metrics.treatments) == ["pca (v0)", "strong_reg (v0)", "weak_reg (v0)"]
        for result in results.values():
            assert result.errors == {}
        train = results["train"].metrics
        for condition in (train.baseline, *train.treatments.plain().values()):
            assert {k: len(v) for k, v in condition.metrics.items()} == {"auc": 10, "accuracy": 10, "log_loss": 10}

    def test_split_sizes(self, ran: Any) -> None:
        metrics = ran[2]["split"].metrics.baseline.metrics
        assert metrics["n_test"] == [171] * 10
        assert metrics["n_train"] == [N_TUMOURS - 171] * 10

    def test_feature_counts(self, ran: Any) -> None:
        features = ran[2]["features"].metrics
        assert features.baseline.metrics["n_features"] == [30] * 10
        assert features.baseline.metrics["kept_variance"] == [1.0] * 10
        assert features.treatments["pca"].metrics["n_features"] == [3] * 10
        assert all(0.6 < v < 0.8 for v in features.treatments["pca"].metrics["kept_variance"])

    def test_scores_are_sane(self, ran: Any) -> None:
        train = ran[2]["train"].metrics
        for condition in (train.baseline, *train.treatments.plain().values()):
            assert all(0.9 <= v <= 1.0 for v in condition.metrics["auc"])
            assert all(0.85 <= v <= 1.0 for v in condition.metrics["accuracy"])
            assert all(0.0 < v < 1.0 for v in condition.metrics["log_loss"])
        # strong regularisation shrinks the probabilities towards 0.5: worse log loss
        assert np.mean(train.treatments["strong_reg"].metrics["log_loss"]) > np.mean(train.baseline.metrics["log_loss"])

    def test_hypotheses_tested_with_paired_t_tests(self, ran: Any) -> None:
        result = ran[2]["train"]
        assert [h.name for h in result.metrics.hypotheses] == ["auc_differs", "accuracy_differs"]
        for name, metric in (("auc_differs", "auc"), ("accuracy_differs", "accuracy")):
            hyp = result.get_hypothesis(name)
            assert hyp.errors == {}
            assert sorted(hyp.results) == ["pca", "strong_reg", "weak_reg"]
            for treatment, stats in hyp.results.items():
                assert stats["test"] == "paired_t_test"
                assert stats["metric"] == metric
                assert stats["n_baseline"] == stats["n_treatment"] == 10
                assert 0.0 <= stats["p_value"] <= stats["p_value_adjusted"] <= 1.0
                assert stats["correction"] == "holm"
                assert stats["significant"] == (stats["p_value_adjusted"] < 0.05)
                base = np.asarray(result.metrics.baseline.metrics[metric])
                treated = np.asarray(result.metrics.treatments[treatment].metrics[metric])
                assert stats["mean_difference"] == pytest.approx(float(np.mean(treated - base)))
            assert hyp.ranking["best"] in hyp.results

    def test_replicates_draw_different_splits(self, ran: Any) -> None:
        folder = ran[0]
        masks = [load_npy(folder / f"data/split/v0/replicate_{r}/baseline/Stratified_SplitStep/test_mask.npy")
                 for r in range(10)]
        assert all(m.shape == (N_TUMOURS,) and m.dtype == bool and m.sum() == 171 for m in masks)
        assert len({m.tobytes() for m in masks}) == 10
        aucs = ran[2]["train"].metrics.baseline.metrics["auc"]
        assert len(set(aucs)) > 1

    def test_feature_artifacts_are_npy_matrices(self, ran: Any) -> None:
        folder = ran[0]
        step = "Transform_FeaturesStep"
        assert load_npy(folder / f"data/features/v0/replicate_0/baseline/{step}/features.npy").shape == (N_TUMOURS, 30)
        assert load_npy(folder / f"data/features/v0/replicate_0/pca/{step}/features.npy").shape == (N_TUMOURS, 3)
        scores = load_npy(folder / "data/train/v0/replicate_0/weak_reg/Fit_LogisticStep/test_scores.npy")
        assert scores.shape == (171,) and ((scores >= 0) & (scores <= 1)).all()

    def test_upstream_pins_follow_the_conditions(self, ran: Any) -> None:
        conditions = run_record(ran[0], "train")["conditions"]

        def pins(condition: str) -> dict[str, tuple[str, bool]]:
            return {p["producer"]: (p["condition"], p["fallback"]) for p in conditions[condition]["upstream"]}

        assert pins("pca") == {"split": ("baseline", True), "features": ("pca", False)}
        assert pins("strong_reg") == {"split": ("baseline", True), "features": ("baseline", True)}
        assert pins("baseline") == {"split": ("baseline", False), "features": ("baseline", False)}

    def test_store_layout(self, ran: Any) -> None:
        store = ran[0] / "data"
        assert sorted(p.name for p in store.iterdir()) == ["features", "split", "train"]
        version = store / "train" / "v0"
        for name in ("run.json", "metadata.json", "_manifest.json"):
            assert (version / name).is_file()
        for condition in ("baseline", "pca", "strong_reg", "weak_reg"):
            assert (version / condition / ".crystallize_complete").is_file()
            assert (version / condition / "results.json").is_file()
        assert json.loads((version / "_manifest.json").read_text()) == {"test_scores.npy": "Fit_LogisticStep"}
        assert json.loads((version / "metadata.json").read_text())["replicates"] == 10

    def test_fresh_after_the_run_and_resume_reruns_nothing(self, ran: Any) -> None:
        folder, graph, _ = ran
        status = graph.status()
        assert {name: node.state for name, node in status.items()} == dict.fromkeys(status, NodeState.FRESH)
        again = ExperimentGraph.from_yaml(folder).run(strategy="resume")
        assert list(again["train"].metrics.treatments) == ["pca (v0)", "strong_reg (v0)", "weak_reg (v0)"]
        assert [p.name for p in (folder / "data" / "train").iterdir() if p.name.startswith("v")] == ["v0"]
        assert again["train"].metrics.baseline.metrics == ran[2]["train"].metrics.baseline.metrics


class TestWhyGraphsMatter:
    """Changing one treatment reruns only its own conditions; the rest is reused."""

    def test_changes_are_found_and_rerun_alone(self, tmp_path: Path) -> None:
        folder = copy_graph(BREAST_CANCER, tmp_path)
        for config in folder.glob("*/config.yaml"):  # 2 replicates: faster, same logic
            config.write_text(config.read_text().replace("replicates: 10", "replicates: 2"))
        ExperimentGraph.from_yaml(folder).run()
        config = folder / "train" / "config.yaml"
        config.write_text(config.read_text().replace("C: 100.0", "C: 30.0"))
        status = ExperimentGraph.from_yaml(folder).status()
        assert (status["split"].state, status["features"].state) == (NodeState.FRESH, NodeState.FRESH)
        assert status["train"].state is NodeState.STALE
        assert status["train"].to_run == ("weak_reg",)
        assert status["train"].conditions["weak_reg"].reasons[0].kind is StaleKind.TREATMENT_CHANGED
        results = ExperimentGraph.from_yaml(folder).run(strategy="resume")
        assert list(results["train"].metrics.treatments) == ["pca (v0)", "strong_reg (v0)", "weak_reg (v1)"]

    def test_upstream_edit_with_identical_bytes_stops_early(self, tmp_path: Path) -> None:
        folder = copy_graph(BREAST_CANCER, tmp_path)
        for config in folder.glob("*/config.yaml"):
            config.write_text(config.read_text().replace("replicates: 10", "replicates: 2"))
        ExperimentGraph.from_yaml(folder).run()
        steps = folder / "features" / "steps.py"
        steps.write_text(steps.read_text().replace("n_components: int = 3", "n_components: int = 4"))
        graph = ExperimentGraph.from_yaml(folder)
        plan = graph.plan()
        assert (plan.will_run, plan.may_run, plan.fresh) == (("features",), ("train",), ("split",))
        results = graph.run(strategy="resume")
        # only PCA features changed bytes, so only train's pca condition reran
        assert list(results["features"].metrics.treatments) == ["pca (v1)"]
        assert list(results["train"].metrics.treatments) == ["pca (v1)", "strong_reg (v0)", "weak_reg (v0)"]
        assert results["features"].metrics.treatments["pca"].metrics["n_features"] == [4, 4]


class TestSeeds:
    def test_same_seed_same_numbers(self, ran: Any, tmp_path: Path) -> None:
        folder = copy_graph(BREAST_CANCER, tmp_path)
        results = ExperimentGraph.from_yaml(folder).run(replicates=2)
        first = ran[2]["train"].metrics
        again = results["train"].metrics
        assert again.baseline.metrics["auc"] == first.baseline.metrics["auc"][:2]
        assert again.treatments["pca"].metrics["auc"] == first.treatments["pca"].metrics["auc"][:2]


class TestCommandLine:
    def test_run_then_status_is_fresh(self, tmp_path: Path) -> None:
        pytest.importorskip("crystallize.cli.main")
        folder = copy_graph(BREAST_CANCER, tmp_path)
        run = subprocess.run([sys.executable, "-m", "crystallize", "run", str(folder), "--replicates", "2"],
                             capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False)
        assert run.returncode == 0, run.stderr
        assert "auc_differs" in run.stdout
        assert (folder / "data" / "train" / "v0" / "run.json").is_file()
        status = subprocess.run([sys.executable, "-m", "crystallize", "status", str(folder), "--json"],
                                capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False)
        assert json.loads(status.stdout)["schema"] == 1
