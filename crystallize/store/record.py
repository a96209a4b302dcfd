"""The run record (``run.json``): what one version ran, reused, read and produced.

``run.json`` maps **every** active condition of a run to the version that holds it, so a
reused condition points at an older version. Readers resolve results, artifacts and
``"(vN)"`` keys through this map.
"""

from __future__ import annotations

import enum
import json
import platform
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from crystallize.store.atomic import read_file

__all__ = ["SCHEMA", "ConditionOutcome", "ConditionRecord", "RunRecord", "UpstreamPin", "environment_info", "git_commit"]

SCHEMA = 1


class ConditionOutcome(enum.Enum):
    """How a condition's replicates ended."""

    COMPLETE = "complete"  # every replicate succeeded; marker written
    FAILED = "failed"  # at least one replicate raised
    INCOMPLETE = "incomplete"  # the run stopped before every replicate finished
    BLOCKED = "blocked"  # not run: an upstream condition it reads failed


@dataclass(frozen=True, slots=True)
class UpstreamPin:
    """Which upstream run a condition read one artifact from."""

    producer: str
    artifact: str
    version: int
    condition: str
    fallback: bool = False  # True: the upstream lacked this condition, so its baseline was read


@dataclass(frozen=True, slots=True)
class ConditionRecord:
    """One condition's entry in ``run.json``.

    Attributes
    ----------
    version : int
        Version folder holding this condition's files.
    replicates : int
        Replicate count the condition was run with.
    seeds : list[int or None]
        Seed of each replicate (``None`` for replicates that never ran).
    metrics : list[dict or None]
        Metric name -> values recorded by each replicate; ``None`` if it failed or never ran.
    errors : dict[str, dict]
        Replicate index (as text) -> ``{"type", "message", "traceback", "step"}``.
    artifacts : dict[str, dict]
        File name -> ``{"step": StepName, "blake3": {replicate: hex digest}}`` (see
        :mod:`crystallize.fingerprint.content`).
    fingerprint : str or None
        Condition fingerprint when it was run (``None``: not reusable).
    inputs : dict
        The named parts of the fingerprint, so a status check can say what changed.
    """

    version: int
    outcome: ConditionOutcome
    replicates: int
    seeds: list[int | None] = field(default_factory=list)
    metrics: list[dict[str, list[Any]] | None] = field(default_factory=list)
    tags: list[dict[str, list[Any]] | None] = field(default_factory=list)
    errors: dict[str, dict[str, Any]] = field(default_factory=dict)
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    upstream: tuple[UpstreamPin, ...] = ()
    fingerprint: str | None = None
    inputs: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["outcome"] = self.outcome.value
        data["upstream"] = [asdict(p) for p in self.upstream]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ConditionRecord:
        values = dict(data)
        values["outcome"] = ConditionOutcome(values["outcome"])
        values["upstream"] = tuple(UpstreamPin(**p) for p in values.get("upstream", ()))
        return cls(**values)


@dataclass(frozen=True, slots=True)
class RunRecord:
    """The whole ``run.json`` of one version."""

    experiment: str
    version: int
    status: str  # "running" | "complete" | "failed"
    started: str
    ended: str | None
    master_seed: int | None
    replicates: int
    conditions: dict[str, ConditionRecord]
    hypotheses: list[dict[str, Any]] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    git_commit: str | None = None
    graph: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        data = {"schema": SCHEMA}
        for name in self.__dataclass_fields__:
            data[name] = getattr(self, name)
        data["conditions"] = {k: v.to_json() for k, v in self.conditions.items()}
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunRecord:
        values = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        values["conditions"] = {k: ConditionRecord.from_json(v) for k, v in data.get("conditions", {}).items()}
        return cls(**values)

    @classmethod
    def load(cls, path: Path) -> RunRecord | None:
        """Read ``path``; ``None`` when it is missing or unreadable (e.g. from a newer schema)."""
        try:
            data = json.loads(read_file(path))
            return cls.from_json(data) if data.get("schema") == SCHEMA else None
        except (OSError, ValueError, TypeError, KeyError):
            return None


def environment_info(packages: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Python version, platform, the crystallize version and the given package versions."""
    from crystallize import __version__

    return {"python": platform.python_version(), "implementation": sys.implementation.name,
            "platform": platform.platform(terse=True), "crystallize": __version__,
            "packages": dict(sorted((packages or {}).items()))}


_GIT_DIRS: dict[str, Path | None] = {}  # folder -> the git dir found above it (found once per process)


def git_commit(path: Path) -> str | None:
    """The commit checked out in the git repository containing ``path`` (``None`` outside one).

    Reads ``.git/HEAD`` and the ref it names (loose or packed) directly: no subprocess, so it
    is cheap enough to call for every run. Where the repository is (a walk up the parents)
    is looked up once per folder and process; the commit is read on every call.
    """
    key = str(path)
    if key not in _GIT_DIRS:
        _GIT_DIRS[key] = _find_git_dir(Path(path))
    git = _GIT_DIRS[key]
    return _resolve_head(git) if git is not None else None


def _find_git_dir(path: Path) -> Path | None:
    for folder in (path.resolve(), *path.resolve().parents):
        git = folder / ".git"
        if git.is_file():  # a worktree or submodule: "gitdir: <path>"
            text = git.read_text(errors="replace").strip()
            git = (folder / text.partition(":")[2].strip()).resolve() if text.startswith("gitdir:") else git
        if git.is_dir():
            return git
    return None


def _resolve_head(git: Path) -> str | None:
    try:
        head = read_file(git / "HEAD").decode(errors="replace").strip()
    except OSError:
        return None
    if not head.startswith("ref:"):
        return head or None
    ref = head.partition(":")[2].strip()
    common = git / "commondir"
    roots = [git, (git / common.read_text().strip()).resolve()] if common.is_file() else [git]
    for root in roots:
        try:
            return read_file(root / ref).decode(errors="replace").strip() or None
        except OSError:  # not a loose ref here: look in packed-refs
            pass
        packed = root / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                sha, _, name = line.partition(" ")
                if name == ref:
                    return sha
    return None  # a branch with no commit yet
