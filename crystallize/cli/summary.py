"""Summary tables: metrics per condition and hypothesis results, per node."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rich.table import Table

from crystallize.graph.status import GraphStatus, NodeState

if TYPE_CHECKING:
    from crystallize.execution.engine import ExperimentOutcome

__all__ = ["hypothesis_mark", "metrics_table", "status_table"]

_STATE_STYLE = {NodeState.FRESH: "green", NodeState.STALE: "yellow", NodeState.UPSTREAM_STALE: "yellow",
                NodeState.NEVER_RUN: "dim", NodeState.INCOMPLETE: "cyan", NodeState.FAILED: "red",
                NodeState.BLOCKED: "magenta"}


def _cell(values: list[Any]) -> str:
    nums = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not nums:
        return f"{len(values)} values" if values else "-"
    mean = sum(nums) / len(nums)
    if len(nums) == 1:
        return f"{mean:.4g}"
    sd = math.sqrt(sum((x - mean) ** 2 for x in nums) / (len(nums) - 1))
    return f"{mean:.4g} ± {sd:.2g} (n={len(nums)})"


def metrics_table(name: str, outcome: ExperimentOutcome) -> Table:
    """Rows: conditions (with their ``(vN)``); columns: metrics as mean ± sd over replicates."""
    result = outcome.result
    rows: list[tuple[str, str, Mapping[str, list[Any]]]] = []
    version = outcome.record.conditions.get("baseline")
    ran = set(outcome.ran)
    rows.append((f"baseline (v{version.version if version else '?'})", "ran" if "baseline" in ran else "reused",
                 result.metrics.baseline.metrics))
    for key, metrics in result.metrics.treatments.items():
        plain = key.rsplit(" (v", 1)[0]
        rows.append((key, "ran" if plain in ran else "reused", metrics.metrics))
    blocked = result.provenance.get("blocked", [])
    names = sorted({m for _, _, metrics in rows for m in metrics})
    table = Table(title=f"{name}", title_justify="left")
    table.add_column("condition")
    table.add_column("")
    for metric in names:
        table.add_column(metric, justify="right")
    for label, how, metrics in rows:
        table.add_row(label, how, *[_cell(list(metrics.get(m, []))) for m in names])
    for cond in blocked:
        table.add_row(cond, "[magenta]blocked[/]", *["-" for _ in names])
    return table


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def hypothesis_mark(result: Any) -> str:
    """benchstat-style: the difference with its CI when significant, ``~`` when not."""
    if isinstance(result, list):
        return "; ".join(hypothesis_mark(r) for r in result)
    if not isinstance(result, Mapping):
        return repr(result)
    p = _num(result.get("p_value_adjusted", result.get("p_value")))
    diff, low, high = (_num(result.get(k)) for k in ("mean_difference", "ci_low", "ci_high"))
    p_text = f"p={p:.3g}" if p is not None else ""
    if result.get("significant") is False:
        return f"~ ({p_text})" if p_text else "~"
    if diff is not None and low is not None and high is not None:
        return f"{diff:+.4g} [{low:+.4g}, {high:+.4g}] {p_text}".strip()
    shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items())
    return shown or "-"


def hypothesis_table(name: str, outcome: ExperimentOutcome) -> Table | None:
    hyps = outcome.result.metrics.hypotheses
    if not hyps:
        return None
    table = Table(title=f"{name}: hypotheses", title_justify="left")
    for column in ("hypothesis", "treatment", "result", "best"):
        table.add_column(column)
    for hyp in hyps:
        for treatment, res in hyp.results.items():
            table.add_row(hyp.name, treatment, hypothesis_mark(res), "*" if hyp.ranking.get("best") == treatment else "")
        for where, message in hyp.errors.items():
            table.add_row(hyp.name, where, f"[red]error: {message}[/]", "")
    return table


def status_table(status: GraphStatus) -> Table:
    """Node, state, first reason and the conditions that would run."""
    table = Table(title="status", title_justify="left")
    for column in ("node", "state", "reason", "to run"):
        table.add_column(column)
    for name, node in status.items():
        style = _STATE_STYLE[node.state]
        reason = node.reasons[0] if node.reasons else None
        text = f"{reason.kind.value}: {reason.detail}" if reason else ""
        table.add_row(name, f"[{style}]{node.state.value}[/]", text, ", ".join(node.to_run))
    return table
