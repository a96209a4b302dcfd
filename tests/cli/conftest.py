"""A small two-node YAML graph written into a temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from foundation_kit import PRODUCER, write_folder

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
