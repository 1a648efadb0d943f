"""The Polars engine's window kernel: exact int64 window aggregates of events at probe times.

How it works (see `daedalus.pit.kernel` for the contract):

- Keys become dense ids (a Polars hash join); per time column, every event gets one int64
  code whose order is the (key id, time) order, so a single argsort sorts the events.
- A probe's window ``[t - w, t)`` is then an index range ``[lo, hi)`` of that order: ``hi`` is
  the number of events before ``(key, t)``, ``lo`` the number before ``(key, t - w)``; probes are
  sorted the same way, so each bound is one sorted binary search.
- COUNT and SUM are differences of prefix sums. The int64 prefix sums may wrap, but a difference
  of wrapped prefix sums is exact whenever the window's own sum fits in int64 (the core's
  guarantee), so no Int128 is needed.
- MIN and MAX are exact range-minimum queries (block prefix/suffix minima plus a sparse table
  over block minima); MAX is MIN of the order-reversing bijection ``~x``.
- COUNT_DISTINCT counts, per probe, the (key, value) pairs whose latest occurrence before ``t``
  is at or after ``t - w``; each occurrence is "live" for ``t`` in an interval, which turns the
  count into two more prefix counts.

Why numpy does the heavy lifting rather than Polars expressions: on 10M events (2 cores) a
Polars sort by (key, time) carrying 14 value columns took ~14 s, ``cum_sum().over(key)`` on six
columns ~7.5 s, one ``join_asof`` by key ~3 s and one ``rolling_min_by(...).over(key)`` ~2.7 s,
against ~0.4 s for numpy's argsort of one packed int64 code and ~0.03 s per scatter or sorted
``searchsorted``. Polars keeps what it is fastest at here: the key -> id hash join. Every step is
integer arithmetic on whole arrays, so the result depends on neither row order nor thread count.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Final

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa

from daedalus.pit.kernel import KEY, PROBE_TIME, WindowKernel, WindowOp, WindowRequest

__all__ = ["PolarsKernel"]

I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]

_I64_MIN: Final = -(2**63)
_I64_MAX: Final = 2**63 - 1
_BLOCK: Final = 16  # range-minimum block: one or two cache lines of int64
_NULLABLE: Final = frozenset({WindowOp.MIN, WindowOp.MAX})
_MAX_THREADS: Final = 4
_SLICE: Final = 1 << 18  # rows per temporary when zeroing nulls: stays in cache


class PolarsKernel(WindowKernel):
    """Exact window aggregates on the Polars engine (see the module docstring for the method).

    Independent tasks (one per time column, then one per (time column, value column)) run on as
    many threads as Polars' own pool has (`POLARS_MAX_THREADS`), at most `_MAX_THREADS`; numpy
    releases the GIL in all the heavy steps. Each task writes only its own requests' outputs,
    so the result does not depend on the thread count or on scheduling.
    """

    name = "polars"

    def window_aggregate(
        self, events: pa.Table, probes: pa.Table, requests: Sequence[WindowRequest]
    ) -> pa.Table:
        """Compute every request for every probe, in the probes' order."""
        reqs = list(requests)
        n_probes = probes.num_rows
        # Defaults are the empty-window answers: 0, or null for MIN/MAX.
        out = [_Output(n_probes, r.op in _NULLABLE) for r in reqs]
        if reqs and n_probes and events.num_rows:
            _compute(events, probes, reqs, out)
        columns = [
            pa.array(o.values, pa.int64(), mask=None if o.valid is None else ~o.valid) for o in out
        ]
        return pa.Table.from_arrays(columns, names=[r.output for r in reqs])


class _Output:
    """One request's result in probe order: values, and validity for MIN/MAX."""

    def __init__(self, n: int, nullable: bool) -> None:
        self.values = np.zeros(n, np.int64)
        self.valid: Mask | None = np.zeros(n, np.bool_) if nullable else None


class _Probes:
    """Probes whose key has events, sorted by (key id, time); `rows` maps back to input order.

    `start[j]` is where probe j's key begins in any (key id, time) order of the events.
    """

    def __init__(self, rows: I64, ids: I64, t: I64, start: I64) -> None:
        self.rows = rows
        self.ids = ids
        self.t = t
        self.start = start


_Chunk = tuple[I64, "npt.NDArray[np.uint8] | None"]


class _Workspace:
    """One thread's scratch arrays, reused by every column task that thread runs.

    Why: each fresh 80 MB array costs page faults, and on a VM whose memory is not yet backed
    they cost ~2 ms per MB (measured on this VM); a handful of reused buffers avoids almost all of it.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        # Long enough for a prefix sum (n + 1) and for whole range-minimum blocks.
        self.size = max(n + 1, -(-n // _BLOCK) * _BLOCK)
        self._buffers: dict[str, npt.NDArray[np.generic]] = {}

    def get(self, name: str, dtype: type[np.generic], size: int) -> npt.NDArray[np.generic]:
        """The buffer `name` (allocated on first use), as `size` elements of `dtype`."""
        buf = self._buffers.get(name)
        if buf is None or buf.dtype != dtype:
            buf = self._buffers[name] = np.empty(self.size, dtype)
        return buf[:size]


class _TimeIndex:
    """Events of one time column in (key id, time) order, and each probe's window bounds there.

    `inv[i]` is event i's position in that order; `hi` is, per probe, the number of events
    before (key, t); `lows[w]` the number before (key, t - w) (`lows[None]`: before the key).
    """

    def __init__(
        self,
        ev_ids: I64,
        times: I64,
        n_ids: int,
        probe: _Probes,
        windows: set[int],
        identity: I64,
    ) -> None:
        axis = _Axis(ev_ids, times, n_ids, keep_order=True)
        self.hi = axis.positions(probe.ids, probe.t)
        self.lows: dict[int | None, I64] = {None: probe.start}
        for w in sorted(windows):
            self.lows[w] = axis.positions(probe.ids, _minus(probe.t, w))
        self.inv = axis.inverse(identity)

    def scatter(
        self, chunks: list[_Chunk], part: int, out: npt.NDArray[np.generic]
    ) -> npt.NDArray[np.generic]:
        """Part 0 (values) or 1 (validity, 1 when a chunk has no null) of a column, sorted.

        A scatter through the inverse permutation, chunk by chunk: measurably faster than a
        gather through the permutation, and it never concatenates the chunks.
        """
        start = 0
        for chunk in chunks:
            n = len(chunk[0])
            src = chunk[part]
            out[self.inv[start : start + n]] = 1 if src is None else src
            start += n
        return out

    def scatter_zeroing_nulls(self, chunks: list[_Chunk], out: I64) -> I64:
        """A column's values in sorted order, 0 under nulls (whose Arrow value is undefined).

        Zeroing before the scatter, a slice at a time, spares sorting the validity too.
        """
        start = 0
        for values, valid in chunks:
            if valid is None:
                out[self.inv[start : start + len(values)]] = values
            else:
                for at in range(0, len(values), _SLICE):
                    part = np.multiply(values[at : at + _SLICE], valid[at : at + _SLICE])
                    out[self.inv[start + at : start + at + len(part)]] = part
            start += len(values)
        return out


def _compute(
    events: pa.Table, probes: pa.Table, reqs: list[WindowRequest], out: list[_Output]
) -> None:
    """Fill `out` for non-empty events, probes and requests."""
    ev_ids, pr_ids, n_ids = _dense_ids(events.column(KEY), probes.column(KEY))
    rows = np.flatnonzero(pr_ids >= 0)  # a probe whose key has no event keeps the defaults
    if not rows.size:
        return
    ids, t = pr_ids[rows], _concat(probes.column(PROBE_TIME))[rows]
    # Sorted probes make every bound array sorted, so the binary searches stay cache friendly.
    order = _lex_order(ids, t, n_ids)
    ids, t, rows = ids[order], t[order], rows[order]
    # Each key's run starts at the number of events with a smaller id, whatever the time column.
    run_start = np.zeros(n_ids + 1, np.int64)
    np.cumsum(np.bincount(ev_ids, minlength=n_ids), out=run_start[1:])
    probe = _Probes(rows, ids, t, run_start[ids])
    del ids, t, rows, order, run_start
    by_time: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(reqs):
        if _nonempty(r.window_us):  # an empty window [t - w, t) keeps the defaults
            by_time[r.time].append(i)
    identity = [np.arange(len(ev_ids), dtype=np.int64)]  # a list, to free it after phase 1

    def index(time: str) -> _TimeIndex:
        windows = {
            w
            for i in by_time[time]
            if (w := reqs[i].window_us) is not None and reqs[i].op != WindowOp.COUNT_DISTINCT
        }
        times = _concat(events.column(time))
        return _TimeIndex(ev_ids, times, n_ids, probe, windows, identity[0])

    tasks: list[tuple[str, str, list[int]]] = []
    for time, members in by_time.items():
        by_column: dict[str, list[int]] = defaultdict(list)
        for i in members:
            by_column[reqs[i].column].append(i)
        tasks.extend((time, column, col_members) for column, col_members in by_column.items())
    # Costliest first, so that no long task is left alone at the end.
    cost = {WindowOp.COUNT: 1, WindowOp.SUM: 2, WindowOp.MIN: 4, WindowOp.MAX: 4}
    tasks.sort(key=lambda task: -sum(cost.get(reqs[i].op, 8) for i in task[2]))
    local = threading.local()
    # Each thread holds a workspace of ~29 bytes per event: cap the threads to bound memory.
    workers = max(1, min(pl.thread_pool_size(), len(tasks), _MAX_THREADS))
    with ThreadPoolExecutor(workers) as pool:
        indexes = dict(zip(by_time, pool.map(index, by_time), strict=True))
        identity.clear()

        def run(task: tuple[str, str, list[int]]) -> None:
            time, column, col_members = task
            if not hasattr(local, "workspace"):
                local.workspace = _Workspace(len(ev_ids))
            chunks = _chunks(events.column(column))
            time_index = indexes[time]
            _column_task(time_index, chunks, probe, reqs, col_members, out, local.workspace)
            distinct = [i for i in col_members if reqs[i].op == WindowOp.COUNT_DISTINCT]
            if distinct:
                times = _chunks(events.column(time))
                _distinct_task(time_index, ev_ids, n_ids, times, chunks, probe, reqs, distinct, out)

        # list(): re-raises the first exception of any task.
        list(pool.map(run, tasks))


def _column_task(
    index: _TimeIndex,
    chunks: list[_Chunk],
    probe: _Probes,
    reqs: list[WindowRequest],
    members: list[int],
    out: list[_Output],
    ws: _Workspace,
) -> None:
    """Answer the requests `members`, all on one value column and one time column."""
    n = ws.n
    ops = {reqs[i].op for i in members}
    hi = index.hi
    has_nulls = any(c[1] is not None for c in chunks)
    valid_s = None
    if has_nulls and ops & {WindowOp.COUNT, WindowOp.MIN, WindowOp.MAX}:
        valid_s = index.scatter(chunks, 1, ws.get("valid", np.uint8, n))
    values_s = None
    if ops & {WindowOp.SUM, WindowOp.MIN, WindowOp.MAX}:
        # SUM needs 0 under a null; MIN/MAX mask nulls again below, so it is harmless to them.
        values_s = index.scatter_zeroing_nulls(chunks, ws.get("values", np.int64, n))
    if WindowOp.SUM in ops:
        prefix = _prefix_sum(values_s, ws.get("a", np.int64, n + 1))
        for i in members:
            if reqs[i].op == WindowOp.SUM:
                lo = index.lows[reqs[i].window_us]
                # Wrapping int64: the difference is exact because the window sum itself fits.
                out[i].values[probe.rows] = prefix[hi] - prefix[lo]
    count_prefix = None
    if valid_s is not None and ops & {WindowOp.COUNT, WindowOp.MIN, WindowOp.MAX}:
        count_dtype = np.int32 if n < 2**31 - 1 else np.int64  # half the memory traffic
        count_prefix = _prefix_sum(valid_s, ws.get("count", count_dtype, n + 1))
    for i in members:
        if reqs[i].op == WindowOp.COUNT:
            lo = index.lows[reqs[i].window_us]
            out[i].values[probe.rows] = _window_count(count_prefix, lo=lo, hi=hi)
    for op in (WindowOp.MIN, WindowOp.MAX):
        if op not in ops:
            continue
        assert values_s is not None
        # The keys overwrite the values in place (SUM is done with them): MIN keys are the
        # values with nulls as +inf; MAX keys are ~x, as bitwise not reverses the int64 order
        # exactly, and it maps MIN's +inf nulls to -inf, so nulls are masked again after it.
        keys = ws.get("values", np.int64, -(-n // _BLOCK) * _BLOCK)
        if op == WindowOp.MAX:
            np.invert(keys[:n], out=keys[:n])
        if valid_s is not None:
            np.putmask(keys[:n], valid_s == 0, _I64_MAX)  # a null never wins a minimum
        keys[n:] = _I64_MAX
        range_min = _RangeMin(
            keys, ws.get("a", np.int64, len(keys)), ws.get("b", np.int64, len(keys))
        )
        queries = []
        for i in members:
            if reqs[i].op == op:
                lo = index.lows[reqs[i].window_us]
                # Only windows holding a value have a minimum.
                hit = np.flatnonzero(_window_count(count_prefix, lo=lo, hi=hi) > 0)
                queries.append((i, hit, lo[hit], hi[hit]))
        range_min.reserve(max(range_min.top_level(q[2], q[3]) for q in queries))
        for i, hit, lo_hit, hi_hit in queries:
            found = range_min.query(lo_hit, hi_hit)
            rows = probe.rows[hit]
            out[i].values[rows] = found if op == WindowOp.MIN else np.invert(found)
            valid = out[i].valid
            assert valid is not None
            valid[rows] = True


def _distinct_task(
    index: _TimeIndex,
    ev_ids: I64,
    n_ids: int,
    times: list[_Chunk],
    chunks: list[_Chunk],
    probe: _Probes,
    reqs: list[WindowRequest],
    members: list[int],
    out: list[_Output],
) -> None:
    """Answer the COUNT_DISTINCT requests `members` (one value column, one time column)."""
    ids_s = index.scatter([(ev_ids, None)], 0, np.empty_like(ev_ids))
    times_s = index.scatter(times, 0, np.empty_like(ev_ids))
    values_s = index.scatter(chunks, 0, np.empty_like(ev_ids))
    keep = index.scatter(chunks, 1, np.empty(len(ev_ids), np.uint8)).view(np.bool_)
    windows = {reqs[i].window_us for i in members}
    counts = _distinct_counts(ids_s[keep], times_s[keep], values_s[keep], n_ids, probe, windows)
    for i in members:
        out[i].values[probe.rows] = counts[reqs[i].window_us]


class _Axis:
    """Points (id, x) in (id, x) order, counting the points before a query (id, bound).

    Each pair is packed into one int64 code whose order is the (id, x) order, so one argsort
    and one binary search replace a two-column sort and an as-of join. When `n_ids` times the
    span of `x` does not fit in int64, `x` is first replaced by its rank among the distinct
    values of `x` (`x < b` iff `rank(x) <` the number of distinct values below `b`), which fits
    as long as there are fewer than ~3e9 points.
    """

    def __init__(self, ids: I64, x: I64, n_ids: int, *, keep_order: bool) -> None:
        n = len(x)
        self._lo = int(x.min())
        self._hi = int(x.max())
        self._distinct: I64 | None = None
        stride = self._hi - self._lo + 2  # offsets 0..span are points, span + 1 is "after all"
        if n_ids * stride <= _I64_MAX:
            self._stride = np.int64(stride)
            # In place: intermediate sums may wrap, the final codes are exact (they fit).
            codes = ids * self._stride
            codes += x
            codes -= np.int64(self._lo)
        else:
            order = np.argsort(x)
            xs = x[order]
            first = np.empty(n, np.bool_)
            first[0] = True
            np.not_equal(xs[1:], xs[:-1], out=first[1:])
            self._distinct = xs[first]
            rank = np.empty(n, np.int64)
            rank[order] = np.cumsum(first) - 1
            del order, xs, first
            self._stride = np.int64(len(self._distinct) + 1)
            codes = ids * self._stride
            codes += rank
            del rank
        self._perm: I64 | None = np.argsort(codes) if keep_order else None
        # np.sort of the codes again beats gathering them through the permutation.
        codes.sort()
        self._codes = codes

    def inverse(self, identity: I64) -> I64:
        """For each input point, its index in the sorted order (`identity` is arange(n)).

        Ends the axis: the inverse is written over the codes, sparing a fresh array.
        """
        assert self._perm is not None
        inv = self._codes
        inv[self._perm] = identity
        self._perm = None
        del self._codes
        return inv

    def starts(self, ids: I64) -> I64:
        """Number of points whose id is below `ids` (the start of each id's run)."""
        return np.searchsorted(self._codes, ids * self._stride, "left")

    def positions(self, ids: I64, bounds: I64) -> I64:
        """Number of points (i, x) with i < id, or i == id and x < bound, per query."""
        return np.searchsorted(self._codes, ids * self._stride + self._offsets(bounds), "left")

    def counts(self, ids: I64, bounds: I64) -> I64:
        """Number of points with the query's id and x < bound."""
        return self.positions(ids, bounds) - self.starts(ids)

    def _offsets(self, bounds: I64) -> I64:
        if self._distinct is None:
            # Clamp into [lo, hi + 1]: every point is in [lo, hi], so "x < bound" is unchanged.
            if self._hi < _I64_MAX:
                offsets = np.clip(bounds, self._lo, self._hi + 1)
                offsets -= np.int64(self._lo)
                return offsets
            # hi + 1 would overflow; the unclamped difference may wrap, but only where
            # np.where discards it.
            inside = bounds - np.int64(self._lo)
            after = self._stride - 1
            return np.where(bounds < self._lo, 0, np.where(bounds > self._hi, after, inside))
        # Sorting the bounds first keeps the binary search cache friendly.
        order = np.argsort(bounds)
        out = np.empty(len(bounds), np.int64)
        out[order] = np.searchsorted(self._distinct, bounds[order], "left")
        return out


class _RangeMin:
    """Exact minimum of ``a[lo:hi]`` for many non-empty ranges.

    Blocks of `_BLOCK` elements carry prefix and suffix minima; a range spanning blocks is the
    suffix of its first block, the prefix of its last and a sparse-table lookup over the whole
    blocks between. A range inside one block is scanned directly (at most `_BLOCK` steps,
    usually a few: most windows hold few events).
    """

    def __init__(self, a: I64, prefix_buf: I64, suffix_buf: I64) -> None:
        """`a` has whole blocks; the two buffers (same length) become the prefix/suffix minima."""
        n_blocks = len(a) // _BLOCK
        # Transposed (offset-in-block major): each step of the scans below is one contiguous
        # pass, ~5x faster than walking the columns of the (block, offset) layout.
        prefix = prefix_buf.reshape(_BLOCK, n_blocks)
        suffix = suffix_buf.reshape(_BLOCK, n_blocks)
        np.copyto(prefix, a.reshape(n_blocks, _BLOCK).T)
        suffix[-1] = prefix[-1]
        for j in range(1, _BLOCK):
            np.minimum(suffix[-j], prefix[-j - 1], out=suffix[-j - 1])
        for j in range(1, _BLOCK):  # in place, now that the suffixes are taken
            np.minimum(prefix[j - 1], prefix[j], out=prefix[j])
        self._a = a
        self._n_blocks = n_blocks
        self._prefix = prefix_buf
        self._suffix = suffix_buf
        # Sparse table: level j at _starts[j] holds, per block b, the minimum of blocks
        # b .. b + 2**j - 1; built only as high as the queries need (see `reserve`).
        self._table = np.zeros(0, np.int64)
        self._starts = np.zeros(0, np.int64)
        self._top = -1

    def _at(self, pos: I64) -> I64:
        """Index of position `pos` in the transposed prefix/suffix arrays."""
        return (pos % _BLOCK) * self._n_blocks + pos // _BLOCK

    def top_level(self, lo: I64, hi: I64) -> int:
        """The highest sparse-table level `query(lo, hi)` needs (-1: none)."""
        if not len(lo):
            return -1
        widest = int(((hi - 1) // _BLOCK - lo // _BLOCK).max()) - 1  # whole blocks between
        return widest.bit_length() - 1 if widest > 0 else -1

    def reserve(self, top: int) -> None:
        """Build the sparse table over block minima up to level `top`, in one array."""
        if top <= self._top:
            return
        n = self._n_blocks
        sizes = [n - (1 << j) + 1 for j in range(top + 1)]
        starts = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
        table = np.empty(sum(sizes), np.int64)
        table[:n] = self._prefix[(_BLOCK - 1) * n :]  # level 0: each block's minimum
        for j in range(1, top + 1):
            prev = table[starts[j - 1] : starts[j - 1] + sizes[j - 1]]
            half = 1 << (j - 1)
            np.minimum(prev[:-half], prev[half:], out=table[starts[j] : starts[j] + sizes[j]])
        self._table, self._starts, self._top = table, starts, top

    def query(self, lo: I64, hi: I64) -> I64:
        """Minimum of ``a[lo:hi]`` for each pair (every ``lo < hi``)."""
        self.reserve(self.top_level(lo, hi))
        last = hi - 1
        first_block = lo // _BLOCK
        last_block = last // _BLOCK
        # Right for ranges spanning blocks; ranges inside one block are overwritten below.
        out = np.minimum(self._suffix[self._at(lo)], self._prefix[self._at(last)])
        between = last_block - first_block - 1
        spanning = np.flatnonzero(between > 0)
        if spanning.size:
            width = between[spanning]
            # floor(log2(width)), exact: width < 2**53 is exactly representable.
            level = np.frexp(width.astype(np.float64))[1].astype(np.int64) - 1
            starts = self._starts[level]
            left = self._table[starts + first_block[spanning] + 1]
            right = self._table[starts + last_block[spanning] - (np.int64(1) << level)]
            out[spanning] = np.minimum(out[spanning], np.minimum(left, right))
        inside = np.flatnonzero(first_block == last_block)
        if inside.size:
            start = lo[inside]
            length = hi[inside] - start
            found = self._a[start]
            live = np.flatnonzero(length > 1)
            step = 1
            while live.size:
                found[live] = np.minimum(found[live], self._a[start[live] + step])
                step += 1
                live = live[length[live] > step]
            out[inside] = found
        return out


def _distinct_counts(
    ids: I64, times: I64, col: I64, n_ids: int, probe: _Probes, windows: set[int | None]
) -> dict[int | None, I64]:
    """COUNT_DISTINCT of `col` for each window, per probe; inputs are non-null, (id, time) sorted.

    After dropping repeats of the same (id, value, time), an occurrence at time e whose previous
    occurrence of the same (id, value) is at p counts for probe t exactly when
    ``e < t <= e + w`` and ``p < t - w``, i.e. ``a < t <= b`` with ``a = max(e, p + w)`` (just
    ``e`` for a first occurrence) and ``b = e + w``; and ``a < b`` always. So the distinct count
    is ``#{a < t} - #{b < t}`` within the key, two prefix counts. For a lifetime window it is
    the number of first occurrences before t.
    """
    n = len(col)
    if n == 0:
        return {w: np.zeros(len(probe.ids), np.int64) for w in windows}
    # Dense value ranks, so (id, rank) packs into int64: both are < n, and n * n < 2**63.
    order = np.argsort(col)
    sorted_col = col[order]
    new_value = np.empty(n, np.bool_)
    new_value[0] = True
    np.not_equal(sorted_col[1:], sorted_col[:-1], out=new_value[1:])
    rank = np.empty(n, np.int64)
    rank[order] = np.cumsum(new_value) - 1
    group = ids * (rank.max() + 1) + rank
    del order, sorted_col, new_value, rank
    # Stable: the input is already in time order within each id, so it stays so per group.
    order = np.argsort(group, kind="stable")
    group, times, ids = group[order], times[order], ids[order]
    repeat = np.zeros(n, np.bool_)
    repeat[1:] = (group[1:] == group[:-1]) & (times[1:] == times[:-1])
    group, times, ids = group[~repeat], times[~repeat], ids[~repeat]
    first = np.ones(len(group), np.bool_)
    first[1:] = group[1:] != group[:-1]
    previous = np.empty_like(times)
    previous[0] = times[0]
    previous[1:] = times[:-1]
    out: dict[int | None, I64] = {}
    for w in windows:
        if w is None:
            starts = _Axis(ids[first], times[first], n_ids, keep_order=False)
            out[w] = starts.counts(probe.ids, probe.t)
            continue
        assert w > 0
        enter = np.where(first, times, np.maximum(times, _plus(previous, w)))
        leave = _plus(times, w)
        entered = _Axis(ids, enter, n_ids, keep_order=False).counts(probe.ids, probe.t)
        left = _Axis(ids, leave, n_ids, keep_order=False).counts(probe.ids, probe.t)
        out[w] = entered - left
    return out


def _dense_ids(ev_keys: pa.ChunkedArray, pr_keys: pa.ChunkedArray) -> tuple[I64, I64, int]:
    """Event keys as ids 0..n-1 (in key order, so deterministic); probe keys likewise, or -1.

    A Polars hash join: the fastest exact key -> id map measured here (numpy needs an argsort).
    """
    keys = pl.Series(KEY, ev_keys)
    unique = keys.unique().sort()
    table = pl.DataFrame({KEY: unique, "__id": np.arange(len(unique), dtype=np.int64)})

    def lookup(k: pl.Series) -> I64:
        joined = k.to_frame().join(table, on=KEY, how="left", maintain_order="left")
        return np.asarray(joined["__id"].fill_null(-1).to_numpy(), np.int64)

    return lookup(keys), lookup(pl.Series(KEY, pr_keys)), len(unique)


def _lex_order(major: I64, minor: I64, n_major: int) -> I64:
    """A permutation sorting by (major, minor), with `major` in [0, n_major)."""
    if len(major) == 0:
        return np.zeros(0, np.int64)
    lo = int(minor.min())
    stride = int(minor.max()) - lo + 1
    if n_major * stride <= _I64_MAX:
        return np.argsort(major * np.int64(stride) + (minor - np.int64(lo)))
    return np.lexsort((minor, major))


def _window_count(prefix: I64 | None, *, lo: I64, hi: I64) -> I64:
    """Non-null values in each range [lo, hi), from their prefix count (None: no nulls)."""
    return hi - lo if prefix is None else prefix[hi] - prefix[lo]


def _nonempty(window_us: int | None) -> bool:
    """Whether a window can hold an event at all: ``[t - w, t)`` is empty for w <= 0."""
    return window_us is None or window_us > 0


def _minus(t: I64, w: int) -> I64:
    """``t - w`` for w > 0, saturating at the int64 minimum (no event is below it anyway)."""
    threshold = _I64_MIN + w  # t - w fits iff t >= threshold
    if threshold > _I64_MAX:
        return np.full_like(t, _I64_MIN)
    # uint64 arithmetic wraps by definition; the result is exact where it is kept.
    diff = (t.view(np.uint64) - np.uint64(w)).view(np.int64)
    return np.where(t >= threshold, diff, np.int64(_I64_MIN))


def _plus(x: I64, w: int) -> I64:
    """``x + w`` for w > 0, saturating at the int64 maximum (no probe is above it anyway)."""
    threshold = _I64_MAX - w  # x + w fits iff x <= threshold
    if threshold < _I64_MIN:
        return np.full_like(x, _I64_MAX)
    total = (x.view(np.uint64) + np.uint64(w)).view(np.int64)
    return np.where(x <= threshold, total, np.int64(_I64_MAX))


def _prefix_sum(a: npt.NDArray[np.generic], out: npt.NDArray[np.generic]) -> I64:
    """Exclusive prefix sums of `a` into `out` (len(a) + 1; integer, wrapping on overflow)."""
    out[0] = 0
    np.cumsum(a, dtype=out.dtype, out=out[1:])
    return out


def _chunks(column: pa.ChunkedArray) -> list[_Chunk]:
    """A column's chunks as zero-copy int64 values and, when a chunk has nulls, its validity."""
    out: list[_Chunk] = []
    for chunk in column.chunks:
        if chunk.type != pa.int64():
            chunk = chunk.cast(pa.int64())
        n = len(chunk)
        if not n:
            continue
        validity, data = chunk.buffers()
        values = np.frombuffer(data, np.int64, count=n, offset=chunk.offset * 8)
        valid = None
        if chunk.null_count:
            bits = np.frombuffer(validity, np.uint8)
            valid = np.unpackbits(bits, count=chunk.offset + n, bitorder="little")[chunk.offset :]
        out.append((values, valid))
    return out


def _concat(column: pa.ChunkedArray) -> I64:
    """A null-free int64 column as one numpy array (zero-copy when it has one chunk)."""
    parts = [values for values, _ in _chunks(column)]
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)
