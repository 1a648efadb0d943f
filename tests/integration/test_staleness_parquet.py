"""Staleness against the real definitions and at scale: the visible ranges of the demo's
feed_ranking service, two views over one event log read once, and the cost of fingerprinting
~10M event rows plus ~1M spine rows (`-m slow`; prints seconds, asserts no time)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from daedalus.catalog.registry import FeatureCatalog
from daedalus.pipeline import staleness
from daedalus.pipeline.staleness import (
    DAY_US,
    FingerprintCache,
    VisibleRange,
    day_input_digests,
    source_fingerprints,
    visible_ranges,
)
from daedalus.pit.spec import SourceSpec, specs_for_view

REPO = Path(__file__).resolve().parents[2]
MINUTE_US = 60_000_000
START = dt.date(2026, 10, 1)


def _epoch_us(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days * DAY_US


def test_visible_ranges_of_the_demo_service_follow_windows_delays_and_ttls() -> None:
    catalog = FeatureCatalog.from_yaml_dir(REPO / "feature_views")
    service = catalog.service("feed_ranking")
    specs = []
    for rf in catalog.resolve_features(service):
        source = SourceSpec.from_view(rf.view, root=REPO)
        specs += specs_for_view(rf.view, source, [rf.feature.name])
    ranges = visible_ranges(specs)
    # user_last_action and the pair features have lifetime windows: every earlier event counts
    assert ranges["user_activity"] == VisibleRange.lifetime()
    assert ranges["user_artwork_engagement"] == VisibleRange.lifetime()
    assert ranges["artwork_popularity"] == VisibleRange(7 * DAY_US + 5 * MINUTE_US)  # 5m late
    assert ranges["user_profile"] == VisibleRange(730 * DAY_US)  # as-of with a 730d TTL
    assert ranges["user_profile"].describe(dt.date(2026, 10, 3)) == "[2024-10-03, 2026-10-04)"


def test_two_views_over_one_event_log_read_each_file_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = _write_events(tmp_path / "events", files=3, rows_per_file=2_000)
    reads: list[str] = []
    real = staleness._read_file

    def counting(path: str, columns: Sequence[str] | None, reader: Any) -> pa.Table:
        reads.append(path)
        return real(path, columns, reader)

    monkeypatch.setattr(staleness, "_read_file", counting)
    run = FingerprintCache(None)  # in memory, for one run
    fps = {
        name: source_fingerprints(files, "event_ts", cache=run)
        for name in ("user_activity", "artwork_popularity")
    }
    assert sorted(reads) == files
    visible = {
        "user_activity": VisibleRange(30 * DAY_US + 5 * MINUTE_US),
        "artwork_popularity": VisibleRange(7 * DAY_US + 5 * MINUTE_US),
    }
    out = day_input_digests(fps, visible, START + dt.timedelta(days=1))
    assert set(out) == set(visible)
    run.save()  # a memory-only cache has nowhere to go
    assert list(tmp_path.iterdir()) == [tmp_path / "events"]


def _write_events(
    root: Path, *, files: int, rows_per_file: int, shuffled: bool = False, seed: int = 1
) -> list[str]:
    """Demo-like event files, one day each from START: ids, an action, a dwell with nulls."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    actions = np.array(["view", "like", "bookmark", "generate"])
    paths = []
    for i in range(files):
        day_us = _epoch_us(START + dt.timedelta(days=i))
        ts = day_us + rng.integers(0, DAY_US, rows_per_file)
        if not shuffled:
            ts.sort()
        table = pa.table(
            {
                "user_id": rng.integers(0, 500_000, rows_per_file),
                "artwork_id": rng.integers(0, 200_000, rows_per_file),
                "action": pa.array(actions[rng.integers(0, 4, rows_per_file)]),
                "dwell_ms": pa.array(
                    rng.random(rows_per_file) * 1e4, mask=rng.random(rows_per_file) < 0.3
                ),
                "event_ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
            }
        )
        path = root / f"part-{i:03d}.parquet"
        pq.write_table(table, path, compression="zstd", row_group_size=128 * 1024)
        paths.append(str(path))
    return paths


def _write_spine(root: Path, *, files: int, rows_per_file: int) -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    paths = []
    for i in range(files):
        ts = np.sort(
            _epoch_us(START + dt.timedelta(days=i)) + rng.integers(0, DAY_US, rows_per_file)
        )
        table = pa.table(
            {
                "user_id": rng.integers(0, 500_000, rows_per_file),
                "artwork_id": rng.integers(0, 200_000, rows_per_file),
                "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
                "clicked": pa.array(rng.random(rows_per_file) < 0.1),
            }
        )
        path = root / f"part-{i:03d}.parquet"
        pq.write_table(table, path, compression="zstd", row_group_size=128 * 1024)
        paths.append(str(path))
    return paths


def _timed_reads(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Seconds spent reading parquet (summed over threads), appended per file."""
    spent: list[float] = []
    real = staleness._read_file

    def timed(path: str, columns: Sequence[str] | None, reader: Any) -> pa.Table:
        t0 = time.perf_counter()
        out = real(path, columns, reader)
        spent.append(time.perf_counter() - t0)
        return out

    monkeypatch.setattr(staleness, "_read_file", timed)
    return spent


@pytest.mark.slow
@pytest.mark.parametrize("shuffled", [False, True], ids=["time-ordered", "shuffled"])
def test_fingerprint_cost_at_demo_scale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shuffled: bool
) -> None:
    """Prints the cost of fingerprinting the large demo's volume (30 days, 9.75M events,
    ~1M spine rows): read + hash with the default threads, hashing alone on one thread, the
    day digests of 30 days × 5 sources, and a second run from the cache. No time is asserted."""
    events = _write_events(tmp_path / "events", files=30, rows_per_file=325_000, shuffled=shuffled)
    spine = _write_spine(tmp_path / "spine", files=30, rows_per_file=33_500)
    source_fingerprints(events[:1], "event_ts", threads=1)  # imports and kernels warmed up
    reads = _timed_reads(monkeypatch)

    t0 = time.perf_counter()
    fp_events = source_fingerprints(events, "event_ts")
    wall_events = time.perf_counter() - t0
    t0 = time.perf_counter()
    fp_spine = source_fingerprints(spine, "ts")
    wall_spine = time.perf_counter() - t0

    reads.clear()
    t0 = time.perf_counter()
    source_fingerprints(events, "event_ts", threads=1)
    one_thread = time.perf_counter() - t0
    read_one_thread = sum(reads)

    visible = {
        "user_activity": VisibleRange(30 * DAY_US + 5 * MINUTE_US),
        "artwork_popularity": VisibleRange(7 * DAY_US + 5 * MINUTE_US),
        "user_artwork_engagement": VisibleRange.lifetime(),
        "events_1d": VisibleRange(DAY_US),
        "spine": VisibleRange.spine(),
    }
    fps = {name: fp_events for name in visible} | {"spine": fp_spine}
    days = [START + dt.timedelta(days=i) for i in range(30)]
    t0 = time.perf_counter()
    for day in days:
        day_input_digests(fps, visible, day)
    digest_seconds = time.perf_counter() - t0

    cache = FingerprintCache(tmp_path / "cache.json")
    source_fingerprints(events, "event_ts", cache=cache)
    cache.save()
    t0 = time.perf_counter()
    again = source_fingerprints(events, "event_ts", cache=FingerprintCache(tmp_path / "cache.json"))
    cached = time.perf_counter() - t0
    assert again == fp_events

    order = "shuffled" if shuffled else "time-ordered"
    print(
        f"\n[staleness cost, {order}] events: {fp_events.rows:,} rows in {len(events)} files: "
        f"{wall_events:.2f}s wall (default threads); one thread {one_thread:.2f}s = "
        f"read {read_one_thread:.2f}s + hash {one_thread - read_one_thread:.2f}s | "
        f"spine: {fp_spine.rows:,} rows {wall_spine:.2f}s wall | "
        f"day digests 30 days × 5 sources: {digest_seconds * 1000:.1f}ms | "
        f"second run from the cache: {cached * 1000:.1f}ms"
    )
    assert fp_events.rows == 30 * 325_000
