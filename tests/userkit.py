"""Test support for staleness tests: real user modules written into ``tmp_path``.

Fingerprints read source files, so the experiments under test live in modules written
to disk, imported, edited and reloaded (``importlib.reload``) the way a user edits code
between two runs. :data:`STEPS` is the step module; :data:`HELPERS` a second user module
its steps call. ``build(root, shape=...)`` inside the step module returns a graph of the
shapes ``chain`` (a -> b -> c), ``diamond`` (a -> b, a -> c, b + c -> d) and ``fan_out``
(a -> b, a -> c, a -> d).
"""

from __future__ import annotations

import importlib
import linecache
import shutil
import sys
import types
import uuid
from pathlib import Path

__all__ = ["HELPERS", "STEPS", "UserModules"]

HELPERS = '''
def bump(x):
    return x + 0.5
'''

STEPS = '''
import json
import os
import signal
from pathlib import Path

import numpy as np

import {helpers} as helpers
from crystallize import (Artifact, ArtifactPlugin, Experiment, ExperimentGraph, ExperimentInput, SeedPlugin,
                         data_source, pipeline_step)

HERE = Path(__file__).parent
SCALE = 1.0


class Calls:
    """Counts step executions; its declared fingerprint keeps counting out of the code digest."""

    def __init__(self):
        self.log = []

    def hit(self, step, ctx):
        self.log.append((step, ctx["condition"], ctx["replicate"]))
        kill = os.environ.get("CRYSTALLIZE_TEST_KILL")  # "<step>:<replicate>"
        if kill == f"{{step}}:{{ctx['replicate']}}":
            os.kill(os.getpid(), signal.SIGKILL)
        failing = os.environ.get("CRYSTALLIZE_TEST_FAIL", "")  # "<step>:<condition>:<replicate>,..."
        if f"{{step}}:{{ctx['condition']}}:{{ctx['replicate']}}" in failing.split(","):
            raise RuntimeError(f"injected failure in {{step}}")

    def count(self, step=None):
        return sum(1 for entry in self.log if step is None or entry[0] == step)

    def __crystallize_fingerprint__(self):
        return b"calls"


CALLS = Calls()


def shift(x):
    return x + 1.0


def values_of(data):
    if isinstance(data, dict):
        return [v for key in sorted(data) for v in json.loads(data[key])]
    if isinstance(data, bytes):
        return json.loads(data)
    return list(data)


@data_source(files=["input.txt"])
def numbers(ctx, n: int = 3):
    return [float(v) for v in (HERE / "input.txt").read_text().split()][:n]


@pipeline_step()
def produce(data, ctx, out=None, delta: float = 0.0, rng=None):
    CALLS.hit("produce", ctx)
    values = [round(helpers.bump(shift(x)) * SCALE + delta, 6) for x in data]
    noise = int(rng.integers(0, 1000))
    if out is not None:
        out.write(json.dumps(values))
    return values, {{"total": sum(values), "noise": noise}}


@pipeline_step()
def transform(data, ctx, out=None, factor: float = 2.0):
    CALLS.hit("transform", ctx)
    values = [round(v * factor, 6) for v in values_of(data)]
    if out is not None:
        out.write(json.dumps(values))
    return values, {{"total": sum(values)}}


@pipeline_step()
def use_numpy(data, ctx):
    CALLS.hit("use_numpy", ctx)
    return data, {{"mean": float(np.mean(values_of(data)))}}


def build(root, shape="chain", *, versioned=False, replicates=2, seed=7, treatments=(), initial_ctx=None,
          delta=None, factor=2.0, extra_step=None, hypotheses=()):
    arts = {{name: Artifact(f"{{name}}.json") for name in "abcd"}}

    def node(name, source, step, out=True, own=()):
        return Experiment(source, [step] + ([extra_step()] if extra_step and name == "a" else []), name=name,
                          outputs=[arts[name]] if out else [], treatments=list(own), replicates=replicates,
                          hypotheses=list(hypotheses) if name == "a" else [],
                          initial_ctx=initial_ctx if name == "a" else None,
                          plugins=[ArtifactPlugin(root_dir=root, versioned=versioned), SeedPlugin(seed=seed)])

    explicit = {{}} if delta is None else {{"delta": delta}}
    a = node("a", numbers(), produce(out=arts["a"], **explicit), own=treatments)
    if shape == "chain":
        rest = [node("b", arts["a"], transform(out=arts["b"], factor=factor)),
                node("c", arts["b"], transform(), out=False)]
    elif shape == "diamond":
        rest = [node("b", arts["a"], transform(out=arts["b"], factor=factor)),
                node("c", arts["a"], transform(out=arts["c"])),
                node("d", ExperimentInput(left=arts["b"], right=arts["c"]), transform(), out=False)]
    else:
        rest = [node(n, arts["a"], transform(factor=factor), out=False) for n in "bcd"]
    return ExperimentGraph.from_experiments([a, *rest])
'''


class UserModules:
    """Writes, imports, edits and reloads user modules in one folder (one test's ``tmp_path``).

    Module names carry a random prefix, so tests never share an entry in ``sys.modules``.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.prefix = f"ux{uuid.uuid4().hex[:8]}_"
        self.names: list[str] = []
        sys.path.insert(0, str(folder))

    def name(self, short: str) -> str:
        return self.prefix + short

    def write(self, short: str, source: str) -> types.ModuleType:
        """Write ``<folder>/<prefix><short>.py`` and import it (reload when already imported)."""
        name = self.name(short)
        path = self.folder / f"{name}.py"
        path.write_text(source)
        linecache.checkcache(str(path))
        linecache.cache.pop(str(path), None)
        shutil.rmtree(self.folder / "__pycache__", ignore_errors=True)
        importlib.invalidate_caches()
        if name in sys.modules:
            return importlib.reload(sys.modules[name])
        self.names.append(name)
        return importlib.import_module(name)

    def source(self, short: str) -> str:
        return (self.folder / f"{self.name(short)}.py").read_text()

    def edit(self, short: str, old: str, new: str) -> types.ModuleType:
        """Replace ``old`` (which must occur) by ``new`` in a module and reload it."""
        text = self.source(short)
        if old not in text:
            raise AssertionError(f"{old!r} not in module {short}")
        return self.write(short, text.replace(old, new))

    def steps(self, helpers: str = HELPERS, steps: str = STEPS, data: str = "1 2 3 4 5 6") -> types.ModuleType:
        """The standard pair: a helpers module and the step module (with ``input.txt``)."""
        (self.folder / "input.txt").write_text(data)
        self.write("helpers", helpers)
        return self.write("steps", steps.format(helpers=self.name("helpers")))

    def close(self) -> None:
        for name in self.names:
            sys.modules.pop(name, None)
        if str(self.folder) in sys.path:
            sys.path.remove(str(self.folder))
