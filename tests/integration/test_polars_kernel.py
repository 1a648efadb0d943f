"""The Polars window kernel agrees exactly with the brute-force reference of the kernel contract."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from daedalus.adapters.polars import kernel as polars_kernel
from daedalus.adapters.polars.kernel import PolarsKernel

from daedalus.pit.kernel import KEY, PROBE_TIME, WindowKernel, WindowOp, WindowRequest
from tests.kernel_contract import (
    INT64_MAX,
    INT64_MIN,
    chunked,
    every_op,
    one_key_events,
    probes_at,
)
from tests.kernel_contract import assert_matches_reference as check_against_reference

KERNEL = PolarsKernel()


def assert_matches_reference(
    events: pa.Table, probes: pa.Table, requests: list[WindowRequest], kernel: WindowKernel = KERNEL
) -> pa.Table:
    return check_against_reference(kernel, events, probes, requests)


# ----------------------------------------------------------------------------- named cases


def test_empty_events_probes_and_requests() -> None:
    no_events = one_key_events([], [])
    got = assert_matches_reference(no_events, probes_at([1, 2]), every_op(5))
    assert got.to_pydict() == {
        "count": [0, 0],
        "sum": [0, 0],
        "min": [None, None],
        "max": [None, None],
        "count_distinct": [0, 0],
    }
    got = assert_matches_reference(one_key_events([1], [1]), probes_at([]), every_op(5))
    assert got.num_rows == 0 and got.num_columns == len(WindowOp)
    assert all(field.type == pa.int64() for field in got.schema)
    got = KERNEL.window_aggregate(one_key_events([1], [1]), probes_at([2]), [])
    assert got.num_columns == 0


def test_events_and_probes_at_the_int64_limits() -> None:
    """Narrow spans next to the limits: no bound may overflow while clamping or saturating."""
    for times in ([INT64_MAX - 1, INT64_MAX, INT64_MAX], [INT64_MIN, INT64_MIN + 1, INT64_MIN]):
        events = one_key_events(times, [3, 4, 3])
        probes = probes_at([INT64_MIN, INT64_MIN + 1, 0, INT64_MAX - 1, INT64_MAX])
        for window in (None, 1, 2, INT64_MAX, 2**64):
            assert_matches_reference(events, probes, every_op(window))


def test_long_windows_span_many_range_minimum_blocks() -> None:
    """Hundreds of events per key, so MIN/MAX windows cross whole blocks (the sparse table)."""
    rng = np.random.default_rng(7)
    n = 2500
    values = rng.integers(-(10**6), 10**6, n)
    events = pa.table(
        {
            KEY: pa.array(rng.integers(0, 3, n), pa.int64()),
            "ts": pa.array(rng.integers(0, 400, n), pa.int64()),
            "v": pa.array(values, pa.int64(), mask=rng.random(n) < 0.2),
        }
    )
    probes = pa.table(
        {
            KEY: pa.array(rng.integers(0, 4, 60), pa.int64()),
            PROBE_TIME: pa.array(rng.integers(-5, 410, 60), pa.int64()),
        }
    )
    requests = [
        WindowRequest(f"{op.value}_{w}", op, "v", "ts", w)
        for op in WindowOp
        for w in (None, 3, 40, 250)
    ]
    assert_matches_reference(chunked(events, [700, 701, 1800]), probes, requests)


def test_many_keys_and_the_packed_code_fallback_agree() -> None:
    """A time span too wide to pack with the key ids takes the rank fallback; same answers."""
    rng = np.random.default_rng(11)
    n = 400
    keys = rng.integers(0, 50, n)
    times = rng.integers(0, 60, n)
    requests = [WindowRequest(op.value, op, "v", "ts", 7) for op in WindowOp]
    values = pa.array(rng.integers(-5, 5, n), pa.int64(), mask=rng.random(n) < 0.1)
    probes = pa.table(
        {KEY: pa.array(rng.integers(0, 55, 80)), PROBE_TIME: pa.array(rng.integers(0, 65, 80))}
    )
    narrow = pa.table({KEY: pa.array(keys), "ts": pa.array(times), "v": values})
    got = assert_matches_reference(narrow, probes, requests)
    # One far-away event of another key widens the span past 2**63 / n_keys.
    far = pa.table(
        {KEY: pa.array([10**6]), "ts": pa.array([INT64_MAX]), "v": pa.array([1], pa.int64())}
    )
    widened = pa.concat_tables([narrow, far])
    assert assert_matches_reference(widened, probes, requests).equals(got)


@pytest.mark.parametrize("threads", [1, 3])
def test_the_thread_count_does_not_change_the_result(
    threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(3)
    n = 3000
    events = pa.table(
        {
            KEY: pa.array(rng.integers(0, 20, n)),
            "ts": pa.array(rng.integers(0, 1000, n)),
            "ts2": pa.array(rng.integers(0, 1000, n)),
            "v": pa.array(rng.integers(-9, 9, n), pa.int64(), mask=rng.random(n) < 0.3),
        }
    )
    probes = pa.table(
        {KEY: pa.array(rng.integers(0, 22, 500)), PROBE_TIME: pa.array(rng.integers(0, 1100, 500))}
    )
    requests = [
        WindowRequest(f"{op.value}_{time}_{w}", op, "v", time, w)
        for op in WindowOp
        for time in ("ts", "ts2")
        for w in (None, 50, 300)
    ]
    expected = KERNEL.window_aggregate(events, probes, requests)
    monkeypatch.setattr(polars_kernel.pl, "thread_pool_size", lambda: threads)
    assert KERNEL.window_aggregate(events, probes, requests).equals(expected)


def test_min_max_over_a_wide_time_range_run_in_key_chunks() -> None:
    """Times spread over ~2**61 us: the MIN/MAX codes no longer fit for all keys at once."""
    rng = np.random.default_rng(5)
    n = 300
    spread = 2**61
    events = pa.table(
        {
            KEY: pa.array(rng.integers(0, 6, n)),
            "ts": pa.array(rng.integers(0, 40, n) * (spread // 40)),
            "v": pa.array(rng.integers(-9, 9, n), pa.int64(), mask=rng.random(n) < 0.2),
        }
    )
    probes = pa.table(
        {
            KEY: pa.array(rng.integers(0, 7, 80)),
            PROBE_TIME: pa.array(rng.integers(-2, 44, 80) * (spread // 40)),
        }
    )
    requests = [
        WindowRequest(f"{op.value}_{w}", op, "v", "ts", w)
        for op in (WindowOp.MIN, WindowOp.MAX, WindowOp.COUNT, WindowOp.SUM)
        for w in (None, spread // 10, spread // 3, 2**62)
    ]
    assert_matches_reference(events, probes, requests)
