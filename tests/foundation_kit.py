"""Small experiment building blocks and store helpers shared by the foundation tests.

Kept out of ``conftest.py`` because several test folders have their own ``conftest``
module, which makes ``from conftest import ...`` ambiguous. Everything is module level
so process pools can pickle it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from crystallize import FrozenContext, data_source, pipeline_step

@data_source
def scores(ctx: FrozenContext, size: int = 4) -> list[int]:
    """``[rep, rep+1, ...]``: one list per replicate (examples-0.27 section 1)."""
    rep = ctx.get("replicate", 0)
    return [rep + i for i in range(size)]


@pipeline_step()
def shift(data: list[float], ctx: FrozenContext, *, offset: float = 0.0) -> list[float]:
    return [x + offset for x in data]


@pipeline_step()
def summarise(data: list[float], ctx: FrozenContext) -> Any:
    return data, {"mean": sum(data) / len(data)}


@pipeline_step()
def fail_at(data: Any, ctx: FrozenContext, *, fail_replicate: int = -1, fail_condition: str = "*") -> Any:
    """Raises ``RuntimeError`` at one replicate (and condition, ``"*"`` = any)."""
    if ctx["replicate"] == fail_replicate and fail_condition in ("*", ctx["condition"]):
        raise RuntimeError(f"boom at replicate {fail_replicate}")
    return data


def read_json(path: Path) -> Any:
    """Parse a JSON file (helper for store assertions)."""
    return json.loads(Path(path).read_text())


def files_under(root: Path) -> list[str]:
    """Every file under ``root`` as sorted POSIX paths relative to it."""
    return sorted(p.relative_to(root).as_posix() for p in Path(root).rglob("*") if p.is_file())


def write_folder(folder: Path, files: dict[str, str]) -> Path:
    """Write ``{relative name: text}`` into ``folder`` (texts are dedented); returns ``folder``."""
    import textwrap

    for name, text in files.items():
        path = Path(folder) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return Path(folder)


# The producer folder of examples-0.27 section 9 (used by the YAML and CLI tests).
PRODUCER = {
    "config.yaml": """
        name: producer            # must equal the folder name for graph references in 0.27
        replicates: 2
        datasource:
          numbers: numbers
        steps:
          - produce_summary
        outputs:
          summary:
            file_name: summary.json
            writer: dump_json
            loader: load_json
        treatments:
          bigger:
            scale: 3
    """,
    "datasources.py": """
        from crystallize import data_source

        @data_source
        def numbers(ctx):
            return {"numbers": [1, 2, 3]}
    """,
    "steps.py": """
        from crystallize import pipeline_step, Artifact

        @pipeline_step()
        def produce_summary(data, ctx, summary: Artifact, *, scale: int = 1):
            total = sum(data["numbers"]) * scale
            summary.write({"total": total})
            return data, {"total": total}
    """,
    "outputs.py": """
        import json
        from pathlib import Path

        def dump_json(payload) -> bytes:
            return json.dumps(payload).encode("utf-8")

        def load_json(path: Path):
            return json.loads(path.read_text())
    """,
}
