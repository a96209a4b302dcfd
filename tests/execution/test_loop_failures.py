"""How a run ends when it does not end well, and what it tells the user.

Covers the exception paths of ``crystallize/execution/engine.py`` (a custom
``run_experiment_loop`` that raises before, during or after the replicates, or skips
some), ``finish_run`` in ``crystallize/execution/report.py``, the stored-metrics readers
of ``crystallize/store/reader.py`` after a versioned partial resume, and the log lines the
0.27 examples quote (``crystallize/plugins/builtin.py``, ``log_cache_hits``).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from crystallize import (
    ArtifactPlugin,
    BasePlugin,
    Experiment,
    LoggingPlugin,
    Pipeline,
    SeedPlugin,
    Treatment,
    data_source,
    pipeline_step,
)
from crystallize.errors import ExecutionError
from crystallize.graph.status import NodeState
from crystallize.plugins import load_all_metrics, load_metrics

# --- a small experiment -------------------------------------------------------------------------


@data_source
def one(ctx: Any) -> int:
    return 1


@pipeline_step()
def work(data: int, ctx: Any, *, k: int = 0) -> Any:
    return data, {"rep": ctx["replicate"], "k": k}


@pipeline_step(cacheable=True)
def expensive(data: int, ctx: Any) -> int:
    return data + 1


class CountJobs(BasePlugin):
    """Records every replicate-condition that runs."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def before_replicate(self, experiment: Any, ctx: Any) -> None:
        self.seen.append((ctx["condition"], ctx["replicate"]))


class Loop(BasePlugin):
    """A 0.27 custom loop that runs ``reps`` and then raises (``fail=True``) or returns."""

    def __init__(self, reps: tuple[int, ...], *, fail: bool = True) -> None:
        self.reps, self.fail = reps, fail

    def run_experiment_loop(self, experiment: Any, replicate_fn: Any) -> Any:
        done = [replicate_fn(r) for r in self.reps]
        if self.fail:
            raise RuntimeError("my loop failed")
        return done


class AsyncLoop(Loop):
    async def run_experiment_loop(self, experiment: Any, replicate_fn: Any) -> Any:  # type: ignore[override]
        done = [await replicate_fn(r) for r in self.reps]
        if self.fail:
            raise RuntimeError("my loop failed")
        return done


def build(*plugins: Any, versioned: bool = False, replicates: int = 3) -> Experiment:
    return Experiment(datasource=one(), pipeline=Pipeline([work()]), name="lf", replicates=replicates,
                      treatments=[Treatment("t", {"k": 1})],
                      plugins=[SeedPlugin(seed=1), ArtifactPlugin(versioned=versioned), *plugins])


def record(version: int = 0) -> dict[str, Any]:
    return json.loads(Path("data", "lf", f"v{version}", "run.json").read_text())


def markers(version: int = 0) -> list[str]:
    return sorted(p.parent.name for p in Path("data", "lf", f"v{version}").rglob(".crystallize_complete"))


def ran(rec: dict[str, Any], condition: str) -> list[int]:
    return [r for r, m in enumerate(rec["conditions"][condition]["metrics"]) if m is not None]


# --- a loop that raises --------------------------------------------------------------------------


class TestLoopRaises:
    @pytest.mark.parametrize("loop", [Loop, AsyncLoop], ids=["sync", "async"])
    def test_after_every_replicate_the_run_is_stored_complete_and_resume_reuses_it(self, loop: type[Loop]) -> None:
        with pytest.raises(RuntimeError, match="my loop failed"):
            build(loop((0, 1, 2))).run()
        rec = record()
        assert rec["status"] == "failed"  # the run raised
        assert {c: v["outcome"] for c, v in rec["conditions"].items()} == {"baseline": "complete", "t": "complete"}
        assert ran(rec, "baseline") == ran(rec, "t") == [0, 1, 2]
        assert markers() == ["baseline", "t"]  # consistent with the record
        assert json.loads(Path("data/lf/v0/t/results.json").read_text()) == {"metrics": {"rep": [0, 1, 2],
                                                                                        "k": [1, 1, 1]}}
        assert build().status().state is NodeState.FRESH
        counter = CountJobs()
        res = build(counter).run(strategy="resume")
        assert counter.seen == []
        assert res.metrics.treatments["t"].metrics == {"rep": [0, 1, 2], "k": [1, 1, 1]}

    @pytest.mark.parametrize("loop", [Loop, AsyncLoop], ids=["sync", "async"])
    def test_part_way_the_replicates_that_ran_are_recorded_and_only_the_rest_rerun(self, loop: type[Loop]) -> None:
        with pytest.raises(RuntimeError, match="my loop failed"):
            build(loop((0,))).run()
        rec = record()
        assert rec["status"] == "failed" and rec["ended"] is not None
        assert {v["outcome"] for v in rec["conditions"].values()} == {"incomplete"}
        assert ran(rec, "baseline") == ran(rec, "t") == [0]
        assert markers() == []  # nothing looks complete
        status = build().status()
        assert status.state is NodeState.INCOMPLETE
        assert status.conditions["t"].missing_replicates == (1, 2)
        counter = CountJobs()
        res = build(counter).run(strategy="resume")
        assert sorted(counter.seen) == [("baseline", 1), ("baseline", 2), ("t", 1), ("t", 2)]
        assert res.metrics.baseline.metrics == {"rep": [0, 1, 2], "k": [0, 0, 0]}

    def test_before_any_replicate_nothing_counts_as_run(self) -> None:
        with pytest.raises(RuntimeError, match="my loop failed"):
            build(Loop(())).run()
        rec = record()
        assert rec["status"] == "failed"
        assert ran(rec, "baseline") == ran(rec, "t") == []
        assert markers() == []
        counter = CountJobs()
        build(counter).run(strategy="resume")
        assert len(counter.seen) == 6

    def test_versioned_run_that_raised_is_reused_through_its_record(self) -> None:
        with pytest.raises(RuntimeError):
            build(Loop((0, 1, 2)), versioned=True).run()
        assert record(0)["status"] == "failed"
        counter = CountJobs()
        build(counter, versioned=True).run(strategy="resume")
        assert counter.seen == [] and not Path("data/lf/v1").exists()

    def test_hooks_after_the_loop_do_not_run(self) -> None:
        class AfterRun(BasePlugin):
            called = False

            def after_run(self, experiment: Any, result: Any) -> None:
                AfterRun.called = True

        with pytest.raises(RuntimeError):
            build(Loop((0, 1, 2)), AfterRun()).run()
        assert AfterRun.called is False  # as in 0.27: the exception propagates instead


class TestLoopSkips:
    def test_skipped_replicates_leave_a_final_record_and_an_error(self) -> None:
        with pytest.raises(ExecutionError, match=r"missing: 'baseline' replicates \[1\]"):
            build(Loop((0, 2), fail=False)).run()
        rec = record()
        assert rec["status"] == "failed"
        assert {v["outcome"] for v in rec["conditions"].values()} == {"incomplete"}
        assert ran(rec, "t") == [0, 2] and markers() == []
        counter = CountJobs()
        build(counter).run(strategy="resume")
        assert sorted(counter.seen) == [("baseline", 1), ("t", 1)]


# --- stored metrics after a versioned partial resume ---------------------------------------------


class TestStoredMetrics:
    def two_versions(self) -> Path:
        """v0: baseline and 'a'; v1 (a resume that added 'b'): only 'b'."""
        build(versioned=True, replicates=2).run()
        exp = build(versioned=True, replicates=2)
        exp.treatments = [Treatment("t", {"k": 1}), Treatment("b", {"k": 2})]
        exp.run(strategy="resume")
        assert sorted(p.name for p in Path("data/lf/v1").iterdir() if p.is_dir()) == ["b"]
        return Path("data/lf")

    def test_load_metrics_resolves_every_condition_through_the_newest_record(self) -> None:
        root = self.two_versions()
        assert load_metrics(root) == (1, {"rep": [0, 1], "k": [0, 0]},
                                      {"t": {"rep": [0, 1], "k": [1, 1]}, "b": {"rep": [0, 1], "k": [2, 2]}})
        assert load_metrics(str(root), 0) == (0, {"rep": [0, 1], "k": [0, 0]}, {"t": {"rep": [0, 1], "k": [1, 1]}})

    def test_load_all_metrics_names_the_version_holding_each_treatment(self) -> None:
        root = self.two_versions()
        exp = build(versioned=True, replicates=2)
        exp.treatments = [Treatment("b", {"k": 2})]  # 't' is no longer active
        exp.run(strategy="resume")  # nothing runs: no new version
        latest, baseline, found = load_all_metrics(root)
        assert latest == 1 and baseline == {"rep": [0, 1], "k": [0, 0]}
        assert found == {"t": (0, {"rep": [0, 1], "k": [1, 1]}), "b": (1, {"rep": [0, 1], "k": [2, 2]})}
        assert load_all_metrics(root, 0) == (0, {"rep": [0, 1], "k": [0, 0]}, {"t": (0, {"rep": [0, 1], "k": [1, 1]})})

    def test_a_store_without_run_json_is_read_folder_by_folder(self) -> None:
        root = self.two_versions()
        for path in root.glob("v*/run.json"):
            path.unlink()
        assert load_metrics(root) == (1, {}, {"b": {"rep": [0, 1], "k": [2, 2]}})
        latest, baseline, found = load_all_metrics(root)
        assert (latest, baseline) == (1, {}) and found == {"b": (1, {"rep": [0, 1], "k": [2, 2]}),
                                                            "t": (0, {"rep": [0, 1], "k": [1, 1]})}

    def test_no_version_and_incomplete_conditions(self) -> None:
        assert load_metrics("data/nothing") == (-1, {}, {})
        assert load_all_metrics("data/nothing") == (-1, {}, {})
        with pytest.raises(RuntimeError):
            build(Loop((0,))).run()
        assert load_metrics("data/lf") == (0, {}, {})


# --- log lines the 0.27 examples quote -----------------------------------------------------------

START_027 = r"Experiment: (\d+) replicates, (\d+) treatments, (\d+) hypotheses \(seed=(\d+)\)"
END_027 = r"Completed in \d+\.\ds; (Best .*; )?(\d+) errors"


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records]


class TestLogLines:
    def test_start_and_end_lines_begin_with_027_text(self, caplog: pytest.LogCaptureFixture) -> None:
        with caplog.at_level(logging.INFO, logger="crystallize"):
            build().run()
        start = [m for m in messages(caplog) if m.startswith("Experiment")]
        assert len(start) == 1 and re.match(START_027, start[0]).groups() == ("3", "1", "0", "1")
        assert start[0] == "Experiment: 3 replicates, 1 treatments, 0 hypotheses (seed=1); lf: running baseline, t"
        end = [m for m in messages(caplog) if m.startswith("Completed")]
        assert len(end) == 1 and re.match(END_027, end[0]) and end[0].endswith("; 0 errors; lf")

    def test_an_unnamed_experiment_is_named_by_its_id(self, caplog: pytest.LogCaptureFixture) -> None:
        exp = Experiment(datasource=one(), pipeline=Pipeline([work()]), replicates=1, plugins=[SeedPlugin(seed=1)])
        with caplog.at_level(logging.INFO, logger="crystallize"):
            exp.run()
        end = next(m for m in messages(caplog) if m.startswith("Completed"))
        assert "None" not in end and end.endswith(f"; 0 errors; {exp.id}")

    def test_cache_hit_rate_is_logged_once_per_run_over_all_replicate_steps(
            self, caplog: pytest.LogCaptureFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        from crystallize.execution.step_cache import CACHE_ENV

        monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))

        def exp() -> Experiment:
            return Experiment(datasource=one(), pipeline=Pipeline([expensive(), work()]), name="cached",
                              replicates=3, plugins=[SeedPlugin(seed=1)])

        with caplog.at_level(logging.INFO, logger="crystallize"):
            exp().run()
            exp().run(strategy="rerun")
        rates = [m for m in messages(caplog) if m.startswith("Cache hit rate")]
        assert rates == ["Cache hit rate: 0% (0/6 steps)", "Cache hit rate: 50% (3/6 steps)"]

    def test_cache_hit_rate_without_cacheable_steps_counts_the_steps(self, caplog: pytest.LogCaptureFixture) -> None:
        with caplog.at_level(logging.INFO, logger="crystallize"):
            build().run()
            build().run(strategy="resume")  # nothing runs: no line
        assert [m for m in messages(caplog) if m.startswith("Cache")] == ["Cache hit rate: 0% (0/6 steps)"]

    def test_the_handler_added_by_logging_plugin_uses_027_format(self) -> None:
        log = logging.getLogger("crystallize")
        saved = (log.handlers[:], log.level)
        log.handlers.clear()
        try:
            LoggingPlugin().before_run(build())
            (handler,) = log.handlers
            record = logging.LogRecord("crystallize.execution.engine", logging.INFO, __file__, 1, "hello", None, None)
            assert re.fullmatch(r"\S+ \S+ - crystallize - INFO - hello", handler.format(record))
        finally:
            log.handlers[:] = saved[0]
            log.setLevel(saved[1])

    def test_debug_counts_the_one_replicate_it_runs(self, caplog: pytest.LogCaptureFixture) -> None:
        with caplog.at_level(logging.DEBUG, logger="crystallize"):
            build().debug("t")
        steps = [m for m in messages(caplog) if m.startswith("Rep ")]
        assert steps == ["Rep 1/1 baseline finished step WorkStep", "Rep 1/1 t finished step WorkStep"]
