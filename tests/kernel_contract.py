"""The window kernel contract for tests: a brute-force reference, checks and Hypothesis scenarios."""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence

import pyarrow as pa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from daedalus.pit.kernel import KEY, PROBE_TIME, WindowKernel, WindowOp, WindowRequest

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
EXTREME_TIMES = [INT64_MIN, INT64_MIN + 1, -5, -1, 0, 1, 5, INT64_MAX - 1, INT64_MAX]
EXTREME_VALUES = [INT64_MIN, INT64_MIN + 1, -1, 0, 1, INT64_MAX - 1, INT64_MAX]

# Keeps the default suite fast; set DAEDALUS_KERNEL_EXAMPLES=5000 for a deep fuzz.
EXAMPLES = int(os.environ.get("DAEDALUS_KERNEL_EXAMPLES", "200"))
FAST = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def reference_window_aggregate(
    events: pa.Table, probes: pa.Table, requests: Sequence[WindowRequest]
) -> pa.Table:
    """What every WindowKernel must return, computed by brute force in pure Python."""
    ev = events.to_pydict()
    pr = probes.to_pydict()
    out: dict[str, list[int | None]] = {r.output: [] for r in requests}
    for key, t in zip(pr[KEY], pr[PROBE_TIME], strict=True):
        for r in requests:
            values = [
                v
                for k, ts, v in zip(ev[KEY], ev[r.time], ev[r.column], strict=True)
                if k == key
                and ts < t
                and (r.window_us is None or ts >= t - r.window_us)
                and v is not None
            ]
            match r.op:
                case WindowOp.COUNT:
                    out[r.output].append(len(values))
                case WindowOp.SUM:
                    out[r.output].append(sum(values))
                case WindowOp.MIN:
                    out[r.output].append(min(values) if values else None)
                case WindowOp.MAX:
                    out[r.output].append(max(values) if values else None)
                case WindowOp.COUNT_DISTINCT:
                    out[r.output].append(len(set(values)))
    return pa.table({name: pa.array(vals, pa.int64()) for name, vals in out.items()})


def chunked(table: pa.Table, cuts: list[int]) -> pa.Table:
    """The same rows split into several chunks at `cuts` (slices: chunks with offsets)."""
    bounds = sorted({0, table.num_rows, *(c for c in cuts if 0 < c < table.num_rows)})
    if len(bounds) < 2:
        return table
    return pa.concat_tables([table.slice(a, b - a) for a, b in itertools.pairwise(bounds)])


def assert_matches_reference(
    kernel: WindowKernel, events: pa.Table, probes: pa.Table, requests: list[WindowRequest]
) -> pa.Table:
    """The kernel's answer, checked equal to the brute-force reference."""
    got = kernel.window_aggregate(events, probes, requests)
    expected = reference_window_aggregate(events, probes, requests)
    assert got.schema == expected.schema
    if requests:  # a table without columns has no rows
        assert got.num_rows == probes.num_rows
    for name in expected.column_names:
        assert got[name].to_pylist() == expected[name].to_pylist(), name
    return got


# ----------------------------------------------------------------------------- strategies

OPS = list(WindowOp)


@st.composite
def scenarios(draw: st.DrawFn, *, extreme: bool = False) -> tuple[pa.Table, pa.Table, list]:
    """Tiny tables where keys, times and values collide a lot, plus random requests.

    "v" holds small values (every op); "x" holds int64 extremes (all ops but SUM, whose window
    sum the core guarantees to fit). `extreme` draws times at the int64 limits and huge windows,
    which forces the wide-range fallback of the packed (key, time) codes and saturation.
    """
    n = draw(st.integers(0, 30))
    m = draw(st.integers(0, 15))
    times = st.sampled_from(EXTREME_TIMES) if extreme else st.integers(0, 12)
    keys = st.sampled_from([INT64_MIN, -1, 0, INT64_MAX]) if extreme else st.integers(0, 2)
    small = st.one_of(st.none(), st.integers(-3, 3))
    wide = st.one_of(st.none(), st.sampled_from(EXTREME_VALUES), st.integers(-3, 3))
    events = pa.table(
        {
            KEY: pa.array(draw(st.lists(keys, min_size=n, max_size=n)), pa.int64()),
            "ts": pa.array(draw(st.lists(times, min_size=n, max_size=n)), pa.int64()),
            "ts2": pa.array(draw(st.lists(times, min_size=n, max_size=n)), pa.int64()),
            "v": pa.array(draw(st.lists(small, min_size=n, max_size=n)), pa.int64()),
            "x": pa.array(draw(st.lists(wide, min_size=n, max_size=n)), pa.int64()),
        }
    )
    probe_keys = st.sampled_from([INT64_MIN, -1, 0, 7, INT64_MAX]) if extreme else st.integers(0, 3)
    probe_times = times if extreme else st.integers(-2, 14)
    probes = pa.table(
        {
            KEY: pa.array(draw(st.lists(probe_keys, min_size=m, max_size=m)), pa.int64()),
            PROBE_TIME: pa.array(draw(st.lists(probe_times, min_size=m, max_size=m)), pa.int64()),
        }
    )
    if extreme:
        windows = st.sampled_from([None, 0, 1, 2, 10, 2**62, INT64_MAX, 2**64 + 3])
    else:
        windows = st.one_of(st.none(), st.integers(-1, 15))
    requests = []
    for i in range(draw(st.integers(0, 8))):
        op = draw(st.sampled_from(OPS))
        column = "v" if op == WindowOp.SUM else draw(st.sampled_from(["v", "x"]))
        time = draw(st.sampled_from(["ts", "ts2"]))
        requests.append(WindowRequest(f"r{i}", op, column, time, draw(windows)))
    cuts = draw(st.lists(st.integers(1, 29), max_size=3))
    return chunked(events, cuts), chunked(probes, cuts), requests


H = 3_600_000_000  # an hour in microseconds


def one_key_events(times: list[int], values: list[int | None]) -> pa.Table:
    return pa.table(
        {
            KEY: pa.array([1] * len(times), pa.int64()),
            "ts": pa.array(times, pa.int64()),
            "v": pa.array(values, pa.int64()),
        }
    )


def probes_at(times: list[int], key: int = 1) -> pa.Table:
    return pa.table(
        {KEY: pa.array([key] * len(times), pa.int64()), PROBE_TIME: pa.array(times, pa.int64())}
    )


def every_op(window: int | None) -> list[WindowRequest]:
    return [WindowRequest(op.value, op, "v", "ts", window) for op in WindowOp]


EMPTY_WINDOW = {"count": [0], "sum": [0], "min": [None], "max": [None], "count_distinct": [0]}
