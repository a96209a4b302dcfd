"""Prints a Result's provenance as a tree (``Result.print_tree``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["print_provenance_tree"]

_LEVELS = ("treatment", "replicate", "step", "action")


def _parse(fmt: str) -> list[str]:
    levels = [part.strip() for part in fmt.split(">") if part.strip()]
    for level in levels:
        if level not in _LEVELS:
            raise ValueError(f"unknown level {level!r} in {fmt!r}; use {' > '.join(_LEVELS)}")
    if "action" in levels and levels[-1] != "action":
        raise ValueError("'action' must be the last level")
    return levels


def _actions(record: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    """``(group, lines)`` for the reads, writes and metrics of one step record (non-empty groups)."""
    changes = record.get("ctx_changes", {})
    groups = [
        ("Reads", [f"{k}={v!r}" for k, v in changes.get("reads", {}).items()]),
        ("Writes", [f"{k}: {c.get('before')!r} -> {c.get('after')!r}" for k, c in changes.get("wrote", {}).items()]),
        ("Write Metrics", [f"{k}: {c.get('before')!r} -> {c.get('after')!r}"
                           for k, c in changes.get("metrics", {}).items()]),
    ]
    return [(group, lines) for group, lines in groups if lines]


def print_provenance_tree(ctx_changes: Mapping[str, Mapping[int, list[Mapping[str, Any]]]], fmt: str) -> None:
    """Print ``condition > replicate > step > action`` records with rich (plain text without it)."""
    levels = _parse(fmt)
    from rich.console import Console
    from rich.tree import Tree

    root = Tree("Experiment Summary")
    for condition, reps in ctx_changes.items():
        cond_node = root.add(f"Treatment '{condition}'") if "treatment" in levels else root
        for rep, records in reps.items():
            rep_node = cond_node.add(f"Replicate {rep}") if "replicate" in levels else cond_node
            for record in records:
                actions = _actions(record)
                if not actions:
                    continue
                step_node = rep_node.add(f"Step {record['step']}") if "step" in levels else rep_node
                if "action" in levels:
                    for group, lines in actions:
                        group_node = step_node.add(group)
                        for line in lines:
                            group_node.add(line)
    Console().print(root)
