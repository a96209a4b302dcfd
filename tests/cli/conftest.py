"""A small two-node YAML graph written into a temporary folder."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

PRODUCER = {
    "config.yaml": """
        name: producer
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

        def dump_json(payload):
            return json.dumps(payload).encode("utf-8")

        def load_json(path):
            return json.loads(path.read_text())
    """,
}
CONSUMER = {
    "config.yaml": """
        name: consumer
        replicates: 3
        datasource:
          producer_summary: producer#summary
        steps:
          - inspect_summary
        treatments:
          extra:
            bonus: 1
        hypotheses:
          - name: more
            verifier: welch_t_test
            metrics: seen
    """,
    "steps.py": """
        from crystallize import pipeline_step

        @pipeline_step()
        def inspect_summary(data, ctx, *, bonus: int = 0):
            return data, {"seen": data["producer_summary"]["total"] + bonus + 0.1 * ctx["replicate"]}
    """,
}


def write_folder(folder: Path, files: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(textwrap.dedent(text).lstrip())


@pytest.fixture
def yaml_graph(tmp_path: Path) -> Path:
    root = tmp_path / "graph"
    write_folder(root / "producer", PRODUCER)
    write_folder(root / "consumer", CONSUMER)
    return root


@pytest.fixture(autouse=True)
def _restore_crystallize_logger():
    """``main()`` configures the ``crystallize`` logger as a CLI should; undo it between tests."""
    import logging

    log = logging.getLogger("crystallize")
    saved = (list(log.handlers), log.level, log.propagate)
    yield
    log.handlers[:], log.level, log.propagate = saved[0], saved[1], saved[2]
