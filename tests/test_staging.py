"""Large artifacts staged through ``ctx.artifacts.path(name)`` (spec §11): what reaches the
store, what fails a replicate, and what is cleaned up."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from crystallize import (Artifact, ArtifactPlugin, BasePlugin, Experiment, ParallelExecution, Pipeline, SeedPlugin,
                         Treatment, data_source, pipeline_step, standalone_context)
from crystallize.context import FrozenContext
from crystallize.datasources.artifacts import ArtifactLog, _host, _owner_pids, sweep_staging
from crystallize.errors import ArtifactNotFoundError, ContextMutationError
from crystallize.fingerprint.content import bytes_digest

OUTSIDE = "outside.bin"  # a file a step keeps outside the store (in the test's working directory)


@data_source
def one(ctx: FrozenContext) -> int:
    return 1


def _experiment(step: Any, name: str, *, replicates: int = 2, **kwargs: Any) -> Experiment:
    return Experiment(datasource=one(), pipeline=Pipeline([step]), name=name, replicates=replicates,
                      plugins=[SeedPlugin(seed=1), ArtifactPlugin(root_dir="data"), *kwargs.pop("plugins", [])],
                      **kwargs)


def _stored(name: str, rep: int, step: str, file: str = "big.bin") -> Path:
    return Path("data", name, "v0", f"replicate_{rep}", "baseline", step, file)


def _staging_left() -> list[str]:
    staging = Path("data", ".staging")
    return sorted(str(p.relative_to(staging)) for p in staging.rglob("*")) if staging.exists() else []


# --- links: the store holds its own regular file with the bytes that were hashed -----------------


@pipeline_step()
def link_out(data: Any, ctx: FrozenContext, how: str = "symlink") -> Any:
    outside = Path(OUTSIDE).absolute()
    outside.write_bytes(b"weights-%d" % ctx["replicate"])
    target = ctx.artifacts.path("big.bin")
    os.symlink(outside, target) if how == "symlink" else os.link(outside, target)
    return data, {"m": 1}


@pytest.mark.parametrize("how", ["symlink", "hardlink"])
def test_a_linked_staging_file_is_stored_as_its_own_copy(how: str) -> None:
    result = _experiment(link_out(how=how), "linked", replicates=1).run()
    assert result.errors == {}
    stored = _stored("linked", 0, "Link_OutStep")
    assert not stored.is_symlink() and stored.stat().st_nlink == 1
    assert stored.stat().st_ino != Path(OUTSIDE).stat().st_ino
    with open(OUTSIDE, "r+b") as fh:  # the trainer overwrites its checkpoint in place
        fh.write(b"CHANGED!!")
    assert stored.read_bytes() == b"weights-0"
    record = json.loads(Path("data", "linked", "v0", "run.json").read_text())
    assert record["conditions"]["baseline"]["artifacts"]["big.bin"]["blake3"] == {"0": bytes_digest(b"weights-0")}
    assert _staging_left() == []


@pipeline_step()
def dangle(data: Any, ctx: FrozenContext) -> Any:
    os.symlink(Path("nowhere.bin").absolute(), ctx.artifacts.path("big.bin"))
    return data, {"m": 1}


def test_a_dangling_symlink_counts_as_no_file() -> None:
    result = _experiment(dangle(), "dangling", replicates=1).run()
    error = result.errors["baseline_rep_0"]
    assert isinstance(error, ArtifactNotFoundError)
    assert "asked for ctx.artifacts.path('big.bin') but wrote no file there" in str(error)


# --- anything but a regular file fails only its replicate, in the job ------------------------------


@pipeline_step()
def not_a_file(data: Any, ctx: FrozenContext, what: str = "folder") -> Any:
    target = ctx.artifacts.path("big.bin")
    if ctx["replicate"] == 0:  # replicate 0 writes a proper file
        target.write_bytes(b"fine")
    elif what == "folder":
        target.mkdir()
        (target / "inner").write_bytes(b"abc")
    elif what == "link_to_folder":
        keep = Path("keep").absolute()
        keep.mkdir(exist_ok=True)
        (keep / "precious.txt").write_text("mine")
        os.symlink(keep, target)
    elif what == "fifo":
        os.mkfifo(target)
    return data, {"m": ctx["replicate"]}


@pytest.mark.parametrize(("what", "found"), [("folder", "a folder"), ("link_to_folder", "a folder"),
                                             ("fifo", "something other than a regular file")])
def test_a_staging_path_that_is_not_a_regular_file_fails_only_that_replicate(what: str, found: str) -> None:
    if what == "fifo" and not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes here")
    result = _experiment(not_a_file(what=what), "notfile").run()
    assert result.metrics.baseline.metrics == {"m": [0]}
    assert sorted(result.errors) == ["baseline_rep_1"]
    error = result.errors["baseline_rep_1"]
    assert isinstance(error, ArtifactNotFoundError)
    assert error.step_name == "Not_A_FileStep"
    with pytest.raises(ArtifactNotFoundError, match=(
            rf"step 'Not_A_FileStep' wrote {found} at ctx.artifacts.path\('big.bin'\); an artifact is one file: "
            r"write one file there \(e.g. an archive")):
        raise error
    assert _stored("notfile", 0, "Not_A_FileStep").read_bytes() == b"fine"
    assert not _stored("notfile", 1, "Not_A_FileStep").exists()
    assert _staging_left() == []
    if what == "link_to_folder":  # cleaning the staging folder never follows the link
        assert Path("keep", "precious.txt").read_text() == "mine"


# --- a missing staged file is an ArtifactNotFoundError naming the step -----------------------------


@pipeline_step()
def forgets(data: Any, ctx: FrozenContext) -> Any:
    ctx.artifacts.path("big.bin")  # asks for a path, writes nothing
    return data, {"m": 1}


def test_a_missing_staged_file_is_reported_as_artifact_not_found() -> None:
    result = _experiment(forgets(), "nowrite", replicates=1).run()
    error = result.errors["baseline_rep_0"]
    assert isinstance(error, ArtifactNotFoundError) and isinstance(error, KeyError)
    assert error.step_name == "ForgetsStep" and error.step == "ForgetsStep" and error.name == "big.bin"
    assert error.exception_type == "ArtifactNotFoundError"
    stored = json.loads(Path("data", "nowrite", "v0", "run.json").read_text())["conditions"]["baseline"]["errors"]
    assert stored["0"]["type"] == "ArtifactNotFoundError" and stored["0"]["step"] == "ForgetsStep"
    assert "asked for ctx.artifacts.path('big.bin') but wrote no file there" in stored["0"]["message"]


def test_a_name_claimed_twice_names_the_replicate_and_condition() -> None:
    log = ArtifactLog()
    log.add("same.txt", b"a")
    with pytest.raises(ContextMutationError, match="'same.txt' already written in this replicate and condition"):
        log.add("same.txt", b"b")


# --- leftovers: staging folders name their owners; a run removes those of dead processes --------


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _folder(owner: str) -> Path:
    folder = Path("data", ".staging", f"crystallize-stage-{owner}.abcd1234")
    folder.mkdir(parents=True)
    (folder / "0-big.bin").write_bytes(b"x" * 100)
    return folder


@pipeline_step()
def stage_own(data: Any, ctx: FrozenContext) -> Any:
    target = ctx.artifacts.path("big.bin")
    target.write_bytes(b"%d" % ctx["replicate"])
    return data, {"folder": target.parent.name}


@pytest.mark.skipif(os.name != "posix", reason="process probing is POSIX-only")
def test_a_run_removes_staging_folders_whose_owner_processes_are_gone() -> None:
    dead, host = _dead_pid(), _host()
    removed = [_folder(f"{dead}@{host}"), _folder(f"{dead}+{_dead_pid()}@{host}")]
    kept = [_folder(f"{os.getpid()}@{host}"),  # this process: alive
            _folder(f"{dead}+{os.getpid()}@{host}"),  # a dead worker of a live runner
            _folder(f"{dead}@other-machine"),  # cannot probe another machine's processes
            _folder("oldstyle")]  # no owner in the name: cannot prove it dead
    result = _experiment(stage_own(), "sweep", replicates=1).run()
    assert result.errors == {}
    assert result.metrics.baseline.metrics["folder"][0].startswith(f"crystallize-stage-{os.getpid()}@{host}.")
    assert [f.exists() for f in removed] == [False, False]
    assert [f.exists() for f in kept] == [True, True, True, True]
    assert sweep_staging(Path("data", ".staging")) == 0
    assert sweep_staging(Path("missing")) == 0


@pytest.mark.skipif(os.name != "posix", reason="process probing is POSIX-only")
def test_a_killed_run_leaves_staged_files_that_the_next_run_removes(tmp_path: Path) -> None:
    script = tmp_path / "killed.py"
    script.write_text(
        "import os, signal\n"
        "from pathlib import Path\n"
        "from crystallize.datasources.artifacts import ArtifactLog\n"
        "Path(ArtifactLog('data/.staging').path('big.bin')).write_bytes(b'x' * 1000)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n")
    subprocess.run([sys.executable, str(script)], check=False)
    assert len(list(Path("data", ".staging").iterdir())) == 1
    assert _experiment(stage_own(), "afterkill", replicates=1).run().errors == {}
    assert _staging_left() == []


def test_owner_names_are_parsed_strictly() -> None:
    host = _host()
    assert _owner_pids(f"crystallize-stage-12@{host}.abc", host) == [12]
    assert _owner_pids(f"crystallize-stage-12+34@{host}.x_y", host) == [12, 34]
    assert _owner_pids("crystallize-stage-12@elsewhere.abc", host) == []
    for name in ["crystallize-stage-abcdefgh", f"crystallize-stage-0@{host}.abc", f"crystallize-stage-1+x@{host}.a",
                 f"crystallize-stage-@{host}.abc", f"other-12@{host}.abc"]:
        assert _owner_pids(name, host) == [], name


def _owner_of_a_child_folder(root: str, out: str) -> None:
    Path(out).write_text(ArtifactLog(root).path("big.bin").parent.name)


def test_a_multiprocessing_worker_names_its_runner_too(tmp_path: Path) -> None:
    out = tmp_path / "name.txt"
    child = multiprocessing.get_context("spawn").Process(target=_owner_of_a_child_folder,
                                                         args=(str(tmp_path / "stage"), str(out)))
    child.start()
    child.join()
    assert out.read_text().startswith(f"crystallize-stage-{child.pid}+{os.getpid()}@{_host()}.")


def test_staged_files_from_a_process_pool_reach_the_store_and_leave_no_staging() -> None:
    result = _experiment(stage_own(), "pool", replicates=3,
                         plugins=[ParallelExecution(executor_type="process", max_workers=2)]).run()
    assert result.errors == {}
    assert [_stored("pool", r, "Stage_OwnStep").read_bytes() for r in range(3)] == [b"0", b"1", b"2"]
    assert all("+" in name for name in result.metrics.baseline.metrics["folder"])
    assert _staging_left() == []


@pipeline_step()
def stage_big(data: Any, ctx: FrozenContext) -> Any:
    ctx.artifacts.path("big.bin").write_bytes(b"x" * 1000)
    (ctx.artifacts.path("other.bin").parent / "scratch.tmp").write_bytes(b"left by the step")
    return data


def test_apply_deletes_what_it_staged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "systemp"))
    (tmp_path / "systemp").mkdir()
    experiment = Experiment(datasource=one(), pipeline=Pipeline([stage_big()]), name="ap",
                            outputs=[Artifact("big.bin")])
    assert experiment.apply(data=1) == 1
    assert list((tmp_path / "systemp").iterdir()) == []
    assert not Path("data").exists()  # apply writes nothing to the store


@pipeline_step()
def stage_then_fail(data: Any, ctx: FrozenContext) -> Any:
    ctx.artifacts.path("big.bin").write_bytes(b"x" * 100)
    raise ValueError("boom after staging")


def test_a_failed_replicate_deletes_its_staged_files() -> None:
    result = _experiment(stage_then_fail(), "failed", replicates=1).run()
    assert list(result.errors) == ["baseline_rep_0"]
    assert _staging_left() == []


# --- Artifact.fetch outside a run says what it found -------------------------------------------


class _KillAt(BasePlugin):
    """Stops the run (as Ctrl-C would) before replicate ``rep``."""

    def __init__(self, rep: int) -> None:
        self.rep = rep

    def before_replicate(self, experiment: Any, ctx: Any) -> None:
        if ctx["replicate"] == self.rep:
            raise KeyboardInterrupt


def _producer(art: Artifact, *plugins: Any, fail: str | None = None) -> Experiment:
    @pipeline_step()
    def produce(data: Any, ctx: FrozenContext) -> Any:
        if ctx["condition"] == fail:
            raise RuntimeError("producer fails")
        art.write(f"{ctx['condition']}-{ctx['replicate']}")
        return data

    return Experiment(datasource=one(), pipeline=Pipeline([produce()]), name="prod", replicates=2, outputs=[art],
                      treatments=[Treatment("t", {"k": 1})],
                      plugins=[SeedPlugin(seed=1), ArtifactPlugin(root_dir="data", versioned=True), *plugins])


def test_fetch_after_a_failed_newest_run_names_that_run_and_condition() -> None:
    art = Artifact("out.txt")
    _producer(art).run()
    _producer(art, fail="t").run()
    assert art.fetch(standalone_context({"condition": "baseline", "replicate": 1})) == b"baseline-1"
    with pytest.raises(ArtifactNotFoundError, match=r"the newest run of 'prod' \(v1\) did not complete condition "
                                                    r"'t' \(a replicate failed\)"):
        art.fetch(standalone_context({"condition": "t", "replicate": 0}))


def test_fetch_after_a_killed_run_names_that_run() -> None:
    art = Artifact("out.txt")
    with pytest.raises(KeyboardInterrupt):
        _producer(art, _KillAt(1)).run()
    with pytest.raises(ArtifactNotFoundError, match=r"the newest run of 'prod' \(v0\) did not complete condition "
                                                    r"'baseline' \(the run stopped before every replicate finished"):
        art.fetch(standalone_context({"replicate": 0}))


def test_fetch_before_any_run_and_of_an_orphan_artifact() -> None:
    art = Artifact("out.txt")
    _producer(art)
    with pytest.raises(ArtifactNotFoundError, match="no upstream run of 'prod' is available for artifact 'out.txt'"):
        art.fetch(standalone_context({"replicate": 0}))
    with pytest.raises(ArtifactNotFoundError, match="artifact 'stray.txt' is not listed in any experiment's outputs"):
        Artifact("stray.txt").fetch(standalone_context({"condition": "t"}))


def test_fetch_reads_a_versioned_result_key_as_its_condition(caplog: pytest.LogCaptureFixture) -> None:
    art = Artifact("out.txt")
    result = _producer(art).run()
    key = next(iter(dict(result.metrics.treatments)))
    assert key == "t (v0)"
    with caplog.at_level(logging.WARNING):
        assert art.fetch(standalone_context({"condition": key, "replicate": 1})) == b"t-1"
    assert "falling back" not in caplog.text


def test_a_replicate_a_custom_loop_runs_twice_keeps_only_the_last_staged_files() -> None:
    class Twice(BasePlugin):
        def run_experiment_loop(self, experiment: Any, replicate_fn: Any) -> list[Any]:
            replicate_fn(0)  # a retry: the first result is replaced, its staged file must go
            return [replicate_fn(rep) for rep in range(experiment.replicates)]

    _experiment(stage_own(), "twice", plugins=[Twice()]).run()
    assert _stored("twice", 0, "Stage_OwnStep").is_file() and _stored("twice", 1, "Stage_OwnStep").is_file()
    assert _staging_left() == []


@pipeline_step(cacheable=True)
def cached_folder(data: Any, ctx: FrozenContext) -> Any:
    target = ctx.artifacts.path("big.bin")
    target.mkdir()
    (target / "inner").write_bytes(b"abc")
    return data, {"m": 1}


def test_a_cached_step_staging_a_folder_gets_the_same_clear_error() -> None:
    result = _experiment(cached_folder(), "cached_folder", replicates=1).run()
    error = result.errors["baseline_rep_0"]
    assert isinstance(error, ArtifactNotFoundError) and error.step_name == "Cached_FolderStep"
    assert "wrote a folder at ctx.artifacts.path('big.bin')" in str(error)
    assert _staging_left() == []
