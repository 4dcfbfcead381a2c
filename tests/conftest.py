"""Shared fixtures. Tests use real parts: a real local Ray, real Delta tables read back with polars."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ray_session():
    """One small local Ray for the in-process tests (CLI tests start their own, as users do)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             object_store_memory=512 * 1024**2)
    yield ray
    ray.shutdown()
