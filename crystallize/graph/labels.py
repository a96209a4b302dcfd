"""Node and edge labels of graph pictures, and the escaping of user text in them.

A label is a list of lines, each a tuple of ``(text, style)`` segments (style:
plain, bold, italic or struck), built once from a view by :func:`node_lines`
and :func:`edge_lines` and then written as a Graphviz HTML-like label
(:func:`dot_label`) or a quoted Mermaid label (:func:`mermaid_label`).

Every piece of user text goes through one escaping function per format, so any
experiment, treatment or artifact name renders as written: quotes,
backslashes, colons, ``<lambda>``, ``&``, braces, pipes, DOT keywords and
unicode. Characters no label can hold (newlines, other control characters,
lone surrogates) are shown as their Python escapes (``\\n``).
"""

from __future__ import annotations

import html
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence

from crystallize.graph.picture import EdgeView, NodeView
from crystallize.graph.status import NodeState, NodeStatus

__all__ = [
    "Line",
    "dot_label",
    "edge_lines",
    "escape_html",
    "escape_mermaid",
    "mermaid_label",
    "node_lines",
    "visible",
]

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
Line = tuple[tuple[str, str], ...]


# --------------------------------------------------------------------------- text


def visible(text: str) -> str:
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


def escape_html(text: str) -> str:
    """Escape text for a Graphviz HTML-like label.

    Entities cover ``& < > " '``; backslashes are doubled because Graphviz
    expands ``\\N``, ``\\G``, ``\\E`` and ``\\\\`` inside HTML labels too.
    """
    return html.escape(visible(text), quote=True).replace("\\", "\\\\")


def escape_mermaid(text: str) -> str:
    """Escape text for a quoted Mermaid label with ``#name;``/``#code;`` entities."""
    return visible(text).translate(_MERMAID_ENTITIES)


def _shorten(text: str, width: int) -> str:
    """Cut ``text`` to ``width`` characters, ending in an ellipsis when cut."""
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def _wrap(prefix: str, items: Sequence[tuple[str, str]]) -> list[Line]:
    """Lay out ``(text, style)`` items, comma-separated, on lines of about ``_TEXT_WIDTH``."""
    lines: list[Line] = []
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


# --------------------------------------------------------------------------- content


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


def node_lines(node: NodeView, status: bool) -> list[Line]:
    """Label lines of one node: name, replicates, conditions, status."""
    off = frozenset(node.disabled)
    own = ["baseline", *(c for c in node.conditions if c != "baseline")]
    stray = [d for d in node.disabled if d not in own and d not in node.inherited]
    plural = "" if node.replicates == 1 else "s"
    lines: list[Line] = [
        ((node.name, "bold"),),
        ((f"{node.replicates} replicate{plural}", "plain"),),
    ]
    lines += _wrap("conditions: ", _condition_items([*own, *stray], off - {"baseline"}))
    if node.inherited:
        lines += _wrap("inherited: ", _condition_items(node.inherited, off))
    if status and node.status is not None:
        lines.append(((_status_text(node.status), "italic"),))
    return lines


def edge_lines(edge: EdgeView) -> list[Line]:
    """Label lines of one edge: artifacts carried, then baseline fallbacks."""
    lines = _wrap("", [(name, "plain") for name in edge.artifacts])
    lines += [((f"baseline → {name}", "italic"),) for name in edge.baseline_fallback]
    return lines


# --------------------------------------------------------------------------- formats


def _joined(lines: Sequence[Line], tags: Mapping[str, tuple[str, str]],
            escape: Callable[[str], str], separator: str) -> str:
    """Escape and tag every non-empty segment, then join the lines with ``separator``."""
    return separator.join(
        "".join(tags[style][0] + escape(text) + tags[style][1] for text, style in line if text)
        for line in lines
    )


def dot_label(lines: Sequence[Line]) -> str:
    """Format label lines as a Graphviz HTML-like label, ``<...>``."""
    return "<" + _joined(lines, _HTML_TAGS, escape_html, "<BR/>") + ">"


def mermaid_label(lines: Sequence[Line]) -> str:
    """Format label lines as a quoted Mermaid label, ``"..."``."""
    return '"' + _joined(lines, _MERMAID_TAGS, escape_mermaid, "<br/>") + '"'
