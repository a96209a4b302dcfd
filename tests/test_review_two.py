"""Review of the compact provenance, sparse tags, lock-before-plan and GC changes, as a user meets them.

Each test pins a value a user sees: step records, tags in ``run.json``, what a pickled result
holds, what a custom replicate loop receives, how two threads share one unversioned store and
that the GC settings come back after nested runs.
"""

from __future__ import annotations

import gc
import json
import pickle
import threading
from pathlib import Path
from typing import Any

from crystallize import (
    ArtifactPlugin,
    BasePlugin,
    Experiment,
    FrozenContext,
    Pipeline,
    SeedPlugin,
    Treatment,
    data_source,
    pipeline_step,
    standalone_context,
)


@data_source
def rep_number(ctx: FrozenContext) -> int:
    return ctx.get("replicate", 0)


@pipeline_step()
def tag_and_note(data: int, ctx: FrozenContext, *, bias: float = 0.0) -> float:
    ctx.add("seen", data)
    ctx.record("n", data, tags={"stage": "a"})
    ctx.metrics.add("plain", 1)
    return data + bias


@pipeline_step()
def untouched(data: float, ctx: FrozenContext) -> float:
    return data


@pipeline_step()
def total(data: float, ctx: FrozenContext) -> Any:
    return data, {"total": data}


def _records(result: Any, condition: str, rep: int) -> list[tuple[str, bool, dict[str, Any], dict[str, Any]]]:
    """(step, cache hit, {key: value written}, {metric: values the step added}) per step record."""
    return [(r["step"], r["cache_hit"], _flat(r["ctx_changes"])["wrote"], _flat(r["ctx_changes"])["metrics"])
            for r in result.provenance["ctx_changes"][condition][rep]]


def _flat(changes: dict[str, Any]) -> dict[str, Any]:
    """A record's ``ctx_changes`` without the before/after pairs: what the step wrote and added."""
    return {"wrote": {k: c["after"] for k, c in changes["wrote"].items()},
            "metrics": {k: list(c["after"][len(c["before"]):]) for k, c in changes["metrics"].items()}}


def _three_steps(**kwargs: Any) -> Experiment:
    return Experiment(datasource=rep_number(), pipeline=Pipeline([tag_and_note(), untouched(), total()]),
                      name=kwargs.pop("name", "prov"), replicates=2, treatments=[Treatment("t", {"bias": 1.0})],
                      **kwargs)


class TestProvenanceRecords:
    def test_records_per_condition_and_replicate(self) -> None:
        res = _three_steps().run()
        assert _records(res, "baseline", 1) == [
            ("Tag_And_NoteStep", False, {"seen": 1}, {"n": [1], "plain": [1]}),
            ("UntouchedStep", False, {}, {}),
            ("TotalStep", False, {}, {"total": [1.0]}),
        ]
        assert _records(res, "t", 0)[2] == ("TotalStep", False, {}, {"total": [1.0]})
        assert sorted(res.provenance["ctx_changes"]) == ["baseline", "t"]

    def test_records_of_quiet_steps_are_separate_dicts(self) -> None:
        res = _three_steps().run()
        a, b = res.provenance["ctx_changes"]["baseline"][0][1], res.provenance["ctx_changes"]["baseline"][1][1]
        a["ctx_changes"]["wrote"]["mine"] = True
        assert b["ctx_changes"]["wrote"] == {}

    def test_pickled_result_holds_plain_dicts(self) -> None:
        res = _three_steps().run()
        back = pickle.loads(pickle.dumps(res))
        assert type(back.provenance["ctx_changes"]) is dict
        assert back.provenance["ctx_changes"] == res.provenance["ctx_changes"]
        assert back.provenance["ctx_changes"]["t"][1][0]["ctx_changes"]["wrote"] == {"seen": {"before": None, "after": 1}}

    def test_to_json_and_dict_copy_serialise(self) -> None:
        res = _three_steps().run()
        saved = json.loads(res.to_json())
        assert saved["provenance"]["ctx_changes"]["baseline"]["0"][2]["ctx_changes"]["metrics"] == {
            "total": {"before": [], "after": [0.0]}}
        plain = dict(res.provenance, ctx_changes=dict(res.provenance["ctx_changes"]))
        assert json.loads(json.dumps(plain))["ctx_changes"]["t"]["1"][0]["step"] == "Tag_And_NoteStep"

    def test_pipeline_get_provenance_and_return_provenance(self) -> None:
        p = Pipeline([tag_and_note(), total()])
        data, records = p.run(5, standalone_context({"bias": 2.0}), return_provenance=True)
        assert data == 7.0
        assert [(r["step"], _flat(r["ctx_changes"])) for r in records] == [
            ("Tag_And_NoteStep", {"wrote": {"seen": 5}, "metrics": {"n": [5], "plain": [1]}}),
            ("TotalStep", {"wrote": {}, "metrics": {"total": [7.0]}}),
        ]
        assert p.get_provenance() == records
        assert p.get_provenance() is not p.get_provenance()

    def test_custom_replicate_loop_gets_expanded_records(self) -> None:
        seen: list[Any] = []

        class Loop(BasePlugin):
            def run_experiment_loop(self, experiment: Any, replicate_fn: Any) -> list[Any]:
                out = [replicate_fn(rep) for rep in range(experiment.replicates)]
                seen.extend(out)
                return out

        res = _three_steps(plugins=[Loop()]).run()
        assert res.metrics.treatments["t"].metrics["total"] == [1.0, 2.0]
        assert sorted(seen[1].provenance) == ["baseline", "t"]
        assert [r["step"] for r in seen[1].provenance["t"]] == ["Tag_And_NoteStep", "UntouchedStep", "TotalStep"]
        assert _flat(seen[1].provenance["t"][0]["ctx_changes"]) == {"wrote": {"seen": 1},
                                                                    "metrics": {"n": [1], "plain": [1]}}
        assert json.loads(json.dumps(seen[0].provenance))["baseline"][2]["ctx_changes"]["metrics"] == {
            "total": {"before": [], "after": [0.0]}}


@pipeline_step(cacheable=True)
def cached_tags(data: int, ctx: FrozenContext) -> int:
    ctx.record("m", data, tags={"i": 0})
    ctx.record("m", data + 100)
    ctx.record("m", data + 200, tags={"i": 2})
    return data


@pipeline_step()
def late_tag(data: int, ctx: FrozenContext) -> Any:
    ctx.record("m", -1, tags={"late": True})
    ctx.add("tags_seen", ctx.metrics.get_tags("m"))
    return data, {"z": data}


class TestTags:
    def test_sparse_tags_reads(self) -> None:
        ctx = standalone_context()
        ctx.metrics.add("a", 1)
        ctx.metrics.add("a", 2, tags={"k": "v"})
        ctx.metrics.add("b", 3)
        assert ctx.metrics.get_tags("a") == ({}, {"k": "v"})
        assert ctx.metrics.get_tags("b") == ({},)
        assert ctx.metrics.get_tags("missing") == ()
        assert ctx.metrics.tags() == {"a": [{}, {"k": "v"}]}
        ctx.metrics.get_tags("a")[1]["k"] = "changed"  # a copy
        assert ctx.metrics.tags_at("a", 1) == {"k": "v"}

    def test_cached_step_replays_tags_in_place(self, tmp_path: Path, monkeypatch: Any) -> None:
        monkeypatch.setenv("CRYSTALLIZE_CACHE_DIR", str(tmp_path / "cache"))

        def make() -> Experiment:
            return Experiment(datasource=rep_number(), pipeline=Pipeline([cached_tags(), late_tag()]), name="tags",
                              replicates=2, plugins=[ArtifactPlugin(root_dir="data"), SeedPlugin(seed=1)])

        first, second = make().run(), make().run(strategy="rerun")
        expected_tags = ({"i": 0}, {}, {"i": 2}, {"late": True})
        for res in (first, second):
            assert res.metrics.baseline.metrics == {"m": [0, 100, 200, -1, 1, 101, 201, -1], "z": [0, 1]}
            assert res.provenance["ctx_changes"]["baseline"][1][1]["ctx_changes"]["wrote"] == {
                "tags_seen": {"before": None, "after": expected_tags}}
        assert [r["cache_hit"] for r in second.provenance["ctx_changes"]["baseline"][0]] == [True, False]
        record = json.loads((tmp_path / "data" / "tags" / "v0" / "run.json").read_text())
        assert record["conditions"]["baseline"]["tags"] == [{"m": list(expected_tags)}] * 2


calls: list[tuple[str, int]] = []


@pipeline_step()
def counted(data: int, ctx: FrozenContext, *, bias: float = 0.0) -> Any:
    calls.append((ctx["condition"], data))
    return data, {"v": data + bias}


class TestSharedUnversionedStore:
    def test_two_threads_resume_run_jobs_once(self) -> None:
        calls.clear()

        def make() -> Experiment:
            return Experiment(datasource=rep_number(), pipeline=Pipeline([counted()]), name="twin", replicates=3,
                              treatments=[Treatment("t", {"bias": 1.0})],
                              plugins=[ArtifactPlugin(root_dir="data"), SeedPlugin(seed=1)])

        out: dict[int, Any] = {}

        def go(i: int) -> None:
            res = make().run(strategy="resume")
            out[i] = (res.metrics.baseline.metrics, res.metrics.treatments["t"].metrics)

        threads = [threading.Thread(target=go, args=(i,)) for i in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert out[0] == out[1] == ({"v": [0.0, 1.0, 2.0]}, {"v": [1.0, 2.0, 3.0]})
        assert sorted(calls) == [("baseline", 0), ("baseline", 1), ("baseline", 2), ("t", 0), ("t", 1), ("t", 2)]
        assert json.loads(Path("data/twin/v0/run.json").read_text())["status"] == "complete"

    def test_nested_run_of_another_experiment_in_the_same_store(self) -> None:
        inner = Experiment(datasource=rep_number(), pipeline=Pipeline([total()]), name="inner", replicates=2,
                           plugins=[ArtifactPlugin(root_dir="data")])

        @pipeline_step()
        def run_inner(data: int, ctx: FrozenContext) -> Any:
            return data, {"inner": sum(inner.run(strategy="resume").metrics.baseline.metrics["total"])}

        outer = Experiment(datasource=rep_number(), pipeline=Pipeline([run_inner()]), name="outer", replicates=2,
                           plugins=[ArtifactPlugin(root_dir="data")])
        res = outer.run()
        assert res.errors == {}
        assert res.metrics.baseline.metrics == {"inner": [1.0, 1.0]}


gc_seen: list[tuple[tuple[int, int, int], bool]] = []


@pipeline_step()
def gc_probe(data: int, ctx: FrozenContext) -> Any:
    gc_seen.append((gc.get_threshold(), gc.get_freeze_count() > 0))
    if ctx.get("nest", False):
        Experiment(datasource=rep_number(), pipeline=Pipeline([gc_probe()]), name="gc_inner").run()
    return data, {"x": 1}


class TestGcSettings:
    def test_nested_runs_restore_threshold_and_unfreeze(self) -> None:
        gc_seen.clear()
        before = gc.get_threshold()
        frozen_before = gc.get_freeze_count()
        Experiment(datasource=rep_number(), pipeline=Pipeline([gc_probe()]), name="gc_outer",
                   initial_ctx={"nest": True}).run()
        assert len(gc_seen) == 2
        assert all(t[0] >= 50_000 and frozen for t, frozen in gc_seen) or frozen_before > 0
        assert gc.get_threshold() == before
        if frozen_before == 0:
            assert gc.get_freeze_count() == 0
