"""Fixtures for backend tests: one local Ray instance shared by the whole session.

Starting Ray takes seconds, so every Ray test shares the instance started here (no
dashboard, a 100 MB object store, two CPUs). ``RayBackend`` joins a running Ray instead
of starting its own and never shuts down what it did not start, so tests cannot stop it.
Machines without the ``ray`` extra skip only the tests that ask for this fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """The ``ray`` module, initialised with a small local cluster for the session."""
    ray = pytest.importorskip("ray", reason="the 'ray' extra is not installed: pip install 'crystallize[ray]'")
    started = not ray.is_initialized()
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024 * 1024, ignore_reinit_error=True,
             log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()
