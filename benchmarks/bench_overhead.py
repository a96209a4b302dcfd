"""Benchmark: what the framework costs around trivial work, per replicate, per node, per artifact.

Run by hand from the repository root::

    .venv/bin/python -m benchmarks.bench_overhead [--replicates 2000] [--nodes 200] [--mib 10] [--repeat 3]

Three measurements, each against a plain-Python baseline timed in the same run. Nothing
is asserted; the script prints its figures (and the issue's targets) only.

1. **Replicate-condition overhead.** An experiment with a trivial datasource and three
   trivial steps, baseline plus one treatment, serial backend. The *marginal* cost is the
   slope between a run with N and one with 2N replicates, so the per-run fixed costs
   (fingerprints, version folder, ``run.json``) cancel out. The baseline calls the same
   four plain functions directly. Target: <= 15 us per replicate-condition.
2. **Per-node overhead.** A chain of 200 experiments, each reading the previous one's
   artifact, one replicate, baseline only: a full ``graph.run()``, a ``resume`` that finds
   everything fresh, and ``graph.status()``. Target: <= 1 ms per node for the run.
3. **Artifact throughput.** A producer writes one 10 MiB ``.npy`` artifact per replicate
   and a consumer reads them back (loader: ``np.load``). The cost per artifact is the run
   time minus that of the same experiment without the artifact, divided by the replicates;
   the baseline is ``np.save``/``np.load`` to plain files. Two ways to write: the step
   saves to the staging path ``ctx.artifacts.path(name)`` (the large-artifact path, spec
   §11: the same ``np.save`` to a file, then hashed and moved into the store), or it
   calls ``artifact.write(array)`` with a bytes writer (``np.save`` into ``io.BytesIO``,
   0.27's only way); the serialisation into memory alone is timed too, since that part
   is the user's writer, not the framework. Target: plain / crystallize >= 50 %.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.timing import best_of
from crystallize import (
    Artifact,
    ArtifactPlugin,
    Experiment,
    ExperimentGraph,
    SeedPlugin,
    data_source,
    pipeline_step,
    treatment,
)

# --- the trivial work: a datasource and three steps ------------------------------------


def make_numbers() -> list[int]:
    return [1, 2, 3]


def add_one(data: list[int]) -> list[int]:
    return [x + 1 for x in data]


def double(data: list[int]) -> list[int]:
    return [x * 2 for x in data]


def total(data: list[int]) -> tuple[list[int], dict[str, int]]:
    return data, {"total": sum(data)}


@data_source
def numbers(ctx: Any) -> list[int]:
    return make_numbers()


@pipeline_step()
def step_add_one(data: list[int], ctx: Any) -> list[int]:
    return add_one(data)


@pipeline_step()
def step_double(data: list[int], ctx: Any, *, factor: int = 2) -> list[int]:
    return double(data)


@pipeline_step()
def step_total(data: list[int], ctx: Any) -> tuple[list[int], dict[str, int]]:
    return total(data)


def plugins(root: Path, *, versioned: bool = False) -> list[Any]:
    return [SeedPlugin(seed=0), ArtifactPlugin(root_dir=root, versioned=versioned)]


# --- 1. replicate-condition overhead --------------------------------------------------


def trivial_experiment(root: Path, replicates: int) -> Experiment:
    return Experiment(numbers(), [step_add_one(), step_double(), step_total()], plugins(root), name="trivial",
                      replicates=replicates, treatments=[treatment("triple", {"factor": 3})])


def direct_calls(count: int) -> None:
    for _ in range(count):
        total(double(add_one(make_numbers())))


def replicate_overhead(root: Path, replicates: int, repeat: int) -> None:
    conditions = 2
    trivial_experiment(root / "warm-up", 10).run()  # imports and first-call caches
    smalls, larges = [], []
    for _ in range(repeat):  # interleaved, so a burst of load elsewhere hits both sizes
        smalls.append(best_of(1, lambda: trivial_experiment(root / "a", replicates).run()))
        larges.append(best_of(1, lambda: trivial_experiment(root / "b", 2 * replicates).run()))
    small, large = min(smalls), min(larges)
    direct = best_of(repeat, lambda: direct_calls(replicates * conditions)) / (replicates * conditions)
    marginal = (large - small) / (replicates * conditions)
    average = large / (2 * replicates * conditions)
    counter = iter(range(repeat))
    fixed = best_of(repeat, lambda: trivial_experiment(root / f"one{next(counter)}", 1).run())
    print(f"1. replicate-condition overhead ({replicates} and {2 * replicates} replicates x {conditions} conditions, "
          f"best of {repeat})")
    print(f"   direct calls (source + 3 steps)   : {direct * 1e6:10.2f} us per replicate-condition")
    print(f"   crystallize, marginal             : {marginal * 1e6:10.2f} us  (target <= 15 us; 0.27: ~104 us)")
    print(f"   crystallize, average incl. fixed  : {average * 1e6:10.2f} us")
    print(f"   a whole 1-replicate run           : {fixed * 1e3:10.2f} ms  (the fixed cost per run)")
    print(f"   ratio marginal / direct           : {marginal / direct:10.1f}x")


# --- 2. per-node overhead on a chain --------------------------------------------------


def chain(root: Path, count: int) -> ExperimentGraph:
    """``count`` experiments, each reading the previous one's artifact."""
    experiments: list[Experiment] = []
    previous: Artifact | None = None
    for index in range(count):
        out = Artifact("value.txt")
        source = previous if previous is not None else numbers()
        experiments.append(Experiment(source, [pass_on(out=out)], plugins(root), name=f"node_{index:04d}",
                                      outputs=[out]))
        previous = out
    graph = ExperimentGraph(*experiments)
    graph.store_root = root
    return graph


@pipeline_step()
def pass_on(data: Any, ctx: Any, out: Artifact) -> Any:
    out.write(b"1")
    return data, {"seen": 1}


def filesystem_floor(folder: Path, files: int, dirs: int) -> float:
    """Seconds plain Python takes to create ``dirs`` folders and ``files`` one-byte files."""
    folder.mkdir(parents=True)
    start = time.perf_counter()
    for index in range(dirs):
        (folder / f"d{index}").mkdir()
    for index in range(files):
        (folder / f"f{index}").write_bytes(b"1")
    return time.perf_counter() - start


def node_overhead(root: Path, count: int, repeat: int) -> None:
    chain(root / "warm-up", 3).run()  # imports and first-call caches
    runs, resumes, statuses, floors = [], [], [], []
    for attempt in range(repeat):  # a fresh chain each time; the floor interleaved, so load hits both
        graph = chain(root / f"chain{attempt}", count)
        runs.append(best_of(1, graph.run))
        resumes.append(best_of(1, lambda: graph.run(strategy="resume")))
        statuses.append(best_of(1, graph.status))
        entries = list((root / f"chain{attempt}").rglob("*"))
        files = sum(p.is_file() for p in entries) / count
        dirs = sum(p.is_dir() for p in entries) / count
        floors.append(filesystem_floor(root / f"floor{attempt}", round(files * count), round(dirs * count)))
    run, floor = min(runs) / count, min(floors) / count
    print(f"2. per-node overhead ({count}-node chain, 1 replicate, baseline only, best of {repeat}; store in {root})")
    print(f"   graph.run()                       : {run * 1e3:10.2f} ms per node  (target <= 1 ms; 0.27: 3.6 ms)")
    print(f"   graph.run(strategy='resume'), all fresh: {min(resumes) / count * 1e3:5.2f} ms per node")
    print(f"   graph.status()                    : {min(statuses) / count * 1e3:10.2f} ms per node")
    print(f"   store entries per node            : {files:10.1f} files, {dirs:.1f} folders; creating as many "
          f"with plain Python: {floor * 1e3:.2f} ms")
    print(f"   run minus that floor              : {(run - floor) * 1e3:10.2f} ms per node")


# --- 3. artifact throughput -----------------------------------------------------------


def to_npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def from_npy(path: Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


@data_source
def matrix(ctx: Any, mib: int = 10) -> np.ndarray:
    return np.full(mib * (1 << 20) // 8, float(ctx.get("replicate", 0)))


@pipeline_step()
def save_matrix(data: np.ndarray, ctx: Any, out: Artifact) -> np.ndarray:
    out.write(data)
    return data


@pipeline_step()
def stage_matrix(data: np.ndarray, ctx: Any) -> np.ndarray:
    np.save(ctx.artifacts.path("matrix.npy"), data, allow_pickle=False)
    return data


@pipeline_step()
def keep(data: Any, ctx: Any) -> Any:
    return data, {"n": 1}


@pipeline_step()
def shape_of(data: np.ndarray, ctx: Any) -> Any:
    return data, {"n": int(data.shape[0])}


def artifact_graph(root: Path, mib: int, replicates: int, *, staged: bool = False) -> ExperimentGraph:
    """A producer writing one matrix per replicate and a consumer reading them."""
    out = Artifact("matrix.npy", writer=to_npy, loader=from_npy)
    producer = Experiment(matrix(mib=mib), [stage_matrix() if staged else save_matrix(out=out)], plugins(root),
                          name="producer", replicates=replicates, outputs=[out])
    consumer = Experiment(out, [shape_of()], plugins(root), name="consumer", replicates=replicates)
    return ExperimentGraph(producer, consumer)


def without_artifacts(root: Path, mib: int, replicates: int) -> tuple[Experiment, Experiment]:
    """The same two experiments minus the artifact: the producer only builds its matrix."""
    producer = Experiment(matrix(mib=mib), [keep()], plugins(root), name="producer", replicates=replicates)
    consumer = Experiment(numbers(), [keep()], plugins(root), name="consumer", replicates=replicates)
    return producer, consumer


def plain_io(folder: Path, mib: int, replicates: int) -> tuple[float, float]:
    arrays = [np.full(mib * (1 << 20) // 8, float(r)) for r in range(replicates)]
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for r, array in enumerate(arrays):
        np.save(folder / f"m{r}.npy", array, allow_pickle=False)
    write = time.perf_counter() - start
    start = time.perf_counter()
    for r in range(replicates):
        np.load(folder / f"m{r}.npy", allow_pickle=False)
    return write, time.perf_counter() - start


def produce_and_consume(root: Path, mib: int, replicates: int, repeat: int, *,
                        staged: bool) -> tuple[float, float]:
    """Best producer and consumer run times (s) over ``repeat`` fresh graphs."""
    timings: list[tuple[float, float]] = []
    for i in range(repeat):
        graph = artifact_graph(root / f"{'staged' if staged else 'bytes'}{i}", mib, replicates, staged=staged)
        start = time.perf_counter()
        graph.run(only=["producer"])
        produced = time.perf_counter()
        graph.run(only=["consumer"])
        timings.append((produced - start, time.perf_counter() - produced))
    return min(t[0] for t in timings), min(t[1] for t in timings)


def artifact_throughput(root: Path, mib: int, replicates: int, repeat: int) -> None:
    artifact_graph(root / "warm-up", 1, 1).run()  # imports and first-call caches
    artifact_graph(root / "warm-up-staged", 1, 1, staged=True).run()
    writes, reads = zip(*(plain_io(root / f"plain{i}", mib, replicates) for i in range(repeat)))
    plain_write, plain_read = min(writes) / replicates, min(reads) / replicates
    array = np.full(mib * (1 << 20) // 8, 1.0)
    serialise = best_of(repeat, lambda: to_npy(array))
    bare_producer, bare_consumer = without_artifacts(root / "none", mib, replicates)
    producer_base, consumer_base = best_of(repeat, bare_producer.run), best_of(repeat, bare_consumer.run)
    staged_producer, staged_consumer = produce_and_consume(root, mib, replicates, repeat, staged=True)
    bytes_producer, bytes_consumer = produce_and_consume(root, mib, replicates, repeat, staged=False)
    staged_write = (staged_producer - producer_base) / replicates
    bytes_write = (bytes_producer - producer_base) / replicates
    read = (min(staged_consumer, bytes_consumer) - consumer_base) / replicates
    print(f"3. artifact throughput ({replicates} artifacts of {mib} MiB, best of {repeat})")
    print(f"   plain np.save / np.load            : {plain_write * 1e3:8.2f} ms / {plain_read * 1e3:8.2f} ms per artifact")
    print(f"   write, staged path (np.save there) : {staged_write * 1e3:8.2f} ms  -> efficiency "
          f"{plain_write / staged_write:5.0%}  (target >= 50%; 0.27: ~10%)")
    print(f"   write, bytes writer (artifact.write): {bytes_write * 1e3:8.2f} ms  -> efficiency "
          f"{plain_write / bytes_write:5.0%}; of it, the writer's np.save into BytesIO: {serialise * 1e3:.2f} ms, "
          f"the rest: {plain_write / max(bytes_write - serialise, 1e-9):5.0%}")
    print(f"   read (loader np.load)              : {read * 1e3:8.2f} ms  -> efficiency "
          f"{plain_read / read:5.0%}  (target >= 50%)")


def main() -> None:
    """Run the three measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=2000, help="replicates for measurement 1 (and 2x)")
    parser.add_argument("--nodes", type=int, default=200, help="chain length for measurement 2")
    parser.add_argument("--mib", type=int, default=10, help="artifact size for measurement 3")
    parser.add_argument("--artifacts", type=int, default=10, help="artifacts (replicates) for measurement 3")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=("replicates", "nodes", "artifacts"), help="run one measurement")
    parser.add_argument("--store-dir", type=Path, default=None,
                        help="folder for the stores (default: the system temp folder; /dev/shm separates "
                             "the framework's own cost from the disk's)")
    args = parser.parse_args()
    logging.getLogger("crystallize").addHandler(logging.NullHandler())
    logging.getLogger("crystallize").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="crystallize-bench-", dir=args.store_dir) as folder:
        root = Path(folder)
        os.chdir(root)
        if args.only in (None, "replicates"):
            replicate_overhead(root / "replicates", args.replicates, args.repeat)
        if args.only in (None, "nodes"):
            node_overhead(root / "nodes", args.nodes, args.repeat)
        if args.only in (None, "artifacts"):
            artifact_throughput(root / "artifacts", args.mib, args.artifacts, args.repeat)


if __name__ == "__main__":
    main()
