"""The subcommands: each takes parsed arguments and returns an exit code."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from crystallize.cli.main import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from crystallize.graph.model import ExperimentGraph
from crystallize.graph.status import GraphStatus, NodeState

__all__ = ["list_configs", "render", "run", "status"]


def _load(args: argparse.Namespace, console: Console | None) -> ExperimentGraph:
    graph = ExperimentGraph.from_yaml(args.path)
    if getattr(args, "store", None):
        graph.store_root = Path(args.store)
    if console is not None:
        console.print(f"[dim]store: {escape(str(Path(graph.store_root).resolve()))}[/]")
    return graph


def _disabled(exp: Any) -> tuple[str, ...]:
    """Treatments switched off in ``config.state.json`` (YAML experiments only)."""
    return tuple(getattr(exp, "disabled_treatments", ()))


def _select_treatments(graph: ExperimentGraph, names: list[str]) -> None:
    """Keep only the named treatments (own and inherited); an unknown or disabled name is a usage error."""
    defined = {t.name for exp in graph.experiments.values() for t in exp.treatments}
    disabled = {n: exp for exp in graph.experiments.values() for n in _disabled(exp)}
    off = sorted((set(names) - defined) & set(disabled))
    if off:
        state = Path(disabled[off[0]].config_path).parent / "config.state.json"
        raise ValueError(f"treatment(s) {', '.join(off)} disabled in {state}; remove them from "
                         "'inactive_treatments' there to run them")
    unknown = sorted(set(names) - defined)
    if unknown:
        raise ValueError(f"unknown treatment(s) {', '.join(unknown)}; defined: {', '.join(sorted(defined)) or 'none'}")
    for exp in graph.experiments.values():
        exp.treatments = [t for t in exp.treatments if t.name in names]


def _why(reason: Any) -> str:
    """A short reason: the kind alone when the detail only repeats it."""
    from crystallize.graph.status import StaleKind

    if reason.kind in (StaleKind.NEVER_RUN, StaleKind.NEW_CONDITION, StaleKind.FORCED):
        return reason.kind.value
    return f"{reason.kind.value}: {reason.detail}"


def _report_reuse(console: Console, graph: ExperimentGraph, outcomes: dict[str, Any]) -> None:
    from crystallize.graph.status import NodeState

    for name, outcome in outcomes.items():
        blocked = [n for n, p in outcome.plans.items() if p.status.state is NodeState.BLOCKED]
        reused = [n for n, p in outcome.plans.items() if not p.executes and n not in blocked]
        ran = {n: p.status.reasons[0] for n, p in outcome.plans.items() if p.executes and p.status.reasons}
        disabled = _disabled(graph.experiments[name]) if name in graph else ()
        # names and reasons come from the user: escaped, so "[...]" in them prints as text
        parts = [escape(f"reused {', '.join(reused)}")] if reused else []
        parts += [escape(f"ran {n} ({_why(r)})") for n, r in ran.items()]
        parts += [f"[magenta]{escape('blocked ' + ', '.join(blocked))}[/] (an upstream condition failed)"] if blocked \
            else []
        parts += [f"[dim]{escape('skipped ' + ', '.join(disabled))} (disabled in config.state.json)[/]"] if disabled \
            else []
        parts += [f"[dim]{escape(line)}[/]" for line in _fallbacks(outcome)]
        console.print(f"[bold]{escape(name)}[/]: " + "; ".join(parts), highlight=False)


def _fallbacks(outcome: Any) -> list[str]:
    """``"pca, weak_reg read the baseline of split"``: conditions an upstream node lacks (recorded as pins)."""
    readers: dict[str, list[str]] = {}
    for condition, record in outcome.record.conditions.items():
        for pin in record.upstream:
            if pin.fallback and condition not in readers.setdefault(pin.producer, []):
                readers[pin.producer].append(condition)
    return [f"{', '.join(conds)} read{'s' if len(conds) == 1 else ''} the baseline of {producer}"
            for producer, conds in readers.items()]


def _report_errors(console: Console, name: str, errors: dict[str, BaseException]) -> None:
    """One line per distinct failure, listing the replicates it hit."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for key, exc in errors.items():
        condition = getattr(exc, "condition", key.rsplit("_rep_", 1)[0])
        grouped.setdefault((condition, _describe(exc)), []).append(key.rsplit("_rep_", 1)[-1])
    for (condition, text), reps in grouped.items():
        line = f"{name} {condition} replicate{'s' if len(reps) > 1 else ''} {', '.join(reps)}: {text}"
        console.print(f"[red]{escape(line)}[/]", highlight=False)


def _describe(exc: BaseException) -> str:
    """``Type: message (step S)`` for a replicate error."""
    original = getattr(exc, "original_exception", exc)
    step = getattr(exc, "step", None)
    where = f" (step {step})" if step else ""
    return f"{getattr(exc, 'exception_type', type(original).__name__)}: {original}{where}"


def run(args: argparse.Namespace) -> int:
    """``crystallize run``: run the graph (resume by default) and print a summary per node."""
    from crystallize.cli.progress import RunProgress
    from crystallize.cli.summary import hypothesis_table, metrics_table
    from crystallize.execution.graph_runner import run_graph

    console = Console()
    graph = _load(args, console)
    if args.treatment:
        _select_treatments(graph, args.treatment)
    if args.seed is not None:
        graph.seed = args.seed
    if args.workers is not None:
        graph.workers = args.workers
    if args.replicates is not None and args.replicates < 1:
        raise ValueError("--replicates must be >= 1")
    with RunProgress(console, len(graph)) as progress:
        outcome = run_graph(graph, replicates=args.replicates, strategy=args.strategy, only=args.only,
                            upto=args.upto, force=args.force, backend=args.backend, on_event=progress)
    _report_reuse(console, graph, outcome.outcomes)
    for name, node in outcome.outcomes.items():
        console.print(metrics_table(name, node, disabled=_disabled(graph.experiments[name]) if name in graph else ()))
        table = hypothesis_table(name, node)
        if table is not None:
            console.print(table)
        _report_errors(console, name, node.result.errors)
    if args.render:
        console.print(f"picture: {escape(str(graph.render(args.render)))}")
    if outcome.deferred is not None:  # results are stored and shown; the definition needs fixing
        console.print(f"[red]error: {escape(str(outcome.deferred))}[/]", highlight=False)
        return EXIT_USAGE
    if outcome.failed:
        console.print(f"[red]failed or blocked: {escape(', '.join(outcome.failed))}[/]")
        return EXIT_FAILED
    return EXIT_OK


def status_json(graph: ExperimentGraph, status: GraphStatus) -> dict[str, Any]:
    """The ``--json`` document (``"schema": 1``)."""
    def reasons(items: Any) -> list[dict[str, Any]]:
        return [{"kind": r.kind.name, "detail": r.detail, "upstream": r.upstream} for r in items]

    return {"schema": 1, "graph": graph.name, "fresh": status.fresh, "nodes": {
        name: {"state": node.state.name, "reasons": reasons(node.reasons), "conditions": {
            c: {"state": s.state.name, "reasons": reasons(s.reasons), "missing_replicates": list(s.missing_replicates),
                "version": s.version} for c, s in node.conditions.items()}}
        for name, node in status.items()}}


def status(args: argparse.Namespace) -> int:
    """``crystallize status``: exit 0 when every node is fresh, 1 otherwise."""
    from crystallize.cli.summary import status_table

    console = Console(stderr=args.json)  # with --json, stdout holds only JSON: the store root goes to stderr
    graph = _load(args, console)
    result = graph.status()
    if args.json:
        print(json.dumps(status_json(graph, result), indent=2))
    else:
        console.print(status_table(result))
    return EXIT_OK if all(n.state is NodeState.FRESH for n in result.values()) else EXIT_FAILED


def render(args: argparse.Namespace) -> int:
    """``crystallize render``: write the graph picture."""
    console = Console()
    graph = _load(args, console)
    path = graph.render(args.output, status=not args.no_status, rankdir=args.rankdir, focus=args.focus,
                        hops=args.hops)
    console.print(f"wrote {escape(str(path))}")
    return EXIT_OK


def _folder_graph(path: Path, cache: dict[Path, Any]) -> Any:
    """The graph of the folder holding ``path``'s experiment (loaded once per folder), or None."""
    from crystallize.config.loader import load_graph
    from crystallize.errors import CrystallizeError

    folder = path.parent.parent
    if folder not in cache:
        try:
            cache[folder] = load_graph(folder)
        except (CrystallizeError, ValueError, TypeError):
            cache[folder] = None  # some sibling is broken: each config is then loaded on its own
    return cache[folder]


def _list_row(root: Path, path: Path, graph: Any, *, show_hidden: bool) -> tuple[str, ...] | None:
    """The table row of one loaded config, or None when it is ``cli: {hidden: true}``."""
    name, exp = next((n, e) for n, e in graph.experiments.items() if getattr(e, "config_path", None) == path)
    if getattr(exp, "cli", {}).get("hidden") and not show_hidden:
        return None
    kind = f"graph node ({graph.name})" if len(graph) > 1 else "experiment"
    return (str(path.parent.relative_to(root)), exp.store_name, kind, str(exp.replicates),
            ", ".join(t.name for t in exp.treatments))


def list_configs(args: argparse.Namespace) -> int:
    """``crystallize list``: every config.yaml under ROOT, with load errors per file.

    Experiments with ``cli: {hidden: true}`` are left out unless ``--all`` is given; a
    config that fails to load is always listed, hidden or not.
    """
    from rich.table import Table

    from crystallize.config.loader import find_configs, load_graph
    from crystallize.errors import CrystallizeError

    console = Console()
    root = Path(args.root)
    if not root.is_dir():
        console.print(f"[red]{escape(str(root))} is not a folder[/]")
        return EXIT_USAGE
    table = Table(title=f"experiments under {escape(str(root.resolve()))}", title_justify="left")
    for column in ("folder", "name", "kind", "replicates", "treatments"):
        table.add_column(column, overflow="fold")
    errors, hidden, folders = 0, 0, {}
    for path in find_configs(root):
        graph = _folder_graph(path, folders)
        try:
            graph = graph if graph is not None else load_graph(path)
        except (CrystallizeError, ValueError, TypeError) as exc:
            errors += 1
            table.add_row(escape(str(path.parent.relative_to(root))), "", "[red]error[/]", "", escape(str(exc)))
            continue
        row = _list_row(root, path, graph, show_hidden=getattr(args, "all", False))
        hidden += row is None
        if row is not None:
            table.add_row(*(escape(cell) for cell in row))
    if hidden:
        table.caption = f"{hidden} hidden (cli: hidden: true); --all lists them"
    console.print(table)
    return EXIT_FAILED if errors else EXIT_OK
