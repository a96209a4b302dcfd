"""Crash safety as a user meets it: kills, Ctrl-C, concurrent runs, old journals, step signatures.

Each kill happens at a fixed point (a step that kills its own process at replicate k), never
after a sleep; results are compared with an uninterrupted run of the same definition.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crystallize import BasePlugin
from crystallize.graph.status import NodeState

STEPS = '''
import asyncio, functools, os, signal, time
from crystallize import (Artifact, ArtifactPlugin, Experiment, SeedPlugin, data_source, pipeline_step,
                         treatment)

blob = Artifact("blob.txt")


@data_source
def numbers(ctx, rng, size: int = 5):
    return [float(x) for x in rng.normal(size=size)]


@data_source
def fixed(ctx):
    return [1.0, 2.0]


@pipeline_step()
def fault(data, ctx):
    """Kill the process at CRYS_KILL=<condition>:<replicate> (or once, as named in kill-once); log jobs."""
    here = f"{ctx['condition']}:{ctx['replicate']}"
    if os.environ.get("CRYS_KILL") == here:
        os.kill(os.getpid(), signal.SIGKILL)
    once = os.path.join(os.path.dirname(__file__), "kill-once")  # read by pool workers whatever their environment
    if os.path.exists(once) and open(once).read() == here:
        os.unlink(once)
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("CRYS_LOG"):
        with open(os.environ["CRYS_LOG"], "a") as fh:
            fh.write(f"{ctx['condition']}:{ctx['replicate']}\\n")
    if os.environ.get("CRYS_PAUSE"):
        time.sleep(float(os.environ["CRYS_PAUSE"]))
    return data


@pipeline_step()
def total(data, ctx, delta: float = 0.0):
    value = sum(data) + delta
    blob.write(f"{ctx['condition']} {ctx['replicate']} {value!r} {ctx['seed_used']}")
    return data, {"total": value}


def build(root, *, versioned, replicates=6):
    return Experiment(datasource=numbers(), pipeline=[fault(), total()], name="exp", replicates=replicates,
                      treatments=[treatment("boost", {"delta": 10.0})], outputs=[blob],
                      plugins=[ArtifactPlugin(root_dir=str(root), versioned=versioned), SeedPlugin(seed=11)])


def ctx_default(data, ctx=None):
    return data, {"got": repr((data, type(ctx).__name__))}


def data_posonly(data, /, ctx):
    return data, {"got": repr((data, type(ctx).__name__))}


def ctx_kwonly(data, *, ctx):
    return data, {"got": repr((data, type(ctx).__name__))}


def star_args(data, ctx, *args):
    return data, {"got": repr((data, type(ctx).__name__, args))}


def star_kwargs(data, ctx, **kwargs):
    return data, {"got": repr((data, type(ctx).__name__, sorted(kwargs)))}


async def coroutine(data, ctx):
    await asyncio.sleep(0)
    return data, {"got": repr((data, type(ctx).__name__))}


def _passthrough(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)
    return wrapper


@_passthrough
def wrapped(data, ctx):
    return data, {"got": repr((data, type(ctx).__name__))}


def injected(data, ctx, delta: float = 0.5):
    return data, {"got": repr((data, delta))}


SIGNATURES = [ctx_default, data_posonly, ctx_kwonly, star_args, star_kwargs, coroutine, wrapped, injected]
'''

CHILD = """
import sys
sys.path.insert(0, {folder!r})
import crystallize.store.writer as writer
if {flush_every_replicate!r}:
    writer._JOURNAL_SECONDS = -1.0
import importlib
importlib.import_module({module!r}).build({root!r}, versioned={versioned!r}, replicates={replicates!r}).run(
    strategy={strategy!r})
"""


@pytest.fixture
def user(tmp_path: Path) -> Iterator[Any]:
    """The user's step module, under a unique name so tests never share ``sys.modules`` entries."""
    name = f"crash_review_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(STEPS)
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)


def run_child(user: Any, root: Path, *, versioned: bool, env: dict[str, str], flush_every_replicate: bool = False,
              replicates: int = 6, strategy: str = "rerun", wait: bool = True) -> Any:
    code = CHILD.format(folder=str(Path(user.__file__).parent), module=user.__name__, root=str(root),
                        versioned=versioned, replicates=replicates, strategy=strategy,
                        flush_every_replicate=flush_every_replicate)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CRYS_")} | env
    command = [sys.executable, "-c", textwrap.dedent(code)]
    if not wait:
        return subprocess.Popen(command, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return subprocess.run(command, env=full_env, capture_output=True, timeout=120)


def metrics_of(result: Any) -> dict[str, Any]:
    out = {"baseline": (result.metrics.baseline.metrics, result.metrics.baseline.seeds)}
    for key in result.metrics.treatments:
        out[key.split(" (")[0]] = (result.metrics.treatments[key].metrics, result.metrics.treatments[key].seeds)
    return out


def blob_bytes(root: Path, replicates: int = 6) -> dict[tuple[str, int], bytes]:
    """Every replicate's artifact bytes, resolved through the newest run.json (as readers do)."""
    from crystallize.store.record import RunRecord

    base = root / "exp"
    newest = max(int(p.name[1:]) for p in base.glob("v*"))
    record = RunRecord.load(base / f"v{newest}" / "run.json")
    assert record is not None and record.status == "complete"
    return {(c, r): (base / f"v{record.conditions[c].version}" / f"replicate_{r}" / c / "TotalStep" / "blob.txt")
            .read_bytes() for c in ("baseline", "boost") for r in range(replicates)}


def logged(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("versioned", [False, True], ids=["unversioned", "versioned"])
@pytest.mark.parametrize("flush_every_replicate", [False, True], ids=["short-run", "long-run"])
def test_a_killed_run_reads_incomplete_and_resumes_to_the_uninterrupted_result(user, tmp_path, monkeypatch,
                                                                               versioned, flush_every_replicate):
    root, reference, log = tmp_path / "store", tmp_path / "reference", tmp_path / "jobs.log"
    earlier = run_child(user, root, versioned=versioned, env={}, replicates=4)
    assert earlier.returncode == 0, earlier.stderr.decode()[-2000:]
    v0_before = files_under(root / "exp" / "v0")

    killed = run_child(user, root, versioned=versioned, env={"CRYS_KILL": "boost:3"},
                       flush_every_replicate=flush_every_replicate)

    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    if versioned:
        assert files_under(root / "exp" / "v0") == v0_before  # the earlier version is untouched
        assert json.loads((root / "exp" / "v1" / "run.json").read_text())["status"] == "running"
    status = user.build(root, versioned=versioned).status()
    assert status.state is NodeState.INCOMPLETE
    missing = {c: s.missing_replicates for c, s in status.conditions.items()}
    if flush_every_replicate:  # replicate-major order: baseline 0-3 and boost 0-2 finished
        assert missing == {"baseline": (4, 5), "boost": (3, 4, 5)}
    else:  # nothing reached the journal before the kill
        assert missing == {"baseline": tuple(range(6)), "boost": tuple(range(6))}
    crashed = root / "exp" / ("v1" if versioned else "v0")
    assert not (crashed / "boost" / ".crystallize_complete").exists()  # no condition it ran looks complete

    monkeypatch.setenv("CRYS_LOG", str(log))
    resumed = user.build(root, versioned=versioned).run(strategy="resume")
    monkeypatch.delenv("CRYS_LOG")
    assert sorted(logged(log)) == sorted(f"{c}:{r}" for c, reps in missing.items() for r in reps)
    whole = user.build(reference, versioned=versioned).run()
    assert metrics_of(resumed) == metrics_of(whole)
    assert metrics_of(resumed)["boost"][1] == [11 + r * 31337 for r in range(6)]
    assert blob_bytes(root) == blob_bytes(reference)
    assert user.build(root, versioned=versioned).status().state is NodeState.FRESH


class Interrupt(BasePlugin):
    """Ctrl-C pressed just before one replicate starts."""

    def __init__(self, condition: str, replicate: int) -> None:
        self.at = (condition, replicate)

    def before_replicate(self, experiment: Any, ctx: Any) -> None:
        if (ctx["condition"], ctx["replicate"]) == self.at:
            raise KeyboardInterrupt


@pytest.mark.parametrize("versioned", [False, True], ids=["unversioned", "versioned"])
def test_ctrl_c_from_a_plugin_leaves_a_resumable_store(user, tmp_path, monkeypatch, versioned):
    root, reference, log = tmp_path / "store", tmp_path / "reference", tmp_path / "jobs.log"
    experiment = user.build(root, versioned=versioned)
    experiment.plugins.append(Interrupt("boost", 3))
    with pytest.raises(KeyboardInterrupt):
        experiment.run()

    status = resumes_only_what_is_missing(user, root, reference, log, versioned, monkeypatch)
    assert status.state is NodeState.INCOMPLETE


def resumes_only_what_is_missing(user, root, reference, log, versioned, monkeypatch):
    """After a stop at boost:3: status names the missing replicates, resume runs just those
    and ends equal to an uninterrupted run. Returns the status seen before resuming."""
    status = user.build(root, versioned=versioned).status()
    assert {c: s.missing_replicates for c, s in status.conditions.items()} == {"baseline": (4, 5),
                                                                              "boost": (3, 4, 5)}
    monkeypatch.setenv("CRYS_LOG", str(log))
    resumed = user.build(root, versioned=versioned).run(strategy="resume")
    assert sorted(logged(log)) == ["baseline:4", "baseline:5", "boost:3", "boost:4", "boost:5"]
    assert metrics_of(resumed) == metrics_of(user.build(reference, versioned=versioned).run())
    assert blob_bytes(root) == blob_bytes(reference)
    return status


@pytest.mark.parametrize("versioned", [False, True], ids=["unversioned", "versioned"])
def test_a_journal_written_one_object_per_line_is_still_read(user, tmp_path, monkeypatch, versioned):
    root, reference, log = tmp_path / "store", tmp_path / "reference", tmp_path / "jobs.log"
    killed = run_child(user, root, versioned=versioned, env={"CRYS_KILL": "boost:3"}, flush_every_replicate=True)
    assert killed.returncode == -signal.SIGKILL
    for journal in (root / "exp" / "v0").glob("*/.journal.jsonl"):  # rewrite in the pre-batching format
        entries = [e for line in journal.read_text().splitlines() for e in json.loads(line)]
        journal.write_text("".join(json.dumps(e) + "\n" for e in entries))
        assert all(isinstance(json.loads(line), dict) for line in journal.read_text().splitlines())

    resumes_only_what_is_missing(user, root, reference, log, versioned, monkeypatch)


def test_two_processes_on_one_unversioned_store_take_turns(user, tmp_path):
    root, reference, log = tmp_path / "store", tmp_path / "reference", tmp_path / "jobs.log"
    env = {"CRYS_LOG": str(log), "CRYS_PAUSE": "0.02"}
    procs = [run_child(user, root, versioned=False, env=env, wait=False) for _ in range(2)]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors

    jobs = logged(log)
    assert len(jobs) == 24
    expected = sorted(f"{c}:{r}" for c in ("baseline", "boost") for r in range(6))
    assert sorted(jobs[:12]) == expected and sorted(jobs[12:]) == expected  # one whole run, then the other
    assert sorted(p.name for p in (root / "exp").iterdir()) == [".lock", "v0"]
    assert not list(root.rglob("*.tmp"))
    assert user.build(root, versioned=False).status().state is NodeState.FRESH
    user.build(reference, versioned=False).run()
    assert blob_bytes(root) == blob_bytes(reference)


def test_a_worker_process_killed_mid_job_fails_only_that_replicate(user, tmp_path):
    from crystallize import ParallelExecution

    root, reference = tmp_path / "store", tmp_path / "reference"
    once = Path(user.__file__).with_name("kill-once")  # a file, not a variable: pool workers may predate the test
    once.write_text("boost:3")
    experiment = user.build(root, versioned=True)
    experiment.plugins.append(ParallelExecution(max_workers=2, executor_type="process"))
    first = experiment.run()

    assert sorted(first.errors) == ["boost_rep_3"] and not once.exists()
    status = user.build(root, versioned=True).status()
    assert status.state is NodeState.FAILED
    assert status.conditions["boost"].missing_replicates == (3,)
    assert status.conditions["baseline"].state is NodeState.FRESH
    resumed = user.build(root, versioned=True).run(strategy="resume")
    assert metrics_of(resumed) == metrics_of(user.build(reference, versioned=True).run())
    assert blob_bytes(root) == blob_bytes(reference)


def test_steps_with_unusual_signatures_receive_the_data_and_the_context(user, tmp_path):
    from crystallize import ArtifactPlugin, Experiment, pipeline_step, treatment

    got = {}
    for fn in user.SIGNATURES:
        step = pipeline_step()(fn)()
        experiment = Experiment(datasource=user.fixed(), pipeline=[step], name=fn.__name__.replace("_", "-"),
                                replicates=1, treatments=[treatment("t", {"delta": 9.0})],
                                plugins=[ArtifactPlugin(root_dir=str(tmp_path / "store"), versioned=False)])
        result = experiment.run()
        assert not result.errors, fn.__name__
        got[fn.__name__] = (result.metrics.baseline.metrics["got"], result.metrics.treatments["t"].metrics["got"])
    plain = ["([1.0, 2.0], 'FrozenContext')"]
    assert got == {
        "ctx_default": (plain, plain), "data_posonly": (plain, plain), "ctx_kwonly": (plain, plain),
        "coroutine": (plain, plain), "wrapped": (plain, plain),
        "star_args": (["([1.0, 2.0], 'FrozenContext', ())"],) * 2,
        "star_kwargs": (["([1.0, 2.0], 'FrozenContext', [])"],) * 2,
        "injected": (["([1.0, 2.0], 0.5)"], ["([1.0, 2.0], 9.0)"]),  # the treatment's value reaches the step
    }
