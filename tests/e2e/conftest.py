"""End-to-end fixtures: a tiny demo workspace written once, an environment without DAEDA_*
settings, and each test module's own local Ray session (if it starts one)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from daedalus.adapters.demo.generator import write_demo_workspace

REPO = Path(__file__).resolve().parents[2]
#: Settings a developer's shell may hold that would change what a test's commands do.
DAEDA_VARS = ("DAEDA_CATALOG", "DAEDA_WORKSPACE", "DAEDA_OUT", "DAEDA_ENGINE", "DAEDA_BATCH_ROWS")


@pytest.fixture(autouse=True)
def _no_daeda_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in DAEDA_VARS:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny demo workspace with the repository's catalog, written once for the session:
    copy it (`copy_workspace`) before changing anything in it."""
    root = tmp_path_factory.mktemp("tiny-demo") / "demo"
    write_demo_workspace(root, scale="tiny")
    shutil.copytree(REPO / "feature_views", root / "feature_views")
    return root


#: A service whose source has no file, to drop into a workspace's catalog: its training job
#: fails (the catalog itself is valid).
LOST_SERVICE = """\
kind: feature_view
name: lost_activity
entity: user
source: {path: data/lost/*.parquet, timestamp: event_ts}
schema: {user_id: BIGINT, event_ts: TIMESTAMPTZ}
aggregations:
  - {name: lost_events_1d, function: count, window: 1d}
---
kind: feature_service
name: lost_ranking
spine: {path: data/impressions/*.parquet, timestamp: ts, entity: [user, artwork]}
features: [lost_activity:*]
"""


def copy_workspace(source: Path, dest: Path) -> Path:
    """A copy of a workspace (its data, catalog and anything written into it) at `dest`."""
    shutil.copytree(source, dest)
    return dest


@pytest.fixture(scope="module", autouse=True)
def _fresh_ray_per_module() -> Iterator[None]:
    """Stop the local Ray a module started, so no module depends on another's cluster."""
    yield
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
