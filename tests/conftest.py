"""Shared fixtures: every test runs in its own empty working directory.

The default store root of the Python API is ``data/`` under the working directory (as
in crystallize-ml 0.27), so an autouse ``monkeypatch.chdir(tmp_path)`` keeps tests from
writing into the checkout or seeing each other's stores.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from foundation_kit import scores, shift, summarise

from crystallize import ArtifactPlugin, Experiment, Pipeline, SeedPlugin, Treatment


@pytest.fixture(autouse=True)
def isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test inside ``tmp_path`` (the default store is ``./data``)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CRYSTALLIZE_ARTIFACT_RETENTION", raising=False)
    monkeypatch.delenv("CRYSTALLIZE_BIG_FILE_THRESHOLD_MB", raising=False)
    return tmp_path


@pytest.fixture(autouse=True)
def clean_registry() -> Any:
    """The datasource registry is process-global; leave it as we found it."""
    from crystallize.datasources.registry import _REGISTRY

    saved = dict(_REGISTRY)
    yield
    _REGISTRY.clear()
    _REGISTRY.update(saved)


@pytest.fixture
def make_experiment() -> Callable[..., Experiment]:
    """Factory: ``make_experiment(name, treatments=..., replicates=..., steps=..., **kwargs)``.

    Builds ``scores() -> shift() -> summarise()`` with a fixed master seed (7) unless
    ``plugins`` is given.
    """

    def make(name: str = "exp", *, treatments: Sequence[Treatment] = (), replicates: int = 2,
             steps: Sequence[Any] | None = None, plugins: Sequence[Any] | None = None, **kwargs: Any) -> Experiment:
        pipeline = Pipeline(list(steps) if steps is not None else [shift(), summarise()])
        return Experiment(datasource=kwargs.pop("datasource", scores()), pipeline=pipeline,
                          plugins=list(plugins) if plugins is not None else [SeedPlugin(seed=7)], name=name,
                          treatments=list(treatments), replicates=replicates, **kwargs)

    return make


@pytest.fixture
def versioned() -> Callable[..., ArtifactPlugin]:
    """``versioned(**kw)`` -> ``ArtifactPlugin(root_dir="data", versioned=True, **kw)``."""
    return lambda **kw: ArtifactPlugin(root_dir="data", versioned=True, **kw)
