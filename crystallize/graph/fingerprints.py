"""The named parts of a condition fingerprint (spec section 4).

Each part is a short digest under a name that says what it covers, so two records can
be compared part by part and every difference turned into a :class:`StaleReason`:

``code:<Step>``, ``code:datasource``, ``code:treatment`` -> CODE_CHANGED / TREATMENT_CHANGED,
``params:<Step>.<key>``, ``params:datasource.<key>``, ``ctx:<key>`` -> PARAMS_CHANGED,
``treatment`` -> TREATMENT_CHANGED, ``data:<file>`` -> DATA_CHANGED,
``upstream:<producer>#<artifact>`` -> UPSTREAM_CHANGED, ``seed`` -> SEED_CHANGED,
``env:<package>`` -> ENVIRONMENT_CHANGED. The replicate count is compared separately.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crystallize.datasources.artifacts import Artifact
from crystallize.datasources.datasource import DataSource, ExperimentInput
from crystallize.graph.status import StaleKind, StaleReason

if TYPE_CHECKING:
    from crystallize.graph.settings import ConditionInputs, RunSettings
    from crystallize.experiment import Experiment
    from crystallize.fingerprint import FileHashCache
    from crystallize.treatments import Treatment

__all__ = ["condition_parts", "diff_parts", "fingerprint_of"]


def fingerprint_of(parts: Mapping[str, str]) -> str:
    """SHA-256 over the sorted parts."""
    text = "\n".join(f"{k}={v}" for k, v in sorted(parts.items()))
    return hashlib.sha256(b"condition\x00" + text.encode()).hexdigest()


def _sources(ds: DataSource) -> list[tuple[str, DataSource]]:
    if isinstance(ds, ExperimentInput):
        return [(f"datasource.{alias}", s) for alias, s in ds.inputs.items() if not isinstance(s, Artifact)]
    return [] if isinstance(ds, Artifact) else [("datasource", ds)]


def _code_parts(experiment: Experiment, parts: dict[str, str], packages: dict[str, str]) -> None:
    from crystallize.fingerprint import code_fingerprint, value_digest

    for step in experiment.pipeline.steps:
        fp = code_fingerprint(step.code_target(), version=step.version)
        parts[f"code:{step.name}"] = fp.digest[:16]
        packages.update(fp.packages)
        for key, value in step.params.items():
            if not isinstance(value, Artifact):
                parts[f"params:{step.name}.{key}"] = value_digest(value, key=f"{step.name}.{key}")[:16]
    for label, source in _sources(experiment.datasource):
        fp = code_fingerprint(source.code_target(), version=source.version)
        parts[f"code:{label}"] = fp.digest[:16]
        packages.update(fp.packages)
        for key, value in source.params.items():
            parts[f"params:{label}.{key}"] = value_digest(value, key=f"{label}.{key}")[:16]


def _treatment_part(treatment: Treatment | None, packages: dict[str, str]) -> str:
    from crystallize.fingerprint import code_fingerprint, value_digest

    if treatment is None:
        return "none"
    payload = treatment.payload
    if isinstance(payload, Mapping):
        return value_digest(dict(payload), key=f"treatment {treatment.name}")[:16]
    fp = code_fingerprint(payload, version=treatment.version)
    packages.update(fp.packages)
    return "code-" + fp.digest[:16]


def condition_parts(experiment: Experiment, settings: RunSettings, condition: str,
                    inputs: ConditionInputs, file_cache: FileHashCache) -> dict[str, str]:
    """Every named input of one condition's fingerprint.

    Raises
    ------
    UnhashableValueError
        If a parameter, context value or treatment value has no canonical encoding.
    FingerprintError
        If the source of a step, datasource or callable treatment cannot be found.
    """
    from crystallize.fingerprint import environment_fingerprint, value_digest

    parts: dict[str, str] = {}
    packages: dict[str, str] = {}
    _code_parts(experiment, parts, packages)
    for key, value in experiment.initial_ctx.items():
        parts[f"ctx:{key}"] = value_digest(value, key=key)[:16]
    parts["treatment"] = _treatment_part(settings.conditions.get(condition), packages)
    for path in (*experiment.datasource.files, *experiment.datasource.extra_files):
        parts[f"data:{Path(path)}"] = file_cache.digest(Path(path))[:16]
    for key, digest in inputs.hashes:
        parts[f"upstream:{key}"] = digest[:16]
    parts["seed"] = str(settings.master_seed) if settings.seed_configured else "drawn"
    for name, version in environment_fingerprint(packages.items()).items():
        parts[f"env:{name}"] = version
    return parts


def _reason(name: str, old: str | None, new: str | None) -> StaleReason:
    kind_name, _, subject = name.partition(":")
    if kind_name == "code":
        kind = StaleKind.TREATMENT_CHANGED if subject == "treatment" else StaleKind.CODE_CHANGED
        return StaleReason(kind, f"code of {subject} changed")
    if kind_name in ("params", "ctx"):
        where = "initial_ctx" if kind_name == "ctx" else subject.partition(".")[0]
        key = subject if kind_name == "ctx" else subject.partition(".")[2]
        return StaleReason(StaleKind.PARAMS_CHANGED, f"parameter '{key}' of {where} changed")
    if kind_name == "treatment":
        return StaleReason(StaleKind.TREATMENT_CHANGED, "treatment payload changed")
    if kind_name == "data":
        return StaleReason(StaleKind.DATA_CHANGED, f"input file {subject} changed")
    if kind_name == "upstream":
        producer = subject.partition("#")[0]
        return StaleReason(StaleKind.UPSTREAM_CHANGED, f"artifact {subject} changed", upstream=producer)
    if kind_name == "seed":
        return StaleReason(StaleKind.SEED_CHANGED, f"master seed {old} -> {new}")
    if kind_name == "env":
        return StaleReason(StaleKind.ENVIRONMENT_CHANGED, f"{subject} {old or 'absent'} -> {new or 'absent'}")
    return StaleReason(StaleKind.PARAMS_CHANGED, f"{name} changed")


def diff_parts(old: Mapping[str, Any], new: Mapping[str, str]) -> tuple[StaleReason, ...]:
    """Reasons for every part that was added, removed or changed (sorted by part name)."""
    names = sorted(set(old) | set(new))
    return tuple(_reason(n, old.get(n), new.get(n)) for n in names if old.get(n) != new.get(n))
