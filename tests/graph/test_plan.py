"""Status and plans (crystallize/graph/plan.py): what is stale, and why, without running anything."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from userkit import UserModules

from crystallize import Artifact, ArtifactPlugin, Experiment, ExperimentGraph, SeedPlugin, data_source, pipeline_step, treatment
from crystallize.errors import FingerprintError, UnhashableValueError
from crystallize.fingerprint._cache import CODE_CACHE
from crystallize.graph.plan import root_cause
from crystallize.graph.status import ConditionStatus, GraphStatus, NodeState, NodeStatus, RunPlan, StaleKind

FRESH, STALE, UPSTREAM_STALE = NodeState.FRESH, NodeState.STALE, NodeState.UPSTREAM_STALE
SHAPES = ("chain", "diamond", "fan_out")


@pytest.fixture
def user(tmp_path: Path):
    modules = UserModules(tmp_path / "code")
    (tmp_path / "code").mkdir()
    modules.steps()
    yield modules
    modules.close()


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


def build(user: UserModules, store: Path, shape: str = "chain", **options):
    return sys.modules[user.name("steps")].build(store, shape, **options)


@pytest.fixture
def chain(user, store):
    graph = build(user, store, "chain", treatments=[treatment("boost", {"delta": 10.0})])
    graph.run()
    return graph


@pytest.fixture
def diamond(user, store):
    graph = build(user, store, "diamond", treatments=[treatment("boost", {"delta": 10.0})])
    graph.run()
    return graph


@pytest.fixture
def fan_out(user, store):
    graph = build(user, store, "fan_out", treatments=[treatment("boost", {"delta": 10.0})])
    graph.run()
    return graph


def states(status: GraphStatus) -> dict[str, NodeState]:
    return {name: node.state for name, node in status.items()}


def kinds(node: NodeStatus | ConditionStatus) -> set[StaleKind]:
    return {r.kind for r in node.reasons}


# ----------------------------------------------------------------------------------- nothing changed

@pytest.mark.parametrize("shape", SHAPES)
def test_nothing_changed_every_node_and_condition_is_fresh(request, shape):
    graph = request.getfixturevalue(shape)
    status = graph.status()
    assert set(states(status).values()) == {FRESH}
    assert status.fresh is True
    for node in status.values():
        assert node.reasons == ()
        assert {n: c.state for n, c in node.conditions.items()} == {"baseline": FRESH, "boost": FRESH}
    plan = graph.plan()
    assert (plan.will_run, plan.may_run, plan.fresh) == ((), (), tuple(graph.order()))


def test_status_values_are_the_spec_value_objects(chain):
    status = chain.status()
    assert isinstance(status, GraphStatus) and list(status) == ["a", "b", "c"]
    node = status["a"]
    assert isinstance(node, NodeStatus) and node.experiment == "a"
    assert isinstance(node.conditions["boost"], ConditionStatus)
    assert node.conditions["boost (v0)"] is node.conditions["boost"]
    assert node.conditions["boost"].version == 0
    assert isinstance(chain.plan(), RunPlan)
    with pytest.raises(KeyError, match="nope"):
        node.conditions["nope"]


def test_a_never_run_graph_is_never_run_everywhere(user, store):
    graph = build(user, store, "diamond")
    status = graph.status()
    assert set(states(status).values()) == {NodeState.NEVER_RUN}
    assert kinds(status["d"].conditions["baseline"]) == {StaleKind.NEVER_RUN}
    assert status["a"].conditions["baseline"].missing_replicates == (0, 1)
    assert graph.plan().will_run == ("a", "b", "c", "d")


# ----------------------------------------------------------------------------------- code edits

def test_comment_and_docstring_edits_stay_fresh(chain, user, store):
    user.edit("steps", "def shift(x):\n", 'def shift(x):\n    """Move right."""  # a comment\n\n')
    user.edit("steps", "    CALLS.hit(\"produce\", ctx)\n", "    CALLS.hit(\"produce\", ctx)  # counted\n")
    assert build(user, store, treatments=[treatment("boost", {"delta": 10.0})]).status().fresh


def test_a_body_edit_makes_its_node_code_changed_and_downstream_may_run(chain, user, store):
    user.edit("steps", "values = [round(helpers", "values = [1.0 + round(helpers")
    status = build(user, store, treatments=[treatment("boost", {"delta": 10.0})]).status()
    assert states(status) == {"a": STALE, "b": UPSTREAM_STALE, "c": UPSTREAM_STALE}
    (reason,) = status["a"].reasons
    assert reason.kind is StaleKind.CODE_CHANGED and reason.upstream is None
    assert reason.detail == "code of step 'ProduceStep' changed"
    for node, upstream in (("b", "a"), ("c", "b")):
        (waiting,) = status[node].reasons
        assert (waiting.kind, waiting.upstream) == (StaleKind.UPSTREAM_CHANGED, upstream)
        assert {c.state for c in status[node].conditions.values()} == {UPSTREAM_STALE}
    assert root_cause(status, "c") == ("a", reason)
    assert root_cause(status, "a") == ("a", reason)


def test_downstream_is_upstream_changed_only_when_artifact_bytes_change(chain, user, store):
    boost = [treatment("boost", {"delta": 10.0})]
    user.edit("steps", "round(helpers.bump(shift(x)) * SCALE + delta, 6)", "round(delta + SCALE * helpers.bump(shift(x)), 6)")
    same_bytes = build(user, store, treatments=boost)
    assert states(same_bytes.status()) == {"a": STALE, "b": UPSTREAM_STALE, "c": UPSTREAM_STALE}
    same_bytes.run(strategy="resume", only=["a"])
    assert states(same_bytes.status()) == {"a": FRESH, "b": FRESH, "c": FRESH}

    user.edit("steps", "round(delta + SCALE * helpers.bump(shift(x)), 6)", "round(delta + SCALE * helpers.bump(shift(x)) + 1, 6)")
    new_bytes = build(user, store, treatments=boost)
    new_bytes.run(strategy="resume", only=["a"])
    status = new_bytes.status()
    assert states(status) == {"a": FRESH, "b": STALE, "c": UPSTREAM_STALE}
    (reason,) = status["b"].reasons
    assert (reason.kind, reason.upstream) == (StaleKind.UPSTREAM_CHANGED, "a")
    assert "a#a.json" in reason.detail
    assert root_cause(status, "c") == ("b", reason)


@pytest.mark.parametrize("module, old, new", [
    ("steps", "return x + 1.0", "return x + 2.0"),  # helper in the step's own module
    ("helpers", "return x + 0.5", "return x + 0.25"),  # helper in another user module
], ids=["same-module", "other-module"])
def test_editing_a_helper_the_step_calls_makes_it_stale(chain, user, store, module, old, new):
    user.edit(module, old, new)
    if module == "helpers":
        user.write("steps", user.source("steps"))  # the step module is reloaded too, as a new process would
    status = build(user, store, treatments=[treatment("boost", {"delta": 10.0})]).status()
    assert status["a"].state is STALE
    assert kinds(status["a"]) == {StaleKind.CODE_CHANGED}
    assert "Produce" in status["a"].reasons[0].detail


def test_a_module_constant_the_step_reads_is_code(chain, user, store):
    user.edit("steps", "SCALE = 1.0", "SCALE = 3.0")
    status = build(user, store, treatments=[treatment("boost", {"delta": 10.0})]).status()
    assert status["a"].state is STALE and kinds(status["a"]) == {StaleKind.CODE_CHANGED}


def test_code_without_source_raises_fingerprint_error_suggesting_version(store):
    namespace: dict = {}
    exec("def made(data, ctx):\n    return data\n", namespace)  # noqa: S102 - a function without a source file
    nums = data_source(lambda ctx: [1, 2, 3])
    plugins = [ArtifactPlugin(root_dir=store), SeedPlugin(seed=1)]
    exp = Experiment(nums(), [pipeline_step()(namespace["made"])()], name="made", plugins=plugins)
    with pytest.raises(FingerprintError, match="version="):
        exp.status()
    exp.run()  # strategy="rerun" still runs: the condition is just not reusable
    declared = Experiment(nums(), [pipeline_step(version="1")(namespace["made"])()], name="made", plugins=plugins)
    declared.run()
    assert declared.status().state is FRESH


def test_lambda_treatments_differing_only_by_a_closure_value_are_told_apart(user, store):
    def scale_by(factor):
        return lambda ctx: ctx.add("delta", factor)

    graph = build(user, store, treatments=[treatment(f"x{f}", scale_by(f)) for f in (2.0, 4.0)])
    graph.run()
    assert graph.status().fresh
    changed = build(user, store, treatments=[treatment("x2.0", scale_by(2.0)), treatment("x4.0", scale_by(5.0))])
    conditions = changed.status()["a"].conditions
    assert (conditions["baseline"].state, conditions["x2.0"].state, conditions["x4.0"].state) == (FRESH, FRESH, STALE)
    assert kinds(conditions["x4.0"]) == {StaleKind.TREATMENT_CHANGED}


# ----------------------------------------------------------------------------------- treatments and params

def test_a_changed_treatment_value_is_stale_on_that_condition_only(user, store):
    build(user, store, treatments=[treatment("boost", {"delta": 10.0}), treatment("mild", {"delta": 1.0})]).run()
    status = build(user, store, treatments=[treatment("boost", {"delta": 11.0}), treatment("mild", {"delta": 1.0})]).status()
    for name in ("a", "b", "c"):  # b and c inherit the treatment, so its payload is theirs too
        conditions = status[name].conditions
        assert {n: c.state for n, c in conditions.items()} == {"baseline": FRESH, "boost": STALE, "mild": FRESH}
        assert kinds(conditions["boost"]) == {StaleKind.TREATMENT_CHANGED}


def test_a_new_treatment_is_a_new_condition_and_a_removed_one_changes_nothing(chain, user, store):
    grown = build(user, store, treatments=[treatment("boost", {"delta": 10.0}), treatment("new", {"delta": 3.0})])
    conditions = grown.status()["a"].conditions
    assert conditions["new"].state is STALE and kinds(conditions["new"]) == {StaleKind.NEW_CONDITION}
    assert conditions["boost"].state is FRESH
    assert grown.plan().will_run == ("a", "b", "c")
    shrunk = build(user, store, treatments=[])
    assert shrunk.status().fresh and shrunk.plan().will_run == ()


@pytest.mark.parametrize("options, kind, words", [
    ({"delta": 0.5}, StaleKind.PARAMS_CHANGED, "'delta'"),
    ({"factor": 3.0}, StaleKind.PARAMS_CHANGED, "'factor'"),
    ({"initial_ctx": {"lr": 0.2}}, StaleKind.PARAMS_CHANGED, "'lr'"),
    ({"seed": 8}, StaleKind.SEED_CHANGED, "7 -> 8"),
], ids=["explicit-param", "downstream-param", "initial-ctx", "seed"])
def test_a_changed_setting_names_what_changed(user, store, options, kind, words):
    build(user, store, initial_ctx={"lr": 0.1}).run()
    status = build(user, store, **{"initial_ctx": {"lr": 0.1}, **options}).status()
    stale = [n for n, node in status.items() if node.state is STALE]
    assert stale
    for name in stale:
        assert kinds(status[name]) == {kind}
        assert words in status[name].reasons[0].detail


def test_raising_replicates_is_replicates_changed_and_lowering_is_fresh(user, store):
    build(user, store, replicates=2).run()
    status = build(user, store, replicates=4).status()
    for node in status.values():
        assert node.state is STALE and kinds(node) == {StaleKind.REPLICATES_CHANGED}
        assert node.conditions["baseline"].missing_replicates == (2, 3)
    assert build(user, store, replicates=1).status().fresh


def test_a_new_package_version_is_environment_changed_naming_it(user, store, monkeypatch):
    steps = sys.modules[user.name("steps")]
    build(user, store, extra_step=steps.use_numpy).run()
    import numpy

    monkeypatch.setitem(CODE_CACHE.packages, "numpy", ("numpy", numpy.__version__ + ".post1"))
    status = build(user, store, extra_step=steps.use_numpy).status()
    assert status["a"].state is STALE and kinds(status["a"]) == {StaleKind.ENVIRONMENT_CHANGED}
    assert status["a"].reasons[0].detail == f"numpy {numpy.__version__} -> {numpy.__version__}.post1"


class Opaque:
    """A value with no canonical encoding (but it can be copied and pickled)."""


def test_a_value_without_canonical_encoding_fails_status_but_not_a_rerun(user, store):
    graph = build(user, store, initial_ctx={"handle": Opaque()})
    with pytest.raises(UnhashableValueError, match="key 'handle' of type Opaque"):
        graph.status()
    graph.run()  # strategy="rerun": runs, and the conditions are stored as not reusable
    with pytest.raises(UnhashableValueError, match="'handle'"):
        graph.run(strategy="resume")
    assert build(user, store, initial_ctx={"handle": 1}).status()["a"].reasons[0].detail == (
        "condition 'baseline' was stored as not reusable (a value had no canonical encoding)")


def test_a_drawn_seed_never_makes_a_condition_stale(user, store):
    build(user, store, seed=None).run()
    assert build(user, store, seed=None).status().fresh
    status = build(user, store, seed=5).status()
    assert kinds(status["a"]) == {StaleKind.SEED_CHANGED}
    assert status["a"].reasons[0].detail == "master seed drawn -> 5"


# ----------------------------------------------------------------------------------- data files

def test_input_file_content_is_data_changed_and_its_mtime_alone_is_not(chain, user, store, tmp_path):
    data = tmp_path / "code" / "input.txt"
    later = time.time() + 5
    os.utime(data, (later, later))
    boost = [treatment("boost", {"delta": 10.0})]
    assert build(user, store, treatments=boost).status().fresh
    data.write_text("1 2 3 4 5 7")
    status = build(user, store, treatments=boost).status()
    assert status["a"].state is STALE and kinds(status["a"]) == {StaleKind.DATA_CHANGED}
    assert "input.txt" in status["a"].reasons[0].detail
    assert status["b"].state is UPSTREAM_STALE


def test_status_writes_nothing_but_the_input_file_hash_cache(chain, user, store, tmp_path):
    def snapshot() -> dict[str, int]:
        return {str(p.relative_to(store)): p.stat().st_mtime_ns for p in store.rglob("*")}

    (tmp_path / "code" / "input.txt").write_text("9 9 9 9")  # forces a rehash, so the cache is written
    (store / ".file-hashes.json").unlink(missing_ok=True)
    before = snapshot()
    chain.status()
    chain.plan(force=True)
    after = snapshot()
    assert set(after) - set(before) == {".file-hashes.json"}
    assert {k: v for k, v in after.items() if k in before} == before


def test_a_condition_whose_files_were_pruned_is_incomplete_not_fresh(chain, store):
    (store / "a" / "v0" / "boost" / ".crystallize_complete").unlink()  # what pruning does first
    condition = chain.status()["a"].conditions["boost"]
    assert (condition.state, condition.missing_replicates) == (NodeState.INCOMPLETE, (0, 1))
    assert condition.reasons[0].detail == "replicates [0, 1] missing from v0"
    assert chain.status()["a"].conditions["baseline"].state is NodeState.FRESH


def test_a_replicate_whose_artifact_was_deleted_reruns(chain, store):
    (store / "a" / "v0" / "replicate_1" / "boost" / "ProduceStep" / "a.json").unlink()
    condition = chain.status()["a"].conditions["boost"]
    assert (condition.state, condition.missing_replicates) == (NodeState.INCOMPLETE, (1,))
    results = chain.run(strategy="resume")
    version = results["a"].run_info["conditions"]["boost"]
    assert (store / "a" / f"v{version}" / "replicate_1" / "boost" / "ProduceStep" / "a.json").exists()
    assert chain.status()["a"].state is NodeState.FRESH


def test_deleted_results_json_is_not_fresh(chain, store):
    (store / "a" / "v0" / "baseline" / "results.json").unlink()
    assert chain.status()["a"].conditions["baseline"].state is NodeState.INCOMPLETE


# ----------------------------------------------------------------------------------- plans and failures

def test_plan_splits_will_run_may_run_and_fresh(chain, user, store):
    user.edit("steps", "return x + 1.0", "return x + 2.0")
    graph = build(user, store, treatments=[treatment("boost", {"delta": 10.0})])
    plan = graph.plan()
    assert (plan.will_run, plan.may_run, plan.fresh) == (("a",), ("b", "c"), ())
    assert graph.plan(only=["b", "c"]).will_run == ()
    assert graph.plan(upto="b").may_run == ("b",)
    forced = graph.plan(force=["c"])
    assert forced.will_run == ("a", "c") and kinds(forced.status["c"]) == {StaleKind.FORCED}
    with pytest.raises(KeyError, match="no experiment named 'zz'"):
        graph.plan(only=["zz"])


def test_a_failed_condition_is_failed_and_its_downstream_blocked(user, store, monkeypatch):
    monkeypatch.setenv("CRYSTALLIZE_TEST_FAIL", "produce:boost:1")
    graph = build(user, store, treatments=[treatment("boost", {"delta": 10.0})])
    graph.run()
    monkeypatch.delenv("CRYSTALLIZE_TEST_FAIL")
    status = graph.status()
    a = status["a"].conditions
    assert (a["baseline"].state, a["boost"].state) == (FRESH, NodeState.FAILED)
    assert a["boost"].missing_replicates == (1,)
    assert kinds(a["boost"]) == {StaleKind.FAILED} and "[1]" in a["boost"].reasons[0].detail
    b = status["b"].conditions  # blocked in the run; now waits on a's rerun of the failed replicate
    assert (b["baseline"].state, b["boost"].state) == (FRESH, UPSTREAM_STALE)
    assert b["boost"].reasons[0].upstream == "a"
    assert root_cause(status, "c") == ("a", a["boost"].reasons[0])


def test_experiment_status_on_one_experiment(user, store):
    graph = build(user, store, treatments=[treatment("boost", {"delta": 10.0})])
    first = graph.experiments["a"]
    assert first.status().state is NodeState.NEVER_RUN
    first.run()
    assert first.status().state is FRESH
    downstream = graph.experiments["b"]  # reads a's newest stored run, as run() would
    downstream.run()
    assert downstream.status().state is FRESH
def test_a_ten_thousand_node_chain_has_a_status(store):
    """Iterative planner: no recursion over depth. Trivial experiments keep it fast."""
    @pipeline_step(version="1")
    def noop(data, ctx):
        return data

    plugins = [ArtifactPlugin(root_dir=store), SeedPlugin(seed=1)]
    outputs = [Artifact("out.json") for _ in range(10_000)]
    sources = [data_source(lambda ctx: [1])(), *outputs[:-1]]
    experiments = [Experiment(source, [noop()], name=f"n{i:05d}", outputs=[out], plugins=plugins)
                   for i, (source, out) in enumerate(zip(sources, outputs))]
    graph = ExperimentGraph(*experiments)
    started = time.perf_counter()
    status = graph.status()
    assert len(status) == 10_000 and status["n09999"].state is NodeState.NEVER_RUN
    assert time.perf_counter() - started < 20
