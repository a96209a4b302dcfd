"""Graph pictures (spec section 5): DOT, Mermaid, and SVG/PNG/PDF files.

The graph model describes itself to this module through three frozen value
objects, :class:`NodeView`, :class:`EdgeView` and :class:`GraphView`. Everything
here is a pure function of such a view, except :func:`render` (which writes one
file) and :func:`to_svg` (which runs the Graphviz ``dot`` binary).

Labels are Graphviz HTML-like labels. Every piece of user text goes through one
escaping function, so any experiment, treatment or artifact name renders as
written: quotes, backslashes, colons, ``<lambda>``, ``&``, braces, pipes, DOT
keywords and unicode. Characters no label can hold (newlines, other control
characters, lone surrogates) are shown as their Python escapes (``\\n``).
Node ids are generated (``n0``, ``n1``, ...), never taken from names.

SVG, PNG and PDF come from the Graphviz ``dot`` program, run as a subprocess
(the ``graphviz`` Python package is not needed here); DOT and Mermaid text need
nothing but this module.
"""

from __future__ import annotations

import html
import json
import logging
import os
import secrets
import shutil
import subprocess
import unicodedata
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from crystallize.errors import RenderError
from crystallize.graph.status import NodeState, NodeStatus

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

#: Fill colour of a node per state; also drawn in the legend, in this order.
STATUS_COLOURS: Mapping[NodeState, str] = MappingProxyType(
    {
        NodeState.FRESH: "#b5e3a0",  # green
        NodeState.STALE: "#f6a552",  # orange
        NodeState.UPSTREAM_STALE: "#f8e37a",  # yellow
        NodeState.NEVER_RUN: "#d3d3d3",  # grey
        NodeState.INCOMPLETE: "#a8d4f5",  # light blue
        NodeState.FAILED: "#ee6a6a",  # red
        NodeState.BLOCKED: "#c8a5e3",  # purple
    }
)

#: Layout directions accepted by :func:`to_dot`, :func:`to_mermaid` and :func:`render`.
RANKDIRS: tuple[str, ...] = ("LR", "TB", "RL", "BT")

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
_TEXT_WIDTH = 48  # characters per wrapped label line (conditions, artifacts)
_STATUS_WIDTH = 56  # characters of the "stale: ..." status line
_STYLES = ("plain", "bold", "italic", "struck")
_HTML_TAGS = dict(zip(_STYLES, [("", ""), ("<B>", "</B>"), ("<I>", "</I>"), ("<S>", "</S>")]))
_MERMAID_TAGS = dict(zip(_STYLES, [("", ""), ("<b>", "</b>"), ("<i>", "</i>"), ("<s>", "</s>")]))
# Mermaid turns "#name;" and "#123;" into HTML entities; these characters would
# otherwise end the quoted label, open HTML, start a comment or split a statement.
_MERMAID_ENTITIES = {
    ord(ch): f"#{code};"
    for ch, code in (
        ("#", "35"), ('"', "quot"), ("&", "amp"), ("<", "lt"), (">", "gt"),
        ("|", "124"), ("\\", "92"), ("`", "96"), (";", "59"), ("%", "37"),
    )
}

# A label line is a sequence of (text, style) segments; style is a key of _HTML_TAGS.
_Line = tuple[tuple[str, str], ...]


def _names(value: Iterable[str], field: str) -> tuple[str, ...]:
    """Copy a sequence of names into a tuple, refusing a bare string."""
    if isinstance(value, str):
        raise TypeError(f"{field} must be a sequence of names, not the string {value!r}")
    return tuple(value)


@dataclass(frozen=True, slots=True)
class NodeView:
    """What the picture shows of one experiment.

    Attributes
    ----------
    name : str
        Experiment name, shown in bold.
    replicates : int
        Replicate count.
    conditions : tuple of str
        Own treatments, in order; the baseline is implicit and always shown first.
    inherited : tuple of str
        Treatments inherited from upstream nodes.
    disabled : tuple of str
        Treatments toggled off; shown struck through and marked ``(off)``.
    status : NodeStatus or None
        Staleness of the node; ``None`` renders it without status.
    """

    name: str
    replicates: int
    conditions: tuple[str, ...]
    inherited: tuple[str, ...] = ()
    disabled: tuple[str, ...] = ()
    status: NodeStatus | None = None

    def __post_init__(self) -> None:
        for field in ("conditions", "inherited", "disabled"):
            object.__setattr__(self, field, _names(getattr(self, field), field))


@dataclass(frozen=True, slots=True)
class EdgeView:
    """What the picture shows of one edge ``upstream -> downstream``.

    Attributes
    ----------
    upstream, downstream : str
        Experiment names at both ends.
    artifacts : tuple of str
        Names of the artifacts the edge carries.
    baseline_fallback : tuple of str
        Downstream treatments that read the upstream baseline because the
        upstream node lacks them; shown as ``baseline → <treatment>``.
    """

    upstream: str
    downstream: str
    artifacts: tuple[str, ...] = ()
    baseline_fallback: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for field in ("artifacts", "baseline_fallback"):
            object.__setattr__(self, field, _names(getattr(self, field), field))


@dataclass(frozen=True, slots=True)
class GraphView:
    """A whole graph as the renderer sees it.

    Attributes
    ----------
    name : str or None
        Graph title, if any.
    nodes : tuple of NodeView
        Nodes in topological order; names are unique.
    edges : tuple of EdgeView
        Edges between those nodes.

    Raises
    ------
    ValueError
        If two nodes share a name or an edge names an unknown node.
    """

    name: str | None
    nodes: tuple[NodeView, ...]
    edges: tuple[EdgeView, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "edges", tuple(self.edges))
        seen: set[str] = set()
        for node in self.nodes:
            if node.name in seen:
                raise ValueError(f"two nodes of the graph view are named {node.name!r}")
            seen.add(node.name)
        for edge in self.edges:
            for end in (edge.upstream, edge.downstream):
                if end not in seen:
                    raise ValueError(
                        f"edge {edge.upstream!r} -> {edge.downstream!r} names {end!r}, "
                        "which is not a node of the graph view"
                    )


# --------------------------------------------------------------------------- text


def _visible(text: str) -> str:
    """Show characters that no label can hold (control, surrogate, ...) as Python escapes."""
    if text.isprintable():
        return text
    return "".join(ascii(ch)[1:-1] if _unlabelable(ch) else ch for ch in text)


def _unlabelable(ch: str) -> bool:
    """True for characters a one-line label cannot carry.

    Control characters, lone surrogates and U+FFFE/U+FFFF are not valid XML (so
    not valid in Graphviz HTML-like labels or SVG); line and paragraph
    separators (U+2028, U+2029) end a line for JavaScript and so for Mermaid.
    """
    return unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") or ch in "\ufffe\uffff"


def _html(text: str) -> str:
    """Escape text for a Graphviz HTML-like label.

    Entities cover ``& < > " '``; backslashes are doubled because Graphviz
    expands ``\\N``, ``\\G``, ``\\E`` and ``\\\\`` inside HTML labels too.
    """
    return html.escape(_visible(text), quote=True).replace("\\", "\\\\")


def _mermaid(text: str) -> str:
    """Escape text for a quoted Mermaid label with ``#name;``/``#code;`` entities."""
    return _visible(text).translate(_MERMAID_ENTITIES)


def _shorten(text: str, width: int) -> str:
    """Cut ``text`` to ``width`` characters, ending in an ellipsis when cut."""
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def _wrap(prefix: str, items: Sequence[tuple[str, str]]) -> list[_Line]:
    """Lay out ``(text, style)`` items, comma-separated, on lines of about ``_TEXT_WIDTH``."""
    lines: list[_Line] = []
    line: list[tuple[str, str]] = [(prefix, "plain")] if prefix else []
    width, count = len(prefix), 0
    for text, style in items:
        if count and width + 2 + len(text) > _TEXT_WIDTH:
            lines.append((*line, (",", "plain")))
            line, width, count = [], 0, 0
        if count:
            line.append((", ", "plain"))
            width += 2
        line.append((text, style))
        width, count = width + len(text), count + 1
    if count:
        lines.append(tuple(line))
    return lines


# --------------------------------------------------------------------------- labels


def _condition_items(names: Iterable[str], disabled: frozenset[str]) -> list[tuple[str, str]]:
    """Label items for condition names, marking the disabled ones."""
    return [(f"{n} (off)", "struck") if n in disabled else (n, "plain") for n in names]


def _status_text(status: NodeStatus) -> str:
    """The short status line: the state, plus the first reason when stale."""
    text = status.state.value
    if status.state is NodeState.STALE and status.reasons:
        first = status.reasons[0]
        text = f"{text}: {first.kind.value}" + (f" ({first.detail})" if first.detail else "")
    return _shorten(text, _STATUS_WIDTH)


def _node_lines(node: NodeView, status: bool) -> list[_Line]:
    """Label lines of one node: name, replicates, conditions, status."""
    off = frozenset(node.disabled)
    own = ["baseline", *(c for c in node.conditions if c != "baseline")]
    stray = [d for d in node.disabled if d not in own and d not in node.inherited]
    plural = "" if node.replicates == 1 else "s"
    lines: list[_Line] = [
        ((node.name, "bold"),),
        ((f"{node.replicates} replicate{plural}", "plain"),),
    ]
    lines += _wrap("conditions: ", _condition_items([*own, *stray], off - {"baseline"}))
    if node.inherited:
        lines += _wrap("inherited: ", _condition_items(node.inherited, off))
    if status and node.status is not None:
        lines.append(((_status_text(node.status), "italic"),))
    return lines


def _edge_lines(edge: EdgeView) -> list[_Line]:
    """Label lines of one edge: artifacts carried, then baseline fallbacks."""
    lines = _wrap("", [(name, "plain") for name in edge.artifacts])
    lines += [((f"baseline → {name}", "italic"),) for name in edge.baseline_fallback]
    return lines


def _tagged(tags: tuple[str, str], escaped: str) -> str:
    """Wrap already escaped text in an opening and closing tag."""
    return tags[0] + escaped + tags[1]


def _dot_label(lines: Sequence[_Line]) -> str:
    """Format label lines as a Graphviz HTML-like label, ``<...>``."""
    parts = [
        "".join(_tagged(_HTML_TAGS[style], _html(text)) for text, style in line if text)
        for line in lines
    ]
    return "<" + "<BR/>".join(parts) + ">"


def _mermaid_label(lines: Sequence[_Line]) -> str:
    """Format label lines as a quoted Mermaid label, ``"..."``."""
    parts = [
        "".join(_tagged(_MERMAID_TAGS[style], _mermaid(text)) for text, style in line if text)
        for line in lines
    ]
    return '"' + "<br/>".join(parts) + '"'


# --------------------------------------------------------------------------- DOT


def _check_rankdir(rankdir: str) -> None:
    """Raise ValueError unless ``rankdir`` is one of :data:`RANKDIRS`."""
    if rankdir not in RANKDIRS:
        raise ValueError(f"rankdir must be one of {', '.join(RANKDIRS)}, not {rankdir!r}")


def _node_ids(view: GraphView) -> dict[str, str]:
    """Generated ids ``n0, n1, ...`` keyed by node name, in view order."""
    return {node.name: f"n{index}" for index, node in enumerate(view.nodes)}


def _dot_header(view: GraphView, rankdir: str) -> list[str]:
    """Graph, node and edge default statements."""
    title = "" if view.name is None else f", label={_dot_label([((view.name, 'bold'),)])}"
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
        f'<TD BGCOLOR="{colour}">{_html(state.value)}</TD>'
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
    _check_rankdir(rankdir)
    ids = _node_ids(view)
    lines = ["digraph crystallize {", *_dot_header(view, rankdir)]
    for node in view.nodes:
        fill = ""
        if status and node.status is not None:
            fill = f', fillcolor="{STATUS_COLOURS[node.status.state]}"'
        lines.append(f"  {ids[node.name]} [label={_dot_label(_node_lines(node, status))}{fill}];")
    for edge in view.edges:
        label = _edge_lines(edge)
        attrs = f" [label={_dot_label(label)}]" if label else ""
        lines.append(f"  {ids[edge.upstream]} -> {ids[edge.downstream]}{attrs};")
    if status and any(node.status is not None for node in view.nodes):
        lines.extend(_dot_legend(rankdir))
    lines.append("}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- Mermaid


def _mermaid_classes(view: GraphView, ids: Mapping[str, str]) -> list[str]:
    """``classDef``/``class`` statements colouring nodes by state."""
    lines = []
    for state, colour in STATUS_COLOURS.items():
        members = [
            ids[node.name]
            for node in view.nodes
            if node.status is not None and node.status.state is state
        ]
        if members:
            css = state.name.lower()
            lines.append(f"    classDef {css} fill:{colour},stroke:#555555,color:#000000")
            lines.append(f"    class {','.join(members)} {css}")
    return lines


def to_mermaid(view: GraphView, *, status: bool = True, rankdir: str = "LR") -> str:
    """Write a graph view as a Mermaid flowchart, for Markdown documents.

    Parameters
    ----------
    view : GraphView
        The graph to draw.
    status : bool, default True
        Colour nodes by state (``classDef``) and add the status line.
    rankdir : {"LR", "TB", "RL", "BT"}, default "LR"
        Flowchart direction.

    Returns
    -------
    str
        ``flowchart <rankdir>`` source with generated ids ``n0, n1, ...`` and labels
        escaped with Mermaid entities (``#quot;``, ``#lt;``, ...).

    Raises
    ------
    ValueError
        If ``rankdir`` is not one of :data:`RANKDIRS`.

    Examples
    --------
    >>> view = GraphView(None, (NodeView("a", 1, ()), NodeView('say "b"', 1, ())),
    ...                  (EdgeView("a", 'say "b"', artifacts=("x",)),))
    >>> print(to_mermaid(view))
    flowchart LR
        n0["<b>a</b><br/>1 replicate<br/>conditions: baseline"]
        n1["<b>say #quot;b#quot;</b><br/>1 replicate<br/>conditions: baseline"]
        n0 -->|"x"| n1
    <BLANKLINE>
    """
    _check_rankdir(rankdir)
    ids = _node_ids(view)
    lines = []
    if view.name is not None:  # front matter; JSON strings are valid YAML
        lines += ["---", f"title: {json.dumps(_visible(view.name))}", "---"]
    lines.append(f"flowchart {rankdir}")
    for node in view.nodes:
        lines.append(f"    {ids[node.name]}[{_mermaid_label(_node_lines(node, status))}]")
    for edge in view.edges:
        label = _edge_lines(edge)
        arrow = f"-->|{_mermaid_label(label)}|" if label else "-->"
        lines.append(f"    {ids[edge.upstream]} {arrow} {ids[edge.downstream]}")
    if status:
        lines.extend(_mermaid_classes(view, ids))
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
        chosen = _names(only, "only")  # type: ignore[arg-type]
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


def _write_atomic(target: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``target``, then move it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(temporary, "xb") as handle:
            handle.write(data)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


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
    _write_atomic(target, data)
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
