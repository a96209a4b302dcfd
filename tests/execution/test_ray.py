"""RayBackend: joining a cluster, crashes, staged files, upstream artifacts without a shared disk.

All tests share the session's local Ray instance (``conftest.ray_cluster``). The
cross-backend promises (equal seeds, failures, pickling errors, resources) are in
``test_backends.py``, parametrised over Ray as well.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
from backend_kit import (
    CountedSource,
    chain_graph,
    crash_at,
    graph_values,
    noisy_mean,
    path_and_text,
    pid_metric,
    seeded_experiment,
    stage_file,
    stage_nothing,
    where_read,
)

from crystallize import (
    Artifact,
    ArtifactPlugin,
    Experiment,
    ExperimentGraph,
    ExperimentInput,
    Pipeline,
    SeedPlugin,
    pipeline_step,
)
from crystallize.datasources.artifacts import ArtifactInput
from crystallize.errors import WorkerCrashError
from crystallize.execution.ray import RayBackend, RayExecution, ShippedFile, materialise_inputs


@pytest.fixture
def ray_backend(ray_cluster: Any) -> Any:
    """A backend on the session cluster (it joins, so closing it leaves the cluster up)."""
    backend = RayBackend()
    yield backend
    backend.close()


# --- connecting ----------------------------------------------------------------------------

def test_backend_joins_the_running_cluster_and_leaves_it_running(ray_cluster: Any) -> None:
    backend = RayExecution().make_backend()
    assert backend.remote is True
    assert backend.capacity == 2  # two CPUs, one per task
    backend.close()
    assert ray_cluster.is_initialized()
    assert RayBackend(num_cpus=2).capacity == 1
    assert RayBackend(max_in_flight=1).capacity == 1
    assert RayBackend(num_cpus=0.5).capacity == 4


# --- failures ------------------------------------------------------------------------------

def test_worker_crash_fails_only_its_task_and_the_run_goes_on(ray_cluster: Any) -> None:
    experiment = seeded_experiment("ray", name="ray_crash", replicates=4,
                                   steps=[crash_at(at_replicate=1), noisy_mean()])
    result = experiment.run()
    assert set(result.errors) == {"baseline_rep_1"}
    error = result.errors["baseline_rep_1"]
    assert isinstance(error, WorkerCrashError)
    assert error.exception_type == "WorkerCrashError"
    assert "Ray worker failed while running baseline replicate 1 (WorkerCrashedError" in str(error)
    assert (error.experiment, error.condition, error.replicate) == ("ray_crash", "baseline", 1)
    assert len(result.metrics.baseline.metrics["mean"]) == 3
    assert len(result.metrics.treatments["wide"].metrics["mean"]) == 4


def test_code_missing_on_the_worker_is_reported_with_a_runtime_env_hint(ray_backend: Any, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    module_dir = tmp_path / "private_code"
    module_dir.mkdir()
    (module_dir / "only_here.py").write_text("class Settings:\n    size = 3\n")
    monkeypatch.syspath_prepend(str(module_dir))  # importable here, not on the Ray workers
    import only_here  # its class pickles by reference: the workers must import it, and cannot

    monkeypatch.setitem(sys.modules, "only_here", only_here)  # removed again after the test
    experiment = Experiment(CountedSource(str(tmp_path / "log.txt")), Pipeline([pid_metric()]), name="missing_code",
                            replicates=1, plugins=[SeedPlugin(seed=1)], initial_ctx={"settings": only_here.Settings()})
    graph = ExperimentGraph(experiment)
    graph.store_root = tmp_path / "data"
    result = graph.run(backend=ray_backend)["missing_code"]
    error = result.errors["baseline_rep_0"]
    assert error.exception_type == "ModuleNotFoundError"
    assert "No module named 'only_here'" in str(error)
    assert "runtime_env" in str(error) and "working_dir" in str(error)


# --- definitions and resources ----------------------------------------------------------

@pytest.mark.parametrize("backend", ["process", "ray"])
def test_run_definition_is_unpickled_once_per_worker(backend: str, request: pytest.FixtureRequest,
                                                     tmp_path: Path) -> None:
    if backend == "ray":
        request.getfixturevalue("ray_cluster")
    log = tmp_path / "unpickled.txt"
    experiment = Experiment(CountedSource(str(log)), Pipeline([pid_metric()]), name="counted", replicates=8,
                            plugins=[SeedPlugin(seed=3)])
    graph = ExperimentGraph(experiment)
    graph.store_root = tmp_path / "data"
    result = graph.run(backend=backend)["counted"]
    assert result.errors == {}
    loads = [line for line in log.read_text().split() if line != str(os.getpid())]
    assert sorted(loads) == sorted(set(loads))  # at most once per worker process
    assert {str(p) for p in result.metrics.baseline.metrics["pid"]} == set(loads)


# --- artifacts -------------------------------------------------------------------------------

def test_staged_files_come_back_as_bytes_and_land_in_the_store(ray_cluster: Any, tmp_path: Path) -> None:
    experiment = Experiment(CountedSource(str(tmp_path / "log.txt")), Pipeline([stage_file(payload="blob")]),
                            name="staging", replicates=2, plugins=[SeedPlugin(seed=1), RayExecution(),
                                                                     ArtifactPlugin(root_dir=str(tmp_path / "data"))])
    result = experiment.run()
    assert result.errors == {}
    stored = sorted((tmp_path / "data" / "staging").rglob("staged.bin"))
    assert [p.read_text() for p in stored] == ["blob-0", "blob-1"]
    assert [p.relative_to(tmp_path / "data" / "staging").parts[:3] for p in stored] == [
        ("v0", "replicate_0", "baseline"), ("v0", "replicate_1", "baseline")]


def test_a_staging_path_never_written_fails_that_replicate(ray_cluster: Any, tmp_path: Path) -> None:
    experiment = Experiment(CountedSource(str(tmp_path / "log.txt")), Pipeline([stage_nothing()]), name="unstaged",
                            replicates=1, plugins=[SeedPlugin(seed=1), RayExecution()])
    result = experiment.run()
    error = result.errors["baseline_rep_0"]
    assert error.exception_type == "ArtifactNotFoundError"
    assert "asked for ctx.artifacts.path('forgotten.bin') but wrote no file there" in str(error)


def test_upstream_artifacts_reach_workers_without_a_shared_filesystem(ray_cluster: Any, tmp_path: Path) -> None:
    produced = Artifact("value.txt", loader=path_and_text)

    @pipeline_step()
    def write_value(data: Any, ctx: Any, out: Artifact, *, rng: Any) -> Any:
        value = round(float(rng.random()), 9)
        out.write(repr(value))
        return data, {"value": value}

    producer = Experiment(CountedSource(str(tmp_path / "log.txt")), Pipeline([write_value(out=produced)]),
                          name="producer", outputs=[produced], replicates=3, plugins=[SeedPlugin(seed=21)])
    consumer = Experiment(ExperimentInput(x=produced), Pipeline([where_read()]), name="consumer", replicates=3,
                          plugins=[SeedPlugin(seed=22)])
    graph = ExperimentGraph(producer, consumer)
    graph.store_root = tmp_path / "data"
    backend = RayBackend(shared_filesystem=False)  # never trust the runner's paths: always ship bytes
    try:
        results = graph.run(backend=backend)
    finally:
        backend.close()
    assert results["consumer"].errors == {}
    produced_values = results["producer"].metrics.baseline.metrics["value"]
    assert results["consumer"].metrics.baseline.metrics["value"] == produced_values
    assert results["consumer"].metrics.baseline.metrics["from_cache"] == [1, 1, 1]


def test_chain_graph_is_equal_with_and_without_shipping(ray_cluster: Any, tmp_path: Path) -> None:
    shipped_backend = RayBackend(shared_filesystem=False)
    try:
        shipped = chain_graph(tmp_path / "shipped").run(backend=shipped_backend)
    finally:
        shipped_backend.close()
    local = chain_graph(tmp_path / "serial").run(backend="serial")
    assert graph_values(shipped) == graph_values(local)


# --- materialising inputs (no Ray needed) -------------------------------------------------

def _input(root: Path, name: str = "value.txt") -> ArtifactInput:
    return ArtifactInput(producer="p", name=name, version_dir=str(root / "p" / "v3"), condition="baseline",
                         step="Emit", replicates=2)


def test_materialise_fetches_each_content_hash_once(tmp_path: Path) -> None:
    fetched: list[str] = []

    def fetch(shipped: ShippedFile) -> bytes:
        fetched.append(shipped.digest)
        return b"payload"

    runner_side = _input(tmp_path / "elsewhere")  # does not exist on this "worker"
    shipped = {"p#value.txt": ShippedFile("ab" * 32, 7, ("ref",))}
    cache = tmp_path / "cache"
    first = materialise_inputs({"p#value.txt": runner_side}, shipped, 0, fetch=fetch, cache_dir=cache)
    second = materialise_inputs({"p#value.txt": runner_side}, shipped, 1, fetch=fetch, cache_dir=cache)
    assert fetched == ["ab" * 32]
    assert first["p#value.txt"].path(0).read_bytes() == b"payload"
    assert second["p#value.txt"].path(1).read_bytes() == b"payload"
    assert first["p#value.txt"].path(0) == cache / ("ab" * 32) / "replicate_0" / "baseline" / "Emit" / "value.txt"
    assert first["p#value.txt"].name == "value.txt" and first["p#value.txt"].replicates == 2


def test_materialise_uses_a_visible_path_of_the_right_size(tmp_path: Path) -> None:
    pinned = _input(tmp_path / "store")
    pinned.path(0).parent.mkdir(parents=True)
    pinned.path(0).write_bytes(b"payload")

    def fetch(shipped: ShippedFile) -> bytes:
        raise AssertionError("a visible file must not be fetched")

    shipped = {"p#value.txt": ShippedFile("cd" * 32, 7, ("ref",))}
    kept = materialise_inputs({"p#value.txt": pinned}, shipped, 0, fetch=fetch, cache_dir=tmp_path / "cache")
    assert kept["p#value.txt"] is pinned
    resized = {"p#value.txt": ShippedFile("cd" * 32, 99, ("ref",))}  # same path, other content: not trusted
    with pytest.raises(AssertionError, match="a visible file must not be fetched"):
        materialise_inputs({"p#value.txt": pinned}, resized, 0, fetch=fetch, cache_dir=tmp_path / "cache")
    assert materialise_inputs({"p#value.txt": pinned}, {}, 0, fetch=fetch, cache_dir=tmp_path / "c") == {
        "p#value.txt": pinned}


# --- connecting, with a stand-in for the ray module -------------------------------------

class FakeRay:
    """Records ``ray.init`` calls; ``address="auto"`` finds a cluster only when ``running``."""

    def __init__(self, *, initialized: bool = False, running: bool = False) -> None:
        self.initialized, self.running, self.calls = initialized, running, []

    def is_initialized(self) -> bool:
        return self.initialized

    def init(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)
        if kwargs.get("address") == "auto" and not self.running:
            raise ConnectionError("Could not find any running Ray instance.")
        self.initialized = True


def test_connect_prefers_an_initialised_ray_then_an_address_then_a_running_cluster(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from crystallize.execution.ray import _connect

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    already = FakeRay(initialized=True)
    assert _connect(already, None, {}) is False and already.calls == []  # not ours: never shut down
    explicit = FakeRay()
    assert _connect(explicit, "ray://head:10001", {"namespace": "x"}) is True
    assert explicit.calls == [{"address": "ray://head:10001", "namespace": "x"}]
    running = FakeRay(running=True)
    assert _connect(running, None, {}) is True and running.calls == [{"address": "auto"}]
    fresh = FakeRay()
    assert _connect(fresh, None, {}) is True
    assert fresh.calls == [{"address": "auto"}, {"include_dashboard": False}]
    sized = FakeRay(running=True)  # resource settings ask for a new local instance
    assert _connect(sized, None, {"num_cpus": 2}) is True
    assert sized.calls == [{"num_cpus": 2, "include_dashboard": False}]
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    from_env = FakeRay()
    assert _connect(from_env, None, {}) is True and from_env.calls == [{}]
