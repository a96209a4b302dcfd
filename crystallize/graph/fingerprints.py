"""The named parts of a condition fingerprint (spec section 4).

Each part is a short digest under a name that says what it covers, so two records can
be compared part by part and every difference turned into a :class:`StaleReason`:

================================================  =====================================
part name                                         reason kind
================================================  =====================================
``code:<Step>``, ``code:datasource[.<alias>]``     CODE_CHANGED
``params:<Step>.<key>``, ``params:datasource.*``   PARAMS_CHANGED (detail names the key)
``ctx:<key>`` (``initial_ctx``)                    PARAMS_CHANGED (detail names the key)
``treatment``                                      TREATMENT_CHANGED
``data:<file>``                                    DATA_CHANGED
``upstream:<producer>#<artifact>``                 UPSTREAM_CHANGED (``upstream`` = producer)
``seed``                                           SEED_CHANGED
``env:python``, ``env:<package>``                  ENVIRONMENT_CHANGED
================================================  =====================================

The replicate count is not a part: it is compared separately, so raising it runs only
the new replicates. A step whose class name occurs twice in one pipeline is labelled
``<Step>[<position>]`` from its second occurrence on.
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
    from crystallize.experiment import Experiment
    from crystallize.fingerprint import CodeFingerprint, FileHashCache
    from crystallize.graph.settings import ConditionInputs, RunSettings
    from crystallize.treatments import Treatment

__all__ = ["CodeMemo", "NodeParts", "condition_parts", "diff_parts", "fingerprint_of", "node_parts"]

_SHORT = 16  # hex characters kept per part: enough to tell versions of one input apart


def fingerprint_of(parts: Mapping[str, str]) -> str:
    """SHA-256 over the sorted parts (64 hex characters)."""
    text = "\n".join(f"{k}={v}" for k, v in sorted(parts.items()))
    return hashlib.sha256(b"condition\x00" + text.encode()).hexdigest()


class CodeMemo:
    """Code fingerprints computed during one status or run call, by object identity.

    Within one call the code cannot change, so a step class used by many nodes is
    walked once. Never kept across calls: a rebound module constant must be seen.
    """

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: dict[tuple[int, str | None], tuple[object, CodeFingerprint]] = {}

    def get(self, target: object, version: str | None) -> CodeFingerprint:
        from crystallize.fingerprint import code_fingerprint

        key = (id(target), version)
        hit = self._items.get(key)
        if hit is not None and hit[0] is target:
            return hit[1]
        fp = code_fingerprint(target, version=version)  # type: ignore[arg-type]
        self._items[key] = (target, fp)  # the target is kept alive, so its id stays unique
        return fp


NodeParts = tuple[dict[str, str], dict[str, str]]  # (parts shared by every condition, packages)


def _sources(ds: DataSource) -> list[tuple[str, DataSource]]:
    if isinstance(ds, ExperimentInput):
        return [(f"datasource.{alias}", s) for alias, s in ds.inputs.items() if not isinstance(s, Artifact)]
    return [] if isinstance(ds, Artifact) else [("datasource", ds)]


def _step_labels(experiment: Experiment) -> list[str]:
    seen: set[str] = set()
    labels = []
    for position, step in enumerate(experiment.pipeline.steps):
        labels.append(step.name if step.name not in seen else f"{step.name}[{position}]")
        seen.add(step.name)
    return labels


def _code_parts(experiment: Experiment, parts: dict[str, str], packages: dict[str, str], memo: CodeMemo) -> None:
    from crystallize.fingerprint import value_digest

    for label, step in zip(_step_labels(experiment), experiment.pipeline.steps):
        fp = memo.get(step.code_target(), step.version)
        parts[f"code:{label}"] = fp.digest[:_SHORT]
        packages.update(fp.packages)
        for key, value in step.params.items():
            if not isinstance(value, Artifact):
                parts[f"params:{label}.{key}"] = value_digest(value, key=f"{label}.{key}")[:_SHORT]
    for label, source in _sources(experiment.datasource):
        fp = memo.get(source.code_target(), source.version)
        parts[f"code:{label}"] = fp.digest[:_SHORT]
        packages.update(fp.packages)
        for key, value in source.params.items():
            parts[f"params:{label}.{key}"] = value_digest(value, key=f"{label}.{key}")[:_SHORT]


def _portable(path: Path, store_root: Path) -> str:
    """A declared file's name in the fingerprint: relative to the folder holding the store
    (the graph folder for YAML graphs) when it lies inside it, so a copied or cloned project
    keeps its fingerprints; absolute otherwise."""
    base = Path(store_root).resolve().parent
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(base).as_posix()
    except ValueError:
        return str(resolved)


def node_parts(experiment: Experiment, settings: RunSettings, file_cache: FileHashCache,
               memo: CodeMemo | None = None) -> NodeParts:
    """The parts every condition of one experiment shares, and the packages its code uses.

    Raises
    ------
    UnhashableValueError
        If a parameter or ``initial_ctx`` value has no canonical encoding (``.key`` names it).
    FingerprintError
        If the source of a step or datasource cannot be found (the message suggests ``version=``).
    """
    from crystallize.fingerprint import value_digest

    parts: dict[str, str] = {}
    packages: dict[str, str] = {}
    _code_parts(experiment, parts, packages, memo or CodeMemo())
    for key, value in experiment.initial_ctx.items():
        parts[f"ctx:{key}"] = value_digest(value, key=key)[:_SHORT]
    for path in (*experiment.datasource.files, *experiment.datasource.extra_files):
        parts[f"data:{_portable(Path(path), settings.store.root)}"] = file_cache.digest(Path(path))[:_SHORT]
    parts["seed"] = str(settings.master_seed) if settings.seed_configured else "drawn"
    return parts, packages


def _treatment_part(treatment: Treatment | None, packages: dict[str, str], memo: CodeMemo) -> str:
    from crystallize.fingerprint import value_digest

    if treatment is None:
        return "none"
    payload = treatment.payload
    if isinstance(payload, Mapping):
        return value_digest(dict(payload), key=f"treatment {treatment.name}")[:_SHORT]
    fp = memo.get(payload, treatment.version)
    packages.update(fp.packages)
    return "code-" + fp.digest[:_SHORT]


def condition_parts(experiment: Experiment, settings: RunSettings, condition: str, inputs: ConditionInputs,
                    file_cache: FileHashCache, *, shared: NodeParts | None = None,
                    memo: CodeMemo | None = None) -> dict[str, str]:
    """Every named input of one condition's fingerprint.

    Parameters
    ----------
    experiment, settings : Experiment, RunSettings
    condition : str
        Condition name (``"baseline"`` or a treatment).
    inputs : ConditionInputs
        Pinned upstream artifacts; their content digests are parts.
    file_cache : FileHashCache
        Hashes of declared input files.
    shared : NodeParts, optional
        :func:`node_parts` of the experiment, when already computed.
    memo : CodeMemo, optional
        Code fingerprints of this call.

    Raises
    ------
    UnhashableValueError
        If a parameter, context value or treatment value has no canonical encoding.
    FingerprintError
        If the source of a step, datasource or callable treatment cannot be found.
    """
    from crystallize.fingerprint import environment_fingerprint

    memo = memo or CodeMemo()
    base, base_packages = shared if shared is not None else node_parts(experiment, settings, file_cache, memo)
    parts, packages = dict(base), dict(base_packages)
    parts["treatment"] = _treatment_part(settings.conditions.get(condition), packages, memo)
    for content in inputs.content:
        parts[f"upstream:{content.key}"] = content.part
    for name, version in environment_fingerprint(packages.items()).items():
        parts[f"env:{name}"] = version
    return parts


def _owner(label: str) -> str:
    """``"Step"`` -> ``"step 'Step'"``; ``"datasource"`` and ``"datasource.<alias>"`` read as such."""
    if label == "datasource":
        return "the datasource"
    if label.startswith("datasource."):
        return f"datasource input '{label[len('datasource.'):]}'"
    return f"step '{label}'"


def _change(old: str | None, new: str | None, added: str, removed: str, changed: str) -> str:
    return added if old is None else removed if new is None else changed


def _reason(name: str, old: str | None, new: str | None, condition: str) -> StaleReason:
    kind_name, _, subject = name.partition(":")
    if kind_name == "code":
        return StaleReason(StaleKind.CODE_CHANGED, f"code of {_owner(subject)} {_change(old, new, 'added', 'removed', 'changed')}")
    if kind_name == "params":
        label, _, key = subject.rpartition(".")
        what = _change(old, new, "added to", "removed from", "changed in")
        return StaleReason(StaleKind.PARAMS_CHANGED, f"parameter '{key}' {what} {_owner(label)}")
    if kind_name == "ctx":
        what = _change(old, new, "added to", "removed from", "changed in")
        return StaleReason(StaleKind.PARAMS_CHANGED, f"key '{subject}' {what} initial_ctx")
    if kind_name == "treatment":
        return StaleReason(StaleKind.TREATMENT_CHANGED, f"payload of treatment '{condition}' changed")
    if kind_name == "data":
        what = _change(old, new, "is new", "is no longer declared", "changed")
        return StaleReason(StaleKind.DATA_CHANGED, f"input file {subject} {what}")
    if kind_name == "upstream":
        producer = subject.partition("#")[0]
        return StaleReason(StaleKind.UPSTREAM_CHANGED, f"upstream artifact {subject} changed", upstream=producer)
    if kind_name == "seed":
        return StaleReason(StaleKind.SEED_CHANGED, f"master seed {old} -> {new}")
    if kind_name == "env":
        return StaleReason(StaleKind.ENVIRONMENT_CHANGED, f"{subject} {old or 'absent'} -> {new or 'absent'}")
    return StaleReason(StaleKind.PARAMS_CHANGED, f"{name} changed")


def diff_parts(old: Mapping[str, Any], new: Mapping[str, str], *, condition: str = "") -> tuple[StaleReason, ...]:
    """Reasons for every part that was added, removed or changed (sorted by part name).

    Parameters
    ----------
    old, new : Mapping[str, str]
        Stored and current parts.
    condition : str
        The condition compared (named in treatment reasons).

    Examples
    --------
    >>> [r.detail for r in diff_parts({"seed": "1", "ctx:lr": "aa"}, {"seed": "2", "ctx:lr": "aa"})]
    ['master seed 1 -> 2']
    """
    names = sorted(set(old) | set(new))
    return tuple(_reason(n, old.get(n), new.get(n), condition) for n in names if old.get(n) != new.get(n))
