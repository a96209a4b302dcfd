"""0.27 custom ``run_experiment_loop`` plugins, and context keys added by steps' ``setup``.

Covers ``crystallize/execution/loop.py`` and the setup path of ``crystallize/execution/engine.py``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from crystallize import (
    BasePlugin,
    Experiment,
    ParallelExecution,
    Pipeline,
    PipelineStep,
    SeedPlugin,
    Treatment,
    data_source,
    pipeline_step,
    resource_factory,
)
from crystallize.errors import ExecutionError, SerializationError
from crystallize.execution.loop import LoopReplicate
from crystallize.graph.status import NodeState, StaleKind
from crystallize.results import ReplicateResult

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # process workers get this module's steps by value


@data_source
def base_values(ctx: Any) -> list[float]:
    return [1.0, 2.0, 3.0]


@pipeline_step()
def add_bias(data: list[float], ctx: Any, *, bias: float = 0.0) -> list[float]:
    return [x + bias for x in data]


@pipeline_step()
def loss(data: list[float], ctx: Any) -> Any:
    return data, {"loss": abs(sum(data) - 9.0), "rep": ctx["replicate"]}


def _experiment(loop: BasePlugin, name: str = "loop", replicates: int = 3) -> Experiment:
    return Experiment(datasource=base_values(), pipeline=Pipeline([add_bias(), loss()]), name=name,
                      replicates=replicates, plugins=[SeedPlugin(seed=7), loop],
                      treatments=[Treatment("b1", {"bias": 1.0})])


_IN_CHILD: list[Any] = []  # the replicate_fn a forked worker calls


def _call_in_child(rep: int) -> Any:
    return _IN_CHILD[0](rep)


def _complete(result: Any, replicates: int = 3) -> None:
    assert result.errors == {}
    assert result.metrics.baseline.metrics == {"loss": [3.0] * replicates, "rep": list(range(replicates))}
    assert result.metrics.treatments["b1"].metrics == {"loss": [0.0] * replicates, "rep": list(range(replicates))}


# --- custom loops -----------------------------------------------------------------------------------

class AwaitingLoop(BasePlugin):
    """The loop of examples section 14c: an ``async def`` that awaits ``replicate_fn``."""

    async def run_experiment_loop(self, experiment: Any, replicate_fn: Any) -> list[Any]:
        return [await replicate_fn(rep) for rep in range(experiment.replicates)]


class PlainLoop(BasePlugin):
    def __init__(self) -> None:
        self.seen: list[Any] = []

    def run_experiment_loop(self, experiment: Any, replicate_fn: Any) -> list[Any]:
        self.seen = [replicate_fn(rep) for rep in range(experiment.replicates)]
        return self.seen


class TestCustomLoop:
    def test_async_loop_is_awaited_and_its_replicates_stored(self) -> None:
        experiment = _experiment(AwaitingLoop(), name="aloop")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "coroutine was never awaited"
            result = experiment.run()
        _complete(result)
        assert experiment.status().state is NodeState.FRESH

    def test_async_loop_may_gather(self) -> None:
        class Gathering(BasePlugin):
            async def run_experiment_loop(self, experiment: Any, replicate_fn: Any) -> list[Any]:
                return list(await asyncio.gather(*(replicate_fn(r) for r in range(experiment.replicates))))

        _complete(_experiment(Gathering(), name="gather").run())

    def test_async_loop_runs_inside_a_running_event_loop(self) -> None:
        from crystallize.execution.engine import run_experiment

        async def main() -> Any:  # the engine is called from a thread that runs an event loop
            return run_experiment(_experiment(AwaitingLoop(), name="nested")).result

        _complete(asyncio.run(main()))

    def test_plain_loop_gets_results_that_are_also_awaitable(self) -> None:
        loop = PlainLoop()
        _complete(_experiment(loop, name="plain").run())
        assert [type(r) for r in loop.seen] == [LoopReplicate] * 3
        assert isinstance(loop.seen[0], ReplicateResult)
        assert loop.seen[1].baseline_metrics == {"loss": [3.0], "rep": [1]}
        assert loop.seen[1].treatment_metrics == {"b1": {"loss": [0.0], "rep": [1]}}

        async def awaited() -> Any:
            return await loop.seen[2]

        assert asyncio.run(awaited()) is loop.seen[2]

    def test_loop_sees_the_replicate_count_of_the_call(self) -> None:
        loop = PlainLoop()
        _complete(_experiment(loop, name="override", replicates=1).run(replicates=4), replicates=4)
        assert len(loop.seen) == 4

    @pytest.mark.parametrize("asynchronous", [False, True])
    def test_not_implemented_falls_back_to_the_serial_loop(self, asynchronous: bool) -> None:
        class Declines(BasePlugin):
            def run_experiment_loop(self, experiment: Any, replicate_fn: Any) -> Any:
                return NotImplemented

        class DeclinesAsync(BasePlugin):
            async def run_experiment_loop(self, experiment: Any, replicate_fn: Any) -> Any:
                return NotImplemented

        experiment = _experiment(DeclinesAsync() if asynchronous else Declines(), name="declines")
        _complete(experiment.run())
        assert experiment.status().state is NodeState.FRESH

    def test_not_implemented_after_running_some_replicates_runs_only_the_rest(self) -> None:
        calls: list[int] = []

        @pipeline_step()
        def count(data: Any, ctx: Any) -> Any:
            calls.append(ctx["replicate"])
            return data

        class RunsOne(BasePlugin):
            def run_experiment_loop(self, experiment: Any, replicate_fn: Any) -> Any:
                replicate_fn(0)
                return NotImplemented

        experiment = Experiment(datasource=base_values(), pipeline=Pipeline([count(), loss()]), name="partial",
                                replicates=3, plugins=[RunsOne()])
        assert experiment.run().metrics.baseline.metrics["rep"] == [0, 1, 2]
        assert sorted(calls) == [0, 1, 2]

    def test_loop_that_skips_replicates_raises_after_storing_what_ran(self) -> None:
        class SkipsOne(BasePlugin):
            def run_experiment_loop(self, experiment: Any, replicate_fn: Any) -> list[Any]:
                return [replicate_fn(rep) for rep in range(experiment.replicates) if rep != 1]

        experiment = _experiment(SkipsOne(), name="skips")
        with pytest.raises(ExecutionError, match=r"SkipsOne\.run_experiment_loop returned without running every "
                                                 r"replicate of experiment 'skips' \(missing: 'baseline' replicates "
                                                 r"\[1\]; 'b1' replicates \[1\]\)"):
            experiment.run()
        status = experiment.status()
        assert status.state is NodeState.INCOMPLETE
        assert status.conditions["baseline"].missing_replicates == (1,)
        assert status.conditions["b1"].missing_replicates == (1,)
        experiment.plugins[-1] = PlainLoop()
        _complete(experiment.run(strategy="resume"))
        assert experiment.status().state is NodeState.FRESH

    def test_loop_that_returns_nothing_still_stores_what_replicate_fn_ran(self) -> None:
        class Forgets(BasePlugin):
            def run_experiment_loop(self, experiment: Any, replicate_fn: Any) -> None:
                for rep in range(experiment.replicates):
                    replicate_fn(rep)

        _complete(_experiment(Forgets(), name="forgets").run())

    def test_stored_values_come_from_replicate_fn_not_from_the_returned_list(self) -> None:
        class Edits(BasePlugin):
            def run_experiment_loop(self, experiment: Any, replicate_fn: Any) -> list[Any]:
                out = [replicate_fn(rep) for rep in range(experiment.replicates)]
                for r in out:
                    r.baseline_metrics["loss"] = [99.0]
                return out[:1]

        _complete(_experiment(Edits(), name="edits").run())

    @pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
    def test_results_from_a_replicate_fn_run_elsewhere_come_from_the_returned_list(self) -> None:
        class Remote(BasePlugin):
            """Runs each replicate in a forked worker process: the runner never sees the call."""

            def run_experiment_loop(self, experiment: Any, replicate_fn: Any) -> list[Any]:
                import multiprocessing
                from concurrent.futures import ProcessPoolExecutor

                _IN_CHILD[:] = [replicate_fn]
                with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
                    return list(pool.map(_call_in_child, range(experiment.replicates)))

        _complete(_experiment(Remote(), name="remote").run())

    def test_a_lazy_returned_iterable_is_consumed(self) -> None:
        class Lazy(BasePlugin):
            def run_experiment_loop(self, experiment: Any, replicate_fn: Any) -> Any:
                return (replicate_fn(rep) for rep in range(experiment.replicates))

        _complete(_experiment(Lazy(), name="lazy").run())

    def test_a_failing_loop_raises_and_keeps_the_replicates_that_ran(self) -> None:
        class Breaks(BasePlugin):
            def run_experiment_loop(self, experiment: Any, replicate_fn: Any) -> Any:
                replicate_fn(0)
                raise RuntimeError("scheduler lost")

        experiment = _experiment(Breaks(), name="breaks")
        with pytest.raises(RuntimeError, match="scheduler lost"):
            experiment.run()
        status = experiment.status()
        assert status.conditions["baseline"].missing_replicates == (1, 2)


# --- setup ----------------------------------------------------------------------------------------

def open_client(ctx: Any) -> dict[str, int]:
    return {"pid": os.getpid()}


class InitClient(PipelineStep):
    """Puts a resource factory into the setup context, as crystallize-extras' steps do."""

    def __init__(self, context_key: str = "client") -> None:
        self.context_key = context_key
        self.torn_down = False

    def setup(self, ctx: Any) -> None:
        ctx.add(self.context_key, resource_factory(open_client, key=f"client-{self.context_key}"))
        ctx.add("endpoint", "https://example.invalid")

    def teardown(self, ctx: Any) -> None:
        self.torn_down = self.context_key in ctx

    def __call__(self, data: Any, ctx: Any) -> Any:
        return data

    @property
    def params(self) -> dict[str, Any]:
        return {"context_key": self.context_key}


class AddsLock(InitClient):
    def setup(self, ctx: Any) -> None:
        ctx.add("lock", threading.Lock())


@pipeline_step()
def use_client(data: Any, ctx: Any, *, client: Any = None, endpoint: str = "") -> Any:
    return data, {"pid": client["pid"], "endpoint": endpoint, "via_get": "client" in ctx}


def _setup_experiment(plugins: list[Any], name: str, first: PipelineStep | None = None) -> Experiment:
    return Experiment(datasource=base_values(), pipeline=Pipeline([first or InitClient(), use_client()]), name=name,
                      replicates=3, plugins=[SeedPlugin(seed=3), *plugins], treatments=[Treatment("t", {})])


BACKEND_PLUGINS = {"serial": [], "thread": [ParallelExecution(max_workers=2)],
                   "process": [ParallelExecution(max_workers=2, executor_type="process")], "loop": [AwaitingLoop()]}


class TestSetupContext:
    @pytest.mark.parametrize("backend", sorted(BACKEND_PLUGINS))
    def test_keys_added_in_setup_reach_every_replicate_context(self, backend: str) -> None:
        result = _setup_experiment(BACKEND_PLUGINS[backend], name=f"setup_{backend}").run()
        assert result.errors == {}
        for metrics in (result.metrics.baseline.metrics, result.metrics.treatments["t"].metrics):
            assert metrics["endpoint"] == ["https://example.invalid"] * 3
            assert metrics["via_get"] == [True] * 3
            assert len(metrics["pid"]) == 3
        if backend == "process":
            assert os.getpid() not in result.metrics.baseline.metrics["pid"]  # built in the workers

    def test_a_setup_value_that_cannot_travel_is_named_before_any_job(self) -> None:
        step = AddsLock()
        experiment = _setup_experiment(BACKEND_PLUGINS["process"], name="locked_setup", first=step)
        with pytest.raises(SerializationError, match=r"context key 'lock' \(added by AddsLock\.setup\) of "
                                                     r"experiment 'locked_setup'") as info:
            experiment.run()
        assert info.value.what == "context key 'lock' (added by AddsLock.setup) of experiment 'locked_setup'"
        assert list(Path("data").rglob("run.json")) == []  # no version was reserved
        assert step.torn_down is False  # teardown ran (with the context setup filled: 'client' never added)

    @pytest.mark.parametrize("backend", ["serial", "thread", "loop"])
    def test_setup_values_are_shared_not_copied_in_process(self, backend: str) -> None:
        seen: list[int] = []

        class SharesLock(PipelineStep):
            def setup(self, ctx: Any) -> None:
                ctx.add("lock", threading.Lock())  # cannot be copied: a resource, shared as it is

            def __call__(self, data: Any, ctx: Any) -> Any:
                with ctx["lock"]:
                    seen.append(id(ctx["lock"]))
                return data, {"ok": 1}

            @property
            def params(self) -> dict[str, Any]:
                return {}

        result = Experiment(datasource=base_values(), pipeline=Pipeline([SharesLock()]), name=f"shared_{backend}",
                            replicates=3, plugins=[SeedPlugin(seed=3), *BACKEND_PLUGINS[backend]]).run()
        assert result.errors == {} and result.metrics.baseline.metrics == {"ok": [1, 1, 1]}
        assert len(seen) == 3 and len(set(seen)) == 1

    def test_teardown_sees_the_setup_context(self) -> None:
        step = InitClient()
        _setup_experiment([], name="teardown", first=step).run()
        assert step.torn_down is True

    def test_setup_keys_are_not_fingerprint_parts(self) -> None:
        experiment = _setup_experiment([], name="fingerprint")
        experiment.run()
        status = experiment.status()
        assert status.state is NodeState.FRESH
        assert experiment.run(strategy="resume").metrics.baseline.metrics["endpoint"] == ["https://example.invalid"] * 3

    def test_changing_the_setup_code_makes_the_step_stale(self) -> None:
        _setup_experiment([], name="setup_code").run()

        class InitClient(AddsLock):  # same name, different setup: a different class body
            def setup(self, ctx: Any) -> None:
                ctx.add("client", resource_factory(open_client, key="client-other"))

        reasons = _setup_experiment([], name="setup_code", first=InitClient()).status().reasons
        assert [r.kind for r in reasons] == [StaleKind.CODE_CHANGED]

    def test_apply_runs_setup_and_teardown(self) -> None:
        step = InitClient()
        experiment = Experiment(datasource=base_values(), pipeline=Pipeline([step, use_client()]), name="apply")
        assert experiment.apply() == [1.0, 2.0, 3.0]
        assert step.torn_down is True
