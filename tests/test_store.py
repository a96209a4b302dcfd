"""The on-disk store: layout, file contents, run records, versions, crash safety, retention."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from blake3 import blake3
from foundation_kit import fail_at, files_under, read_json, scores, summarise

import crystallize
from crystallize import (
    Artifact,
    ArtifactPlugin,
    BasePlugin,
    Experiment,
    ExperimentGraph,
    ExperimentInput,
    FrozenContext,
    Pipeline,
    SeedPlugin,
    Treatment,
    data_source,
    pipeline_step,
)
from crystallize.errors import StoreError
from crystallize.plugins import load_all_metrics, load_metrics
from crystallize.store.atomic import write_bytes, write_json
from crystallize.store.layout import ExperimentStore

SEED = 5


def seeds_for(master: int, n: int) -> list[int]:
    return [(master + r * 31337) % 2**32 for r in range(n)]


@pipeline_step()
def save_model(data: Any, ctx: FrozenContext, model: Artifact, *, gain: float = 1.0) -> Any:
    model.write({"gain": gain, "rep": ctx["replicate"]})
    return data, {"gain": gain}


@pipeline_step()
def save_big(data: Any, ctx: FrozenContext) -> Any:
    ctx.artifacts.add("big.bin", b"x" * 2000)
    return data, {"n": 1}


def json_art(name: str = "model.json") -> Artifact:
    return Artifact(name, writer=lambda o: json.dumps(o).encode(), loader=lambda p: json.loads(Path(p).read_text()))


def producer(art: Artifact, *plugins: Any, treatments: list[Treatment] | None = None, replicates: int = 2,
             name: str = "prod") -> Experiment:
    return Experiment(datasource=scores(), pipeline=Pipeline([save_model(model=art)]), name=name, outputs=[art],
                      replicates=replicates, treatments=treatments or [Treatment("hi", {"gain": 3.0})],
                      plugins=[SeedPlugin(seed=SEED), *plugins])


# --- layout and file contents --------------------------------------------------------------

class TestLayout:
    def test_journal_is_written_only_once_a_flush_is_due(self, tmp_path: Path, monkeypatch) -> None:
        import crystallize.store.writer as writer

        monkeypatch.setattr(writer, "_JOURNAL_SECONDS", -1.0)  # every replicate is "a second later"
        producer(json_art()).run()
        journal = tmp_path / "data" / "prod" / "v0" / "hi" / ".journal.jsonl"
        batches = [json.loads(line) for line in journal.read_text().splitlines()]
        assert [len(b) for b in batches] == [1, 1]  # a flush per replicate: each one "a second later"
        lines = [entry for batch in batches for entry in batch]
        assert [(e["replicate"], e["seed"], e["metrics"], e["error"]) for e in lines] == [
            (r, s, {"gain": [3.0]}, None) for r, s in enumerate(seeds_for(SEED, 2))]
        stored = (tmp_path / "data" / "prod" / "v0" / "replicate_1" / "hi" / "Save_ModelStep" / "model.json").read_bytes()
        assert lines[1]["artifacts"] == {"model.json": ["Save_ModelStep", blake3(stored).hexdigest()]}

    def test_unversioned_layout(self, tmp_path: Path) -> None:
        exp = producer(json_art())
        exp.run()
        v0 = tmp_path / "data" / "prod" / "v0"
        expected = ["_manifest.json", "metadata.json", "run.json"]
        for cond in ("baseline", "hi"):
            expected += [f"{cond}/.crystallize_complete", f"{cond}/results.json"]  # too quick for a journal
            expected += [f"replicate_{r}/{cond}/Save_ModelStep/model.json" for r in (0, 1)]
        assert files_under(v0) == sorted(expected)
        assert sorted(p.name for p in (tmp_path / "data" / "prod").iterdir()) == [".lock", "v0"]
        assert read_json(v0 / "_manifest.json") == {"model.json": "Save_ModelStep"}
        assert read_json(v0 / "metadata.json") == {"replicates": 2, "id": exp.id, "name": "prod"}
        assert read_json(v0 / "hi" / "results.json") == {"metrics": {"gain": [3.0, 3.0]}}
        assert read_json(v0 / "replicate_1" / "hi" / "Save_ModelStep" / "model.json") == {"gain": 3.0, "rep": 1}

    def test_run_json_contents(self, tmp_path: Path) -> None:
        art = json_art()
        producer(art).run()
        record = read_json(tmp_path / "data" / "prod" / "v0" / "run.json")
        assert record["schema"] == 1
        assert (record["experiment"], record["version"], record["status"]) == ("prod", 0, "complete")
        assert record["master_seed"] == SEED and record["replicates"] == 2
        assert record["started"] <= record["ended"]
        assert record["environment"]["python"] == ".".join(map(str, sys.version_info[:3]))
        assert record["environment"]["crystallize"] == crystallize.__version__
        assert "packages" in record["environment"]
        hi = record["conditions"]["hi"]
        assert (hi["version"], hi["outcome"], hi["replicates"]) == (0, "complete", 2)
        assert hi["seeds"] == seeds_for(SEED, 2)
        assert hi["metrics"] == [{"gain": [3.0]}, {"gain": [3.0]}]
        assert hi["errors"] == {}
        assert hi["artifacts"]["model.json"]["step"] == "Save_ModelStep"
        model_file = tmp_path / "data" / "prod" / "v0" / "replicate_0" / "hi" / "Save_ModelStep" / "model.json"
        assert hi["artifacts"]["model.json"]["blake3"]["0"] == blake3(model_file.read_bytes()).hexdigest()
        assert len(hi["fingerprint"]) == 64 and hi["inputs"]["treatment"] != "none"
        assert record["conditions"]["baseline"]["inputs"]["treatment"] == "none"

    def test_run_json_records_package_versions(self, tmp_path: Path) -> None:
        @pipeline_step()
        def uses_numpy(data: Any, ctx: FrozenContext) -> Any:
            return data, {"m": float(np.mean(data))}

        Experiment(datasource=scores(), pipeline=Pipeline([uses_numpy()]), name="np").run()
        packages = read_json(tmp_path / "data" / "np" / "v0" / "run.json")["environment"]["packages"]
        assert packages.get("numpy") == np.__version__

    def test_run_json_records_git_commit(self, tmp_path: Path) -> None:
        env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
               "GIT_COMMITTER_EMAIL": "t@t"}
        subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True, env=env)
        (tmp_path / "f.txt").write_text("x")
        subprocess.run(["git", "add", "f.txt"], cwd=tmp_path, check=True, env=env)
        subprocess.run(["git", "commit", "-q", "-m", "x"], cwd=tmp_path, check=True, env=env)
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True,
                              check=True).stdout.strip()
        producer(json_art()).run()
        assert read_json(tmp_path / "data" / "prod" / "v0" / "run.json")["git_commit"] == head

    def test_failed_condition_has_no_marker_and_records_errors(self, tmp_path: Path) -> None:
        exp = Experiment(datasource=scores(), pipeline=Pipeline([fail_at(fail_replicate=1, fail_condition="t"),
                                                                 summarise()]),
                         name="partial", replicates=3, treatments=[Treatment("t", {})], plugins=[SeedPlugin(seed=1)])
        res = exp.run()
        v0 = tmp_path / "data" / "partial" / "v0"
        assert (v0 / "baseline" / ".crystallize_complete").exists()
        assert not (v0 / "t" / ".crystallize_complete").exists()
        assert read_json(v0 / "t" / "results.json") == {"metrics": {"mean": [1.5, 3.5]}}
        record = read_json(v0 / "run.json")
        assert record["status"] == "failed"
        t = record["conditions"]["t"]
        assert t["outcome"] == "failed" and t["metrics"] == [{"mean": [1.5]}, None, {"mean": [3.5]}]
        assert t["errors"]["1"]["type"] == "RuntimeError" and t["errors"]["1"]["step"] == "Fail_AtStep"
        assert t["errors"]["1"]["message"] == "boom at replicate 1"
        assert list(res.errors) == ["t_rep_1"]
        assert load_metrics(tmp_path / "data" / "partial") == (0, {"mean": [1.5, 2.5, 3.5]}, {})

    def test_versioned_layout_and_reused_conditions(self, tmp_path: Path) -> None:
        """Resume writes v<N+1> with only what ran; run.json maps every condition to its version."""
        art = json_art()
        producer(art, ArtifactPlugin(versioned=True)).run()
        res = producer(json_art(), ArtifactPlugin(versioned=True),
                       treatments=[Treatment("hi", {"gain": 3.0}), Treatment("lo", {"gain": 0.5})]).run(
            strategy="resume")
        root = tmp_path / "data" / "prod"
        assert list(res.metrics.treatments) == ["hi (v0)", "lo (v1)"]
        v1 = files_under(root / "v1")
        assert "lo/.crystallize_complete" in v1 and "hi/.crystallize_complete" not in v1
        assert not any(f.startswith("replicate_0/hi") for f in v1)
        record = read_json(root / "v1" / "run.json")
        assert {k: v["version"] for k, v in record["conditions"].items()} == {"baseline": 0, "hi": 0, "lo": 1}
        assert record["conditions"]["hi"]["metrics"] == [{"gain": [3.0]}, {"gain": [3.0]}]
        assert read_json(root / "v1" / "_manifest.json") == {"model.json": "Save_ModelStep"}
        latest, base, found = load_all_metrics(root)
        assert latest == 1 and found == {"hi": (0, {"gain": [3.0, 3.0]}), "lo": (1, {"gain": [0.5, 0.5]})}
        assert base == {"gain": [1.0, 1.0]}  # v1 holds no baseline of its own: run.json maps it to v0

    def test_no_op_resume_creates_no_version(self, tmp_path: Path) -> None:
        producer(json_art(), ArtifactPlugin(versioned=True)).run()
        before = files_under(tmp_path / "data")
        res = producer(json_art(), ArtifactPlugin(versioned=True)).run(strategy="resume")
        assert files_under(tmp_path / "data") == before
        assert res.metrics.treatments["hi"].metrics == {"gain": [3.0, 3.0]}

    def test_upstream_pins(self, tmp_path: Path) -> None:
        art = json_art()
        prod = producer(art, ArtifactPlugin(versioned=True))

        @pipeline_step()
        def use(data: Any, ctx: FrozenContext) -> Any:
            return data, {"g": data["m"]["gain"]}

        cons = Experiment(datasource=ExperimentInput(m=art), pipeline=Pipeline([use()]), name="cons",
                          plugins=[ArtifactPlugin(versioned=True), SeedPlugin(seed=1)])
        graph = ExperimentGraph(prod, cons)
        graph.run()
        graph.run()  # rerun: producer v1, consumer v1 reads v1
        record = read_json(tmp_path / "data" / "cons" / "v1" / "run.json")
        assert record["conditions"]["hi"]["upstream"] == [
            {"producer": "prod", "artifact": "model.json", "version": 1, "condition": "hi", "fallback": False}]
        assert record["conditions"]["baseline"]["upstream"][0]["version"] == 1

    def test_durable_writes_the_same_files(self, tmp_path: Path) -> None:
        producer(json_art(), ArtifactPlugin(root_dir="fast")).run()
        producer(json_art(), ArtifactPlugin(root_dir="safe", durable=True)).run()
        assert files_under(tmp_path / "fast") == files_under(tmp_path / "safe")
        assert read_json(tmp_path / "safe" / "prod" / "v0" / "hi" / "results.json") == {"metrics": {"gain": [3.0, 3.0]}}

    def test_unreadable_newest_run_json_falls_back_to_an_older_one(self, tmp_path: Path) -> None:
        producer(json_art(), ArtifactPlugin(versioned=True)).run()
        producer(json_art(), ArtifactPlugin(versioned=True)).run()
        (tmp_path / "data" / "prod" / "v1" / "run.json").write_text("{ torn")
        res = producer(json_art(), ArtifactPlugin(versioned=True)).run(strategy="resume")
        assert res.run_info["conditions"] == {"baseline": 0, "hi": 0}
        assert list(res.metrics.treatments) == ["hi (v0)"]

    def test_unversioned_after_versioned_is_an_error(self, tmp_path: Path) -> None:
        producer(json_art(), ArtifactPlugin(versioned=True)).run()
        producer(json_art(), ArtifactPlugin(versioned=True)).run()
        with pytest.raises(StoreError, match=r"versioned=False but versions \[1\] exist"):
            producer(json_art()).run()

    def test_unversioned_rerun_replaces_v0(self, tmp_path: Path) -> None:
        producer(json_art()).run()
        producer(json_art(), treatments=[Treatment("hi", {"gain": 4.0})]).run()
        v0 = tmp_path / "data" / "prod" / "v0"
        assert sorted(p.name for p in v0.parent.iterdir() if p.is_dir()) == ["v0"]
        assert read_json(v0 / "hi" / "results.json") == {"metrics": {"gain": [4.0, 4.0]}}
        assert read_json(v0 / "replicate_0" / "hi" / "Save_ModelStep" / "model.json")["gain"] == 4.0


# --- atomic writes and version reservation ---------------------------------------------------

class TestAtomicAndReservation:
    def test_atomic_write_leaves_no_temp_files(self, tmp_path: Path) -> None:
        target = tmp_path / "d" / "f.json"
        write_json(target, {"a": 1})
        write_json(target, {"a": 2}, durable=True)
        assert read_json(target) == {"a": 2}
        assert [p.name for p in target.parent.iterdir()] == ["f.json"]

    def test_failed_write_keeps_the_old_file(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        import crystallize.store.atomic as atomic

        target = tmp_path / "f.bin"
        write_bytes(target, b"old")

        def no_space(src: Any, dst: Any) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(atomic.os, "replace", no_space)
        with pytest.raises(OSError, match="No space left"):
            write_bytes(target, b"new")
        assert target.read_bytes() == b"old"
        assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]

    def test_concurrent_reservations_never_share_a_version(self, tmp_path: Path) -> None:
        store = ExperimentStore(tmp_path / "data", "race")
        n = 12
        barrier = threading.Barrier(n, timeout=10)
        got: list[int] = []
        lock = threading.Lock()

        def reserve() -> None:
            barrier.wait()
            version = store.reserve_version()
            with lock:
                got.append(version)

        threads = [threading.Thread(target=reserve) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(got) == list(range(n))
        assert store.versions() == list(range(n))

    def test_two_concurrent_versioned_runs_get_their_own_versions(self, tmp_path: Path) -> None:
        barrier = threading.Barrier(2, timeout=10)

        @pipeline_step()
        def meet(data: Any, ctx: FrozenContext) -> Any:
            barrier.wait()  # both runs are in flight here, after reserving their versions
            return data, {"x": 1}

        def build() -> Experiment:
            return Experiment(datasource=scores(), pipeline=Pipeline([meet()]), name="twin",
                              plugins=[ArtifactPlugin(versioned=True), SeedPlugin(seed=1)])

        results: list[Any] = []
        threads = [threading.Thread(target=lambda: results.append(build().run())) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(r.run_info["version"] for r in results) == [0, 1]
        for v in (0, 1):
            record = read_json(tmp_path / "data" / "twin" / f"v{v}" / "run.json")
            assert record["version"] == v and record["status"] == "complete"
            assert (tmp_path / "data" / "twin" / f"v{v}" / "baseline" / ".crystallize_complete").exists()


# --- crash safety: SIGKILL at a fixed point ----------------------------------------------------

KILL_SCRIPT = '''
import os, signal, sys
from crystallize import ArtifactPlugin, Experiment, Pipeline, SeedPlugin, Treatment, data_source, pipeline_step

@data_source
def numbers(ctx):
    return [1, 2, 3]

@pipeline_step()
def maybe_die(data, ctx):
    kill_at = int(os.environ.get("KILL_AT", "-1"))
    ctx.artifacts.add("out.txt", str(ctx["replicate"]).encode())
    if ctx["replicate"] == kill_at and ctx["condition"] == "t":
        os.kill(os.getpid(), signal.SIGKILL)
    return data, {"total": sum(data) + ctx["replicate"]}

def build():
    return Experiment(datasource=numbers(), pipeline=Pipeline([maybe_die()]), name="victim", replicates=4,
                      treatments=[Treatment("t", {"k": 1})],
                      plugins=[ArtifactPlugin(root_dir="data", versioned=sys.argv[1] == "versioned"),
                               SeedPlugin(seed=3)])

if __name__ == "__main__":
    result = build().run(strategy=sys.argv[2])
    print(sorted(result.metrics.baseline.metrics["total"]))
'''


def run_script(tmp_path: Path, mode: str, strategy: str, kill_at: int | None) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "victim.py"
    script.write_text(KILL_SCRIPT)
    env = {**os.environ, "KILL_AT": str(kill_at if kill_at is not None else -1)}
    return subprocess.run([sys.executable, str(script), mode, strategy], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


class TestKilledRun:
    def test_sigkill_leaves_no_complete_looking_version(self, tmp_path: Path) -> None:
        assert run_script(tmp_path, "versioned", "rerun", None).returncode == 0
        root = tmp_path / "data" / "victim"
        before = snapshot(root / "v0")
        killed = run_script(tmp_path, "versioned", "rerun", kill_at=2)
        assert killed.returncode == -9
        assert snapshot(root / "v0") == before  # the earlier version is untouched
        v1 = root / "v1"
        assert not list(v1.rglob(".crystallize_complete"))
        assert not (v1 / "metadata.json").exists()
        assert read_json(v1 / "run.json")["status"] == "running"
        assert {c["outcome"] for c in read_json(v1 / "run.json")["conditions"].values()} == {"incomplete"}
        assert not [p for p in root.rglob("*.tmp")]
        _, _, treatments = load_metrics(root, 1)
        assert treatments == {}

    def test_status_and_resume_after_a_kill(self, tmp_path: Path) -> None:
        run_script(tmp_path, "versioned", "rerun", None)
        run_script(tmp_path, "versioned", "rerun", kill_at=2)
        resumed = run_script(tmp_path, "versioned", "resume", None)
        assert resumed.returncode == 0, resumed.stderr
        assert resumed.stdout.strip() == "[6, 7, 8, 9]"
        newest = max(int(p.name[1:]) for p in (tmp_path / "data" / "victim").iterdir() if p.name.startswith("v"))
        record = read_json(tmp_path / "data" / "victim" / f"v{newest}" / "run.json")
        assert {c["outcome"] for c in record["conditions"].values()} == {"complete"}

    def test_unversioned_kill_unmarks_what_it_rewrites(self, tmp_path: Path) -> None:
        assert run_script(tmp_path, "unversioned", "rerun", None).returncode == 0
        v0 = tmp_path / "data" / "victim" / "v0"
        assert len(list(v0.rglob(".crystallize_complete"))) == 2
        assert run_script(tmp_path, "unversioned", "rerun", kill_at=1).returncode == -9
        assert not list(v0.rglob(".crystallize_complete"))
        assert read_json(v0 / "run.json")["status"] == "running"
        assert run_script(tmp_path, "unversioned", "resume", None).stdout.strip() == "[6, 7, 8, 9]"
        assert len(list(v0.rglob(".crystallize_complete"))) == 2


class Interrupt(BasePlugin):
    """Presses Ctrl-C at a fixed point: before replicate ``rep`` of ``condition``."""

    def __init__(self, rep: int, condition: str) -> None:
        self.rep, self.condition = rep, condition

    def before_replicate(self, experiment: Any, ctx: Any) -> None:
        if (ctx["replicate"], ctx["condition"]) == (self.rep, self.condition):
            raise KeyboardInterrupt


class CountJobs(BasePlugin):
    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def before_replicate(self, experiment: Any, ctx: Any) -> None:
        self.seen.append((ctx["condition"], ctx["replicate"]))


class TestInterruptedRun:
    def build(self, *plugins: Any) -> Experiment:
        return Experiment(datasource=scores(), pipeline=Pipeline([summarise()]), name="cc", replicates=4,
                          treatments=[Treatment("t", {"k": 1})],
                          plugins=[SeedPlugin(seed=1), ArtifactPlugin(versioned=True), *plugins])

    def test_ctrl_c_leaves_a_resumable_store_and_resume_runs_only_what_is_missing(self, tmp_path: Path) -> None:
        with pytest.raises(KeyboardInterrupt):
            self.build(Interrupt(2, "t")).run()
        v0 = tmp_path / "data" / "cc" / "v0"
        assert not list(v0.rglob(".crystallize_complete"))
        record = read_json(v0 / "run.json")
        assert record["status"] == "failed"  # final: it records what ran before Ctrl-C
        assert [m is not None for m in record["conditions"]["baseline"]["metrics"]] == [True, True, True, False]
        assert {c["outcome"] for c in record["conditions"].values()} == {"incomplete"}
        counter = CountJobs()
        res = self.build(counter).run(strategy="resume")
        assert sorted(counter.seen) == [("baseline", 3), ("t", 2), ("t", 3)]
        assert res.metrics.baseline.metrics == {"mean": [1.5, 2.5, 3.5, 4.5]}
        assert res.metrics.treatments["t"].metrics == {"mean": [1.5, 2.5, 3.5, 4.5]}
        assert res.metrics.treatments["t"].seeds == seeds_for(1, 4)
        newest = read_json(tmp_path / "data" / "cc" / "v1" / "run.json")
        assert {k: (v["version"], v["outcome"]) for k, v in newest["conditions"].items()} == {
            "baseline": (1, "complete"), "t": (1, "complete")}


# --- retention --------------------------------------------------------------------------------------

@data_source
def unit(ctx: FrozenContext) -> int:
    return 1


def big_experiment(**plugin: Any) -> Experiment:
    return Experiment(datasource=unit(), pipeline=Pipeline([save_big()]), name="ret",
                      plugins=[ArtifactPlugin(versioned=True, **plugin), SeedPlugin(seed=1)])


class TestRetention:
    def test_old_versions_keep_only_results(self, tmp_path: Path) -> None:
        for _ in range(4):
            big_experiment(artifact_retention=2).run()
        root = tmp_path / "data" / "ret"
        assert [p.name for p in sorted(root.iterdir()) if p.is_dir()] == ["v0", "v1", "v2", "v3"]
        for v in ("v0", "v1"):
            assert files_under(root / v) == ["baseline/results.json", "run.json"]
        for v in ("v2", "v3"):
            assert "replicate_0/baseline/Save_BigStep/big.bin" in files_under(root / v)
            assert (root / v / "baseline" / ".crystallize_complete").exists()

    def test_big_files_leave_all_but_the_newest_kept_version(self, tmp_path: Path) -> None:
        for _ in range(3):
            big_experiment(artifact_retention=3, big_file_threshold_mb=0.001).run()
        root = tmp_path / "data" / "ret"
        big = "replicate_0/baseline/Save_BigStep/big.bin"
        assert [big in files_under(root / f"v{v}") for v in range(3)] == [False, False, True]
        assert not (root / "v1" / "baseline" / ".crystallize_complete").exists()  # no longer complete
        assert (root / "v2" / "baseline" / ".crystallize_complete").exists()
        assert read_json(root / "v1" / "baseline" / "results.json") == {"metrics": {"n": [1]}}

    def test_environment_overrides_the_default(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CRYSTALLIZE_ARTIFACT_RETENTION", "1")
        assert ArtifactPlugin().artifact_retention == 1
        assert ArtifactPlugin(artifact_retention=5).artifact_retention == 5
        for _ in range(2):
            big_experiment().run()
        assert files_under(tmp_path / "data" / "ret" / "v0") == ["baseline/results.json", "run.json"]

    def test_versions_still_referenced_are_never_pruned(self, tmp_path: Path) -> None:
        def build(names: list[str]) -> Experiment:
            return Experiment(datasource=unit(), pipeline=Pipeline([save_big()]), name="ret",
                              treatments=[Treatment(n, {"k": n}) for n in names],
                              plugins=[ArtifactPlugin(versioned=True, artifact_retention=1), SeedPlugin(seed=1)])

        build(["a"]).run()
        build(["a", "b"]).run(strategy="resume")
        res = build(["a", "b", "c"]).run(strategy="resume")
        assert list(res.metrics.treatments) == ["a (v0)", "b (v1)", "c (v2)"]
        root = tmp_path / "data" / "ret"
        assert (root / "v0" / "a" / ".crystallize_complete").exists()
        assert (root / "v0" / "replicate_0" / "a" / "Save_BigStep" / "big.bin").exists()
        assert (root / "v1" / "b" / ".crystallize_complete").exists()
        assert res.artifacts["big.bin"]["a"].read_bytes() == b"x" * 2000

    def test_versions_pinned_by_a_downstream_experiment_are_never_pruned(self, tmp_path: Path) -> None:
        from crystallize import Artifact, ExperimentGraph

        def graph_for(value: int) -> ExperimentGraph:
            out = Artifact("v.txt")

            @pipeline_step()
            def write_value(data, ctx, out: Artifact, *, value: int = 0):
                out.write(str(value))
                return data, {"v": value}

            @pipeline_step()
            def read_value(data, ctx):
                return data, {"seen": int(data)}

            producer = Experiment(unit(), Pipeline([write_value(out=out, value=value)]), name="prod", outputs=[out],
                                  plugins=[ArtifactPlugin(versioned=True, artifact_retention=1), SeedPlugin(seed=1)])
            consumer = Experiment(out, Pipeline([read_value()]), name="cons",
                                  plugins=[ArtifactPlugin(versioned=True, artifact_retention=1), SeedPlugin(seed=1)])
            return ExperimentGraph(producer, consumer)

        graph_for(1).run(strategy="resume")  # prod v0, cons v0 pins prod v0
        graph_for(2).run(only=["prod"], strategy="resume")  # prod v1; cons still pins prod v0
        graph_for(3).run(only=["prod"], strategy="resume")  # prod v2: v0 is past retention
        pinned = tmp_path / "data" / "prod" / "v0" / "replicate_0" / "baseline" / "Write_ValueStep" / "v.txt"
        assert pinned.read_text() == "1"
        assert (tmp_path / "data" / "prod" / "v0" / "baseline" / ".crystallize_complete").exists()
        stripped = tmp_path / "data" / "prod" / "v1"
        assert not (stripped / "baseline" / ".crystallize_complete").exists()  # v1: not pinned, pruned


def test_large_artifacts_are_hashed_while_written(tmp_path: Path) -> None:
    from crystallize.datasources.artifacts import ArtifactRecord
    from crystallize.store.writer import VersionWriter

    big, small = os.urandom((1 << 20) + 3), b"tiny"
    writer = VersionWriter(ExperimentStore(tmp_path, "exp"), 0)
    written = writer.persist_artifacts("baseline", 0, [ArtifactRecord("big.bin", big, step_name="S"),
                                                       ArtifactRecord("small.bin", small, step_name="S")])
    assert written == {"big.bin": ("S", blake3(big).hexdigest()), "small.bin": ("S", blake3(small).hexdigest())}
    folder = tmp_path / "exp" / "v0" / "replicate_0" / "baseline" / "S"
    assert (folder / "big.bin").read_bytes() == big and (folder / "small.bin").read_bytes() == small


def test_markers_and_new_artifact_files_are_written_without_a_temporary_name(tmp_path: Path) -> None:
    from crystallize.store.atomic import create_empty, write_new_bytes

    marker = tmp_path / "v0" / "baseline" / ".crystallize_complete"
    create_empty(marker)
    create_empty(marker)  # again: still one empty file
    assert marker.read_bytes() == b"" and sorted(p.name for p in marker.parent.iterdir()) == [marker.name]
    target = tmp_path / "v0" / "replicate_0" / "baseline" / "S" / "a.bin"
    write_new_bytes(target, b"first")
    assert target.read_bytes() == b"first" and [p.name for p in target.parent.iterdir()] == ["a.bin"]
    with open(target, "rb") as reader:  # a reader of the old file is never cut short by a rewrite
        write_new_bytes(target, b"second")
        assert reader.read() == b"first"
    assert target.read_bytes() == b"second" and [p.name for p in target.parent.iterdir()] == ["a.bin"]


def test_read_file_and_git_commit_read_with_plain_system_calls(tmp_path: Path) -> None:
    from crystallize.store.atomic import read_file
    from crystallize.store.record import _resolve_head

    big = os.urandom((1 << 20) * 2 + 5)
    (tmp_path / "big.bin").write_bytes(big)
    (tmp_path / "empty").write_bytes(b"")
    assert read_file(tmp_path / "big.bin") == big and read_file(tmp_path / "empty") == b""
    with pytest.raises(FileNotFoundError):
        read_file(tmp_path / "missing")
    git = tmp_path / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    assert _resolve_head(git) is None  # a branch with no commit yet
    (git / "packed-refs").write_text("# pack-refs\n" + "a" * 40 + " refs/heads/main\n")
    assert _resolve_head(git) == "a" * 40
    (git / "refs" / "heads" / "main").write_text("b" * 40 + "\n")
    assert _resolve_head(git) == "b" * 40  # a loose ref wins over packed-refs
    (git / "HEAD").write_text("c" * 40 + "\n")
    assert _resolve_head(git) == "c" * 40  # detached
