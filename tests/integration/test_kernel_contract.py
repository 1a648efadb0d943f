"""The kernel contract, run against every WindowKernel: each agrees with the brute-force reference."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest
from daedalus.adapters.duckdb.kernel import DuckDBKernel
from daedalus.adapters.polars.kernel import PolarsKernel
from hypothesis import given, settings
from hypothesis import strategies as st

from daedalus.pit.kernel import KEY, PROBE_TIME, WindowKernel
from tests.kernel_contract import (
    EMPTY_WINDOW,
    EXAMPLES,
    FAST,
    H,
    assert_matches_reference,
    every_op,
    one_key_events,
    probes_at,
    scenarios,
)

KERNELS = pytest.mark.parametrize(
    "kernel", [DuckDBKernel(threads=2), PolarsKernel()], ids=["duckdb", "polars"]
)


@KERNELS
@FAST
@given(scenarios())
def test_matches_the_reference(kernel: WindowKernel, case: tuple[pa.Table, pa.Table, list]) -> None:
    assert_matches_reference(kernel, *case)


@KERNELS
@settings(FAST, max_examples=max(EXAMPLES // 4, 10))
@given(scenarios(extreme=True))
def test_matches_the_reference_at_the_int64_limits(
    kernel: WindowKernel, case: tuple[pa.Table, pa.Table, list]
) -> None:
    assert_matches_reference(kernel, *case)


@KERNELS
@settings(FAST, max_examples=max(EXAMPLES // 4, 10))
@given(scenarios(), st.randoms(use_true_random=False))
def test_row_order_does_not_matter(
    kernel: WindowKernel, case: tuple[pa.Table, pa.Table, list], rnd: Any
) -> None:
    events, probes, requests = case
    expected = kernel.window_aggregate(events, probes, requests)
    ev_order = list(range(events.num_rows))
    pr_order = list(range(probes.num_rows))
    rnd.shuffle(ev_order)
    rnd.shuffle(pr_order)
    ev_take, pr_take = pa.array(ev_order, pa.int64()), pa.array(pr_order, pa.int64())
    shuffled = kernel.window_aggregate(events.take(ev_take), probes.take(pr_take), requests)
    assert shuffled.equals(expected.take(pr_take))


# ----------------------------------------------------------------------------- boundaries


@KERNELS
def test_an_event_at_exactly_t_is_excluded(kernel: WindowKernel) -> None:
    got = assert_matches_reference(
        kernel, one_key_events([10 * H], [5]), probes_at([10 * H]), every_op(H)
    )
    assert got.to_pydict() == EMPTY_WINDOW


@KERNELS
def test_an_event_at_exactly_t_minus_w_is_included(kernel: WindowKernel) -> None:
    events = one_key_events([9 * H - 1, 9 * H, 10 * H - 1, 10 * H], [100, 7, 3, 50])
    got = assert_matches_reference(kernel, events, probes_at([10 * H]), every_op(H))
    assert got.to_pydict() == {
        "count": [2],
        "sum": [10],
        "min": [3],
        "max": [7],
        "count_distinct": [2],
    }


@KERNELS
def test_a_lifetime_window_has_no_lower_bound_but_keeps_the_strict_upper_one(
    kernel: WindowKernel,
) -> None:
    events = one_key_events([0, H, 5 * H, 10 * H, 11 * H], [4, None, 4, 9, 1])
    got = assert_matches_reference(kernel, events, probes_at([10 * H, 10 * H + 1]), every_op(None))
    assert got.to_pydict() == {
        "count": [2, 3],
        "sum": [8, 17],
        "min": [4, 4],
        "max": [4, 9],
        "count_distinct": [1, 2],
    }


@KERNELS
def test_probes_without_events_duplicates_and_all_null_windows(kernel: WindowKernel) -> None:
    events = one_key_events([1, 2, 3], [None, None, 5])
    probes = pa.table(
        {KEY: pa.array([1, 2, 1, 1], pa.int64()), PROBE_TIME: pa.array([3, 3, 3, 4], pa.int64())}
    )
    got = assert_matches_reference(kernel, events, probes, every_op(10))
    assert got.to_pydict() == {
        "count": [0, 0, 0, 1],
        "sum": [0, 0, 0, 5],
        "min": [None, None, None, 5],
        "max": [None, None, None, 5],
        "count_distinct": [0, 0, 0, 1],
    }
