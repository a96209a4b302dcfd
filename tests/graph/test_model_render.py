"""ExperimentGraph's picture methods, built on crystallize.graph.render."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET

import pytest

from crystallize import Artifact, Experiment, ExperimentGraph, ExperimentInput, Pipeline, Treatment, data_source
from crystallize import pipeline_step
from crystallize.errors import RenderError


@data_source
def one(ctx):
    return 1


@pipeline_step()
def emit(data, ctx, out: Artifact, *, scale: int = 1):
    out.write(str(data * scale))
    return data, {"v": data * scale}


@pipeline_step()
def take(data, ctx):
    return data, {"n": len(data)}


@pytest.fixture
def diamond(tmp_path):
    a_out, b_out, c_out = Artifact("a.txt"), Artifact("b.txt"), Artifact("c.txt")
    a = Experiment(one(), Pipeline([emit(out=a_out)]), name="a", outputs=[a_out],
                   treatments=[Treatment("double", {"scale": 2})], replicates=2)
    b = Experiment(a_out, Pipeline([emit(out=b_out)]), name="b", outputs=[b_out])
    c = Experiment(a_out, Pipeline([emit(out=c_out)]), name="c", outputs=[c_out],
                   treatments=[Treatment("own", {"k": 1})])
    d = Experiment(ExperimentInput(b=b_out, c=c_out), Pipeline([take()]), name="d")
    graph = ExperimentGraph(a, b, c, d)
    graph.store_root = tmp_path / "data"
    return graph


def test_dot_shows_nodes_edges_conditions_and_status(diamond):
    dot = diamond.to_dot()
    for name in ("a", "b", "c", "d"):
        assert f"<B>{name}</B>" in dot
    assert dot.count("->") == 4
    assert "a.txt" in dot and "b.txt" in dot
    nodes_part = dot.split("cluster_legend")[0]  # the legend lists every state
    assert nodes_part.count("never run") == 4
    diamond.run()
    fresh = diamond.to_dot()
    assert "never run" not in fresh.split("cluster_legend")[0] and fresh.split("cluster_legend")[0].count("fresh") == 4
    assert diamond.to_dot() == fresh  # deterministic


def test_view_marks_inherited_treatments_and_baseline_fallback(diamond):
    view = diamond.view(status=False)
    nodes = {n.name: n for n in view.nodes}
    assert nodes["b"].inherited == ("double",)
    assert nodes["d"].inherited == ("double", "own")
    edges = {(e.upstream, e.downstream): e for e in view.edges}
    assert edges["a", "c"].baseline_fallback == ("own",)
    assert edges["b", "d"].baseline_fallback == ("own",)
    assert edges["c", "d"].baseline_fallback == ()


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs the graphviz dot binary")
def test_render_svg_focus_and_repr(diamond, tmp_path):
    path = diamond.render(tmp_path / "g.svg")
    root = ET.fromstring(path.read_text())
    text = "".join(root.itertext())
    assert all(name in text for name in ("a", "b", "c", "d"))
    part = diamond.render(tmp_path / "part.dot", focus="a", hops=1).read_text()
    assert "<B>b</B><BR/>" in part and "<B>c</B><BR/>" in part and "<B>d</B><BR/>" not in part
    assert diamond._repr_svg_().lstrip().startswith("<?xml") or "<svg" in diamond._repr_svg_()


def test_missing_dot_raises_render_error_but_dot_text_works(diamond, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(RenderError, match="apt-get install graphviz"):
        diamond.render(tmp_path / "g.svg")
    assert diamond.render(tmp_path / "g.dot").read_text().startswith("digraph")
    assert "flowchart" in diamond.render(tmp_path / "g.mmd").read_text()


def test_mermaid_and_jupyter_pictures_show_status_by_default(diamond, tmp_path, monkeypatch):
    assert "never run" in diamond.to_mermaid() and "classDef" in diamond.to_mermaid()
    assert "never run" not in diamond.to_mermaid(status=False)
    if shutil.which("dot") is not None:
        assert "never run" in diamond._repr_svg_()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert diamond._repr_svg_() is None  # no dot binary: Jupyter falls back to the text repr


def test_spec_names_import_from_the_package():
    import crystallize
    from crystallize import ConfigError, GraphStatus, NodeState, RenderError, StaleKind

    assert NodeState.FRESH.name == "FRESH" and StaleKind.CODE_CHANGED.name == "CODE_CHANGED"
    assert issubclass(RenderError, RuntimeError) and issubclass(ConfigError, ValueError)
    assert GraphStatus.__name__ == "GraphStatus"
    assert "NodeState" not in crystallize.__all__  # __all__ stays 0.27's list
