"""How fast is "nothing to do"? Status and no-op resume timings; prints ratios, asserts nothing.

Run ``python benchmarks/bench_status.py [--quick]``. Three measurements:

1. ``graph.status()`` on a 1,000-node graph that is fully stored and unchanged
   (target: under 0.5 s);
2. ``graph.status()`` on a 10,000-node chain that was never run (must simply work: the
   planner has no recursion over depth);
3. ``graph.run(strategy="resume")`` of a stored, unchanged 20-node graph, against its
   first run (target: under 1 % of the first run). Each replicate of the first run spends
   20 ms in its step (a sleep, so the machine's load does not change it), as a small real
   experiment would: 20 nodes x 2 conditions x 5 replicates.

Everything is written to a temporary folder.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from benchmarks.timing import best_of
from crystallize import (Artifact, ArtifactPlugin, Experiment, ExperimentGraph, SeedPlugin, data_source,
                         pipeline_step, treatment)


@data_source
def seed_numbers(ctx, n: int = 8):
    return list(range(n))


@pipeline_step()
def relay(data, ctx, out=None):
    values = list(data) if not isinstance(data, bytes) else list(data[:8])
    if out is not None:
        out.write(bytes(v % 256 for v in values))
    return values, {"total": float(sum(values))}


@pipeline_step()
def crunch(data, ctx, out=None, work: float = 0.0, rng=None):
    """``work`` seconds of a step's own time (slept, so the machine's load does not change it)."""
    time.sleep(work)
    values = list(data) if not isinstance(data, bytes) else list(data[:8])
    if out is not None:
        out.write(bytes(v % 256 for v in values))
    return values, {"total": float(sum(values)), "draw": float(rng.random())}


def layered(count: int, root: Path, *, width: int = 10, work: float = 0.0, replicates: int = 1,
            treatments: int = 0) -> ExperimentGraph:
    """``count`` nodes in layers of ``width``; node i of a layer reads node i of the layer before."""
    plugins = [ArtifactPlugin(root_dir=root), SeedPlugin(seed=1)]
    extra = [treatment(f"t{i}", {"unused": i}) for i in range(treatments)]
    outputs = [Artifact("out.bin") for _ in range(count)]
    experiments = []
    for i in range(count):
        source = seed_numbers() if i < width else outputs[i - width]
        step = crunch(out=outputs[i], work=work) if work else relay(out=outputs[i])
        experiments.append(Experiment(source, [step], name=f"n{i:05d}", outputs=[outputs[i]], plugins=plugins,
                                      treatments=extra if i < width else [], replicates=replicates))
    return ExperimentGraph(*experiments)


def bench_status_1000(folder: Path, count: int) -> None:
    graph = layered(count, folder / "s1000")
    first = best_of(1, graph.run)
    status = best_of(3, graph.status)
    assert graph.status().fresh
    print(f"status, {count} stored nodes, nothing changed: {status:.3f} s (target < 0.5 s for 1,000);"
          f" first run {first:.1f} s; {status / count * 1e3:.2f} ms per node")


def bench_chain(folder: Path, count: int) -> None:
    graph = layered(count, folder / "chain", width=1)
    seconds = best_of(1, graph.status)
    print(f"status, {count}-node chain, never run: {seconds:.2f} s ({seconds / count * 1e3:.2f} ms per node)")


def bench_noop_resume(folder: Path, work: float) -> None:
    graph = layered(20, folder / "resume", width=4, work=work, replicates=5, treatments=1)
    first = best_of(1, graph.run)
    noop = best_of(3, lambda: graph.run(strategy="resume"))
    print(f"run(strategy='resume'), 20 nodes, nothing changed: {noop * 1e3:.1f} ms vs first run {first:.2f} s"
          f" = {noop / first:.2%} (target < 1%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller graphs (a smoke test)")
    args = parser.parse_args()
    logging.getLogger("crystallize").setLevel(logging.WARNING)
    logging.getLogger("crystallize").addHandler(logging.NullHandler())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bench_status_1000(folder, 100 if args.quick else 1000)
        bench_chain(folder, 500 if args.quick else 10_000)
        bench_noop_resume(folder, 0.002 if args.quick else 0.02)


if __name__ == "__main__":
    main()
