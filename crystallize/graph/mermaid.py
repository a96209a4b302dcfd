"""Mermaid flowcharts of graph views, for Markdown documents.

Needs nothing but this package: the text is written directly. Re-exported by
:mod:`crystallize.graph.render`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from crystallize.graph.labels import edge_lines, mermaid_label, node_lines, visible
from crystallize.graph.picture import STATUS_COLOURS, GraphView, check_rankdir, node_ids

__all__ = ["to_mermaid"]


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
    >>> from crystallize.graph.picture import EdgeView, NodeView
    >>> view = GraphView(None, (NodeView("a", 1, ()), NodeView('say "b"', 1, ())),
    ...                  (EdgeView("a", 'say "b"', artifacts=("x",)),))
    >>> print(to_mermaid(view))
    flowchart LR
        n0["<b>a</b><br/>1 replicate<br/>conditions: baseline"]
        n1["<b>say #quot;b#quot;</b><br/>1 replicate<br/>conditions: baseline"]
        n0 -->|"x"| n1
    <BLANKLINE>
    """
    check_rankdir(rankdir)
    ids = node_ids(view)
    lines = []
    if view.name is not None:  # front matter; JSON strings are valid YAML
        lines += ["---", f"title: {json.dumps(visible(view.name))}", "---"]
    lines.append(f"flowchart {rankdir}")
    for node in view.nodes:
        lines.append(f"    {ids[node.name]}[{mermaid_label(node_lines(node, status))}]")
    for edge in view.edges:
        label = edge_lines(edge)
        arrow = f"-->|{mermaid_label(label)}|" if label else "-->"
        lines.append(f"    {ids[edge.upstream]} {arrow} {ids[edge.downstream]}")
    if status:
        lines.extend(_mermaid_classes(view, ids))
    return "\n".join(lines) + "\n"
