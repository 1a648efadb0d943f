"""Cutting a source down to what probes can see: lookback tiers, probed key combinations, chunks.

`compute_pit_table` splits the specs of one source into tiers by how far back they look (one
kernel call each, over only the rows inside the tier's reach), for several keys keeps only the
rows of probed key combinations, and computes a large tier in chunks by a hash of the key. None
of it may change a bit of the output.
"""

from __future__ import annotations

import os
from unittest import mock

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings

from daedalus.catalog.model import AggFunction, FilterDef
from daedalus.pit import Engine, get_aggregate_pit_table
from daedalus.pit import compute as pit_compute
from daedalus.pit.compute import _tiers
from daedalus.pit.reference import reference_pit_table
from daedalus.pit.spec import AggregationSpec, SourceSpec
from tests.pit_strategies import MINUTE, TS, assert_bit_equal, problems

EXAMPLES = int(os.environ.get("DAEDA_PIT_EXAMPLES", "300"))
HOUR, DAY = 60 * MINUTE, 24 * 60 * MINUTE
BASE = 1_790_000_000_000_000


def _always_split():  # every distinct reach its own tier, however few rows it saves
    return mock.patch.object(pit_compute, "_TIER_MIN_SAVING", 1)


class TestTiers:
    def test_each_spec_goes_to_the_narrowest_tier_that_reaches_as_far(self) -> None:
        ts = np.arange(0, 30 * DAY, HOUR, dtype=np.int64)  # a row an hour for 30 days
        t_min = 30 * DAY
        with _always_split():
            tiers = _tiers(ts, t_min, [DAY, None, HOUR, 7 * DAY, DAY])
        assert tiers == [(HOUR, [2]), (DAY, [0, 4]), (7 * DAY, [3]), (None, [1])]

    def test_tiers_merge_while_merging_adds_little_work(self) -> None:
        ts = np.arange(0, 30 * DAY, MINUTE // 4, dtype=np.int64)  # 172,800 rows
        t_min = 30 * DAY
        # 1h: 240 rows, 1d: 5,760, 7d: 40,320, 30d: all, and lifetime the same rows.
        tiers = _tiers(ts, t_min, [HOUR, DAY, 7 * DAY, 30 * DAY, None])
        assert tiers == [(None, [0, 1, 2, 3, 4])]  # each saves under _TIER_MIN_SAVING
        # With 10,000 rows times features as the least saving: 1h merges into 1d (5,520 more
        # rows for one feature), 1d stays (34,560 more rows for two), 30d takes lifetime.
        with mock.patch.object(pit_compute, "_TIER_MIN_SAVING", 10_000):
            tiers = _tiers(ts, t_min, [HOUR, DAY, 7 * DAY, 30 * DAY, None])
        assert tiers == [(DAY, [0, 1]), (7 * DAY, [2]), (None, [3, 4])]

    def test_one_reach_is_one_tier(self) -> None:
        ts = np.arange(10, dtype=np.int64)
        assert _tiers(ts, 5, [None, None]) == [(None, [0, 1])]
        assert _tiers(ts, 5, [3, 3]) == [(3, [0, 1])]


class _Spy:
    """Wraps an engine's kernel and records the events rows of every call."""

    def __init__(self, kernel) -> None:
        self.kernel, self.calls = kernel, []

    def window_aggregate(self, events, probes, requests):
        self.calls.append((events.num_rows, len(requests)))
        return self.kernel.window_aggregate(events, probes, requests)


def _kernel(engine: str):
    if engine == "duckdb":
        from daedalus.adapters.duckdb.kernel import DuckDBKernel

        return DuckDBKernel()
    from daedalus.adapters.polars.kernel import PolarsKernel

    return PolarsKernel()


def _month_of_events(keys: int = 40, seed: int = 3) -> tuple[pa.Table, pa.Table]:
    rng = np.random.default_rng(seed)
    n = 30_000
    ts = BASE + np.sort(rng.integers(0, 30 * DAY, n))
    events = pa.table(
        {
            "user_id": pa.array(rng.integers(0, keys, n), pa.int64()),
            "artwork_id": pa.array(rng.integers(0, keys, n), pa.int64()),
            "event_ts": pa.array(ts, TS),
            "action": pa.array(rng.choice(["view", "like"], n)),
            "x": pa.array(np.round(rng.normal(100, 30, n), 3)),
        }
    )
    probes = 300
    spine = pa.table(
        {
            "user_id": pa.array(rng.integers(0, keys, probes), pa.int64()),
            "artwork_id": pa.array(rng.integers(0, keys, probes), pa.int64()),
            "ts": pa.array(BASE + 29 * DAY + rng.integers(0, DAY, probes), TS),
        }
    )
    return events, spine


def _specs(events: pa.Table, keys: tuple[str, ...]) -> list[AggregationSpec]:
    source = SourceSpec(name="events", timestamp="event_ts", schema=events.schema, table=events)
    view = (FilterDef("action", ("view",)),)
    made = []
    for i, (fn, column, window, filters) in enumerate(
        [
            (AggFunction.COUNT, None, HOUR, view),
            (AggFunction.SUM, "x", DAY, view),
            (AggFunction.MEAN, "x", 7 * DAY, ()),
            (AggFunction.STDDEV, "x", 7 * DAY, view),
            (AggFunction.COUNT_DISTINCT, "artwork_id", DAY, ()),
            (AggFunction.LAST, "action", None, ()),
            (AggFunction.LAST_N, "x", 30 * DAY, view),
            (AggFunction.MAX, "x", 30 * DAY, ()),
        ]
    ):
        made.append(
            AggregationSpec(
                name=f"f{i}",
                source=source,
                keys=keys,
                function=fn,
                column=column,
                window_us=window,
                delay_us=5 * MINUTE,
                filters=filters,
                n=5 if fn is AggFunction.LAST_N else None,
            )
        )
    return made


@pytest.mark.parametrize("engine", ["duckdb", "polars"])
def test_a_late_day_over_a_month_runs_in_tiers_with_the_bits_of_one_call(engine: str) -> None:
    events, spine = _month_of_events()
    specs = _specs(events, ("user_id",))
    spy = _Spy(_kernel(engine))
    with _always_split():
        tiered = pit_compute.compute_pit_table(spine, specs, spy)
    # 1h, 1d, 7d, and 30d with lifetime (the month is all there is: the same rows): four
    # kernel calls for one source, the narrow ones over few rows.
    assert len(spy.calls) == 4
    rows = sorted(r for r, _ in spy.calls)
    assert rows[0] < rows[-1] / 10
    with mock.patch.object(pit_compute, "_TIER_MIN_SAVING", float("inf")):
        whole = pit_compute.compute_pit_table(spine, specs, _kernel(engine))
    assert_bit_equal(tiered, whole, labels=("tiers", "one call"))
    assert_bit_equal(tiered, reference_pit_table(spine, specs), labels=(engine, "reference"))


@pytest.mark.parametrize("engine", ["duckdb", "polars"])
def test_only_probed_key_combinations_reach_the_kernel(engine: str) -> None:
    events, spine = _month_of_events(keys=200)
    specs = _specs(events, ("user_id", "artwork_id"))
    spy = _Spy(_kernel(engine))
    got = pit_compute.compute_pit_table(spine, specs, spy)
    pairs = set(zip(spine["user_id"].to_pylist(), spine["artwork_id"].to_pylist(), strict=True))
    of_pairs = sum(
        (u, a) in pairs
        for u, a in zip(
            events["user_id"].to_pylist(), events["artwork_id"].to_pylist(), strict=True
        )
    )
    assert max(r for r, _ in spy.calls) == of_pairs  # not every row of a probed user or artwork
    assert_bit_equal(got, reference_pit_table(spine, specs), labels=(engine, "reference"))


@pytest.mark.parametrize("engine", ["duckdb", "polars"])
def test_a_large_tier_runs_in_key_chunks_with_the_bits_of_one_call(engine: str) -> None:
    events, spine = _month_of_events(keys=200)
    specs = _specs(events, ("user_id",))
    spy = _Spy(_kernel(engine))
    with mock.patch.object(pit_compute, "_CHUNK_CELLS", 4_000 * 8):
        chunked = pit_compute.compute_pit_table(spine, specs, spy)
    # One source, one tier (its rows are few): the ~23,000 rows of probed keys in chunks of
    # about 4,000 (one kernel call each).
    assert len(spy.calls) >= 5
    assert max(r for r, _ in spy.calls) < 6_000
    whole = pit_compute.compute_pit_table(spine, specs, _kernel(engine))
    assert_bit_equal(chunked, whole, labels=("chunks", "one call"))


@settings(max_examples=EXAMPLES)
@given(problems(with_inf=True))
def test_tiers_and_chunks_give_the_reference_bits_on_generated_problems(problem) -> None:
    spine, specs = problem
    with _always_split(), mock.patch.object(pit_compute, "_CHUNK_CELLS", 4):
        duck = get_aggregate_pit_table(Engine.DUCKDB)(spine, specs)
        polars = get_aggregate_pit_table(Engine.POLARS)(spine, specs)
    assert_bit_equal(duck, polars, labels=("duckdb", "polars"))
    assert_bit_equal(duck, reference_pit_table(spine, specs), labels=("duckdb", "reference"))
