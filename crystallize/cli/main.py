"""The ``crystallize`` command: run, status, render and list experiment graphs.

Exit codes: 0 success (``status``: everything fresh), 1 a node failed (``status``:
something is stale), 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from crystallize.errors import ConfigError, CrystallizeError

__all__ = ["build_parser", "main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _add_graph_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="graph folder, experiment folder or config.yaml")
    p.add_argument("--store", metavar="DIR", help="store root (default: <graph folder>/data)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(prog="crystallize", description="Reproducible experiment graphs.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="run a graph, reusing what is fresh")
    _add_graph_args(run)
    run.add_argument("--strategy", choices=("resume", "rerun"), default="resume")
    run.add_argument("--only", action="extend", nargs="+", metavar="NODE",
                     help="run only these nodes (a list, or repeat the option)")
    run.add_argument("--upto", metavar="NODE", help="run this node and its ancestors")
    run.add_argument("--force", action="extend", nargs="+", metavar="NODE",
                     help="rerun these nodes even if fresh (a list, or repeat the option)")
    run.add_argument("--replicates", type=int, metavar="K", help="replicates for every node")
    run.add_argument("--treatment", action="extend", nargs="+", metavar="T",
                     help="run only these defined treatments (a list, or repeat the option)")
    run.add_argument("--backend", choices=("serial", "thread", "process", "async", "ray"))
    run.add_argument("--workers", type=int, metavar="K", help="worker count for thread/process backends")
    run.add_argument("--seed", type=int, metavar="S", help="graph master seed")
    run.add_argument("--render", metavar="FILE", help="write the graph picture after the run")
    status = sub.add_parser("status", help="what is stale and why (exit 0 fresh, 1 stale)")
    _add_graph_args(status)
    status.add_argument("--json", action="store_true", help="print only JSON on stdout")
    render = sub.add_parser("render", help="draw the graph (svg, png, pdf, dot, mmd)")
    _add_graph_args(render)
    render.add_argument("-o", "--output", required=True, metavar="FILE")
    render.add_argument("--no-status", action="store_true", help="draw without staleness colours")
    render.add_argument("--rankdir", choices=("LR", "TB", "RL", "BT"), default="LR")
    render.add_argument("--focus", metavar="NODE", help="draw only the neighbourhood of NODE")
    render.add_argument("--hops", type=int, default=1, metavar="K", help="edges around --focus (default 1)")
    listing = sub.add_parser("list", help="discovered experiments and graphs")
    listing.add_argument("root", nargs="?", default=".")
    listing.add_argument("--all", action="store_true", help="also list experiments with cli: {hidden: true}")
    return parser


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    if verbosity == 0:  # the run summary lists baseline fallbacks, one line per node
        from crystallize.execution.report import FALLBACK_RECORD

        handler.addFilter(lambda record: not getattr(record, FALLBACK_RECORD, False))
    root = logging.getLogger("crystallize")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def _load_dotenv() -> None:
    """Set variables from ``.env`` in the working directory (python-dotenv), as 0.27's CLI
    did; variables already in the environment win."""
    from dotenv import load_dotenv

    load_dotenv(Path.cwd() / ".env", override=False)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``crystallize`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    _configure_logging(args.verbose)
    _load_dotenv()
    from crystallize.cli import commands

    handler = {"run": commands.run, "status": commands.status, "render": commands.render,
               "list": commands.list_configs}[args.command]
    try:
        return handler(args)
    except ConfigError as exc:
        print(f"crystallize: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (CrystallizeError, KeyError, ValueError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"crystallize: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("crystallize: interrupted; finished replicates are stored, run again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
