"""Resolves what one experiment run uses: conditions, replicates, seeds, store, upstream pins."""

from __future__ import annotations

import os

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crystallize.datasources.artifacts import ArtifactInput
from crystallize.errors import ArtifactNotFoundError
from crystallize.experiment import check_replicates, check_treatments
from crystallize.names import BASELINE
from crystallize.plugins.builtin import ArtifactPlugin, SeedPlugin, default_seed_function
from crystallize.store.layout import ExperimentStore
from crystallize.store.reader import latest_record
from crystallize.fingerprint.content import CONTENT_HASH
from crystallize.graph.status import StaleKind
from crystallize.results import plain_key
from crystallize.store.record import ConditionOutcome, ConditionRecord, RunRecord, UpstreamPin

if TYPE_CHECKING:
    from crystallize.datasources.artifacts import Artifact
    from crystallize.experiment import Experiment
    from crystallize.hypothesis import Hypothesis
    from crystallize.treatments import Treatment

__all__ = ["ConditionInputs", "RunSettings", "UpstreamContent", "UpstreamRun", "content_digest", "resolve_inputs",
           "resolve_settings", "run_store"]

STRATEGIES = ("rerun", "resume")


@dataclass(frozen=True, slots=True)
class UpstreamRun:
    """The run of an upstream experiment that downstream nodes read (pinned by the runner)."""

    store: ExperimentStore
    record: RunRecord


@dataclass(frozen=True, slots=True)
class RunSettings:
    """Everything resolved before planning one experiment run."""

    name: str
    conditions: dict[str, Treatment | None]  # baseline first; value = treatment applied
    replicates: int
    hypotheses: tuple[Hypothesis, ...]
    strategy: str
    store: ExperimentStore
    versioned: bool
    durable: bool
    retention: int
    big_file_mb: float
    master_seed: int
    seed_configured: bool
    auto_seed: bool
    seed_fn: Any
    previous: RunRecord | None = field(default=None, compare=False)
    graph: str | None = None  # name of the graph this run belongs to (recorded in run.json)


def _conditions(experiment: Experiment, treatments: Sequence[Treatment] | None,
                inherited: Sequence[Treatment]) -> dict[str, Treatment | None]:
    own = check_treatments(list(treatments) if treatments is not None else experiment.treatments,
                           owner=experiment.store_name)
    merged: dict[str, Treatment] = {} if treatments is not None else {t.name: t for t in inherited}
    merged.update({t.name: t for t in own})  # own wins on a name clash
    conditions: dict[str, Treatment | None] = {BASELINE: merged.pop(BASELINE, None)}
    conditions.update(merged)
    return conditions


def _master_seed(plugin: SeedPlugin | None, graph_seed: int | None, previous: RunRecord | None) -> tuple[int, bool]:
    if plugin is not None and plugin.seed is not None:
        return plugin.seed, True
    if graph_seed is not None:
        return graph_seed, True
    if previous is not None and previous.master_seed is not None:
        return previous.master_seed, False  # drawn once, reused until the user sets one
    return secrets.randbits(32), False


def run_store(experiment: Experiment, *, store_root: Path | None = None,
              versioned: bool | None = None) -> tuple[ExperimentStore, bool]:
    """Where a run of ``experiment`` stores its outputs, and whether it is versioned
    (call arguments win over the experiment's ``ArtifactPlugin``)."""
    artifact = experiment.get_plugin(ArtifactPlugin) or ArtifactPlugin()
    root = Path(store_root) if store_root is not None else artifact.root_dir
    return ExperimentStore(root, experiment.store_name), artifact.versioned if versioned is None else versioned


def resolve_settings(experiment: Experiment, *, treatments: Sequence[Treatment] | None = None,
                     hypotheses: Sequence[Hypothesis] | None = None, replicates: int | None = None,
                     strategy: str | None = None, inherited: Sequence[Treatment] = (),
                     store_root: Path | None = None, versioned: bool | None = None,
                     graph_seed: int | None = None, graph_name: str | None = None) -> RunSettings:
    """Resolve one run's settings from the experiment, call arguments and graph overrides.

    Raises
    ------
    ValueError
        For an unknown strategy, or hypotheses without treatments.
    """
    experiment.validate()
    strategy = strategy or experiment.strategy or "rerun"
    if strategy not in STRATEGIES:
        raise ValueError(f"experiment {experiment.store_name!r}: strategy must be one of {STRATEGIES}, not {strategy!r}")
    conditions = _conditions(experiment, treatments, inherited)
    hyps = tuple(hypotheses if hypotheses is not None else experiment.hypotheses)
    if hyps and len(conditions) == 1:
        raise ValueError("Cannot verify hypotheses without treatments")
    reps = replicates if replicates is not None else (experiment.datasource.replicates or experiment.replicates)
    artifact = experiment.get_plugin(ArtifactPlugin) or ArtifactPlugin()
    store, versioned = run_store(experiment, store_root=store_root, versioned=versioned)
    previous = latest_record(store)
    seed_plugin = experiment.get_plugin(SeedPlugin)
    seed, configured = _master_seed(seed_plugin, graph_seed, previous)
    return RunSettings(
        name=experiment.store_name, conditions=conditions, replicates=check_replicates(reps), hypotheses=hyps,
        strategy=strategy, store=store, versioned=versioned,
        durable=artifact.durable, retention=artifact.artifact_retention, big_file_mb=artifact.big_file_threshold_mb,
        master_seed=seed, seed_configured=configured, auto_seed=seed_plugin.auto_seed if seed_plugin else True,
        seed_fn=(seed_plugin.seed_fn if seed_plugin and seed_plugin.seed_fn else default_seed_function),
        previous=previous, graph=graph_name)


def content_digest(shas: Mapping[str, str], below: int | None = None) -> str:
    """Digest over per-replicate artifact hashes (only replicates ``< below`` when given).

    Examples
    --------
    >>> content_digest({"1": "bb", "0": "aa"}) == content_digest({"0": "aa", "1": "bb", "2": "cc"}, below=2)
    True
    """
    import hashlib

    keys = sorted((k for k in shas if below is None or int(k) < below), key=int)
    return hashlib.sha256("|".join(f"{k}:{shas[k]}" for k in keys).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class UpstreamContent:
    """What one condition reads of one upstream artifact: its per-replicate content hashes.

    Attributes
    ----------
    key : str
        ``"<producer>#<artifact>"``.
    replicates : int
        Replicate count of the upstream condition read.
    shas : Mapping[str, str]
        Upstream replicate index (as text) -> SHA-256 of the file.
    """

    key: str
    replicates: int
    shas: Mapping[str, str]

    @property
    def part(self) -> str:
        """Fingerprint part: ``"<replicates>:<digest prefix>"``."""
        return f"{self.replicates}:{content_digest(self.shas)[:16]}"

    def extends(self, old_part: Any, consumer_replicates: int) -> bool:
        """True when only new upstream replicates were added since ``old_part`` and the
        consumer's ``consumer_replicates`` stored replicates read none of them.

        Consumer replicate ``r`` reads upstream replicate ``r % replicates``; when
        ``r`` is below the old upstream count it reads the same, unchanged file.
        """
        count, sep, digest = str(old_part).partition(":")
        if not sep or not count.isdigit() or int(count) >= self.replicates:
            return False
        return consumer_replicates <= int(count) and content_digest(self.shas, int(count))[:16] == digest


@dataclass(frozen=True, slots=True)
class ConditionInputs:
    """The upstream files one condition reads, and why it cannot run (``blocked``)."""

    artifacts: Mapping[str, ArtifactInput]
    pins: tuple[UpstreamPin, ...]
    blocked: str | None = None
    blocked_by: str | None = None  # the upstream experiment whose condition did not complete
    content: tuple[UpstreamContent, ...] = ()
    blocked_kind: StaleKind | None = None  # FAILED or INCOMPLETE: how the upstream condition ended


def _standalone_upstream(experiment: Experiment) -> dict[str, UpstreamRun]:
    """Outside a graph: read each producer's newest run from its own store."""
    found: dict[str, UpstreamRun] = {}
    for artifact in experiment.upstream_artifacts:
        producer = getattr(artifact, "_producer", None)
        if producer is None or producer.store_name in found:
            continue
        plugin = producer.get_plugin(ArtifactPlugin) or ArtifactPlugin()
        store = ExperimentStore(plugin.root_dir, producer.store_name)
        record = latest_record(store)
        if record is not None:
            found[producer.store_name] = UpstreamRun(store, record)
    return found


_UNFINISHED: dict[ConditionOutcome | None, str] = {  # why a stored condition cannot be read, for stored_input's message
    ConditionOutcome.FAILED: "a replicate failed",
    ConditionOutcome.BLOCKED: "it was blocked: an upstream condition it reads failed",
    ConditionOutcome.INCOMPLETE: "the run stopped before every replicate finished, or is still running",
}


def stored_input(artifact: Artifact, condition: str) -> ArtifactInput:
    """Where ``artifact`` is read for ``condition`` outside a run: the newest run record of
    its producer (in the producer's own store), the baseline when that run lacks
    ``condition``. A result key such as ``"t (v0)"`` reads condition ``"t"``.

    Raises
    ------
    ArtifactNotFoundError
        If the producer is not known here, has no stored run, or its newest run did not
        complete the condition read; the message says which.
    """
    producer = getattr(artifact, "_producer", None)
    name = artifact.name
    if producer is None and artifact.producer_name is None:
        raise ArtifactNotFoundError(f"artifact '{name}' is not listed in any experiment's outputs, so no run "
                                    "produces it: give it to its producer as outputs=[...]", path=name, name=name)
    if producer is None:
        raise ArtifactNotFoundError(
            f"artifact '{name}' names producer '{artifact.producer_name}', but that experiment is not known in this "
            "process: fetch through the Artifact object listed in the producer's outputs", path=name, name=name)
    plugin = producer.get_plugin(ArtifactPlugin) or ArtifactPlugin()
    store = ExperimentStore(plugin.root_dir, producer.store_name)
    record, who = latest_record(store), artifact.producer_name or producer.store_name
    if record is None:
        raise ArtifactNotFoundError(
            f"no upstream run of '{who}' is available for artifact '{name}' (none stored in "
            f"{store.dir}); run the producer first or run both in an ExperimentGraph", path=name, name=name)
    if condition not in record.conditions:
        condition = plain_key(condition)
    source = condition if condition in record.conditions else BASELINE
    held = record.conditions.get(source)
    if held is None or held.outcome is not ConditionOutcome.COMPLETE:
        why = _UNFINISHED.get(held.outcome if held is not None else None, "it has no such condition")
        raise ArtifactNotFoundError(
            f"the newest run of '{who}' (v{record.version}) did not complete condition "
            f"'{source}' ({why}), so artifact '{name}' cannot be read from it; run the producer again",
            path=store.version_dir(record.version), name=name)
    entry = held.artifacts.get(name, {})
    return ArtifactInput(artifact.producer_name or "", name, os.path.abspath(store.version_dir(held.version)),
                         source, entry.get("step", "_unknown_step"), held.replicates)


def resolve_inputs(experiment: Experiment, conditions: Sequence[str],
                   upstream: Mapping[str, UpstreamRun] | None) -> dict[str, ConditionInputs]:
    """Pin, per condition, the exact upstream version and condition each artifact is read from.

    A condition the upstream run lacks reads the upstream baseline (``fallback=True`` in the
    pin, recorded in ``run.json``). An upstream condition that did not complete blocks it.
    """
    runs = dict(upstream) if upstream is not None else _standalone_upstream(experiment)
    out: dict[str, ConditionInputs] = {}
    for condition in conditions:
        artifacts: dict[str, ArtifactInput] = {}
        pins: list[UpstreamPin] = []
        content: list[UpstreamContent] = []
        blocked = blocked_by = blocked_kind = None
        for artifact in experiment.upstream_artifacts:
            run = runs.get(artifact.producer_name or "")
            if run is None:
                continue  # fetch reports the missing upstream run, naming the producer
            source = condition if condition in run.record.conditions else BASELINE
            record = run.record.conditions.get(source)
            if record is None or record.outcome is not ConditionOutcome.COMPLETE:
                blocked, blocked_kind = _blocked_reason(artifact.producer_name or "", source, record)
                blocked_by = artifact.producer_name
                continue
            entry = record.artifacts.get(artifact.name, {})
            artifacts[artifact.key] = ArtifactInput(artifact.producer_name or "", artifact.name,
                                                    os.path.abspath(run.store.version_dir(record.version)), source,
                                                    entry.get("step", "_unknown_step"), record.replicates)
            pins.append(UpstreamPin(artifact.producer_name or "", artifact.name, record.version, source,
                                    fallback=source != condition))
            content.append(UpstreamContent(artifact.key, record.replicates, dict(entry.get(CONTENT_HASH, {}))))
        out[condition] = ConditionInputs(artifacts, tuple(pins), blocked, blocked_by, tuple(content), blocked_kind)
    return out


def _blocked_reason(producer: str, source: str, record: ConditionRecord | None) -> tuple[str, StaleKind]:
    """Why a condition cannot run: the upstream condition it reads failed, is blocked or incomplete."""
    outcome = record.outcome if record is not None else None
    if outcome is ConditionOutcome.FAILED:
        return f"upstream '{producer}' condition '{source}' failed", StaleKind.FAILED
    if outcome is ConditionOutcome.BLOCKED:
        return f"upstream '{producer}' condition '{source}' is blocked", StaleKind.FAILED
    return f"upstream '{producer}' condition '{source}' did not complete", StaleKind.INCOMPLETE
