"""Graph runner: scheduling order, concurrency of independent branches, selection, failures."""

from __future__ import annotations

import threading

import pytest

from crystallize import Artifact, Experiment, ExperimentGraph, Pipeline, data_source, pipeline_step
from crystallize.errors import CycleError, DefinitionError, DuplicateNameError
from crystallize.graph.status import NodeState


@data_source
def constant(ctx, value: int = 1):
    return value


def _producer(name: str, step_fn, replicates: int = 2) -> tuple[Experiment, Artifact]:
    art = Artifact(f"{name}.txt")

    @pipeline_step()
    def produce(data, ctx, out: Artifact):
        value = step_fn(data, ctx)
        out.write(str(value))
        return data, {"value": value}

    exp = Experiment(constant(), Pipeline([produce(out=art)]), name=name, outputs=[art], replicates=replicates)
    return exp, art


@pipeline_step()
def read_sum(data, ctx):
    total = sum(int(v) for v in data.values())
    return data, {"total": total}


def _consumer(name: str, *arts: Artifact, replicates: int = 2) -> Experiment:
    from crystallize import ExperimentInput

    return Experiment(ExperimentInput(**{a.name.split(".")[0]: a for a in arts}), Pipeline([read_sum()]), name=name,
                      replicates=replicates)


def test_diamond_branches_run_concurrently_on_a_thread_backend(tmp_path):
    barrier = threading.Barrier(2, timeout=20)

    def wait_at_barrier(data, ctx):
        if ctx["replicate"] == 0:
            barrier.wait()  # both branches must be running at the same time to pass
        return 1

    top, top_art = _producer("top", lambda d, c: 1, replicates=1)

    @pipeline_step()
    def left_step(data, ctx):
        return data, {"x": wait_at_barrier(data, ctx)}

    left = Experiment(top_art, Pipeline([left_step()]), name="left", replicates=1)
    right = Experiment(top_art, Pipeline([left_step()]), name="right", replicates=1)
    graph = ExperimentGraph(top, left, right)
    graph.store_root = tmp_path / "data"
    results = graph.run(backend="thread")
    assert results["left"].metrics.baseline.metrics["x"] == [1]
    assert results["right"].metrics.baseline.metrics["x"] == [1]
    assert results["left"].errors == {} and results["right"].errors == {}


def test_chain_reads_exact_upstream_version_and_counts(tmp_path):
    a, art_a = _producer("a", lambda d, c: 10 + c["replicate"])
    b = _consumer("b", art_a, replicates=3)
    graph = ExperimentGraph(a, b)
    graph.store_root, graph.versioned = tmp_path / "data", True
    first = graph.run()
    # consumer replicate r reads producer replicate r % 2
    assert first["b"].metrics.baseline.metrics["total"] == [10, 11, 10]
    pins = first["b"].run_info["conditions"]
    assert pins == {"baseline": 0}
    import json

    record = json.loads((tmp_path / "data" / "b" / "v0" / "run.json").read_text())
    assert record["graph"] == {"name": "b"}
    assert record["conditions"]["baseline"]["upstream"] == [
        {"producer": "a", "artifact": "a.txt", "version": 0, "condition": "baseline", "fallback": False}]


def test_only_and_upto_select_nodes(tmp_path):
    a, art_a = _producer("a", lambda d, c: 1)
    b = _consumer("b", art_a)
    graph = ExperimentGraph(a, b)
    graph.store_root = tmp_path / "data"
    assert set(graph.run(upto="a")) == {"a"}
    assert set(graph.run(only=["b"])) == {"b"}
    with pytest.raises(KeyError, match="no experiment named 'zzz'"):
        graph.run(only=["zzz"])


def test_failed_upstream_blocks_downstream_and_independent_branch_continues(tmp_path):
    def boom(data, ctx):
        raise RuntimeError("producer broke")

    bad, bad_art = _producer("bad", boom)
    good, good_art = _producer("good", lambda d, c: 2)
    down = _consumer("down", bad_art)
    side = _consumer("side", good_art)
    graph = ExperimentGraph(bad, good, down, side)
    graph.store_root = tmp_path / "data"
    results = graph.run()
    assert set(results["bad"].errors) == {"baseline_rep_0", "baseline_rep_1"}
    assert str(results["bad"].errors["baseline_rep_0"].original_exception) == "producer broke"
    assert results["down"].run_info["blocked"] == ["baseline"]
    assert results["side"].metrics.baseline.metrics["total"] == [2, 2]
    status = graph.status()
    assert status["bad"].state is NodeState.FAILED
    # nothing of 'down' is stored (it was blocked): never run, waiting for 'bad' (staleness issue 3)
    assert status["down"].state is NodeState.NEVER_RUN and status["down"].reasons[0].upstream == "bad"


def test_definition_errors_name_the_culprit():
    a, art_a = _producer("a", lambda d, c: 1)
    twin, _ = _producer("a", lambda d, c: 1)
    with pytest.raises(DuplicateNameError, match="two experiments are named 'a'"):
        ExperimentGraph(a, twin)
    orphan = _consumer("orphan", Artifact("nobody.txt"))
    with pytest.raises(DefinitionError, match="'nobody.txt' read by 'orphan' has no producing experiment"):
        ExperimentGraph(orphan)
    g = ExperimentGraph()
    x, _ = _producer("x", lambda d, c: 1)
    y, _ = _producer("y", lambda d, c: 1)
    g.add_experiment(x)
    g.add_experiment(y)
    g.add_dependency(y, x)
    with pytest.raises(CycleError, match="x -> y -> x|y -> x -> y"):
        g.add_dependency(x, y)


def test_disconnected_experiments_are_allowed(tmp_path):
    a, _ = _producer("a", lambda d, c: 1)
    b, _ = _producer("b", lambda d, c: 2)
    graph = ExperimentGraph(a, b)
    graph.store_root = tmp_path / "data"
    results = graph.run()
    assert results["a"].metrics.baseline.metrics["value"] == [1, 1]
    assert results["b"].metrics.baseline.metrics["value"] == [2, 2]
    assert graph.name == "ExperimentGraph"


def test_only_and_upto_together_is_an_error(tmp_path):
    a, art_a = _producer("a", lambda d, c: 1)
    b = _consumer("b", art_a)
    graph = ExperimentGraph(a, b)
    with pytest.raises(ValueError, match="either only= .* or upto= .*not both"):
        graph.run(only=["b"], upto="b")


def test_treatment_key_shadowed_by_an_explicit_parameter_is_warned(tmp_path, caplog):
    import logging

    from crystallize import Treatment

    @pipeline_step()
    def shifted(data, ctx, *, shift: float = 0.0):
        return data, {"v": data + shift}

    exp = Experiment(constant(), Pipeline([shifted(shift=1.0)]), name="shadow",
                     treatments=[Treatment("t", {"shift": 100.0})])
    graph = ExperimentGraph(exp)
    graph.store_root = tmp_path / "data"
    with caplog.at_level(logging.WARNING, logger="crystallize"):
        results = graph.run()
    assert results["shadow"].metrics.treatments["t"].metrics["v"] == [2.0]  # explicit value wins
    assert "treatment 't' sets 'shift', but step 'ShiftedStep' is given shift= explicitly" in caplog.text
