"""Tests for crystallize.graph.render: DOT, Mermaid, sub-graphs and files."""

from __future__ import annotations

import html
import os
import re
import shutil
import stat
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from crystallize.errors import RenderError
from crystallize.graph import render as render_module
from crystallize.graph.render import (
    PNG_MAX_NODES,
    RANKDIRS,
    STATUS_COLOURS,
    SUPPORTED_FORMATS,
    EdgeView,
    GraphView,
    NodeView,
    render,
    subview,
    to_dot,
    to_mermaid,
    to_svg,
)
from crystallize.graph.status import NodeState, NodeStatus, StaleKind, StaleReason

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' not installed")

HOSTILE_NAMES = (
    'say "hi"',
    "back\\slash",
    "trail\\",
    "\\N \\G \\E",
    "a:b:c",
    "<lambda>",
    "<b>bold</b>",
    "A & B",
    "&amp;",
    "{x}|y",
    "multi\nline",
    "tab\there",
    "line\u2028separator",
    "ünïcødé ✓ 数据 😀",
    "node",
    "graph",
    "subgraph",
    "edge",
    "digraph",
    "strict",
    "it's; [x] -> y",
    "%%{init}%%",
    "#quot;",
    "end",
)


def status(state: NodeState, *reasons: StaleReason) -> NodeStatus:
    """A NodeStatus for experiment ``x`` in ``state``."""
    return NodeStatus("x", state, reasons)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def chain_view() -> GraphView:
    """prep -> train -> report, each with a status."""
    reason = StaleReason(StaleKind.CODE_CHANGED, "step 'fit' changed")
    return GraphView(
        "pipeline",
        (
            NodeView("prep", 1, (), status=status(NodeState.FRESH)),
            NodeView("train", 5, ("boost", "dropout"), status=status(NodeState.STALE, reason)),
            NodeView(
                "report", 3, (), inherited=("boost",), status=status(NodeState.UPSTREAM_STALE)
            ),
        ),
        (
            EdgeView("prep", "train", artifacts=("data.csv",)),
            EdgeView("train", "report", artifacts=("model.pkl", "metrics.json")),
        ),
    )


@pytest.fixture
def diamond_view() -> GraphView:
    """src -> (left, right) -> sink; sink has its own treatment ``wide`` read from baselines."""
    return GraphView(
        None,
        (
            NodeView("src", 2, ("a",)),
            NodeView("left", 2, (), inherited=("a",)),
            NodeView("right", 2, ("b",), inherited=("a",), disabled=("b",)),
            NodeView("sink", 2, ("wide",), inherited=("a",)),
        ),
        (
            EdgeView("src", "left", artifacts=("x",)),
            EdgeView("src", "right", artifacts=("x",)),
            EdgeView("left", "sink", artifacts=("l",), baseline_fallback=("wide",)),
            EdgeView("right", "sink", artifacts=("r",), baseline_fallback=("wide",)),
        ),
    )


@pytest.fixture
def fan_out_view() -> GraphView:
    """One root feeding five leaves over edges that carry nothing."""
    leaves = tuple(NodeView(f"leaf{i}", 1, ()) for i in range(5))
    return GraphView(
        "fan", (NodeView("root", 1, ()), *leaves), tuple(EdgeView("root", n.name) for n in leaves)
    )


@pytest.fixture
def hostile_view() -> GraphView:
    """A chain of hostile names; every name is also a treatment and an artifact."""
    nodes = tuple(
        NodeView(name, 2, (name,), inherited=(name + "!",), status=status(NodeState.FAILED))
        for name in HOSTILE_NAMES
    )
    edges = tuple(
        EdgeView(a, b, artifacts=(a,), baseline_fallback=(b,))
        for a, b in zip(HOSTILE_NAMES, HOSTILE_NAMES[1:])
    )
    return GraphView('title "with" <hostile> \\', nodes, edges)


def chain_of(count: int) -> GraphView:
    """A plain chain c0 -> c1 -> ... of ``count`` nodes."""
    names = [f"c{i}" for i in range(count)]
    return GraphView(
        None,
        tuple(NodeView(name, 1, ()) for name in names),
        tuple(EdgeView(a, b, artifacts=("out",)) for a, b in zip(names, names[1:])),
    )


# --------------------------------------------------------------------------- DOT parsing


def visible(name: str) -> str:
    """How the renderer shows a name: control characters and line breaks as Python escapes."""
    return "".join(ascii(ch)[1:-1] if not ch.isprintable() and ch != " " else ch for ch in name)


def test_visible_helper() -> None:
    assert visible("a\nb\u2028c\td ü") == "a\\nb\\u2028c\\td ü"


def split_attrs(text: str) -> dict[str, str]:
    """Parse ``key=value, key=<html>, key="quoted"`` into a dict (values unquoted)."""
    attrs, pos = {}, 0
    while pos < len(text):
        key, _, rest = text[pos:].partition("=")
        pos += len(key) + 1
        if rest.startswith("<"):
            depth, end = 0, 0
            for end, ch in enumerate(rest):
                depth += {"<": 1, ">": -1}.get(ch, 0)
                if depth == 0:
                    break
            value, used = rest[: end + 1], end + 1
        elif rest.startswith('"'):
            used = rest.index('"', 1) + 1
            value = rest[1 : used - 1]
        else:
            value = rest.split(",", 1)[0]
            used = len(value)
        attrs[key.strip()] = value
        pos += used + (2 if text[pos + used : pos + used + 2] == ", " else 0)
    return attrs


def label_lines(label: str) -> list[str]:
    """The displayed text lines of an HTML-like label ``<...>``."""
    assert label.startswith("<") and label.endswith(">"), label
    lines = label[1:-1].split("<BR/>")
    return [html.unescape(re.sub(r"</?[BIS]>", "", line)).replace("\\\\", "\\") for line in lines]


def struck(label: str) -> list[str]:
    """Texts drawn struck through in an HTML-like label."""
    found = re.findall(r"<S>(.*?)</S>", label)
    return [html.unescape(text).replace("\\\\", "\\") for text in found]


def parse_dot(text: str) -> tuple[dict[str, dict[str, str]], list[tuple[str, str, dict]]]:
    """Node statements (``nK`` ids) and edge statements of DOT written one per line."""
    nodes, edges = {}, []
    for line in text.splitlines():
        edge = re.fullmatch(r"\s*(n\d+) -> (n\d+)(?: \[(.*)\])?;", line)
        node = re.fullmatch(r"\s*(n\d+) \[(.*)\];", line)
        if edge:
            edges.append((edge[1], edge[2], split_attrs(edge[3] or "")))
        elif node:
            nodes[node[1]] = split_attrs(node[2])
    return nodes, edges


def legend(text: str) -> dict[str, str]:
    """Legend swatches (table cells of the ``legend`` node): state text -> colour."""
    found = re.findall(r"^\s*legend \[(.*)\];$", text, flags=re.M)
    if not found:
        return {}
    cells = re.findall(r'<TD BGCOLOR="([^"]+)">([^<]*)</TD>', split_attrs(found[0])["label"])
    return {html.unescape(text): colour for colour, text in cells}


def run_dot(source: str, fmt: str = "svg") -> bytes:
    """Run the real dot binary and insist it reports nothing on stderr."""
    done = subprocess.run(["dot", f"-T{fmt}"], input=source.encode(), capture_output=True)
    assert done.returncode == 0 and done.stderr == b"", done.stderr.decode()
    return done.stdout


def svg_texts(data: bytes) -> list[str]:
    """Every <text> content of an SVG document."""
    root = ET.fromstring(data)
    return [el.text or "" for el in root.iter("{http://www.w3.org/2000/svg}text")]


# --------------------------------------------------------------------------- to_dot


class TestToDot:
    def test_chain_nodes_labels_and_colours(self, chain_view: GraphView) -> None:
        nodes, edges = parse_dot(to_dot(chain_view))
        assert sorted(nodes) == ["n0", "n1", "n2"]
        assert label_lines(nodes["n0"]["label"]) == [
            "prep", "1 replicate", "conditions: baseline", "fresh",
        ]  # fmt: skip
        assert label_lines(nodes["n1"]["label"]) == [
            "train",
            "5 replicates",
            "conditions: baseline, boost, dropout",
            "stale: code changed (step 'fit' changed)",
        ]
        assert label_lines(nodes["n2"]["label"]) == [
            "report", "3 replicates", "conditions: baseline", "inherited: boost", "upstream stale",
        ]  # fmt: skip
        assert [nodes[i]["fillcolor"] for i in ("n0", "n1", "n2")] == [
            STATUS_COLOURS[NodeState.FRESH],
            STATUS_COLOURS[NodeState.STALE],
            STATUS_COLOURS[NodeState.UPSTREAM_STALE],
        ]
        assert [(u, v, label_lines(a["label"])) for u, v, a in edges] == [
            ("n0", "n1", ["data.csv"]),
            ("n1", "n2", ["model.pkl, metrics.json"]),
        ]

    def test_chain_title_and_rankdir(self, chain_view: GraphView) -> None:
        text = to_dot(chain_view, rankdir="TB")
        assert text.startswith("digraph crystallize {\n") and text.endswith("}\n")
        graph_line = next(line for line in text.splitlines() if line.strip().startswith("graph ["))
        attrs = split_attrs(graph_line.strip()[len("graph [") : -2])
        assert attrs["rankdir"] == "TB"
        assert label_lines(attrs["label"]) == ["pipeline"]

    def test_diamond_inherited_disabled_and_fallback(self, diamond_view: GraphView) -> None:
        nodes, edges = parse_dot(to_dot(diamond_view))
        assert len(nodes) == 4 and len(edges) == 4
        assert label_lines(nodes["n2"]["label"])[2:] == [
            "conditions: baseline, b (off)", "inherited: a",
        ]  # fmt: skip
        assert struck(nodes["n2"]["label"]) == ["b (off)"]
        assert struck(nodes["n1"]["label"]) == []
        pairs = [(u, v) for u, v, _ in edges]
        assert pairs == [("n0", "n1"), ("n0", "n2"), ("n1", "n3"), ("n2", "n3")]
        sink_edges = [label_lines(a["label"]) for u, v, a in edges if v == "n3"]
        assert sink_edges == [["l", "baseline → wide"], ["r", "baseline → wide"]]
        assert all("fillcolor" not in attrs for attrs in nodes.values())  # no status given
        assert legend(to_dot(diamond_view)) == {}

    def test_fan_out_edges_without_labels(self, fan_out_view: GraphView) -> None:
        nodes, edges = parse_dot(to_dot(fan_out_view))
        assert len(nodes) == 6
        assert edges == [("n0", f"n{i}", {}) for i in range(1, 6)]

    def test_disabled_treatment_missing_from_conditions_is_still_shown(self) -> None:
        view = GraphView(None, (NodeView("a", 1, ("kept",), disabled=("gone",)),), ())
        nodes, _ = parse_dot(to_dot(view))
        assert label_lines(nodes["n0"]["label"])[2] == "conditions: baseline, kept, gone (off)"

    def test_long_condition_lists_wrap(self) -> None:
        names = tuple(f"treatment_{i:02d}" for i in range(9))
        nodes, _ = parse_dot(to_dot(GraphView(None, (NodeView("a", 1, names),), ())))
        lines = label_lines(nodes["n0"]["label"])[2:]
        assert len(lines) > 1 and all(len(line) <= 50 for line in lines)
        assert "".join(lines).replace(" ", "") == "conditions:" + ",".join(("baseline", *names))

    def test_hostile_names_round_trip(self, hostile_view: GraphView) -> None:
        text = to_dot(hostile_view)
        nodes, edges = parse_dot(text)
        assert len(nodes) == len(HOSTILE_NAMES) and len(edges) == len(HOSTILE_NAMES) - 1
        for index, name in enumerate(HOSTILE_NAMES):
            lines = label_lines(nodes[f"n{index}"]["label"])
            assert lines[0] == visible(name)
            assert lines[2] == f"conditions: baseline, {visible(name)}"
            assert lines[3] == f"inherited: {visible(name)}!"
            assert lines[4] == "failed"
        for index, (_, _, attrs) in enumerate(edges):
            a, b = HOSTILE_NAMES[index], HOSTILE_NAMES[index + 1]
            assert label_lines(attrs["label"]) == [visible(a), f"baseline → {visible(b)}"]

    @needs_dot
    def test_hostile_names_pass_the_real_dot(self, hostile_view: GraphView) -> None:
        texts = "\n".join(svg_texts(run_dot(to_dot(hostile_view))))
        for name in HOSTILE_NAMES:
            assert visible(name) in texts
        assert 'title "with" <hostile> \\' in texts

    def test_status_lines_for_every_state(self) -> None:
        nodes = tuple(
            NodeView(f"s{i}", 1, (), status=status(state)) for i, state in enumerate(NodeState)
        )
        parsed, _ = parse_dot(to_dot(GraphView(None, nodes, ())))
        assert [label_lines(parsed[f"n{i}"]["label"])[-1] for i in range(len(nodes))] == [
            "fresh", "stale", "upstream stale", "never run", "incomplete", "failed", "blocked",
        ]  # fmt: skip
        assert [parsed[f"n{i}"]["fillcolor"] for i in range(len(nodes))] == list(
            STATUS_COLOURS.values()
        )

    def test_stale_reason_is_shortened(self) -> None:
        reason = StaleReason(StaleKind.PARAMS_CHANGED, "parameter 'learning_rate' " * 10)
        view = GraphView(None, (NodeView("a", 1, (), status=status(NodeState.STALE, reason)),), ())
        line = label_lines(parse_dot(to_dot(view))[0]["n0"]["label"])[-1]
        assert line.startswith("stale: a parameter changed (parameter 'learning_rate'")
        assert line.endswith("…") and len(line) <= 56

    def test_legend_lists_every_state_when_status_is_on(self, chain_view: GraphView) -> None:
        expected = {s.value: c for s, c in STATUS_COLOURS.items()}
        assert legend(to_dot(chain_view)) == expected
        assert list(legend(to_dot(chain_view, rankdir="TB"))) == list(expected)
        assert "  subgraph cluster_legend {" in to_dot(chain_view).splitlines()
        assert to_dot(chain_view).count("<TR>") == 7  # a column for LR
        assert to_dot(chain_view, rankdir="BT").count("<TR>") == 1  # a row for BT

    def test_status_off_drops_colours_lines_and_legend(self, chain_view: GraphView) -> None:
        text = to_dot(chain_view, status=False)
        nodes, _ = parse_dot(text)
        assert all("fillcolor" not in attrs for attrs in nodes.values())
        assert label_lines(nodes["n1"]["label"])[-1] == "conditions: baseline, boost, dropout"
        assert "cluster_legend" not in text

    def test_ids_are_generated_never_names(self, hostile_view: GraphView) -> None:
        statement = re.compile(r"^\s*(\w+)( -> \w+)? \[", flags=re.M)
        ids = {m[1] for m in statement.finditer(to_dot(hostile_view))}
        assert ids <= {"graph", "node", "edge", "legend"} | {f"n{i}" for i in range(99)}

    def test_deterministic(self, hostile_view: GraphView) -> None:
        again = GraphView(hostile_view.name, hostile_view.nodes, hostile_view.edges)
        assert to_dot(hostile_view) == to_dot(hostile_view) == to_dot(again)
        assert to_mermaid(hostile_view) == to_mermaid(again)

    @pytest.mark.parametrize("rankdir", RANKDIRS)
    def test_rankdirs_accepted(self, chain_view: GraphView, rankdir: str) -> None:
        assert f"rankdir={rankdir}," in to_dot(chain_view, rankdir=rankdir)

    @pytest.mark.parametrize("rankdir", ["lr", "XY", ""])
    def test_bad_rankdir(self, chain_view: GraphView, rankdir: str) -> None:
        with pytest.raises(ValueError, match="rankdir must be one of LR, TB, RL, BT"):
            to_dot(chain_view, rankdir=rankdir)

    def test_ten_thousand_node_chain(self) -> None:
        view = chain_of(10_000)
        nodes, edges = parse_dot(to_dot(view))
        assert len(nodes) == 10_000 and len(edges) == 9_999
        assert edges[-1][:2] == ("n9998", "n9999")
        assert to_mermaid(view).count(" -->") == 9_999
        assert [n.name for n in subview(view, focus="c5000", hops=2).nodes] == [
            "c4998", "c4999", "c5000", "c5001", "c5002",
        ]  # fmt: skip
        assert len(subview(view, focus="c0", hops=20_000).nodes) == 10_000


# --------------------------------------------------------------------------- views


class TestViews:
    def test_duplicate_node_names(self) -> None:
        with pytest.raises(ValueError, match="two nodes of the graph view are named 'a'"):
            GraphView(None, (NodeView("a", 1, ()), NodeView("a", 2, ())), ())

    def test_edge_to_unknown_node(self) -> None:
        with pytest.raises(ValueError, match="names 'ghost', which is not a node"):
            GraphView(None, (NodeView("a", 1, ()),), (EdgeView("a", "ghost"),))

    def test_string_instead_of_names(self) -> None:
        with pytest.raises(TypeError, match="conditions must be a sequence of names"):
            NodeView("a", 1, "boost")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="artifacts must be a sequence of names"):
            EdgeView("a", "b", artifacts="model.pkl")  # type: ignore[arg-type]

    def test_lists_become_tuples_and_views_are_frozen(self) -> None:
        node = NodeView("a", 1, ["x"], disabled=["x"])  # type: ignore[arg-type]
        assert node.conditions == ("x",) and node.disabled == ("x",)
        view = GraphView(None, [node], [])  # type: ignore[arg-type]
        assert view.nodes == (node,) and hash(view) == hash(GraphView(None, (node,), ()))
        with pytest.raises(AttributeError):
            node.name = "b"  # type: ignore[misc]

    def test_status_colours_are_complete_and_immutable(self) -> None:
        assert set(STATUS_COLOURS) == set(NodeState)
        assert len(set(STATUS_COLOURS.values())) == len(NodeState)
        with pytest.raises(TypeError, match="does not support item assignment"):
            STATUS_COLOURS[NodeState.FRESH] = "#000000"  # type: ignore[index]


# --------------------------------------------------------------------------- Mermaid


def parse_mermaid(text: str) -> tuple[dict[str, str], list[tuple[str, str, str | None]]]:
    """Node labels by id and edges (with their label) of a generated flowchart."""
    nodes = dict(re.findall(r'^    (n\d+)\["([^"]*)"\]$', text, flags=re.M))
    edges = [
        (a, b, label or None)
        for a, label, b in re.findall(
            r'^    (n\d+) -->(?:\|"([^"]*)"\|)? (n\d+)$', text, flags=re.M
        )
    ]
    return nodes, edges


class TestToMermaid:
    def test_chain(self, chain_view: GraphView) -> None:
        text = to_mermaid(chain_view)
        assert text.splitlines()[:4] == ["---", 'title: "pipeline"', "---", "flowchart LR"]
        nodes, edges = parse_mermaid(text)
        assert nodes["n1"] == (
            "<b>train</b><br/>5 replicates<br/>conditions: baseline, boost, dropout"
            "<br/><i>stale: code changed (step 'fit' changed)</i>"
        )
        assert edges == [("n0", "n1", "data.csv"), ("n1", "n2", "model.pkl, metrics.json")]
        assert f"classDef stale fill:{STATUS_COLOURS[NodeState.STALE]}," in text
        assert "    class n1 stale" in text.splitlines()

    def test_diamond_and_fan_out_counts(self, diamond_view, fan_out_view) -> None:
        nodes, edges = parse_mermaid(to_mermaid(diamond_view))
        assert len(nodes) == 4 and len(edges) == 4
        assert ("n1", "n3", "l<br/><i>baseline → wide</i>") in edges
        assert "<s>b (off)</s>" in nodes["n2"]
        nodes, edges = parse_mermaid(to_mermaid(fan_out_view))
        assert len(nodes) == 6 and edges == [("n0", f"n{i}", None) for i in range(1, 6)]
        assert "classDef" not in to_mermaid(diamond_view)

    def test_hostile_names_are_entities(self, hostile_view: GraphView) -> None:
        text = to_mermaid(hostile_view)
        nodes, edges = parse_mermaid(text)
        assert len(nodes) == len(HOSTILE_NAMES) and len(edges) == len(HOSTILE_NAMES) - 1
        assert nodes["n0"].startswith("<b>say #quot;hi#quot;</b>")
        assert nodes["n5"].startswith("<b>#lt;lambda#gt;</b>")
        assert nodes["n7"].startswith("<b>A #amp; B</b>")
        assert nodes["n9"].startswith("<b>{x}#124;y</b>")
        assert nodes["n2"].startswith("<b>trail#92;</b>")
        for label in [*nodes.values(), *(e[2] for e in edges)]:
            bare = re.sub(r"#\w+;", "", label)  # text outside entities
            assert not set(bare) & set('"|\n\\`;%#'), label
            assert not re.search(r"<(?!/?[bis]>|br/>)", label), label  # only our tags

    def test_status_off_and_direction(self, chain_view: GraphView) -> None:
        text = to_mermaid(chain_view, status=False, rankdir="TB")
        assert "flowchart TB" in text.splitlines() and "classDef" not in text
        assert "<i>" not in parse_mermaid(text)[0]["n1"]
        with pytest.raises(ValueError, match="rankdir must be one of"):
            to_mermaid(chain_view, rankdir="sideways")


# --------------------------------------------------------------------------- subview


class TestSubview:
    def test_focus_hops(self) -> None:
        view = chain_of(6)
        names = lambda v: [n.name for n in v.nodes]  # noqa: E731
        assert names(subview(view, focus="c2", hops=0)) == ["c2"]
        assert names(subview(view, focus="c2")) == ["c1", "c2", "c3"]
        assert names(subview(view, focus="c2", hops=2)) == ["c0", "c1", "c2", "c3", "c4"]
        part = subview(view, focus="c2")
        assert [(e.upstream, e.downstream) for e in part.edges] == [("c1", "c2"), ("c2", "c3")]

    def test_focus_walks_both_directions(self, diamond_view: GraphView) -> None:
        part = subview(diamond_view, focus="left", hops=1)
        assert [n.name for n in part.nodes] == ["src", "left", "sink"]
        assert len(part.edges) == 2
        assert [n.name for n in subview(diamond_view, focus="left", hops=2).nodes] == [
            "src", "left", "right", "sink",
        ]  # fmt: skip

    def test_only(self, diamond_view: GraphView) -> None:
        part = subview(diamond_view, only=["sink", "src", "right"])
        assert [n.name for n in part.nodes] == ["src", "right", "sink"]
        pairs = [(e.upstream, e.downstream) for e in part.edges]
        assert pairs == [("src", "right"), ("right", "sink")]
        assert part.name is diamond_view.name

    def test_neither_returns_the_view(self, diamond_view: GraphView) -> None:
        assert subview(diamond_view) is diamond_view

    def test_unknown_focus(self, diamond_view: GraphView) -> None:
        with pytest.raises(ValueError, match="no experiment named 'nowhere'"):
            subview(diamond_view, focus="nowhere")

    def test_unknown_only(self, diamond_view: GraphView) -> None:
        with pytest.raises(ValueError, match="no experiment named 'ghost'"):
            subview(diamond_view, only=["src", "ghost"])

    def test_bad_arguments(self, diamond_view: GraphView) -> None:
        with pytest.raises(ValueError, match="either focus= or only=, not both"):
            subview(diamond_view, focus="src", only=["src"])
        with pytest.raises(ValueError, match="hops must be a non-negative integer"):
            subview(diamond_view, focus="src", hops=-1)
        with pytest.raises(TypeError, match="only must be a sequence of names"):
            subview(diamond_view, only="src")


# --------------------------------------------------------------------------- render


def leftovers(folder: Path) -> list[str]:
    """Temporary files left behind by a write."""
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


@pytest.fixture
def no_dot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PATH points at an empty folder, so no 'dot' can be found."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def fake_dot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> None:
    """Put a shell script named 'dot' first on PATH."""
    fake = tmp_path / "bin" / "dot"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\n{script}\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(fake.parent) + os.pathsep + os.environ.get("PATH", ""))


class TestRender:
    @needs_dot
    @pytest.mark.parametrize(
        ("suffix", "magic"), [(".png", b"\x89PNG\r\n\x1a\n"), (".pdf", b"%PDF")]
    )
    def test_binary_formats(self, tmp_path, hostile_view, suffix: str, magic: bytes) -> None:
        out = render(hostile_view, tmp_path / f"graph{suffix}")
        assert out == tmp_path / f"graph{suffix}"
        assert out.read_bytes().startswith(magic)
        assert leftovers(tmp_path) == []

    @needs_dot
    def test_svg_holds_every_name(self, tmp_path: Path, hostile_view: GraphView) -> None:
        out = render(hostile_view, tmp_path / "graph.svg")
        texts = svg_texts(out.read_bytes())
        for name in HOSTILE_NAMES:
            assert visible(name) in texts
        assert "failed" in texts and "upstream stale" in texts  # the status line and legend

    @needs_dot
    def test_to_svg(self, chain_view: GraphView) -> None:
        texts = svg_texts(to_svg(chain_view).encode())
        assert {"prep", "train", "report", "data.csv"} <= set(texts)
        assert "fresh" not in svg_texts(to_svg(chain_view, status=False).encode())

    @pytest.mark.parametrize("suffix", [".dot", ".gv"])
    def test_dot_source(self, tmp_path: Path, chain_view: GraphView, suffix: str) -> None:
        out = render(chain_view, tmp_path / "sub" / f"graph{suffix}", rankdir="BT")
        assert out.read_text(encoding="utf-8") == to_dot(chain_view, rankdir="BT")

    def test_mermaid(self, tmp_path: Path, hostile_view: GraphView) -> None:
        out = render(hostile_view, tmp_path / "graph.mmd", status=False)
        assert out.read_text(encoding="utf-8") == to_mermaid(hostile_view, status=False)

    def test_format_overrides_suffix(self, tmp_path: Path, chain_view: GraphView) -> None:
        out = render(chain_view, tmp_path / "graph.txt", format="MMD")
        assert out.read_text(encoding="utf-8").startswith("---\ntitle:")
        assert render(chain_view, tmp_path / "g", format=".dot").read_text().startswith("digraph")

    def test_unknown_suffix(self, tmp_path: Path, chain_view: GraphView) -> None:
        with pytest.raises(ValueError, match=r"supported formats: \.svg, \.png, \.pdf, \.dot"):
            render(chain_view, tmp_path / "graph.jpg")
        with pytest.raises(ValueError, match="cannot render to format 'gif'"):
            render(chain_view, tmp_path / "graph.svg", format="gif")
        assert list(tmp_path.iterdir()) == []
        assert SUPPORTED_FORMATS == ("svg", "png", "pdf", "dot", "gv", "mmd")

    def test_png_too_large(self, tmp_path: Path) -> None:
        with pytest.raises(RenderError, match=rf"PNG of {PNG_MAX_NODES + 1} nodes .* \.svg"):
            render(chain_of(PNG_MAX_NODES + 1), tmp_path / "big.png")
        assert list(tmp_path.iterdir()) == []

    @needs_dot
    def test_png_at_the_limit(self, tmp_path: Path) -> None:
        out = render(chain_of(PNG_MAX_NODES), tmp_path / "a.png")
        assert out.read_bytes().startswith(b"\x89PNG")
        part = subview(chain_of(PNG_MAX_NODES + 1), only=["c0", "c1"])
        assert render(part, tmp_path / "b.png").read_bytes().startswith(b"\x89PNG")

    @pytest.mark.usefixtures("no_dot")
    @pytest.mark.parametrize("suffix", [".svg", ".png", ".pdf"])
    def test_missing_binary(self, tmp_path: Path, chain_view: GraphView, suffix: str) -> None:
        target = tmp_path / f"graph{suffix}"
        target.write_bytes(b"old")
        with pytest.raises(RenderError, match="apt-get install graphviz") as info:
            render(chain_view, target)
        assert "brew install graphviz" in str(info.value)
        assert "conda install -c conda-forge graphviz" in str(info.value)
        assert target.read_bytes() == b"old" and leftovers(tmp_path) == []

    @pytest.mark.usefixtures("no_dot")
    def test_missing_binary_text_formats_still_work(self, tmp_path, chain_view) -> None:
        assert render(chain_view, tmp_path / "g.dot").read_text().startswith("digraph")
        assert "flowchart LR" in render(chain_view, tmp_path / "g.mmd").read_text()
        with pytest.raises(RenderError, match="apt-get install graphviz"):
            to_svg(chain_view)

    @pytest.mark.usefixtures("no_dot")
    def test_executable_vanishes_after_lookup(self, monkeypatch, chain_view) -> None:
        monkeypatch.setattr(render_module.shutil, "which", lambda name: "/nowhere/dot")
        with pytest.raises(RenderError, match="apt-get install graphviz"):
            to_svg(chain_view)

    def test_dot_failure(self, tmp_path, monkeypatch, chain_view) -> None:
        fake_dot(tmp_path, monkeypatch, "echo 'Error: layout exploded' >&2\nexit 3")
        with pytest.raises(RenderError, match=r"dot failed \(exit code 3\): Error: layout expl"):
            render(chain_view, tmp_path / "graph.svg")
        assert not (tmp_path / "graph.svg").exists() and leftovers(tmp_path) == []

    def test_dot_warnings_are_logged(self, tmp_path, monkeypatch, caplog, chain_view) -> None:
        script = "cat >/dev/null\necho 'Warning: scaled' >&2\necho '<svg/>'"
        fake_dot(tmp_path, monkeypatch, script)
        with caplog.at_level("WARNING", logger="crystallize.graph.render"):
            out = render(chain_view, tmp_path / "graph.svg")
        assert out.read_text() == "<svg/>\n"
        assert [r.getMessage() for r in caplog.records] == ["dot: Warning: scaled"]

    def test_replaces_existing_file(self, tmp_path: Path, chain_view: GraphView) -> None:
        target = tmp_path / "graph.dot"
        target.write_text("old")
        render(chain_view, str(target), status=False)
        assert target.read_text() == to_dot(chain_view, status=False)
        assert leftovers(tmp_path) == []

    def test_bad_rankdir_writes_nothing(self, tmp_path: Path, chain_view: GraphView) -> None:
        with pytest.raises(ValueError, match="rankdir must be one of"):
            render(chain_view, tmp_path / "graph.dot", rankdir="up")
        assert list(tmp_path.iterdir()) == []
