"""Paths of the on-disk store (0.27's layout plus ``run.json``) and version reservation.

::

    <root>/.staging/                         files steps write through ctx.artifacts.path(), until the
                                             runner moves them into a version (same file system: a rename)
    <root>/<experiment>/
      .lock                                  filelock for read-modify-write of shared files
      v<N>/
        run.json                             run record (spec section 4)
        metadata.json                        {"replicates", "id", "name"} (0.27)
        _manifest.json                       {"<file>": "<StepName>"} (0.27)
        <condition>/results.json             {"metrics": {...}} (0.27)
        <condition>/.crystallize_complete    written last, only if every replicate succeeded
        <condition>/.journal.jsonl           per-replicate progress of a long run (append-only)
        replicate_<r>/<condition>/<Step>/<file>
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ExperimentStore", "MARKER", "list_versions"]

MARKER = ".crystallize_complete"
_VERSION = re.compile(r"v(\d+)")


def list_versions(exp_dir: Path) -> list[int]:
    """Version numbers present under ``exp_dir``, ascending."""
    if not exp_dir.is_dir():
        return []
    found = (_VERSION.fullmatch(p.name) for p in exp_dir.iterdir() if p.is_dir())
    return sorted(int(m.group(1)) for m in found if m)


@dataclass(frozen=True, slots=True)
class ExperimentStore:
    """Paths of one experiment's folder in a store rooted at ``root``."""

    root: Path
    name: str
    dir: Path = field(init=False, repr=False, compare=False)
    _version_dirs: dict[int, Path] = field(init=False, repr=False, compare=False)  # a run asks for them often

    def __post_init__(self) -> None:
        object.__setattr__(self, "dir", Path(self.root) / self.name)
        object.__setattr__(self, "_version_dirs", {})

    @property
    def staging_dir(self) -> Path:
        """``<root>/.staging``: where jobs on this machine stage large artifact files."""
        return Path(self.root) / ".staging"

    @property
    def lock_path(self) -> Path:
        return self.dir / ".lock"

    def version_dir(self, version: int) -> Path:
        found = self._version_dirs.get(version)
        if found is None:
            found = self._version_dirs[version] = self.dir / f"v{version}"
        return found

    def run_json(self, version: int) -> Path:
        return self.version_dir(version) / "run.json"

    def metadata(self, version: int) -> Path:
        return self.version_dir(version) / "metadata.json"

    def manifest(self, version: int) -> Path:
        return self.version_dir(version) / "_manifest.json"

    def condition_dir(self, version: int, condition: str) -> Path:
        return self.version_dir(version) / condition

    def results(self, version: int, condition: str) -> Path:
        return self.version_dir(version).joinpath(condition, "results.json")

    def marker(self, version: int, condition: str) -> Path:
        return self.version_dir(version).joinpath(condition, MARKER)

    def journal(self, version: int, condition: str) -> Path:
        return self.version_dir(version).joinpath(condition, ".journal.jsonl")

    def artifact(self, version: int, replicate: int, condition: str, step: str, name: str) -> Path:
        return self.version_dir(version).joinpath(f"replicate_{replicate}", condition, step, name)

    def versions(self) -> list[int]:
        return list_versions(self.dir)

    def reserve_version(self) -> int:
        """Create the next ``v<N>`` folder atomically and return ``N``.

        ``mkdir`` either creates the folder or fails, so two concurrent runs never get
        the same version: on ``FileExistsError`` the next number is tried.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        existing = self.versions()
        candidate = existing[-1] + 1 if existing else 0
        while True:
            try:
                self.version_dir(candidate).mkdir()
                return candidate
            except FileExistsError:
                candidate += 1
