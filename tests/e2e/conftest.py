"""End-to-end fixtures: each test module gets its own local Ray session (if it starts one)."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module", autouse=True)
def _fresh_ray_per_module() -> Iterator[None]:
    """Stop the local Ray a module started, so no module depends on another's cluster."""
    yield
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
