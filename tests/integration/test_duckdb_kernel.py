"""The DuckDB window kernel agrees exactly with the brute-force reference of the kernel contract."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from daedalus.adapters.duckdb.kernel import DuckDBKernel

from daedalus.pit.kernel import KEY, PROBE_TIME, WindowKernel, WindowOp, WindowRequest
from tests.kernel_contract import (
    EMPTY_WINDOW,
    INT64_MAX,
    INT64_MIN,
    chunked,
    every_op,
    one_key_events,
    probes_at,
)
from tests.kernel_contract import assert_matches_reference as check_against_reference

KERNEL = DuckDBKernel(threads=2)


def assert_matches_reference(
    events: pa.Table, probes: pa.Table, requests: list[WindowRequest], kernel: WindowKernel = KERNEL
) -> pa.Table:
    return check_against_reference(kernel, events, probes, requests)


# ----------------------------------------------------------------------------- named cases


def test_ties_between_events_and_several_probes_at_one_time() -> None:
    events = one_key_events([5, 5, 5, 6, 6], [1, 2, 2, 3, None])
    got = assert_matches_reference(events, probes_at([5, 6, 6, 7, 5]), every_op(1))
    assert got.to_pydict() == {
        "count": [0, 3, 3, 1, 0],
        "sum": [0, 5, 5, 3, 0],
        "min": [None, 1, 1, 3, None],
        "max": [None, 2, 2, 3, None],
        "count_distinct": [0, 2, 2, 1, 0],
    }


def test_bounds_of_different_probes_coincide() -> None:
    """One probe's lower bound t - w is another probe's t, with events at both times."""
    events = one_key_events([2, 5, 5, 8, 8, 11], [1, 6, 2, 9, 3, 7])
    probes = probes_at([5, 8, 8, 11, 14, 5])
    got = assert_matches_reference(events, probes, every_op(3))
    assert got.to_pydict() == {
        "count": [1, 2, 2, 2, 1, 1],
        "sum": [1, 8, 8, 12, 7, 1],
        "min": [1, 2, 2, 3, 7, 1],
        "max": [1, 6, 6, 9, 7, 1],
        "count_distinct": [1, 2, 2, 2, 1, 1],
    }


def test_all_null_and_all_zero_columns() -> None:
    for values, window in itertools.product(([None, None], [0, None], [0, 0]), (None, 1)):
        events = one_key_events([1, 2], values)
        assert_matches_reference(events, probes_at([0, 2, 3]), every_op(window))


def test_empty_and_negative_windows_are_empty() -> None:
    events = one_key_events([1, 2, 3], [1, 2, 3])
    for window in (0, -1, -(2**70)):
        got = assert_matches_reference(events, probes_at([4]), every_op(window))
        assert got.to_pydict() == EMPTY_WINDOW


def test_empty_events_probes_and_requests() -> None:
    no_events = one_key_events([], [])
    got = assert_matches_reference(no_events, probes_at([1, 2]), every_op(5))
    assert got.to_pydict() == {k: v * 2 for k, v in EMPTY_WINDOW.items()}
    got = assert_matches_reference(one_key_events([1], [1]), probes_at([]), every_op(5))
    assert got.num_rows == 0 and got.num_columns == len(WindowOp)
    assert all(field.type == pa.int64() for field in got.schema)
    got = assert_matches_reference(no_events, probes_at([]), every_op(None))
    assert got.num_rows == 0 and got.num_columns == len(WindowOp)
    got = KERNEL.window_aggregate(one_key_events([1], [1]), probes_at([2, 3]), [])
    assert got.num_columns == 0


def test_sums_whose_prefixes_leave_int64() -> None:
    """A key's prefix sum passes 2**63 while every window sum fits: the result stays exact."""
    big = 2**62 + 12345
    events = one_key_events(list(range(1, 9)), [big, big, -big, -big, big, big, -big, -big])
    sums = [WindowRequest(f"sum{w}", WindowOp.SUM, "v", "ts", w) for w in (1, 3)]
    # Windows of 3 hold 3 consecutive events (sum +-big) for t in 4..9.
    got = assert_matches_reference(events, probes_at(list(range(4, 10))), sums)
    assert got["sum3"].to_pylist() == [big, -big, -big, big, big, -big]
    assert got["sum1"].to_pylist() == [-big, -big, big, big, -big, -big]


def test_events_and_probes_at_the_int64_limits() -> None:
    """Narrow spans next to the limits: no bound may overflow."""
    for times in ([INT64_MAX - 1, INT64_MAX, INT64_MAX], [INT64_MIN, INT64_MIN + 1, INT64_MIN]):
        events = one_key_events(times, [3, 4, 3])
        probes = probes_at([INT64_MIN, INT64_MIN + 1, 0, INT64_MAX - 1, INT64_MAX])
        for window in (None, 1, 2, INT64_MAX, 2**64):
            assert_matches_reference(events, probes, every_op(window))


def test_many_columns_times_and_windows_in_one_call() -> None:
    """Many value columns, two time columns and windows shared between requests."""
    rng = np.random.default_rng(5)
    n = 600
    columns: dict[str, Any] = {
        KEY: pa.array(rng.integers(0, 6, n)),
        "ts": pa.array(rng.integers(0, 300, n)),
        "ts2": pa.array(rng.integers(0, 300, n)),
    }
    for i in range(6):
        columns[f"c{i}"] = pa.array(np.ones(n, np.int64), mask=rng.random(n) < 0.5)
    for i in range(4):
        values = rng.integers(-(2**32) + 1, 2**32, n)
        columns[f"s{i}"] = pa.array(values, pa.int64(), mask=rng.random(n) < 0.1)
    columns["m"] = pa.array(rng.integers(INT64_MIN, INT64_MAX, n), mask=rng.random(n) < 0.1)
    events = pa.table(columns)
    probes = pa.table(
        {KEY: pa.array(rng.integers(0, 7, 150)), PROBE_TIME: pa.array(rng.integers(-5, 310, 150))}
    )
    requests = []
    for time, window in itertools.product(("ts", "ts2"), (None, 7, 40, 150)):
        for column in [f"c{i}" for i in range(6)]:
            requests.append(
                WindowRequest(f"n_{column}_{time}_{window}", WindowOp.COUNT, column, time, window)
            )
        for column in [f"s{i}" for i in range(4)]:
            requests.append(
                WindowRequest(f"s_{column}_{time}_{window}", WindowOp.SUM, column, time, window)
            )
        for op in (WindowOp.MIN, WindowOp.MAX, WindowOp.COUNT_DISTINCT):
            requests.append(WindowRequest(f"{op.value}_{time}_{window}", op, "m", time, window))
    assert_matches_reference(events, probes, requests)


def test_counts_packed_into_one_sum_fill_their_lanes_without_carrying() -> None:
    """Counts of several columns share one window SUM, each in its own lane of bits: with 2**k
    events of one key, a column present in every row counts 2**k, the largest a lane holds,
    next to columns with other counts; 20 columns need two packed sums."""
    rng = np.random.default_rng(11)
    n = 16
    columns: dict[str, Any] = {KEY: pa.array(np.ones(n, np.int64)), "ts": pa.array(np.arange(n))}
    for i in range(20):
        present = np.ones(n, bool) if i % 3 == 0 else rng.random(n) < 0.6
        columns[f"c{i}"] = pa.array(np.full(n, i, np.int64), mask=~present)
    events = pa.table(columns)
    requests = [
        WindowRequest(f"n{i}_{w}", WindowOp.COUNT, f"c{i}", "ts", w)
        for i in range(20)
        for w in (None, 5)
    ]
    got = assert_matches_reference(events, probes_at([n, 0, 7]), requests)
    assert got["n0_None"].to_pylist() == [n, 0, 7]


def random_case(seed: int, n: int, m: int) -> tuple[pa.Table, pa.Table, list[WindowRequest]]:
    """A larger table, big enough that DuckDB splits the work between threads."""
    rng = np.random.default_rng(seed)
    keys = (rng.random(n) ** 3 * 2000).astype(np.int64)  # skewed: one hot key
    ts = rng.integers(0, 100_000, n)
    events = pa.table(
        {
            KEY: pa.array(keys),
            "ts": pa.array(ts),
            "ts2": pa.array(ts + rng.integers(0, 500, n)),
            "v": pa.array(rng.integers(-(2**32), 2**32, n), pa.int64(), mask=rng.random(n) < 0.2),
            "c": pa.array(rng.integers(0, 5, n), pa.int64(), mask=rng.random(n) < 0.5),
        }
    )
    probes = pa.table(
        {
            KEY: pa.array((rng.random(m) ** 3 * 2100).astype(np.int64)),
            PROBE_TIME: pa.array(rng.integers(0, 101_000, m)),
        }
    )
    requests = [
        WindowRequest(f"{op.value}_{column}_{time}_{w}", op, column, time, w)
        for op in WindowOp
        for column in ("v", "c")
        for time in ("ts", "ts2")
        for w in (None, 50, 3000)
    ]
    return events, probes, requests


def test_thread_count_and_row_order_do_not_change_a_large_result() -> None:
    events, probes, requests = random_case(3, 300_000, 20_000)
    expected = DuckDBKernel(threads=1).window_aggregate(events, probes, requests)
    assert DuckDBKernel(threads=2).window_aggregate(events, probes, requests).equals(expected)
    rng = np.random.default_rng(4)
    ev_take = pa.array(rng.permutation(events.num_rows))
    pr_take = pa.array(rng.permutation(probes.num_rows))
    shuffled = DuckDBKernel(threads=2).window_aggregate(
        chunked(events.take(ev_take), [1000, 150_000]), probes.take(pr_take), requests
    )
    assert shuffled.equals(expected.take(pr_take))
    # Spot-check against the reference: the probes of a few keys, with just those keys' events.
    for key in (0, 1, 500, 1999):
        some_events = events.filter(pa.compute.equal(events[KEY], key))
        some_probes = probes.filter(pa.compute.equal(probes[KEY], key)).slice(0, 40)
        assert_matches_reference(some_events, some_probes, requests)


def test_key_chunks_give_the_same_result() -> None:
    """Split into many key chunks (some with probes but no events), the answer is unchanged."""
    events, probes, requests = random_case(11, 30_000, 3_000)
    expected = KERNEL.window_aggregate(events, probes, requests)
    for chunk_rows in (1_000, 7_777):
        chunked_kernel = DuckDBKernel(threads=2, chunk_rows=chunk_rows)
        assert chunked_kernel.window_aggregate(events, probes, requests).equals(expected)
    # Few events, many chunks: most chunks hold probes without events, or nothing at all.
    few = events.slice(0, 40)
    tiny = DuckDBKernel(threads=1, chunk_rows=3)
    assert tiny.window_aggregate(few, probes, requests).equals(
        KERNEL.window_aggregate(few, probes, requests)
    )
    with pytest.raises(ValueError, match="chunk_rows"):
        DuckDBKernel(chunk_rows=0)


def test_concurrent_calls_are_independent() -> None:
    events, probes, requests = random_case(8, 20_000, 2_000)
    expected = KERNEL.window_aggregate(events, probes, requests)
    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(lambda _: KERNEL.window_aggregate(events, probes, requests), range(4))
        )
    assert all(result.equals(expected) for result in results)


def test_memory_limit_and_default_threads_are_accepted() -> None:
    events, probes, requests = random_case(9, 5_000, 500)
    expected = KERNEL.window_aggregate(events, probes, requests)
    kernel = DuckDBKernel(memory_limit="512MB")
    assert kernel.name == "duckdb"
    assert kernel.window_aggregate(events, probes, requests).equals(expected)


def test_contract_violations_are_rejected() -> None:
    events = one_key_events([1], [1])
    with pytest.raises(KeyError, match="nope"):
        KERNEL.window_aggregate(
            events, probes_at([2]), [WindowRequest("a", WindowOp.SUM, "nope", "ts", 1)]
        )
    with pytest.raises(ValueError, match="unique"):
        KERNEL.window_aggregate(events, probes_at([2]), every_op(1) + every_op(2))
    with pytest.raises(ValueError, match="threads"):
        DuckDBKernel(threads=0)
