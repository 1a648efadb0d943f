"""count_distinct as two prefix counts (`_Group.distinct_bounds`): its edges, on both engines.

A value counts for a probe at t when its latest row before t is inside `[t - w, t)`; the core
computes that as #{rows before t} - #{rows whose value recurs, or leaves the window, before t}.
"""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from daedalus.catalog.model import AggFunction
from daedalus.pit import Engine, get_aggregate_pit_table
from daedalus.pit.reference import reference_pit_table
from daedalus.pit.spec import AggregationSpec, SourceSpec
from tests.pit_strategies import TS, assert_bit_equal

SCHEMA = pa.schema([("user_id", pa.int64()), ("ts", TS), ("x", pa.float64())])
W = 10
MAX = 2**63 - 1


def _count(
    rows: list[tuple[int, int, float | None]],
    probes: list[tuple[int, int]],
    window: int | None,
    *,
    reference: bool = True,
) -> list[int]:
    """Both engines' counts, equal to each other (and to the brute-force reference)."""
    table = pa.table(
        {
            "user_id": pa.array([r[0] for r in rows], pa.int64()),
            "ts": pa.array([r[1] for r in rows], TS),
            "x": pa.array([r[2] for r in rows], pa.float64()),
        },
        schema=SCHEMA,
    )
    source = SourceSpec(name="events", timestamp="ts", schema=SCHEMA, table=table)
    spec = AggregationSpec(
        name="n",
        function=AggFunction.COUNT_DISTINCT,
        keys="user_id",
        source=source,
        window_us=window,
        column="x",
    )
    spine = pa.table(
        {
            "user_id": pa.array([p[0] for p in probes], pa.int64()),
            "ts": pa.array([p[1] for p in probes], TS),
        }
    )
    duck, polars = (get_aggregate_pit_table(e)(spine, [spec]).select(["n"]) for e in Engine)
    assert_bit_equal(duck, polars, labels=("duckdb", "polars"))
    if reference:
        want = reference_pit_table(spine, [spec]).select(["n"])
        assert_bit_equal(duck, want, labels=("duckdb", "reference"))
    return duck["n"].to_pylist()


@pytest.mark.parametrize("window", [W, None])
def test_window_edges_ties_and_signed_zeros(window) -> None:
    rows = [
        (1, 100, 1.0),
        (1, 100, 1.0),  # a tie on (key, value, time): one value
        (1, 103, -0.0),
        (1, 104, 0.0),  # the same number as -0.0
        (1, 105, None),  # not a value
        (1, 105, 2.0),
        (2, 100, 1.0),  # another key
    ]
    # t = 100: nothing before; 101: {1}; 110: {1 (at 100 = t - w), 0, 2}; 111: 100 has left
    # a 10 us window; 114: the zero at 104 is still in; 115: only 2.0 (at 105) is in; 116: none.
    probes = [(1, 100), (1, 101), (1, 110), (1, 111), (1, 114), (1, 115), (1, 116), (3, 200)]
    got = _count(rows, probes, window)
    if window is None:
        assert got == [0, 1, 3, 3, 3, 3, 3, 0]
    else:
        assert got == [0, 1, 3, 2, 2, 1, 0, 0]


def test_a_window_past_the_end_of_time() -> None:
    """Rows whose `T + w` does not fit an int64 stay in the window of every later probe. (The
    reference reads times as Python datetimes, which end at year 9999.)"""
    rows = [(1, MAX - 30, 1.0), (1, MAX - 20, 2.0), (1, MAX - 15, 1.0)]
    got = _count(rows, [(1, MAX - 25), (1, MAX - 10), (1, MAX - 1)], 2**62, reference=False)
    assert got == [1, 2, 2]


@pytest.mark.parametrize("window", [W, None])
def test_rows_in_time_order_or_not_count_the_same(window) -> None:
    """Rows read in time order (an append-only log) take a shorter sort, by (key, value) only;
    the same rows in any other order give the same counts, equal to the reference."""
    rng = random.Random(7)
    rows = [
        (rng.randrange(3), rng.randrange(60), rng.choice([1.0, 2.0, -0.0, 0.0, 3.5, None]))
        for _ in range(200)
    ]
    rows.sort(key=lambda r: r[1])  # time order, keys interleaved
    probes = [(rng.randrange(4), rng.randrange(75)) for _ in range(120)]
    in_order = _count(rows, probes, window)
    shuffled = rows[:]
    rng.shuffle(shuffled)
    assert _count(shuffled, probes, window) == in_order
    assert _count(rows[::-1], probes, window) == in_order
