"""The window kernel: the exact integer window aggregates each engine computes (the engine seam).

The core turns every point-in-time feature into integer work (counts, exact integer sums of
limbs, min/max of order-preserving int64 keys, distinct counts) so that the two engines can only
agree: integer arithmetic has one answer. An engine implements `WindowKernel`; the core does the
encoding of values before and the decoding after (see `daedalus.pit.compute`).
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Sequence

import attrs
import numpy as np
import pyarrow as pa

__all__ = ["KEY", "PROBE_TIME", "WindowKernel", "WindowOp", "WindowRequest", "key_chunks"]

#: Column names the core uses in the tables it hands to a kernel.
KEY = "__key"
PROBE_TIME = "__t"


class WindowOp(enum.StrEnum):
    """Integer window operations over the non-null values of one int64 column."""

    COUNT = "count"  # number of non-null values; 0 for an empty window
    SUM = "sum"  # exact sum (the core guarantees it fits in int64); 0 for an empty window
    MIN = "min"  # smallest value; null for an empty window
    MAX = "max"  # largest value; null for an empty window
    COUNT_DISTINCT = "count_distinct"  # number of distinct non-null values; 0 when empty


@attrs.frozen
class WindowRequest:
    """Aggregate `op` of events' `column` over the window `[t - window_us, t)` on `time`.

    For probe `p` the window holds the events `e` with `e[KEY] == p[KEY]` and
    `p[PROBE_TIME] - window_us <= e[time] < p[PROBE_TIME]`; `window_us=None` drops the lower bound
    (a lifetime window). The upper bound is strict: an event at exactly `t` is not in the window.
    """

    output: str
    op: WindowOp
    column: str
    time: str
    window_us: int | None


class WindowKernel(abc.ABC):
    """An engine's window aggregation over integer columns; DuckDB and Polars implement it.

    Contract of `window_aggregate(events, probes, requests)`:

    - `events`: a table with `KEY` (int64, no nulls), the time columns the requests name (int64
      microseconds, no nulls) and the value columns (int64, nulls allowed: a null is skipped).
      Rows come in no particular order.
    - `probes`: a table with `KEY` (int64) and `PROBE_TIME` (int64), no nulls, any order,
      duplicates allowed.
    - returns a table with exactly one column per request, named `request.output`, of
      `len(probes)` rows in the probes' order: int64, non-null for COUNT, SUM and
      COUNT_DISTINCT; int64 nullable for MIN and MAX.
    - the result is a pure function of the inputs: no dependence on row order, thread count or
      partitioning (it is integer arithmetic, so this is achievable exactly).
    """

    name: str

    @abc.abstractmethod
    def window_aggregate(
        self, events: pa.Table, probes: pa.Table, requests: Sequence[WindowRequest]
    ) -> pa.Table:
        """Compute every request for every probe (see the class docstring)."""


def key_chunks(keys: np.ndarray, chunks: int) -> np.ndarray:
    """Each int64 key's chunk in `[0, chunks)`: a multiplicative hash, so that keys of any
    pattern spread evenly. The core splits a large group by it, and the DuckDB kernel its
    events and probes: a key's events and probes always land in the same chunk."""
    with np.errstate(over="ignore"):
        mixed = (keys.astype(np.int64).view(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> (
            np.uint64(32)
        )
    return (mixed % np.uint64(chunks)).astype(np.int64)
