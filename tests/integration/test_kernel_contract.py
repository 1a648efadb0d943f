"""The kernel contract, run against every WindowKernel: each agrees with the brute-force reference."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest
from daedalus.adapters.duckdb.kernel import DuckDBKernel
from daedalus.adapters.polars.kernel import PolarsKernel
from hypothesis import given, settings
from hypothesis import strategies as st

from daedalus.pit.kernel import WindowKernel
from tests.kernel_contract import EXAMPLES, FAST, assert_matches_reference, scenarios

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
