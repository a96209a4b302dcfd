"""Crash recovery beyond the basic kill-and-resume: a condition finished just before the kill,
a second crash during a resume, the journal buffer while the runner waits, torn journal lines,
and metric values JSON cannot hold as they are."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from crystallize import ArtifactPlugin, Experiment, SeedPlugin, data_source, pipeline_step
from crystallize.graph.status import NodeState, StaleKind
from crystallize.store.layout import ExperimentStore
from crystallize.store.reader import read_journal
from crystallize.store.writer import VersionWriter

PROJECT = '''
import os, signal
from crystallize import Artifact, ArtifactPlugin, Experiment, SeedPlugin, data_source, pipeline_step, treatment

blob = Artifact("blob.txt")

@data_source
def numbers(ctx, rng):
    return [float(x) for x in rng.normal(size=4)]

@pipeline_step()
def total(data, ctx, delta: float = 0.0):
    if os.environ.get("KILL_AT") == f"{ctx['condition']}:{ctx['replicate']}":
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("BUFFER_FROM") == f"{ctx['condition']}:{ctx['replicate']}":
        import crystallize.store.writer as writer
        writer._JOURNAL_SECONDS = 3600.0  # from here on, entries wait in the buffer
    if os.environ.get("RAN"):
        with open(os.environ["RAN"], "a") as fh:
            fh.write(f"{ctx['condition']}:{ctx['replicate']}\\n")
    s = sum(data) + delta
    blob.write(f"{ctx['condition']} {ctx['replicate']} {s!r}".encode())
    return data, {"total": s}

def build(root, versioned, replicates=6):
    return Experiment(datasource=numbers(), pipeline=[total()], name="exp", replicates=replicates, outputs=[blob],
                      treatments=[treatment("boost", {"delta": 10.0})],
                      plugins=[ArtifactPlugin(root_dir=str(root), versioned=versioned), SeedPlugin(seed=11)])
'''

CHILD = '''
import sys
sys.path.insert(0, {folder!r})
import crystallize.store.writer as writer
writer._JOURNAL_SECONDS = {seconds!r}
import project
project.build({root!r}, {versioned!r}, {replicates!r}).run(strategy="resume")
'''


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    (tmp_path / "project.py").write_text(PROJECT)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("project", None)
    import project as module

    return module


def killed_run(tmp_path: Path, root: Path, versioned: bool, kill_at: str, *, replicates: int = 6,
               seconds: float = -1.0, buffer_from: str = "") -> None:
    """Run in a child that SIGKILLs itself in job ``kill_at``; ``seconds=-1`` flushes the journal every
    replicate, until job ``buffer_from`` (if given) makes it buffer again."""
    code = CHILD.format(folder=str(tmp_path), root=str(root), versioned=versioned, replicates=replicates,
                        seconds=seconds)
    env = {**os.environ, "KILL_AT": kill_at, "BUFFER_FROM": buffer_from}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == -9, done.stderr[-2000:]


def missing(experiment: Experiment) -> dict[str, tuple[int, ...]]:
    return {name: c.missing_replicates for name, c in experiment.status().conditions.items()}


def metrics(result: Any) -> dict[str, Any]:
    return {"baseline": result.metrics.baseline.metrics, "boost": result.metrics.treatments["boost"].metrics}


@pytest.mark.parametrize("versioned", [False, True], ids=["unversioned", "versioned"])
def test_a_condition_that_finished_before_the_kill_is_recorded_without_rerunning(
        project: Any, tmp_path: Path, versioned: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "store"
    killed_run(tmp_path, root, versioned, "boost:5")  # baseline's six replicates are all in its journal
    status = project.build(root, versioned).status()
    baseline = status.conditions["baseline"]
    assert (baseline.state, baseline.missing_replicates) == (NodeState.INCOMPLETE, ())
    assert baseline.reasons[0].kind is StaleKind.INCOMPLETE and "without running anything" in baseline.reasons[0].detail
    assert status.conditions["boost"].missing_replicates == (5,)
    ran = tmp_path / "ran.txt"
    monkeypatch.setenv("RAN", str(ran))
    resumed = project.build(root, versioned).run(strategy="resume")
    assert ran.read_text().split() == ["boost:5"]
    whole = project.build(tmp_path / "reference", versioned).run()
    assert metrics(resumed) == metrics(whole)
    assert resumed.metrics.baseline.seeds == whole.metrics.baseline.seeds
    for condition in ("baseline", "boost"):
        assert resumed.artifacts["blob.txt"][condition].read_bytes() == whole.artifacts["blob.txt"][condition].read_bytes()
    assert project.build(root, versioned).status().state is NodeState.FRESH


def test_a_finished_condition_journals_its_last_replicates_before_its_marker(project: Any, tmp_path: Path) -> None:
    root = tmp_path / "store"
    # baseline:0 starts the journal; from boost:0 on entries are buffered; baseline finishes at baseline:2
    killed_run(tmp_path, root, False, "boost:2", replicates=3, buffer_from="boost:0")
    status = project.build(root, False, replicates=3).status()
    assert status.conditions["baseline"].state is NodeState.INCOMPLETE
    assert missing(project.build(root, False, replicates=3)) == {"baseline": (), "boost": (2,)}


def test_a_crash_during_a_resume_keeps_what_the_resume_carried_over(project: Any, tmp_path: Path) -> None:
    root = tmp_path / "store"
    killed_run(tmp_path, root, True, "boost:2")
    assert missing(project.build(root, True)) == {"baseline": (3, 4, 5), "boost": (2, 3, 4, 5)}
    killed_run(tmp_path, root, True, "boost:4")  # the resume carried baseline 0-2 into a new version
    assert missing(project.build(root, True)) == {"baseline": (5,), "boost": (4, 5)}


@pytest.mark.parametrize("versioned", [False, True], ids=["unversioned", "versioned"])
def test_a_crash_while_adding_replicates_keeps_the_earlier_ones(project: Any, tmp_path: Path, versioned: bool) -> None:
    root = tmp_path / "store"
    project.build(root, versioned, replicates=4).run()  # quick: no journal, only run.json
    killed_run(tmp_path, root, versioned, "boost:5", seconds=3600.0)  # nothing of this run reaches the journal
    assert missing(project.build(root, versioned)) == {"baseline": (4, 5), "boost": (4, 5)}


class _Collected:
    """The part of the collector ``_collect_some`` uses."""

    def __init__(self, writer: VersionWriter) -> None:
        self.writer, self.added = writer, []

    def add(self, result: Any) -> None:
        self.added.append(result)


def test_buffered_entries_reach_the_journal_while_the_runner_waits(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import crystallize.store.writer as writer_module
    from crystallize.execution.engine import _collect_some

    store = ExperimentStore(tmp_path, "exp")
    writer = VersionWriter(store, 0)
    writer.journal("baseline", {"replicate": 0, "seed": 1, "metrics": {"x": [1]}, "tags": None, "artifacts": {},
                                "error": None})  # buffered: the writer was created a moment ago
    monkeypatch.setattr(writer_module, "_JOURNAL_SECONDS", 0.05)
    journal = store.journal(0, "baseline")
    assert not journal.exists()
    slow: Future[Any] = Future()

    def finish_once_journaled() -> None:  # the job "finishes" only after its neighbour's entry is on disk
        for _ in range(1000):
            if journal.exists():
                slow.set_result("done")
                return
            threading.Event().wait(0.01)
        slow.set_exception(AssertionError("the buffered entry never reached the journal"))

    threading.Thread(target=finish_once_journaled).start()
    collector = _Collected(writer)
    assert _collect_some({slow}, collector) == set()  # type: ignore[arg-type]
    assert collector.added == ["done"]
    assert [e["replicate"] for e in read_journal(store, 0, "baseline")] == [0]


def test_a_batch_appended_after_a_torn_line_stays_readable(tmp_path: Path) -> None:
    store = ExperimentStore(tmp_path, "exp")
    journal = store.journal(0, "baseline")
    journal.parent.mkdir(parents=True)
    whole = json.dumps([{"replicate": 0, "seed": 1, "metrics": {"x": [1]}, "error": None}])
    journal.write_text(whole + "\n" + '[{"replicate": 1, "seed": 2, "metr')  # a kill mid-write
    writer = VersionWriter(store, 0)
    writer.journal("baseline", {"replicate": 2, "seed": 3, "metrics": {"x": [3]}, "error": None})
    writer.flush()
    assert [e["replicate"] for e in read_journal(store, 0, "baseline")] == [0, 2]


@data_source
def one(ctx: Any) -> int:
    return 1


@pipeline_step()
def odd(data: int, ctx: Any) -> Any:
    loop: list[Any] = []
    loop.append(loop)
    return data, {"hist": {(1, 2): 3}, "loop": loop, "fine": 2.5}


def test_metric_values_json_cannot_hold_are_stored_as_text(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    def build() -> Experiment:
        return Experiment(datasource=one(), pipeline=[odd()], name="odd", replicates=2,
                          plugins=[ArtifactPlugin(root_dir=tmp_path, versioned=True), SeedPlugin(seed=1)])

    with caplog.at_level(logging.WARNING, logger="crystallize.store.atomic"):
        result = build().run()
    assert result.metrics.baseline.metrics["fine"] == [2.5, 2.5]
    record = json.loads((tmp_path / "odd" / "v0" / "run.json").read_text())
    assert record["status"] == "complete"
    assert record["conditions"]["baseline"]["metrics"][0]["hist"] == [{"(1, 2)": 3}]
    assert record["conditions"]["baseline"]["metrics"][0]["loop"] == [["[[...]]"]]
    assert any("run.json" in m and "as text" in m for m in caplog.messages)
    assert build().status().state is NodeState.FRESH


_COUNTED: list[int] = []  # module level: a closure cell's changing value would make the step look edited


@pipeline_step()
def counted(data: int, ctx: Any) -> Any:
    _COUNTED.append(ctx["replicate"])
    return data, {"x": 1}


def test_a_run_that_waited_for_the_lock_plans_again_from_the_record_it_finds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two runs of one unversioned store: the one that waits for the lock sees the other's
    finished record and reuses it instead of repeating its work."""
    import contextlib

    import crystallize.execution.engine as engine

    calls = _COUNTED
    calls.clear()

    def build() -> Experiment:
        experiment = Experiment(datasource=one(), pipeline=[counted()], name="shared", replicates=3,
                                plugins=[ArtifactPlugin(root_dir=tmp_path, versioned=False)])
        experiment.strategy = "resume"
        return experiment

    real_lock = engine._experiment_lock
    first = [True]

    @contextlib.contextmanager
    def lock_taken_by_another_run_first(path: str) -> Any:
        if first[0]:  # while this run "waits", another run of the same store does all the work
            first[0] = False
            build().run()
        with real_lock(path):
            yield

    monkeypatch.setattr(engine, "_experiment_lock", lock_taken_by_another_run_first)
    result = build().run()
    assert calls == [0, 1, 2]  # each replicate ran once, in the other run
    assert result.metrics.baseline.metrics == {"x": [1, 1, 1]}
    monkeypatch.setattr(engine, "_experiment_lock", real_lock)
    assert build().run().metrics.baseline.metrics == {"x": [1, 1, 1]} and calls == [0, 1, 2]  # no-op resume


def test_a_run_of_an_unversioned_experiment_from_inside_itself_is_refused(tmp_path: Path) -> None:
    from crystallize.errors import StoreError

    seen: list[str] = []

    @pipeline_step()
    def recurse(data: int, ctx: Any) -> Any:
        try:
            build().run()
        except StoreError as exc:
            seen.append(str(exc))
        return data, {"x": 1}

    def build() -> Experiment:
        return Experiment(datasource=one(), pipeline=[recurse()], name="self",
                          plugins=[ArtifactPlugin(root_dir=tmp_path, versioned=False)])

    assert build().run().metrics.baseline.metrics == {"x": [1]}
    assert len(seen) == 1 and "experiment 'self' started a run of itself" in seen[0]
