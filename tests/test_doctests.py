"""Every ``Examples`` section in the package's docstrings runs (numpydoc doctests)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import crystallize

MODULES = sorted(
    info.name for info in pkgutil.walk_packages(crystallize.__path__, "crystallize.")
    if not info.name.endswith("__main__")
)


def test_modules_were_found():
    assert "crystallize.steps" in MODULES and "crystallize.stats" in MODULES and len(MODULES) > 40


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples may write a store under ./data
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
