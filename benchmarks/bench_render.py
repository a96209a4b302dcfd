"""Benchmark: render a 500-node graph to SVG and compare with plain Graphviz.

Run by hand from the repository root::

    .venv/bin/python -m benchmarks.bench_render [--nodes 500] [--repeat 5]

(or ``python benchmarks/bench_render.py`` with crystallize installed).

The baseline, measured in the same run, is the same topology drawn with the
``graphviz`` Python package and bare labels (node name only, no edge labels,
no status). The ratio ``crystallize / baseline`` is the price of the richer
labels (replicates, conditions, status line, artifacts, legend) plus DOT
generation. Nothing is asserted; the script only prints.
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

from benchmarks.timing import best_of
from crystallize.graph.render import EdgeView, GraphView, NodeView, render, to_dot
from crystallize.graph.status import NodeState, NodeStatus, StaleKind, StaleReason


def topology(count: int, width: int = 20, seed: int = 0) -> list[tuple[int, int]]:
    """Edges of a layered DAG: each node past the first layer reads two of the layer before."""
    rng = random.Random(seed)
    edges = []
    for index in range(width, count):
        layer = index // width
        previous = range((layer - 1) * width, min(layer * width, count))
        edges.extend((up, index) for up in sorted(rng.sample(previous, 2)))
    return edges


def crystallize_view(count: int, edges: list[tuple[int, int]]) -> GraphView:
    """The topology as a GraphView with treatments, artifacts and a status on every node."""
    states = list(NodeState)
    reason = StaleReason(StaleKind.CODE_CHANGED, "step 'fit' changed")
    nodes = tuple(
        NodeView(
            f"experiment_{i:04d}",
            5,
            ("boost", "dropout", "wide"),
            inherited=("seed_sweep",) if i % 3 == 0 else (),
            disabled=("wide",) if i % 7 == 0 else (),
            status=NodeStatus(f"experiment_{i:04d}", states[i % len(states)], (reason,)),
        )
        for i in range(count)
    )
    views = tuple(
        EdgeView(nodes[a].name, nodes[b].name, artifacts=("model.pkl", "metrics.json"))
        for a, b in edges
    )
    return GraphView("benchmark", nodes, views)


def baseline_svg(count: int, edges: list[tuple[int, int]]) -> bytes:
    """Plain graphviz: the same topology with bare name labels."""
    import graphviz

    graph = graphviz.Digraph("baseline", graph_attr={"rankdir": "LR"})
    for index in range(count):
        graph.node(str(index), f"experiment_{index:04d}")
    for up, down in edges:
        graph.edge(str(up), str(down))
    return graph.pipe(format="svg")


def main() -> None:
    """Time both renderings and print the result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    edges = topology(args.nodes)
    view = crystallize_view(args.nodes, edges)
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "graph.svg"
        ours = best_of(args.repeat, lambda: render(view, target))
        size = target.stat().st_size
    dot_only = best_of(args.repeat, lambda: to_dot(view))
    baseline = best_of(args.repeat, lambda: baseline_svg(args.nodes, edges))
    print(f"graph: {args.nodes} nodes, {len(edges)} edges; best of {args.repeat} runs")
    print(f"crystallize to_dot only      : {dot_only * 1000:9.1f} ms")
    print(f"crystallize render -> SVG    : {ours * 1000:9.1f} ms  ({size / 1024:.0f} KiB)")
    print(f"baseline graphviz, bare SVG  : {baseline * 1000:9.1f} ms")
    print(f"ratio crystallize / baseline : {ours / baseline:9.2f}x")


if __name__ == "__main__":
    main()
