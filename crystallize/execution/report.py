"""Builds run records and the user's Result from plans, kept replicates and new job results."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crystallize.errors import MissingMetricError
from crystallize.execution.collect import ConditionRun, flatten
from crystallize.execution.job import JobError, JobResult
from crystallize.fingerprint.content import CONTENT_HASH
from crystallize.graph.settings import ConditionInputs, RunSettings
from crystallize.graph.plan import ConditionPlan
from crystallize.names import BASELINE
from crystallize.steps import expand_records
from crystallize.results import (Deferred, ExperimentMetrics, ReplicateResult, Result, TreatmentMetrics,
                                 TreatmentMetricsMap)
from crystallize.store.layout import ExperimentStore
from crystallize.store.record import ConditionOutcome, ConditionRecord, RunRecord, environment_info, git_commit
from crystallize.store.writer import VersionWriter

if TYPE_CHECKING:
    from crystallize.execution.engine import ExperimentOutcome
    from crystallize.experiment import Experiment

__all__ = ["assemble", "finish_run", "log_cache_hits", "log_fallbacks", "replicate_result", "running_record"]

logger = logging.getLogger(__name__)


def _graph(settings: RunSettings) -> dict[str, Any] | None:
    return {"name": settings.graph} if settings.graph else None


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat()


def _blocked(plan: ConditionPlan, inputs: ConditionInputs, settings: RunSettings) -> ConditionRecord:
    return ConditionRecord(version=-1, outcome=ConditionOutcome.BLOCKED, replicates=settings.replicates,
                           upstream=inputs.pins, fingerprint=plan.fingerprint, inputs=plan.parts)


def _records(settings: RunSettings, plans: Mapping[str, ConditionPlan], runs: Mapping[str, ConditionRun],
             inputs: Mapping[str, ConditionInputs], version: int | None, *, final: bool) -> dict[str, ConditionRecord]:
    """Every active condition -> the record of the version that holds it."""
    out: dict[str, ConditionRecord] = {}
    for name, plan in plans.items():
        if name in runs and version is not None:
            rec = runs[name].record(version)
            if not final:  # kept replicates keep their data, so a crash now cannot lose them
                rec = dataclasses.replace(rec, outcome=ConditionOutcome.INCOMPLETE)
            out[name] = rec
        elif plan.reuse is not None:
            out[name] = plan.reuse.record
        else:
            out[name] = _blocked(plan, inputs[name], settings)
    return out


def _environment(plans: Mapping[str, ConditionPlan]) -> dict[str, Any]:
    packages = {k[4:]: v for p in plans.values() for k, v in p.parts.items() if k.startswith("env:") and k != "env:python"}
    return environment_info(packages)


def running_record(settings: RunSettings, plans: Mapping[str, ConditionPlan], runs: Mapping[str, ConditionRun],
                   version: int) -> RunRecord:
    """The ``run.json`` written before any job starts (conditions being run are INCOMPLETE)."""
    return RunRecord(settings.name, version, "running", _now(), None, settings.master_seed, settings.replicates,
                     _records(settings, plans, runs, {n: r.inputs for n, r in runs.items()} | _no_inputs(plans, runs),
                              version, final=False),
                     environment=_environment(plans), git_commit=git_commit(Path.cwd()), graph=_graph(settings))


FALLBACK_RECORD = "crystallize_fallback"  # set on fallback log records, so a front end can show them its own way


def log_fallbacks(experiment: str, runs: Mapping[str, ConditionRun]) -> None:
    """Warn when a condition reads the upstream baseline because the upstream lacks that condition.

    One WARNING per condition and artifact (0.27 warned once per replicate), worded like
    0.27's (reference section 12.3): it names the experiment, the artifact, the condition, the
    upstream experiment and its version, and ends in "falling back to 'baseline'". The pin in
    ``run.json`` records the fallback too (``"fallback": true``).
    """
    for name, run in runs.items():
        for pin in run.inputs.pins:
            if pin.fallback:
                logger.warning("%s: artifact %s for condition '%s' not found in upstream '%s' (v%d); "
                               "falling back to 'baseline'.", experiment, pin.artifact, name, pin.producer,
                               pin.version, extra={FALLBACK_RECORD: True})


def log_cache_hits(steps: Sequence[Any], runs: Mapping[str, ConditionRun]) -> None:
    """Log 0.27's ``Cache hit rate: 50% (3/6 steps)`` once per run, over every step of every replicate it ran.

    0.27 logged the line once per replicate; here the run's step records are summed once
    (one record per step run; its second field says whether the step cache answered).
    Without a cacheable step nothing can hit, so then the records are only counted.
    """
    results = [res for run in runs.values() for res in run.results.values()]
    if not results:  # no replicate ran (0.27 logged the line per replicate run)
        return
    total = sum(len(res.provenance) for res in results)
    hits = sum(rec[1] for res in results for rec in res.provenance) if any(s.cacheable for s in steps) else 0
    logger.info("Cache hit rate: %.0f%% (%d/%d steps)", 100 * hits / total if total else 0, hits, total)


def _no_inputs(plans: Mapping[str, ConditionPlan], runs: Mapping[str, ConditionRun]) -> dict[str, ConditionInputs]:
    return {n: ConditionInputs({}, ()) for n in plans if n not in runs}


def _metrics(record: ConditionRecord, replicates: int) -> TreatmentMetrics:
    per = list(record.metrics[:replicates])
    per += [None] * (replicates - len(per))
    errors = set(record.errors)
    per = [None if str(i) in errors else m for i, m in enumerate(per)]
    seeds = [s for s in record.seeds[:replicates] if s is not None]
    return TreatmentMetrics(flatten(per), per, seeds)


def _error_object(experiment: str, condition: str, rep: int, error: JobError) -> BaseException:
    from crystallize.errors import ExecutionError

    exc = error.exception if error.exception is not None else ExecutionError(f"{error.type_name}: {error.message}")
    for attr, value in (("traceback_str", error.traceback), ("experiment", experiment), ("condition", condition),
                        ("replicate", rep), ("exception_type", error.type_name), ("step", error.step)):
        try:
            setattr(exc, attr, value)
        except AttributeError:  # some built-in exceptions refuse new attributes
            pass
    return exc


def _artifact_paths(settings: RunSettings, records: Mapping[str, ConditionRecord]) -> dict[str, dict[str, Path]]:
    out: dict[str, dict[str, Path]] = {}
    store: ExperimentStore | None = None
    for name, rec in records.items():
        for file, info in rec.artifacts.items():
            reps = sorted(int(r) for r in info.get(CONTENT_HASH, {}))
            if reps:
                if store is None:  # absolute once per run (no realpath: a walk of lstat calls per run)
                    store = ExperimentStore(Path(os.path.abspath(settings.store.root)), settings.store.name)
                out.setdefault(file, {})[name] = store.artifact(rec.version, reps[0], name, info["step"], file)
    return out


def _hypotheses(settings: RunSettings, metrics: Mapping[str, TreatmentMetrics]) -> tuple[list[Any], BaseException | None]:
    """Evaluate every hypothesis over all active conditions; a missing metric is deferred."""
    baseline = metrics[BASELINE]
    treatments = {k: v for k, v in metrics.items() if k != BASELINE and any(r is not None for r in v.replicates)}
    results, deferred = [], None
    if not any(r is not None for r in baseline.replicates) or not treatments:
        return results, None  # nothing to compare: every baseline replicate failed or was blocked
    for hyp in settings.hypotheses:
        try:
            results.append(hyp.evaluate(baseline.metrics, {k: v.metrics for k, v in treatments.items()},
                                        baseline_replicates=baseline.replicates,
                                        treatment_replicates={k: v.replicates for k, v in treatments.items()}))
        except MissingMetricError as exc:  # raised by run() once everything is stored
            named = MissingMetricError(exc.metric, experiment=settings.name, hypothesis=hyp.name)
            deferred = deferred or named
    return results, deferred


def _result(experiment: Experiment, settings: RunSettings, records: Mapping[str, ConditionRecord],
            runs: Mapping[str, ConditionRun], version: int | None) -> tuple[Result, BaseException | None]:
    done = {n: r for n, r in records.items() if r.outcome is not ConditionOutcome.BLOCKED}
    metrics = {n: _metrics(r, settings.replicates) for n, r in done.items()}
    metrics.setdefault(BASELINE, TreatmentMetrics({}))
    hypotheses, deferred = _hypotheses(settings, metrics)
    treatments = TreatmentMetricsMap({k: v for k, v in metrics.items() if k != BASELINE},
                                     {k: records[k].version for k in metrics if k != BASELINE})
    errors = {f"{n}_rep_{r}": _error_object(settings.name, n, r, e)
              for n, run in runs.items() for r, e in sorted(run.errors().items())}
    provenance = {
        "pipeline_signature": experiment.pipeline.signature(), "replicates": settings.replicates,
        "seeds": {n: m.seeds for n, m in metrics.items()},
        "ctx_changes": _ctx_changes(experiment.pipeline.steps, runs),
    }
    run_info = {
        "version": version, "conditions": {n: r.version for n, r in records.items()},
        "blocked": [n for n, r in records.items() if r.outcome is ConditionOutcome.BLOCKED],
        "master_seed": settings.master_seed,
    }
    result = Result(ExperimentMetrics(metrics[BASELINE], treatments, hypotheses),
                    _artifact_paths(settings, done), errors, provenance, run_info)
    return result, deferred


def assemble(experiment: Experiment, settings: RunSettings, plans: Mapping[str, ConditionPlan],
             inputs: Mapping[str, ConditionInputs], runs: Mapping[str, ConditionRun],
             version: int | None) -> ExperimentOutcome:
    """Outcome of a run where nothing executed (every condition reused): no version is created."""
    from crystallize.execution.engine import ExperimentOutcome

    records = _records(settings, plans, runs, inputs, version, final=True)
    result, deferred = _result(experiment, settings, records, runs, version)
    previous = settings.previous
    record = RunRecord(settings.name, previous.version if previous else -1, previous.status if previous else "complete",
                       previous.started if previous else _now(), previous.ended if previous else None,
                       settings.master_seed, settings.replicates, records,
                       [h.to_dict() for h in result.metrics.hypotheses])
    blocked = [n for n, r in records.items() if r.outcome is ConditionOutcome.BLOCKED]
    logger.info("%s: nothing to run; reused %s%s", settings.name,
                ", ".join(n for n in records if n not in blocked) or "nothing",
                f"; blocked {', '.join(blocked)}" if blocked else "")
    return ExperimentOutcome(result, record, settings.store, plans, None, deferred)


def finish_run(experiment: Experiment, settings: RunSettings, plans: Mapping[str, ConditionPlan],
               inputs: Mapping[str, ConditionInputs], runs: Mapping[str, ConditionRun],
               writer: VersionWriter, running: RunRecord, *, stopped: bool = False) -> ExperimentOutcome:
    """Write ``run.json``, ``metadata.json`` and ``_manifest.json`` and build the outcome.

    ``running`` is the record written when the run started (its start time, environment
    and git commit carry over). ``stopped=True``: the run ended by an exception (a custom
    loop raised, Ctrl-C); its status is ``"failed"`` whatever its conditions hold, and each
    condition records exactly the replicates that ran (complete only when all of them did).
    """
    from crystallize.execution.engine import ExperimentOutcome

    version = writer.version
    records = _records(settings, plans, runs, inputs, version, final=True)
    result, deferred = _result(experiment, settings, records, runs, version)
    log_cache_hits(experiment.pipeline.steps, runs)
    failed = stopped or any(r.outcome is not ConditionOutcome.COMPLETE for n, r in records.items() if n in runs)
    previous = settings.previous if settings.previous and settings.previous.version == version else None
    record = RunRecord(settings.name, version, "failed" if failed else "complete", running.started, _now(),
                       settings.master_seed, settings.replicates, records,
                       [h.to_dict() for h in result.metrics.hypotheses], running.environment, running.git_commit,
                       running.graph)
    previous_manifest = _read_manifest(settings, version) if previous is not None else None
    writer.write_manifest(previous_manifest)
    writer.write_metadata(settings.replicates, experiment.id, experiment.name)  # 0.27: null when unnamed
    writer.write_record(record)
    return ExperimentOutcome(result, record, settings.store, plans, version, deferred)


def _read_manifest(settings: RunSettings, version: int) -> dict[str, str]:
    import json

    try:
        return dict(json.loads(settings.store.manifest(version).read_text()))
    except (OSError, ValueError):
        return {}


def _ctx_changes(steps: Sequence[Any], runs: Mapping[str, ConditionRun]) -> Deferred:
    """``result.provenance["ctx_changes"]`` (condition -> replicate -> step records), built
    from the jobs' compact records only when the provenance is first read: most runs never
    look, and building every record costs about a microsecond per replicate."""
    steps = tuple(steps)  # the steps as run, even if the pipeline is edited later
    compact = {n: {r: res.provenance for r, res in sorted(run.results.items())} for n, run in runs.items()}
    return Deferred(lambda: {n: {r: expand_records(steps, records) for r, records in reps.items()}
                             for n, reps in compact.items()})


def replicate_result(results: Sequence[JobResult], steps: Sequence[Any]) -> ReplicateResult:
    """0.27's per-replicate bundle, for custom ``run_experiment_loop`` plugins."""
    base = next((r for r in results if r.condition == BASELINE), None)
    treated = [r for r in results if r.condition != BASELINE]
    return ReplicateResult(
        baseline_metrics=(base.metrics or {}) if base else {}, baseline_seed=base.seed if base else None,
        treatment_metrics={r.condition: r.metrics or {} for r in treated},
        treatment_seeds={r.condition: r.seed for r in treated},
        errors={f"{r.condition}_rep_{r.replicate}": r.error.exception or RuntimeError(r.error.message)
                for r in results if r.error is not None},
        provenance={r.condition: expand_records(steps, r.provenance) for r in results})
