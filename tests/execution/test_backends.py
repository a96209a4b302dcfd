"""Backends: same results for the same seed everywhere, failures as data, crashes, pickling, resources.

Every behaviour that the spec promises for all backends is parametrised over the five
of them; ``ray`` uses the session cluster from ``conftest.py`` (skipped only when the
``ray`` extra is missing).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from backend_kit import (
    BACKEND_NAMES,
    build_model,
    chain_graph,
    crash_at,
    execution_plugin,
    fail_at,
    graph_values,
    noisy_mean,
    seeded_experiment,
    touch,
    use_model,
)

from crystallize import ExperimentGraph, ParallelExecution, resource_factory
from crystallize.errors import ExecutionError, MissingDependencyError, SerializationError, WorkerCrashError
from crystallize.execution.local import AsyncBackend, ProcessBackend, SerialBackend, ThreadBackend
from crystallize.execution.select import BACKENDS, make_backend


@pytest.fixture(params=BACKEND_NAMES)
def backend_name(request: pytest.FixtureRequest) -> str:
    """Each backend name; ``ray`` brings up the shared session cluster first."""
    if request.param == "ray":
        request.getfixturevalue("ray_cluster")
    return request.param


@pytest.fixture(scope="module")
def serial_reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Metrics of the seeded experiment and the chain graph on the serial backend."""
    root = tmp_path_factory.mktemp("reference")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        experiment = seeded_experiment("serial").run()
        graph = chain_graph(root / "graph").run(backend="serial")
    finally:
        os.chdir(cwd)
    return {"baseline": experiment.metrics.baseline.metrics, "wide": experiment.metrics.treatments["wide"].metrics,
            "seeds": experiment.provenance["seeds"], "graph": graph_values(graph)}


# --- seeds ------------------------------------------------------------------------------------

def test_same_master_seed_gives_equal_metrics_on_every_backend(backend_name: str, serial_reference: dict) -> None:
    result = seeded_experiment(backend_name).run()
    assert result.errors == {}
    assert result.metrics.baseline.metrics == serial_reference["baseline"]
    assert result.metrics.treatments["wide"].metrics == serial_reference["wide"]
    assert result.metrics.baseline.metrics["seed"] == [123, 31460, 62797, 94134]  # (123 + r*31337) % 2**32
    assert result.provenance["seeds"] == serial_reference["seeds"]


def test_three_node_graph_gives_equal_results_on_every_backend(backend_name: str, serial_reference: dict,
                                                               tmp_path: Path) -> None:
    results = chain_graph(tmp_path / "store").run(backend=backend_name)
    values = graph_values(results)
    assert values == serial_reference["graph"]
    assert set(values) == {"first", "second", "third"}
    assert values["first"]["baseline"]["seed"] == [11, 31348, 62685]
    assert all(result.errors == {} for result in results.values())


# --- failures -----------------------------------------------------------------------------------

def test_failing_replicate_is_recorded_with_its_origin(backend_name: str) -> None:
    experiment = seeded_experiment(backend_name, name="failing", steps=[fail_at(at_replicate=1), noisy_mean()])
    result = experiment.run()
    assert set(result.errors) == {"baseline_rep_1"}
    error = result.errors["baseline_rep_1"]
    assert (error.experiment, error.condition, error.replicate) == ("failing", "baseline", 1)
    assert error.exception_type == "ValueError"
    assert "ValueError: planned failure at replicate 1" in error.traceback_str
    assert ", in fail_at" in error.traceback_str  # the user's frame (its file is <dynamic-code> when pickled by value)
    assert len(result.metrics.baseline.metrics["mean"]) == 3  # the other replicates still ran
    assert len(result.metrics.treatments["wide"].metrics["mean"]) == 4


def test_process_worker_crash_fails_only_its_job_and_the_run_goes_on() -> None:
    experiment = seeded_experiment("process", name="crashing", replicates=6,
                                   steps=[crash_at(at_replicate=2), noisy_mean()])
    result = experiment.run()
    assert set(result.errors) == {"baseline_rep_2"}
    error = result.errors["baseline_rep_2"]
    assert isinstance(error, WorkerCrashError)
    assert error.exception_type == "WorkerCrashError"
    assert "exit code 7" in str(error) and "baseline replicate 2" in str(error)
    assert len(result.metrics.baseline.metrics["mean"]) == 5  # replicates after the crash ran on a new worker
    assert len(result.metrics.treatments["wide"].metrics["mean"]) == 6


@pytest.mark.parametrize("backend", ["process", "ray"])
def test_unpicklable_initial_ctx_value_fails_before_any_job(backend: str, request: pytest.FixtureRequest,
                                                           tmp_path: Path) -> None:
    if backend == "ray":
        request.getfixturevalue("ray_cluster")
    marker = tmp_path / "ran.txt"
    experiment = seeded_experiment(backend, name="locked", steps=[touch(marker=str(marker))],
                                   initial_ctx={"lock": threading.Lock()})
    with pytest.raises(SerializationError, match=r"initial_ctx key 'lock' of experiment 'locked'.*resource_factory"):
        experiment.run()
    assert not marker.exists()
    assert list(Path("data").rglob("run.json")) == []  # no version was reserved


@pytest.mark.parametrize("backend", ["process", "ray"])
def test_unpicklable_step_parameter_names_the_step(backend: str, request: pytest.FixtureRequest,
                                                   tmp_path: Path) -> None:
    if backend == "ray":
        request.getfixturevalue("ray_cluster")
    marker = tmp_path / "ran.txt"
    step = touch(marker=str(marker), lock=threading.Lock())
    experiment = seeded_experiment(backend, name="locked_step", steps=[step])
    with pytest.raises(SerializationError, match=rf"step '{step.name}' of experiment 'locked_step'") as info:
        experiment.run()
    assert "resource_factory" in str(info.value)
    assert info.value.what == f"step '{step.name}' of experiment 'locked_step'"
    assert not marker.exists()
    assert list(Path("data").rglob("run.json")) == []


# --- resources ----------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["process", "ray"])
def test_resource_factory_builds_once_per_worker_process(backend: str, request: pytest.FixtureRequest,
                                                         tmp_path: Path) -> None:
    if backend == "ray":
        request.getfixturevalue("ray_cluster")
    log = tmp_path / "builds.txt"
    model = resource_factory(build_model, key=f"model-{tmp_path}")  # unique: Ray workers outlive one test
    experiment = seeded_experiment(backend, name="resources", replicates=8, steps=[use_model()],
                                   initial_ctx={"build_log": str(log), "model": model})
    result = experiment.run()
    assert result.errors == {}
    builds = log.read_text().split()
    pids = result.metrics.baseline.metrics["pid"] + result.metrics.treatments["wide"].metrics["pid"]
    assert len(pids) == 16
    assert len(builds) == len(set(builds))  # never twice in one process
    assert {str(p) for p in pids} == set(builds)  # every process that ran a job built it once
    assert len(set(builds)) <= 2
    assert str(os.getpid()) not in builds  # built in the workers, not in the runner
    assert result.metrics.baseline.metrics["model_pid"] == result.metrics.baseline.metrics["pid"]


# --- YAML graph settings ------------------------------------------------------------------------

def _write_yaml_graph(root: Path) -> Path:
    folder = root / "pidgraph"
    node = folder / "pids"
    node.mkdir(parents=True)
    (folder / "graph.yaml").write_text("name: pidgraph\nbackend: process\nworkers: 2\nseed: 5\n")
    (node / "config.yaml").write_text(textwrap.dedent("""\
        name: pids
        replicates: 6
        datasource:
          numbers: numbers
        steps:
          - record_pid
        """))
    (node / "datasources.py").write_text(textwrap.dedent("""\
        from crystallize import data_source

        @data_source
        def numbers(ctx):
            return [ctx["replicate"]]
        """))
    (node / "steps.py").write_text(textwrap.dedent("""\
        import os
        from crystallize import pipeline_step

        @pipeline_step()
        def record_pid(data, ctx):
            return data, {"pid": os.getpid()}
        """))
    return folder


def test_yaml_graph_backend_and_workers_are_honoured(tmp_path: Path) -> None:
    graph = ExperimentGraph.from_yaml(_write_yaml_graph(tmp_path))
    assert (graph.backend, graph.workers) == ("process", 2)
    results = graph.run()
    pids = set(results["pids"].metrics.baseline.metrics["pid"])
    assert os.getpid() not in pids
    assert 1 <= len(pids) <= 2


# --- choosing a backend -------------------------------------------------------------------------

def test_make_backend_builds_each_local_backend_by_name() -> None:
    kinds = {"serial": SerialBackend, "thread": ThreadBackend, "process": ProcessBackend, "async": AsyncBackend}
    for name, kind in kinds.items():
        backend, owned = make_backend(name, workers=2)
        try:
            assert isinstance(backend, kind) and owned
            assert backend.capacity == (1 if name == "serial" else 2)
            assert backend.remote is (name == "process")
        finally:
            backend.close()
    assert BACKENDS == ("serial", "thread", "process", "async", "ray")


def test_make_backend_accepts_plugins_instances_and_none() -> None:
    backend, owned = make_backend(ParallelExecution(max_workers=3))
    assert isinstance(backend, ThreadBackend) and backend.capacity == 3 and owned
    backend.close()
    mine = SerialBackend()
    assert make_backend(mine) == (mine, False)
    assert make_backend(None) == (None, False)


def test_make_backend_rejects_unknown_names_and_bad_worker_counts() -> None:
    with pytest.raises(ValueError, match="unknown backend 'gpu'; choose one of serial, thread, process, async, ray"):
        make_backend("gpu")
    with pytest.raises(ValueError, match="workers must be >= 1, not 0"):
        make_backend("thread", workers=0)
    with pytest.raises(ValueError, match="max_workers must be >= 1, not 0"):
        ProcessBackend(0)


def test_missing_ray_gives_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    from crystallize.execution.ray import RayExecution

    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    plugin = RayExecution(num_cpus=2)
    with pytest.raises(MissingDependencyError, match=r"pip install 'crystallize\[ray\]'") as info:
        plugin.make_backend()
    assert isinstance(info.value, ImportError) and isinstance(info.value, ExecutionError)
    assert info.value.extra == "ray"
    with pytest.raises(ImportError, match="RayExecution needs the optional dependency 'ray'"):
        make_backend("ray")


def test_importing_crystallize_does_not_import_ray() -> None:
    code = "import sys, crystallize; crystallize.RayExecution; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_ray_execution_validates_resources() -> None:
    from crystallize.execution.ray import RayExecution

    with pytest.raises(ValueError, match="num_cpus and num_gpus must be >= 0, not -1 and 0"):
        RayExecution(num_cpus=-1)


# --- the process pool itself ------------------------------------------------------------------

def test_process_backend_cancels_queued_jobs_and_closes_cleanly(tmp_path: Path) -> None:
    backend = ProcessBackend(1)
    try:
        futures = [_submit_sleep(backend, tmp_path, r) for r in range(3)]
        assert futures[2].cancel()  # still queued behind the first two
        results = [f.result(timeout=60) for f in futures[:2]]
    finally:
        backend.close()
    assert [r.metrics["rep"] for r in results] == [[0], [1]]
    assert futures[2].cancelled()
    with pytest.raises(RuntimeError, match="the worker pool is closed"):
        _submit_sleep(backend, tmp_path, 3)


def _submit_sleep(backend: ProcessBackend, tmp_path: Path, replicate: int) -> Future[Any]:
    from backend_kit import numbers, slow_record

    from crystallize import Pipeline
    from crystallize.execution.job import DefinitionRef, Job, RunDefinition

    definition = RunDefinition("pool", numbers(), Pipeline([slow_record()]), {}, {})
    return backend.submit(Job(DefinitionRef("pool:key", definition), "baseline", replicate, replicate))


def test_execution_plugins_pick_their_backends() -> None:
    for name, kind in (("serial", SerialBackend), ("thread", ThreadBackend), ("process", ProcessBackend),
                       ("async", AsyncBackend)):
        backend = execution_plugin(name).make_backend()
        try:
            assert isinstance(backend, kind)
        finally:
            backend.close()


def test_a_run_started_while_a_worker_bootstraps_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    import multiprocessing

    monkeypatch.setattr(multiprocessing.current_process(), "_inheriting", True, raising=False)
    for make in (SerialBackend, ThreadBackend, AsyncBackend, ProcessBackend):
        with pytest.raises(ExecutionError, match=r'needs an `if __name__ == "__main__":` guard'):
            make()


def test_unguarded_script_reports_worker_crashes_instead_of_hanging(tmp_path: Path) -> None:
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent(f"""\
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from backend_kit import seeded_experiment

        result = seeded_experiment("process", name="unguarded", replicates=2).run()
        print(sorted(type(e).__name__ for e in result.errors.values()))
        """))
    done = subprocess.run([sys.executable, script.name], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.stdout.strip() == str(["WorkerCrashError"] * 4)
    assert 'needs an `if __name__ == "__main__":` guard' in done.stderr
