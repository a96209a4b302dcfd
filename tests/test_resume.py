"""``run(strategy="resume")``: reuse what is fresh, run only stale conditions and missing replicates."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from userkit import UserModules

from crystallize import treatment
from crystallize.graph.status import NodeState, StaleKind
from crystallize.results import plain_key
from crystallize.stats import welch_t_test

BOOST = treatment("boost", {"delta": 10.0})
MILD = treatment("mild", {"delta": 1.0})


@pytest.fixture
def user(tmp_path: Path):
    (tmp_path / "code").mkdir()
    modules = UserModules(tmp_path / "code")
    modules.steps()
    yield modules
    modules.close()


@pytest.fixture(params=[False, True], ids=["unversioned", "versioned"])
def versioned(request: pytest.FixtureRequest) -> bool:
    return request.param


def steps(user: UserModules) -> Any:
    return sys.modules[user.name("steps")]


def build(user: UserModules, root: Path, shape: str = "chain", **options: Any):
    return steps(user).build(root, shape, **options)


def noise_hypothesis():
    from crystallize import hypothesis

    @hypothesis(verifier=welch_t_test(), metrics="noise")
    def noise_differs(result):
        return result["p_value"]

    return noise_differs


def calls(user: UserModules) -> list[tuple[str, str, int]]:
    """Step executions since the last call, then forget them."""
    log = steps(user).CALLS.log
    taken = list(log)
    log.clear()
    return taken


def outcome(results: dict[str, Any]) -> dict[str, dict[str, tuple]]:
    """Per node and condition: per-replicate metrics and seeds (what must not depend on resuming)."""
    out = {}
    for name, result in results.items():
        conds = {"baseline": result.metrics.baseline}
        conds.update({plain_key(k): v for k, v in result.metrics.treatments.items()})
        out[name] = {c: (m.replicates, m.seeds) for c, m in conds.items()}
    return out


def versions(root: Path, node: str) -> list[str]:
    return sorted(p.name for p in (root / node).iterdir() if p.name.startswith("v"))


# ----------------------------------------------------------------------------------- nothing to do

@pytest.mark.parametrize("shape", ["chain", "diamond", "fan_out"])
def test_resume_with_nothing_changed_runs_no_step(user, tmp_path, versioned, shape):
    root = tmp_path / "store"
    options = dict(versioned=versioned, treatments=[BOOST], hypotheses=[noise_hypothesis()])
    first = build(user, root, shape, **options).run()
    assert len(calls(user)) > 0
    again = build(user, root, shape, **options).run(strategy="resume")
    assert calls(user) == []
    assert outcome(again) == outcome(first)
    for name in first:
        assert list(again[name].metrics.treatments) == ["boost (v0)"]
        assert again[name].artifacts == first[name].artifacts
        assert versions(root, name) == ["v0"]  # a no-op resume creates no version
    assert again["a"].metrics.hypotheses[0].results == first["a"].metrics.hypotheses[0].results


# ----------------------------------------------------------------------------------- treatments

def test_a_changed_treatment_reruns_only_that_condition(user, tmp_path, versioned):
    root = tmp_path / "store"
    options = dict(versioned=versioned, hypotheses=[noise_hypothesis()])
    first = build(user, root, treatments=[BOOST, MILD], **options).run()
    calls(user)
    changed = build(user, root, treatments=[treatment("boost", {"delta": 20.0}), MILD], **options)
    again = changed.run(strategy="resume")
    ran = calls(user)
    assert {c for _, c, _ in ran} == {"boost"} and len(ran) == 3 * 2  # three nodes, two replicates
    boost_key = "boost (v1)" if versioned else "boost (v0)"
    assert list(again["a"].metrics.treatments) == [boost_key, "mild (v0)"]
    assert again["a"].metrics.baseline.metrics == first["a"].metrics.baseline.metrics
    assert again["a"].metrics.treatments["mild"] == first["a"].metrics.treatments["mild"]
    assert again["a"].metrics.treatments["boost"].metrics["total"] == [70.5, 70.5]  # 10.5 + 3 values * 20
    hypothesis = again["a"].metrics.hypotheses[0]
    assert set(hypothesis.results) == {"boost", "mild"}
    assert hypothesis.results["mild"] == first["a"].metrics.hypotheses[0].results["mild"]
    assert changed.status().fresh
    paths = again["a"].artifacts["a.json"]  # reused conditions read their files from the version that made them
    assert paths["mild"].parts[-5] == "v0" and paths["boost"].parts[-5] == ("v1" if versioned else "v0")
    assert paths["mild"].read_bytes() == first["a"].artifacts["a.json"]["mild"].read_bytes()


def test_a_new_treatment_runs_alone_and_a_removed_one_runs_nothing(user, tmp_path, versioned):
    root = tmp_path / "store"
    build(user, root, versioned=versioned, treatments=[BOOST]).run()
    calls(user)
    grown = build(user, root, versioned=versioned, treatments=[BOOST, MILD]).run(strategy="resume")
    assert {c for _, c, _ in calls(user)} == {"mild"}
    assert list(grown["c"].metrics.treatments) == ["boost (v0)", "mild (v1)" if versioned else "mild (v0)"]
    shrunk = build(user, root, versioned=versioned, treatments=[MILD]).run(strategy="resume")
    assert calls(user) == []
    assert list(shrunk["a"].metrics.treatments) == ["mild (v1)" if versioned else "mild (v0)"]


# ----------------------------------------------------------------------------------- settings

def test_raising_replicates_runs_only_the_new_ones_and_lowering_reuses(user, tmp_path, versioned):
    root, reference = tmp_path / "store", tmp_path / "reference"
    build(user, root, versioned=versioned, replicates=5, treatments=[BOOST]).run()
    calls(user)
    raised = build(user, root, versioned=versioned, replicates=10, treatments=[BOOST])
    status = raised.status()
    assert {kind for node in status.values() for r in node.reasons for kind in [r.kind]} == {StaleKind.REPLICATES_CHANGED}
    more = raised.run(strategy="resume")
    assert sorted({r for _, _, r in calls(user)}) == [5, 6, 7, 8, 9]
    whole = build(user, reference, versioned=versioned, replicates=10, treatments=[BOOST]).run()
    calls(user)
    assert outcome(more) == outcome(whole)
    fewer = build(user, root, versioned=versioned, replicates=3, treatments=[BOOST]).run(strategy="resume")
    assert calls(user) == []
    assert fewer["b"].metrics.baseline.replicates == whole["b"].metrics.baseline.replicates[:3]


def test_resumed_replicates_reuse_the_drawn_master_seed(user, tmp_path, versioned):
    from crystallize.plugins.builtin import replicate_seed

    root = tmp_path / "store"
    build(user, root, versioned=versioned, seed=None).run()
    master = json.loads((root / "a" / "v0" / "run.json").read_text())["master_seed"]
    calls(user)
    more = build(user, root, versioned=versioned, seed=None, replicates=4).run(strategy="resume")
    assert sorted({r for _, _, r in calls(user)}) == [2, 3]
    assert more["a"].metrics.baseline.seeds == [replicate_seed(master, r) for r in range(4)]


def test_a_changed_parameter_reruns_its_node_and_whatever_reads_new_bytes(user, tmp_path):
    root = tmp_path / "store"
    build(user, root, treatments=[BOOST]).run()
    calls(user)
    build(user, root, treatments=[BOOST], factor=3.0).run(strategy="resume")  # b's explicit parameter
    assert {s for s, _, _ in calls(user)} == {"transform"}
    build(user, root, treatments=[BOOST], factor=3.0, initial_ctx={"unused": 1}).run(strategy="resume")
    assert sorted({(s, c) for s, c, _ in calls(user)}) == [("produce", "baseline"), ("produce", "boost")]


def test_an_upstream_rerun_with_identical_bytes_leaves_downstream_alone(user, tmp_path, versioned):
    root = tmp_path / "store"
    build(user, root, "diamond", versioned=versioned, treatments=[BOOST]).run()
    calls(user)
    user.edit("steps", "round(helpers.bump(shift(x)) * SCALE + delta, 6)", "round(delta + SCALE * helpers.bump(shift(x)), 6)")
    graph = build(user, root, "diamond", versioned=versioned, treatments=[BOOST])
    assert graph.plan().may_run == ("b", "c", "d")
    graph.run(strategy="resume")
    assert {s for s, _, _ in calls(user)} == {"produce"}  # early cutoff: b, c, d compared a's new hashes
    assert graph.status().fresh


# ----------------------------------------------------------------------------------- crashes and failures

RUNNER = """
import importlib, sys
sys.path.insert(0, {folder!r})
import crystallize.store.writer as writer
if {immediate!r}:
    writer._JOURNAL_SECONDS = -1.0  # flush the journal after every replicate
module = importlib.import_module({module!r})
module.build({root!r}, "chain", versioned={versioned!r}, replicates=6, treatments=[
    __import__("crystallize").treatment("boost", {{"delta": 10.0}})]).run()
"""


@pytest.mark.parametrize("immediate", [True, False], ids=["journal-flushed", "journal-batched"])
def test_a_killed_run_resumes_only_missing_replicates(user, tmp_path, versioned, immediate):
    root, reference = tmp_path / "store", tmp_path / "reference"
    script = RUNNER.format(folder=str(user.folder), immediate=immediate, module=user.name("steps"),
                           root=str(root), versioned=versioned)
    env = {**os.environ, "CRYSTALLIZE_TEST_KILL": "produce:3"}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env, cwd=tmp_path,
                          capture_output=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    graph = build(user, root, versioned=versioned, replicates=6, treatments=[BOOST])
    status = graph.status()
    assert status["a"].state is NodeState.INCOMPLETE
    missing = {c: s.missing_replicates for c, s in status["a"].conditions.items()}
    for condition, replicates in missing.items():
        assert set(replicates) >= {3, 4, 5}
        if immediate:
            assert replicates == (3, 4, 5), condition
    assert kinds_of(status["a"]) == {StaleKind.INCOMPLETE}
    assert {n: status[n].state for n in "bc"} == {"b": NodeState.NEVER_RUN, "c": NodeState.NEVER_RUN}
    resumed = graph.run(strategy="resume")
    ran = [(c, r) for s, c, r in calls(user) if s == "produce"]
    assert sorted(ran) == sorted((c, r) for c, reps in missing.items() for r in reps)
    whole = build(user, reference, versioned=versioned, replicates=6, treatments=[BOOST]).run()
    assert outcome(resumed) == outcome(whole)
    for name in ("a", "b"):
        for condition, path in resumed[name].artifacts[f"{name}.json"].items():
            assert path.read_bytes() == whole[name].artifacts[f"{name}.json"][condition].read_bytes()
    assert graph.status().fresh


def kinds_of(node: Any) -> set[StaleKind]:
    return {r.kind for r in node.reasons}


def test_a_failed_condition_reruns_only_its_failed_replicates_and_blocks_downstream(user, tmp_path, versioned,
                                                                                    monkeypatch):
    root, reference = tmp_path / "store", tmp_path / "reference"
    monkeypatch.setenv("CRYSTALLIZE_TEST_FAIL", "produce:boost:1")
    first = build(user, root, versioned=versioned, replicates=3, treatments=[BOOST]).run()
    ran = calls(user)
    assert ("transform", "boost", 0) not in ran  # blocked conditions never run on missing inputs
    assert first["b"].run_info["blocked"] == ["boost"] and first["c"].run_info["blocked"] == ["boost"]
    assert set(first["a"].errors) == {"boost_rep_1"}
    monkeypatch.delenv("CRYSTALLIZE_TEST_FAIL")
    graph = build(user, root, versioned=versioned, replicates=3, treatments=[BOOST])
    assert graph.status()["a"].conditions["boost"].missing_replicates == (1,)
    resumed = graph.run(strategy="resume")
    assert sorted(calls(user)) == [("produce", "boost", 1)] + [("transform", "boost", r) for r in (0, 0, 1, 1, 2, 2)]
    whole = build(user, reference, versioned=versioned, replicates=3, treatments=[BOOST]).run()
    assert outcome(resumed) == outcome(whole)  # same seeds for the rerun replicate
    assert resumed["a"].errors == {}
    assert graph.status().fresh


# ----------------------------------------------------------------------------------- selection

def test_only_upto_and_force_select_what_runs(user, tmp_path):
    root = tmp_path / "store"
    build(user, root, treatments=[BOOST]).run()
    calls(user)
    graph = build(user, root, treatments=[BOOST])
    graph.run(strategy="resume", force=["b"])
    assert {s for s, _, _ in calls(user)} == {"transform"} and graph.status().fresh  # same bytes: c untouched
    user.edit("steps", "values = [round(v * factor, 6)", "values = [round(v * factor + 1.0, 6)")
    graph = build(user, root, treatments=[BOOST])
    graph.run(strategy="resume", upto="b")
    assert {(s, c, r) for s, c, r in calls(user)} == {("transform", c, r) for c in ("baseline", "boost") for r in (0, 1)}
    status = graph.status()
    assert (status["b"].state, status["c"].state) == (NodeState.FRESH, NodeState.STALE)
    graph.run(strategy="resume", only=["c"])
    assert len(calls(user)) == 4 and graph.status().fresh


def test_experiment_run_resume_on_one_experiment(user, tmp_path, versioned):
    root = tmp_path / "store"
    first = build(user, root, versioned=versioned, treatments=[BOOST]).experiments["a"]
    before = first.run()
    calls(user)
    again = build(user, root, versioned=versioned, treatments=[BOOST, MILD]).experiments["a"]
    result = again.run(strategy="resume")
    assert {c for _, c, _ in calls(user)} == {"mild"}
    assert result.metrics.baseline.metrics == before.metrics.baseline.metrics
    assert result.metrics.treatments["boost (v0)"] == before.metrics.treatments["boost"]
    assert again.status().state is NodeState.FRESH
    assert json.loads((root / "a" / ("v1" if versioned else "v0") / "run.json").read_text())["conditions"]["boost"][
        "version"] == 0


# ----------------------------------------------------------------------------------- older versions

def test_reverting_an_edit_reuses_the_older_version_that_matches(user, tmp_path):
    root = tmp_path / "store"
    first = build(user, root, treatments=[BOOST], versioned=True).run()
    calls(user)
    build(user, root, treatments=[treatment("boost", {"delta": 20.0})], versioned=True).run(strategy="resume")
    assert {c for _, c, _ in calls(user)} == {"boost"}
    reverted = build(user, root, treatments=[BOOST], versioned=True)
    status = reverted.status()
    assert status.fresh and status["a"].conditions["boost"].version == 0  # v1 changed it; v0 still matches
    again = reverted.run(strategy="resume")
    assert calls(user) == []  # nothing reran
    assert list(again["a"].metrics.treatments) == ["boost (v0)"]
    assert outcome(again) == outcome(first)
    # the new record says where everything is (a version holding only its records), so readers of
    # the newest record find v0 again; a second resume writes nothing
    assert versions(root, "a") == ["v0", "v1", "v2"]
    assert sorted(p.name for p in (root / "a" / "v2").iterdir()) == ["_manifest.json", "metadata.json", "run.json"]
    record = json.loads((root / "a" / "v2" / "run.json").read_text())
    assert {n: c["version"] for n, c in record["conditions"].items()} == {"baseline": 0, "boost": 0}
    reverted.run(strategy="resume")
    assert calls(user) == [] and versions(root, "a") == ["v0", "v1", "v2"]


def test_a_failed_rerun_does_not_hide_an_older_complete_result(user, tmp_path, monkeypatch):
    root = tmp_path / "store"
    build(user, root, treatments=[BOOST], versioned=True).run()
    monkeypatch.setenv("CRYSTALLIZE_TEST_FAIL", "produce:boost:1")  # the forced rerun fails one replicate of boost
    build(user, root, treatments=[BOOST], versioned=True).run(strategy="rerun")
    monkeypatch.delenv("CRYSTALLIZE_TEST_FAIL")
    calls(user)
    status = build(user, root, treatments=[BOOST], versioned=True).status()
    assert status["a"].conditions["boost"].state is NodeState.FRESH and status["a"].conditions["boost"].version == 0
    build(user, root, treatments=[BOOST], versioned=True).run(strategy="resume")
    assert calls(user) == []


def test_an_older_version_whose_files_are_gone_is_not_reused(user, tmp_path):
    import shutil

    root = tmp_path / "store"
    build(user, root, treatments=[BOOST], versioned=True).run()
    build(user, root, treatments=[treatment("boost", {"delta": 20.0})], versioned=True).run(strategy="resume")
    shutil.rmtree(root / "a" / "v0" / "replicate_1" / "boost")
    calls(user)
    build(user, root, treatments=[BOOST], versioned=True).run(strategy="resume")
    ran = calls(user)
    assert {c for _, c, _ in ran} == {"boost"} and ("produce", "boost", 1) in ran  # v0 lost files: boost reruns


def test_looking_back_never_mixes_master_seeds(user, tmp_path):
    """A drawn seed is not part of the fingerprint ("drawn"): after a run with seed 5, an
    unseeded run keeps 5 (the newest record's), so v0's conditions, whose fingerprint says
    "drawn" too but whose seed was another, must not be reused next to conditions run with 5."""
    root = tmp_path / "store"
    build(user, root, treatments=[BOOST], versioned=True, seed=None).run()
    build(user, root, treatments=[BOOST], versioned=True, seed=5).run(strategy="resume")
    calls(user)
    result = build(user, root, treatments=[BOOST, MILD], versioned=True, seed=None).run(strategy="resume")
    assert {c for _, c, _ in calls(user)} == {"baseline", "boost", "mild"}  # "5" -> "drawn": all rerun, with 5
    seeds = {name: m.seeds for name, m in [("baseline", result["a"].metrics.baseline),
                                           *result["a"].metrics.treatments.plain().items()]}
    assert seeds["baseline"] == seeds["boost"] == seeds["mild"] == [5, 5 + 31337]


def test_only_reads_upstream_nodes_as_status_shows_them(user, tmp_path):
    root = tmp_path / "store"
    build(user, root, treatments=[BOOST], versioned=True).run()
    build(user, root, treatments=[BOOST], versioned=True, delta=3.0).run(strategy="resume")  # a: v1, b, c rerun
    reverted = build(user, root, treatments=[BOOST], versioned=True)
    status = reverted.status()
    assert status.fresh and status["a"].conditions["baseline"].version == 0
    calls(user)
    results = reverted.run(strategy="resume", only=["c"])  # a and b are read as status shows them: v0
    assert calls(user) == [] and results["c"].run_info["conditions"] == {"baseline": 0, "boost": 0}
    assert reverted.status().fresh
