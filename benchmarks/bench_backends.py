"""Benchmark: execution backends against plain Python (and Ray) doing the same work.

Run by hand from the repository root::

    .venv/bin/python -m benchmarks.bench_backends [--replicates 40] [--ms 20] [--workers 2]

Three measurements, printed side by side; nothing is asserted.

1. **Process pool on a CPU-bound step.** One experiment, ``--replicates`` replicates of a
   step that spins for about ``--ms`` milliseconds, run serially and on
   ``ParallelExecution(executor_type="process")``; the baseline is a bare
   ``concurrent.futures.ProcessPoolExecutor`` mapping the same function over the same
   number of calls (pool start-up included on both sides). ``efficiency`` is
   ``baseline time / crystallize time``: 1.0 means crystallize adds nothing.
2. **Graph-parallel fan-out.** A root node feeding ``--fan-out`` independent nodes whose
   steps sleep (release the GIL), run on the serial and on the thread backend.
3. **Ray overhead per task.** Replicates of a no-op step on ``RayExecution`` against bare
   ``ray.remote`` no-op tasks, on a local Ray instance started once (start-up excluded).
   Skipped when the ``ray`` extra is not installed.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.timing import best_of
from crystallize import (
    Artifact,
    Experiment,
    ExperimentGraph,
    ExperimentInput,
    ParallelExecution,
    Pipeline,
    SeedPlugin,
    SerialExecution,
    data_source,
    pipeline_step,
)


def spin(iterations: int) -> int:
    """Pure-Python CPU work (holds the GIL): about ``iterations / rate`` seconds."""
    total = 0
    for i in range(iterations):
        total += i * i % 7
    return total


def calibrate(ms: float) -> int:
    """Iterations of :func:`spin` that take about ``ms`` milliseconds here."""
    probe = 200_000
    elapsed = best_of(5, lambda: spin(probe))  # best of five: the least disturbed by other load
    return max(1, int(probe * ms / 1000 / elapsed))


@data_source
def replicate_number(ctx: Any) -> int:
    return int(ctx["replicate"])


@pipeline_step()
def cpu_step(data: int, ctx: Any, *, iterations: int = 1) -> Any:
    return data, {"total": spin(iterations)}


@pipeline_step()
def noop_step(data: Any, ctx: Any) -> Any:
    return data, {"x": 1}


REPEAT = 3  # every figure is the best of this many runs (set by --repeat)


def _cpu_experiment(plugin: Any, iterations: int, replicates: int, root: Path) -> Experiment:
    from crystallize import ArtifactPlugin

    return Experiment(replicate_number(), Pipeline([cpu_step(iterations=iterations)]), name="cpu",
                      replicates=replicates, plugins=[SeedPlugin(seed=1), plugin, ArtifactPlugin(root_dir=str(root))])


def interleaved(variants: dict[str, Callable[[], Any]], repeat: int | None = None) -> dict[str, float]:
    """Best wall time of each variant, running them in turn (A, B, C, A, B, C, ...) so that
    changing load on the machine hits every variant alike."""
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(repeat or REPEAT):
        for name, fn in variants.items():
            best[name] = min(best[name], best_of(1, fn))
    return best


def bench_process_pool(ms: float, replicates: int, workers: int, root: Path) -> None:
    iterations = calibrate(ms)
    _cpu_experiment(SerialExecution(), 1, 2, root / "warm-up").run()  # first-run imports and caches
    cold = best_of(1, lambda: _cpu_experiment(ParallelExecution(max_workers=workers, executor_type="process"), 1, 2,
                                              root / "cold").run())  # starts the fork server once per process

    def plain(context: Any = None) -> None:
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            list(pool.map(spin, [iterations] * replicates))

    server = multiprocessing.get_context("forkserver" if sys.platform.startswith("linux") else "spawn")
    best = interleaved({
        "serial": lambda: _cpu_experiment(SerialExecution(), iterations, replicates, root / "serial").run(),
        "process": lambda: _cpu_experiment(ParallelExecution(max_workers=workers, executor_type="process"),
                                           iterations, replicates, root / "process").run(),
        "plain": plain, "plain_server": lambda: plain(server)})
    process = best["process"]
    print(f"1. CPU-bound step, {replicates} replicates x ~{ms:.0f} ms, {workers} workers")
    print(f"   crystallize serial              : {best['serial']:7.2f} s")
    print(f"   crystallize process backend     : {process:7.2f} s   (speed-up {best['serial'] / process:4.2f}x)")
    print(f"   plain ProcessPoolExecutor       : {best['plain']:7.2f} s   (default start method)")
    print(f"   plain ProcessPoolExecutor       : {best['plain_server']:7.2f} s   "
          f"({server.get_start_method()}, as crystallize uses)")
    print(f"   efficiency plain/crystallize    : {best['plain'] / process:7.2f} and "
          f"{best['plain_server'] / process:.2f}   (target >= 0.9)")
    print(f"   (not included above: the first process run of a session starts the fork server, {cold:.2f} s)")


def _fan_out_graph(width: int, sleep: float, root: Path) -> ExperimentGraph:
    seed = Artifact("seed.txt")

    @pipeline_step()
    def write_seed(data: Any, ctx: Any, out: Artifact) -> Any:
        out.write("1")
        return data, {"x": 1}

    @pipeline_step()
    def wait_a_bit(data: Any, ctx: Any, *, seconds: float = 0.0) -> Any:
        time.sleep(seconds)
        return data, {"slept": seconds}

    top = Experiment(replicate_number(), Pipeline([write_seed(out=seed)]), name="top", outputs=[seed], replicates=2)
    leaves = [Experiment(ExperimentInput(s=seed), Pipeline([wait_a_bit(seconds=sleep)]), name=f"leaf{i}",
                         replicates=2) for i in range(width)]
    graph = ExperimentGraph(top, *leaves)
    graph.store_root = root
    return graph


def bench_fan_out(width: int, sleep: float, root: Path) -> None:
    serial = best_of(REPEAT, lambda: _fan_out_graph(width, sleep, root / "serial").run(backend="serial"))
    graph = _fan_out_graph(width, sleep, root / "thread")
    graph.workers = 2 * width
    threaded = best_of(REPEAT, lambda: graph.run(backend="thread"))
    ideal = sleep  # the root, then every leaf replicate at once (plus run overhead)
    print(f"2. Fan-out graph: 1 root -> {width} leaves x 2 replicates sleeping {sleep * 1000:.0f} ms")
    print(f"   serial backend                : {serial:7.2f} s   (lower bound {width * 2 * sleep:.2f} s)")
    print(f"   thread backend, {2 * width:2d} workers    : {threaded:7.2f} s   (speed-up {serial / threaded:4.2f}x; "
          f"ideal {ideal:.2f} s)")


def bench_ray(tasks: int, root: Path) -> None:
    try:
        import ray
    except ImportError:
        print("3. Ray overhead per task: skipped (pip install 'crystallize[ray]')")
        return
    from crystallize.execution.ray import RayExecution

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024 * 1024, log_to_driver=False)
    try:
        noop = ray.remote(lambda: 1)
        ray.get([noop.remote() for _ in range(10)])  # warm the workers
        bare = best_of(REPEAT, lambda: ray.get([noop.remote() for _ in range(tasks)]))

        def ours() -> None:
            Experiment(replicate_number(), Pipeline([noop_step()]), name="noop", replicates=tasks,
                       plugins=[SeedPlugin(seed=1), RayExecution(), _store(root / "ray")]).run()

        ours()  # warm-up run: workers import crystallize
        mine = best_of(REPEAT, ours)
        serial = best_of(REPEAT, lambda: Experiment(replicate_number(), Pipeline([noop_step()]), name="noop", replicates=tasks,
                                          plugins=[SeedPlugin(seed=1), _store(root / "serial")]).run())
    finally:
        ray.shutdown()
    print(f"3. Ray overhead: {tasks} no-op replicates on a local 2-CPU Ray instance")
    print(f"   bare ray.remote tasks         : {bare / tasks * 1000:7.2f} ms per task")
    print(f"   crystallize RayExecution      : {mine / tasks * 1000:7.2f} ms per replicate (whole run)")
    print(f"   crystallize serial, same run  : {serial / tasks * 1000:7.2f} ms per replicate (store, planning)")


def _store(root: Path) -> Any:
    from crystallize import ArtifactPlugin

    return ArtifactPlugin(root_dir=str(root))


def main() -> None:
    """Run the three measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=40)
    parser.add_argument("--ms", type=float, default=20.0, help="CPU time per replicate (milliseconds)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fan-out", type=int, default=8)
    parser.add_argument("--sleep", type=float, default=0.2, help="seconds each fan-out replicate sleeps")
    parser.add_argument("--ray-tasks", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3, help="report the best of this many runs")
    args = parser.parse_args()
    global REPEAT
    REPEAT = max(1, args.repeat)
    quiet = logging.getLogger("crystallize")  # the benchmark prints; run logs would interleave
    quiet.addHandler(logging.NullHandler())
    quiet.setLevel(logging.ERROR)
    print(f"machine: {os.cpu_count()} CPUs; best of {REPEAT} runs per figure")
    with tempfile.TemporaryDirectory() as tmp:
        bench_process_pool(args.ms, args.replicates, args.workers, Path(tmp) / "cpu")
        bench_fan_out(args.fan_out, args.sleep, Path(tmp) / "fan")
        bench_ray(args.ray_tasks, Path(tmp) / "ray")


if __name__ == "__main__":
    main()
