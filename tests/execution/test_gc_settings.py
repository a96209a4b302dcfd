"""The run engine tunes the cyclic garbage collector during a run and restores it afterwards."""

from __future__ import annotations

import gc
import threading
from pathlib import Path
from typing import Any

from crystallize import ArtifactPlugin, Experiment, data_source, pipeline_step


@data_source
def one(ctx: Any) -> int:
    return 1


@pipeline_step()
def keep(data: int, ctx: Any) -> Any:
    return data, {"x": data}


def overlapping(root: Path, barrier: threading.Barrier, during: list[tuple[int, ...]]) -> list[Experiment]:
    @pipeline_step()
    def meet(data: int, ctx: Any) -> Any:
        if ctx["replicate"] == 0:
            barrier.wait(timeout=30)  # both runs are inside the engine at once
            during.append(gc.get_threshold())
        return data, {"x": data}

    return [Experiment(datasource=one(), pipeline=[meet()], name=f"gc{i}", replicates=2,
                       plugins=[ArtifactPlugin(root_dir=root, versioned=True)]) for i in range(2)]


def test_overlapping_runs_restore_the_collector_settings(tmp_path: Path) -> None:
    before = gc.get_threshold()
    during: list[tuple[int, ...]] = []
    threads = [threading.Thread(target=e.run) for e in overlapping(tmp_path, threading.Barrier(2), during)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [t[0] for t in during] == [max(before[0], 50_000)] * 2
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_objects_the_user_froze_stay_frozen(tmp_path: Path) -> None:
    kept = [[i] for i in range(1000)]  # tracked objects, frozen by the user below
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        Experiment(datasource=one(), pipeline=[keep()], name="frozen", plugins=[ArtifactPlugin(root_dir=tmp_path)]).run()
        assert gc.get_freeze_count() > frozen // 2  # not unfrozen by the run (a few may have been freed)
        assert len(kept) == 1000
    finally:
        gc.unfreeze()
