"""Graph pictures (spec section 5): DOT, Mermaid, and SVG/PNG/PDF files.

The graph model describes itself to this module through three frozen value
objects, :class:`NodeView`, :class:`EdgeView` and :class:`GraphView`. Everything
here is a pure function of such a view, except :func:`render` (which writes one
file) and :func:`to_svg` (which runs the Graphviz ``dot`` binary).

Labels are Graphviz HTML-like labels, built and escaped by
:mod:`crystallize.graph.labels`, so any experiment, treatment or artifact name
renders as written. Node ids are generated (``n0``, ``n1``, ...), never taken
from names.

SVG, PNG and PDF come from the Graphviz ``dot`` program, run as a subprocess
(the ``graphviz`` Python package is not needed here); DOT and Mermaid text need
nothing but this package. This is the public module: the view objects
(:mod:`crystallize.graph.picture`) and :func:`to_mermaid`
(:mod:`crystallize.graph.mermaid`) are re-exported from here.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path

from crystallize.errors import RenderError
from crystallize.graph.labels import dot_label, edge_lines, escape_html, node_lines
from crystallize.graph.mermaid import to_mermaid
from crystallize.graph.picture import (
    RANKDIRS,
    STATUS_COLOURS,
    EdgeView,
    GraphView,
    NodeView,
    as_names,
    check_rankdir,
    node_ids,
)
from crystallize.store.atomic import write_bytes

__all__ = [
    "PNG_MAX_NODES",
    "RANKDIRS",
    "STATUS_COLOURS",
    "SUPPORTED_FORMATS",
    "EdgeView",
    "GraphView",
    "NodeView",
    "render",
    "subview",
    "to_dot",
    "to_mermaid",
    "to_svg",
]

logger = logging.getLogger(__name__)

#: File formats :func:`render` writes, by file suffix (without the dot).
SUPPORTED_FORMATS: tuple[str, ...] = ("svg", "png", "pdf", "dot", "gv", "mmd")

#: Largest graph (in nodes) rendered to PNG. At 300 nodes a PNG is already
#: several megabytes and dot's cairo bitmap is ~64 MB; past it the picture outgrows
#: cairo's 32767-pixel limit, so dot shrinks it until the labels are unreadable
#: (or runs out of memory). SVG and PDF stay sharp and small: use them instead.
PNG_MAX_NODES = 300

_INSTALL_HINT = (
    "the Graphviz 'dot' program was not found on PATH; install Graphviz with "
    "'apt-get install graphviz' (Debian/Ubuntu), 'brew install graphviz' (macOS) or "
    "'conda install -c conda-forge graphviz', or write a .dot or .mmd file instead, "
    "which needs no binary"
)


# --------------------------------------------------------------------------- DOT


def _dot_header(view: GraphView, rankdir: str) -> list[str]:
    """Graph, node and edge default statements."""
    title = "" if view.name is None else f", label={dot_label([((view.name, 'bold'),)])}"
    return [
        f'  graph [rankdir={rankdir}, fontname="Helvetica", labelloc=t{title}];',
        '  node [shape=box, style="rounded,filled", fillcolor="white", '
        'fontname="Helvetica", fontsize=11];',
        '  edge [fontname="Helvetica", fontsize=9, color="#555555"];',
    ]


def _dot_legend(rankdir: str) -> list[str]:
    """A cluster holding one table of colour swatches, in :data:`STATUS_COLOURS` order.

    The table runs across the ranks' direction (a column for LR/RL, a row for
    TB/BT), so it only widens the first rank a little.
    """
    cells = [
        f'<TD BGCOLOR="{colour}">{escape_html(state.value)}</TD>'
        for state, colour in STATUS_COLOURS.items()
    ]
    rows = f"<TR>{''.join(cells)}</TR>" if rankdir in ("TB", "BT") else "".join(
        f"<TR>{cell}</TR>" for cell in cells
    )
    table = f'<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="2" CELLPADDING="3">{rows}</TABLE>'
    return [
        "  subgraph cluster_legend {",
        '    graph [label=<<B>status</B>>, style="rounded", color="#999999", fontsize=10];',
        f'    legend [shape=plain, style="", fontsize=9, label=<{table}>];',
        "  }",
    ]


def to_dot(view: GraphView, *, status: bool = True, rankdir: str = "LR") -> str:
    """Write a graph view as Graphviz DOT source; no ``dot`` binary is needed.

    Parameters
    ----------
    view : GraphView
        The graph to draw.
    status : bool, default True
        Fill nodes with their :data:`STATUS_COLOURS`, add a status line to each
        node that has a status, and add a legend cluster when any node has one.
    rankdir : {"LR", "TB", "RL", "BT"}, default "LR"
        Layout direction.

    Returns
    -------
    str
        DOT source with one statement per line; byte-identical for equal views.

    Raises
    ------
    ValueError
        If ``rankdir`` is not one of :data:`RANKDIRS`.

    Examples
    --------
    >>> view = GraphView("demo", (NodeView("prep", 3, ()), NodeView("train", 5, ("boost",))),
    ...                  (EdgeView("prep", "train", artifacts=("data.csv",)),))
    >>> print(to_dot(view, status=False).splitlines()[-2])
      n0 -> n1 [label=<data.csv>];
    """
    check_rankdir(rankdir)
    ids = node_ids(view)
    lines = ["digraph crystallize {", *_dot_header(view, rankdir)]
    for node in view.nodes:
        fill = ""
        if status and node.status is not None:
            fill = f', fillcolor="{STATUS_COLOURS[node.status.state]}"'
        lines.append(f"  {ids[node.name]} [label={dot_label(node_lines(node, status))}{fill}];")
    for edge in view.edges:
        label = edge_lines(edge)
        attrs = f" [label={dot_label(label)}]" if label else ""
        lines.append(f"  {ids[edge.upstream]} -> {ids[edge.downstream]}{attrs};")
    if status and any(node.status is not None for node in view.nodes):
        lines.extend(_dot_legend(rankdir))
    lines.append("}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- sub-graphs


def _neighbourhood(view: GraphView, focus: str, hops: int) -> set[str]:
    """Names within ``hops`` edges of ``focus``, in either direction (iterative BFS)."""
    around: dict[str, list[str]] = {node.name: [] for node in view.nodes}
    for edge in view.edges:
        around[edge.upstream].append(edge.downstream)
        around[edge.downstream].append(edge.upstream)
    keep, queue = {focus}, deque([(focus, 0)])
    while queue:
        name, distance = queue.popleft()
        if distance == hops:
            continue
        for other in around[name]:
            if other not in keep:
                keep.add(other)
                queue.append((other, distance + 1))
    return keep


def _require_known(view: GraphView, names: Iterable[str]) -> None:
    """Raise ValueError naming the first name that is not a node of ``view``."""
    known = {node.name for node in view.nodes}
    for name in names:
        if name not in known:
            raise ValueError(f"no experiment named {name!r} in the graph")


def subview(
    view: GraphView,
    *,
    focus: str | None = None,
    hops: int = 1,
    only: Sequence[str] | None = None,
) -> GraphView:
    """Cut a smaller graph out of ``view``, for pictures of big graphs.

    Parameters
    ----------
    view : GraphView
        The whole graph.
    focus : str, optional
        Keep the nodes within ``hops`` edges of this node, upstream or downstream.
    hops : int, default 1
        Radius around ``focus``; 0 keeps ``focus`` alone.
    only : sequence of str, optional
        Keep exactly these nodes (instead of ``focus``).

    Returns
    -------
    GraphView
        The kept nodes in their original order and the edges between them;
        ``view`` itself when neither ``focus`` nor ``only`` is given.

    Raises
    ------
    ValueError
        If a name is not a node of ``view``, ``hops`` is negative, or both
        ``focus`` and ``only`` are given.

    Examples
    --------
    >>> chain = GraphView(None, tuple(NodeView(n, 1, ()) for n in "abcd"),
    ...                   (EdgeView("a", "b"), EdgeView("b", "c"), EdgeView("c", "d")))
    >>> [node.name for node in subview(chain, focus="b", hops=1).nodes]
    ['a', 'b', 'c']
    """
    if focus is not None and only is not None:
        raise ValueError("give either focus= or only=, not both")
    if isinstance(hops, bool) or not isinstance(hops, int) or hops < 0:
        raise ValueError(f"hops must be a non-negative integer, not {hops!r}")
    if focus is None and only is None:
        return view
    if focus is not None:
        _require_known(view, [focus])
        keep = _neighbourhood(view, focus, hops)
    else:
        chosen = as_names(only, "only")  # type: ignore[arg-type]
        _require_known(view, chosen)
        keep = set(chosen)
    nodes = tuple(node for node in view.nodes if node.name in keep)
    edges = tuple(e for e in view.edges if e.upstream in keep and e.downstream in keep)
    return GraphView(view.name, nodes, edges)


# --------------------------------------------------------------------------- files


def _run_dot(source: str, fmt: str) -> bytes:
    """Run the ``dot`` binary on ``source``; RenderError when it is missing or fails.

    Warnings dot prints on success (e.g. that a bitmap was scaled down to fit)
    are passed on to the module logger.
    """
    program = shutil.which("dot")
    if program is None:
        raise RenderError(_INSTALL_HINT)
    try:
        done = subprocess.run(
            [program, f"-T{fmt}"], input=source.encode("utf-8"), capture_output=True, check=False
        )
    except FileNotFoundError as exc:
        raise RenderError(_INSTALL_HINT) from exc
    stderr = done.stderr.decode("utf-8", "replace").strip()
    if done.returncode != 0:
        raise RenderError(f"dot failed (exit code {done.returncode}): {stderr}")
    if stderr:
        logger.warning("dot: %s", stderr)
    return done.stdout


def _resolve_format(target: Path, format: str | None) -> str:
    """The output format: ``format`` if given, else the file suffix."""
    fmt = (format if format is not None else target.suffix).lower().lstrip(".")
    if fmt not in SUPPORTED_FORMATS:
        what = f"format {format!r}" if format is not None else f"file suffix of {str(target)!r}"
        raise ValueError(
            f"cannot render to {what}; supported formats: "
            + ", ".join(f".{name}" for name in SUPPORTED_FORMATS)
        )
    return fmt


def render(
    view: GraphView,
    path: str | os.PathLike[str],
    *,
    format: str | None = None,  # noqa: A002 - the name users know from graphviz
    status: bool = True,
    rankdir: str = "LR",
) -> Path:
    """Draw a graph view into a file.

    ``.dot``/``.gv`` (DOT source) and ``.mmd`` (Mermaid) are written directly;
    ``.svg``, ``.png`` and ``.pdf`` run the Graphviz ``dot`` binary. The file is
    written to a temporary name in the same folder and moved into place, so a
    failed render never leaves a partial file. Missing folders are created.

    Parameters
    ----------
    view : GraphView
        The graph to draw (use :func:`subview` to draw part of it).
    path : str or os.PathLike
        Output file.
    format : str, optional
        One of :data:`SUPPORTED_FORMATS`; taken from the suffix of ``path`` when omitted.
    status : bool, default True
        Show staleness colours, status lines and the legend.
    rankdir : {"LR", "TB", "RL", "BT"}, default "LR"
        Layout direction.

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    ValueError
        If the format is not supported or ``rankdir`` is invalid.
    RenderError
        If the ``dot`` binary is missing (the message says how to install
        Graphviz) or fails, or a PNG of more than :data:`PNG_MAX_NODES` nodes is asked for.

    Examples
    --------
    >>> import tempfile
    >>> view = GraphView(None, (NodeView("a", 1, ()),), ())
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     render(view, Path(folder) / "graph.mmd").read_text().splitlines()[0]
    'flowchart LR'
    """
    target = Path(path)
    fmt = _resolve_format(target, format)
    if fmt in ("dot", "gv"):
        data = to_dot(view, status=status, rankdir=rankdir).encode("utf-8")
    elif fmt == "mmd":
        data = to_mermaid(view, status=status, rankdir=rankdir).encode("utf-8")
    else:
        if fmt == "png" and len(view.nodes) > PNG_MAX_NODES:
            raise RenderError(
                f"a PNG of {len(view.nodes)} nodes is too large (the limit is {PNG_MAX_NODES}); "
                "render to .svg or .pdf instead, or draw part of the graph with focus=/only="
            )
        data = _run_dot(to_dot(view, status=status, rankdir=rankdir), fmt)
    write_bytes(target, data)
    logger.debug("rendered %d nodes to %s", len(view.nodes), target)
    return target


def to_svg(view: GraphView, *, status: bool = True, rankdir: str = "LR") -> str:
    """Draw a graph view as SVG text, e.g. for Jupyter's ``_repr_svg_``.

    Parameters
    ----------
    view : GraphView
        The graph to draw.
    status : bool, default True
        Show staleness colours, status lines and the legend.
    rankdir : {"LR", "TB", "RL", "BT"}, default "LR"
        Layout direction.

    Returns
    -------
    str
        The SVG document.

    Raises
    ------
    RenderError
        If the ``dot`` binary is missing or fails.
    ValueError
        If ``rankdir`` is invalid.

    Examples
    --------
    >>> view = GraphView(None, (NodeView("a", 1, ()),), ())
    >>> "<svg" in to_svg(view)  # doctest: +SKIP
    True
    """
    return _run_dot(to_dot(view, status=status, rankdir=rankdir), "svg").decode("utf-8")
