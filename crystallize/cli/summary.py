"""Summary tables: metrics per condition and hypothesis results, per node."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

from crystallize.graph.status import GraphStatus, NodeState, NodeStatus, StaleKind

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


def _how(outcome: ExperimentOutcome, condition: str) -> str:
    """``ran``, ``reused`` or ``failed`` (some replicate raised in this run)."""
    from crystallize.store.record import ConditionOutcome

    record = outcome.record.conditions.get(condition)
    if record is not None and record.outcome is ConditionOutcome.FAILED:
        return "[red]failed[/]"
    return "ran" if condition in outcome.ran else "reused"


def metrics_table(name: str, outcome: ExperimentOutcome, *, disabled: Sequence[str] = ()) -> Table:
    """Rows: conditions (with their ``(vN)``); columns: metrics as mean ± sd over replicates.

    ``disabled`` names treatments switched off in ``config.state.json``: each gets a row
    labelled ``disabled`` so the summary says why it has no metrics.
    """
    result = outcome.result
    blocked = result.run_info.get("blocked", [])
    rows: list[tuple[str, str, Mapping[str, list[Any]]]] = []
    if "baseline" not in blocked:
        version = outcome.record.conditions["baseline"].version
        rows.append((f"baseline (v{version})", _how(outcome, "baseline"), result.metrics.baseline.metrics))
    for key, metrics in result.metrics.treatments.items():
        rows.append((key, _how(outcome, key.rsplit(" (v", 1)[0]), metrics.metrics))
    names = sorted({m for _, _, metrics in rows for m in metrics})
    # user-given names and values are escaped: "[...]" in them is text, not rich markup
    table = Table(title=escape(name), title_justify="left")
    table.add_column("condition")
    table.add_column("")
    for metric in names:
        table.add_column(escape(metric), justify="right")
    for label, how, metrics in rows:
        table.add_row(escape(label), how, *[escape(_cell(list(metrics.get(m, [])))) for m in names])
    for cond in blocked:
        table.add_row(escape(cond), "[magenta]blocked[/]", *["-" for _ in names])
    for cond in disabled:
        table.add_row(escape(cond), "[dim]disabled[/]", *["-" for _ in names])
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


def _significant(result: Any) -> bool:
    """Mark a treatment as best only when its result is significant (or does not say)."""
    groups = result if isinstance(result, list) else [result]
    return any(not isinstance(g, Mapping) or g.get("significant", True) is not False for g in groups)


def hypothesis_table(name: str, outcome: ExperimentOutcome) -> Table | None:
    hyps = outcome.result.metrics.hypotheses
    if not hyps:
        return None
    table = Table(title=f"{escape(name)}: hypotheses", title_justify="left")
    for column in ("hypothesis", "treatment", "result", "ranked first"):
        table.add_column(column)
    for hyp in hyps:
        for treatment, res in hyp.results.items():
            best = hyp.ranking.get("best") == treatment and _significant(res)
            table.add_row(escape(hyp.name), escape(treatment), escape(hypothesis_mark(res)), "*" if best else "")
        for where, message in hyp.errors.items():
            table.add_row(escape(hyp.name), escape(where), f"[red]error: {escape(message)}[/]", "")
    return table


_PARTIAL = {StaleKind.INCOMPLETE, StaleKind.FAILED, StaleKind.REPLICATES_CHANGED}  # only some replicates rerun


def _spans(numbers: tuple[int, ...]) -> str:
    """``(0, 1, 2, 5)`` -> ``"0-2, 5"``."""
    spans: list[list[int]] = []
    for n in sorted(numbers):
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def _to_run(node: NodeStatus) -> str:
    """Conditions that would run; those resuming part of their replicates name them."""
    out = []
    for name in node.to_run:
        cond = node.conditions[name]
        partial = cond.missing_replicates and any(r.kind in _PARTIAL for r in cond.reasons)
        out.append(f"{name} (replicates {_spans(cond.missing_replicates)})" if partial else name)
    return ", ".join(out)


def status_table(status: GraphStatus) -> Table:
    """Node, state, first reason, where it came from, and the conditions (and replicates) that would run."""
    table = Table(title="status", title_justify="left")
    for column in ("node", "state", "reason", "to run"):
        table.add_column(column)
    for name, node in status.items():
        style = _STATE_STYLE[node.state]
        reason = node.reasons[0] if node.reasons else None
        text = f"{reason.kind.value}: {reason.detail}" if reason else ""
        if reason is not None and reason.upstream and reason.upstream not in text:
            text += f" (from {reason.upstream})"
        table.add_row(escape(name), f"[{style}]{node.state.value}[/]", escape(text), escape(_to_run(node)))
    return table
