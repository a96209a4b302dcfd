"""Benchmark crystallize.fingerprint: cached file hashes and cached code analysis.

Run from the repository root::

    python benchmarks/bench_fingerprint.py [--size-mib 200] [--helpers 20] [--repeat 20]

Prints wall-clock timings and the speed-up each cache gives:

- hashing an unchanged file twice (first read vs. stat-only cache hit), and
  once more from a fresh ``FileHashCache`` that loads the saved JSON;
- the code fingerprint of a step that calls N helpers spread over two user
  modules, cold (empty per-process code cache) vs. warm.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.timing import best_of
from crystallize.fingerprint import FileHashCache, clear_code_cache, code_fingerprint

CHUNK = os.urandom(1 << 20)


def write_big_file(path: Path, size_mib: int) -> None:
    with open(path, "wb") as stream:
        for index in range(size_mib):
            stream.write(index.to_bytes(8, "big") + CHUNK[8:])
    past = time.time_ns() - 60 * 10**9  # older than the 2 s racy window, so the entry is trusted
    os.utime(path, ns=(past, past))


def bench_files(folder: Path, size_mib: int) -> None:
    data, cache_file = folder / "big.bin", folder / "hashes.json"
    write_big_file(data, size_mib)
    cache = FileHashCache(cache_file)
    first = best_of(1, lambda: cache.digest(data))
    second = best_of(1, lambda: cache.digest(data))
    cache.save()
    reloaded = FileHashCache(cache_file)
    third = best_of(1, lambda: reloaded.digest(data))
    print(f"file hash, {size_mib} MiB")
    print(f"  first (read)            {first * 1e3:10.2f} ms   {size_mib / first:8.0f} MiB/s")
    print(f"  second (cached)         {second * 1e3:10.3f} ms   x{first / second:,.0f} faster")
    print(f"  new process (from JSON) {third * 1e3:10.3f} ms   x{first / third:,.0f} faster")


def write_step_modules(folder: Path, helpers: int) -> None:
    half = helpers // 2
    first = [f"def helper_{i}(x):\n    '''Helper {i}.'''\n    return x * {i} + OFFSET\n" for i in range(half)]
    (folder / "bench_helpers_a.py").write_text("OFFSET = 3\n\n" + "\n\n".join(first))
    second = [f"def helper_{i}(x):\n    return sum(range(x)) - {i}\n" for i in range(half, helpers)]
    second.append(f"class Model:\n    def fit(self, x):\n        return helper_{helpers - 1}(x)\n")
    (folder / "bench_helpers_b.py").write_text("\n\n".join(second))
    calls = " + ".join(f"{'bench_helpers_a' if i < half else 'hb'}.helper_{i}(x)" for i in range(helpers))
    step = f"def step(x):\n    return {calls} + hb.Model().fit(x)\n"
    step = "import bench_helpers_a\nimport bench_helpers_b as hb\n\n" + step
    (folder / "bench_steps.py").write_text(step)


def bench_code(folder: Path, helpers: int, repeat: int) -> None:
    write_step_modules(folder, helpers)
    sys.path.insert(0, str(folder))
    importlib.invalidate_caches()
    step = importlib.import_module("bench_steps").step
    code_fingerprint(step)  # load package metadata once, outside the timings
    cold, warm = [], []
    for _ in range(repeat):
        clear_code_cache()
        cold.append(best_of(1, lambda: code_fingerprint(step)))
        warm.append(best_of(1, lambda: code_fingerprint(step)))
    cold_ms, warm_ms = statistics.median(cold) * 1e3, statistics.median(warm) * 1e3
    modules = ", ".join(code_fingerprint(step).modules)
    print(f"code fingerprint, step with {helpers} helpers + 1 class ({modules}); median of {repeat}")
    print(f"  cold (read + parse)     {cold_ms:10.3f} ms")
    print(f"  warm (cached analysis)  {warm_ms:10.3f} ms   x{cold_ms / warm_ms:,.1f} faster")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=200, help="size of the hashed file")
    parser.add_argument("--helpers", type=int, default=20, help="helper functions the step calls")
    parser.add_argument("--repeat", type=int, default=20, help="repetitions of the code benchmark")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_fingerprint_") as tmp:
        bench_files(Path(tmp), options.size_mib)
        bench_code(Path(tmp), options.helpers, options.repeat)


if __name__ == "__main__":
    main()
