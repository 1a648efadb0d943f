"""The Polars engine's window kernel: exact int64 window aggregates computed by Polars operations.

How it works (see `daedalus.pit.kernel` for the contract); every step is a Polars operation
(no numpy at all); the results go back to Arrow with ``Series.to_arrow``:

- Keys become ids in key order: small non-negative keys are their own ids, others dense ids
  (Polars ``unique`` + hash join). Per time column, each event gets one int64 code
  ``id * span + (time - tmin)`` whose order is the (key, time) order, so ONE global
  ``arg_sort`` (no ``.over(key)``, no multi-column sort) orders the events; when
  ``n_ids * span`` does not fit in int64, times are first replaced by their rank among the
  distinct event times (exact for ``<``-comparisons).
- COUNT and SUM: each value column is gathered through that permutation and prefix-summed with
  one global ``cum_sum``. A probe's window ``[t - w, t)`` is a position range ``[lo, hi)`` found
  by ``search_sorted`` of the probe's two bound codes (same key, so both are inside the key's
  run and no per-key reset is needed). int64 prefix sums may wrap, but a difference of wrapped
  prefix sums is exact whenever the window's own sum fits (the core's guarantee).
- Lifetime MIN and MAX: one global ``cum_max`` of a (key, value) code, read at each probe's last
  event before t (see `_lifetime_min_max`).
- Finite MIN and MAX: the events some probe can see (`_Axis.seen_by_probes`) and the probes
  (null values) are merged once with ``merge_sorted`` on a code whose span leaves a gap wider
  than the longest window between keys, and each window is one global ``rolling_min_by`` /
  ``rolling_max_by`` (``closed="left"``: the strict upper bound) over that merge (see
  `_SharedUnion`); windows longer than the time range (and lifetime windows whose codes do not
  fit) are rewritten exactly into windows no longer than the range plus one and merged on
  their own. When the codes of all keys do not fit in int64 the keys are processed in chunks;
  when not even one key's do (times spread over more than ~2**62 us) an exact join of probes
  with their key's events answers instead (cost: one row per such pair).
- COUNT_DISTINCT: an occurrence of (key, value) at ``e`` whose previous occurrence is at ``p``
  counts for ``t`` iff ``max(e, p + w) < t <= e + w``: two "points below t in the same key"
  counts, done with a sort of points and probes and a cumulative sum per key.

Everything is integer arithmetic on whole columns, so the result depends on neither row order
nor thread count.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Final

import polars as pl
import pyarrow as pa

from daedalus.pit.kernel import KEY, PROBE_TIME, WindowKernel, WindowOp, WindowRequest

__all__ = ["PolarsKernel"]

_I64_MIN: Final = -(2**63)
_I64_MAX: Final = 2**63 - 1
_NULLABLE: Final = frozenset({WindowOp.MIN, WindowOp.MAX})
_PREFIX_OPS: Final = frozenset({WindowOp.COUNT, WindowOp.SUM})
_MAX_THREADS: Final = 4
_ID: Final = "__id"
_PID: Final = "__pid"  # a probe's row in the input
_CODE: Final = "__code"


class PolarsKernel(WindowKernel):
    """Exact window aggregates on the Polars engine (see the module docstring for the method).

    Independent tasks run on as many Python threads as Polars' own pool has
    (`POLARS_MAX_THREADS`), at most `_MAX_THREADS` (see `_schedule`). Each task writes only
    its own requests' outputs, so scheduling cannot change the result.
    """

    name = "polars"

    def window_aggregate(
        self, events: pa.Table, probes: pa.Table, requests: Sequence[WindowRequest]
    ) -> pa.Table:
        """Compute every request for every probe, in the probes' order."""
        reqs = list(requests)
        n_probes = probes.num_rows
        results: dict[int, tuple[pl.Series, pl.Series]] = {}
        if reqs and n_probes and events.num_rows:
            results = _compute(events, probes, reqs)
        columns = _placed(reqs, results, n_probes)
        for i, r in enumerate(reqs):
            if i not in columns:  # the empty-window answer: 0, or null for MIN/MAX
                default = None if r.op in _NULLABLE else 0
                columns[i] = pl.repeat(default, n_probes, dtype=pl.Int64, eager=True).to_arrow()
        return pa.Table.from_arrays(
            [columns[i] for i in range(len(reqs))], [r.output for r in reqs]
        )


def _placed(
    reqs: list[WindowRequest], results: dict[int, tuple[pl.Series, pl.Series]], n_probes: int
) -> dict[int, pa.Array]:
    """Each answered request's values put at their probe rows, in the probes' order.

    Results that share their probe rows (most do: one order per time column) are placed
    together, by ONE gather of all their columns (Polars runs the columns in parallel; a
    scatter per column cost 2-4x as much); probes without a value get the empty-window answer.
    """
    groups: list[tuple[pl.Series, list[int]]] = []
    for i, (pids, _) in results.items():
        for seen, members in groups:
            if len(seen) == len(pids) and seen.equals(pids):
                members.append(i)
                break
        else:
            groups.append((pids, [i]))
    placed: dict[int, pa.Array] = {}
    for pids, members in groups:
        # Each probe's position in the results; null (gathers a null) where it has none.
        at = pl.repeat(None, n_probes, dtype=pl.UInt32, eager=True).scatter(
            pids, pl.int_range(len(pids), dtype=pl.UInt32, eager=True)
        )
        values = pl.DataFrame({str(i): results[i][1].cast(pl.Int64) for i in members})
        frame = values.select(
            pl.col(str(i)).gather(at)
            if reqs[i].op in _NULLABLE
            else pl.col(str(i)).gather(at).fill_null(0)
            for i in members
        )
        for i in members:
            placed[i] = frame[str(i)].to_arrow()
    return placed


def _series(column: pa.ChunkedArray, name: str) -> pl.Series:
    """One contiguous int64 Series: gathers from a many-chunk Series are ~3x slower."""
    s = pl.Series(name, column)
    if s.dtype != pl.Int64:
        s = s.cast(pl.Int64)
    return s.rechunk()


def _compute(
    events: pa.Table, probes: pa.Table, reqs: list[WindowRequest]
) -> dict[int, tuple[pl.Series, pl.Series]]:
    """Per answered request: (probe rows, values); probes not listed keep the defaults."""
    ev_keys = _series(events.column(KEY), KEY)
    pr = pl.DataFrame({KEY: _series(probes.column(KEY), KEY)}).with_columns(
        pl.int_range(probes.num_rows, dtype=pl.UInt32).alias(_PID),
        _series(probes.column(PROBE_TIME), PROBE_TIME),
    )
    kmin, kmax = int(ev_keys.min()), int(ev_keys.max())  # type: ignore[arg-type]
    widest = max(_time_span(events.column(time)) for time in {r.time for r in reqs})
    if kmin >= 0 and (kmax + 1) * 2 * widest <= _I64_MAX:
        # Small non-negative keys (the usual ids) are their own dense-enough ids: every code
        # fits as it would with dense ids, and no hash join is needed to number the keys.
        n_ids = kmax + 1
        ev_ids = ev_keys
        # A probe whose key has no event keeps the defaults; one outside [0, kmax] has none.
        pr = pr.filter(pl.col(KEY).is_between(0, kmax)).rename({KEY: _ID})
    else:
        unique = ev_keys.unique().sort()
        n_ids = len(unique)
        table = pl.DataFrame({KEY: unique, _ID: pl.int_range(n_ids, eager=True, dtype=pl.Int64)})
        ev_ids = ev_keys.to_frame().join(table, on=KEY, how="left", maintain_order="left")[_ID]
        # A probe whose key has no event keeps the defaults.
        pr = pr.join(table, on=KEY, how="inner").drop(KEY)
    del ev_keys
    # (id, t) order: every bound code below, and so each search, is then sorted. One int64
    # sort key when (id, t) packs into one (a two-column sort costs ~3x as much).
    if pr.height:
        tlo, thi = pr[PROBE_TIME].min(), pr[PROBE_TIME].max()
        t_span = int(thi) - int(tlo) + 1  # type: ignore[arg-type]
        if n_ids * t_span <= _I64_MAX:
            pr = pr.sort(pl.col(_ID) * t_span + (pl.col(PROBE_TIME) - int(tlo)))  # type: ignore[arg-type]
        else:
            pr = pr.sort(_ID, PROBE_TIME)
    if not pr.height:
        return {}
    by_time: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(reqs):
        if r.window_us is None or r.window_us > 0:  # [t - w, t) is empty for w <= 0
            by_time[r.time].append(i)
    out: dict[int, tuple[pl.Series, pl.Series]] = {}
    workers = max(1, min(pl.thread_pool_size(), _MAX_THREADS))
    with ThreadPoolExecutor(workers) as pool:
        _schedule(events, by_time, ev_ids, n_ids, pr, reqs, out, pool)
    return out


def _time_span(times: pa.ChunkedArray) -> int:
    """``max - min + 2`` of a time column: the code stride its `_Axis` would use."""
    series = _series(times, "t")
    return int(series.max()) - int(series.min()) + 2  # type: ignore[arg-type]


class _Axis:
    """Events of one time column in (key id, time) order and each probe's window positions."""

    def __init__(self, ev_ids: pl.Series, times: pl.Series, n_ids: int, pr: pl.DataFrame) -> None:
        self.n_ids = n_ids
        self.tmin = int(times.min())  # type: ignore[arg-type]
        self.tmax = int(times.max())  # type: ignore[arg-type]
        self.times = times
        self.ids = ev_ids
        self.pr = pr
        span = self.tmax - self.tmin + 2  # offsets 0..range are times, range + 1 is "after all"
        self._distinct: pl.Series | None = None
        if n_ids * span <= _I64_MAX:
            self._stride = span
            codes = ev_ids * span + (times - self.tmin)
        else:
            # x < b iff rank(x) < (number of distinct times below b): exact, and it fits.
            self._distinct = times.unique().sort()
            self._stride = len(self._distinct) + 1
            codes = ev_ids * self._stride + self._distinct.search_sorted(times, "left").cast(
                pl.Int64
            )
        self.n = len(codes)
        self.perm = codes.arg_sort()
        self.codes = codes.gather(self.perm).set_sorted()
        self._positions: dict[int | None, pl.Series] = {}

    def hi(self) -> pl.Series:
        """Per probe (in `pr`'s order), the number of events before (key, t)."""
        return self._positions_of(-1, pl.col(PROBE_TIME))

    def lo(self, window: int | None) -> pl.Series:
        """Per probe, the number of events before (key, t - window); None: before the key."""
        if window is None:
            return self._positions_of(None, pl.lit(_I64_MIN, pl.Int64))
        return self._positions_of(window, _minus(pl.col(PROBE_TIME), window))

    def _positions_of(self, name: int | None, bound: pl.Expr) -> pl.Series:
        """Positions of the bound codes in the sorted codes (cached by `name`; -1 is t)."""
        if name not in self._positions:
            query = self.pr.select(pl.col(_ID) * self._stride + self._offset(bound)).to_series()
            # Sorted queries (the probes are in (key, t) order): a cache-friendly search.
            self._positions[name] = self.codes.search_sorted(query, "left")
        return self._positions[name]

    def _offset(self, bound: pl.Expr) -> pl.Expr:
        """A bound's offset in a key's run of codes: same comparisons with every event time."""
        if self._distinct is None:
            # Clamped into [tmin, tmax + 1] first: no event is outside [tmin, tmax].
            return (
                pl.when(bound <= self.tmin)
                .then(0)
                .when(bound > self.tmax)
                .then(self.tmax - self.tmin + 1)
                .otherwise(bound - self.tmin)
            )
        distinct = self._distinct
        return bound.map_batches(
            lambda b: distinct.search_sorted(b, "left").cast(pl.Int64), return_dtype=pl.Int64
        )

    def seen_by_probes(self, w_max: int) -> pl.Series:
        """Per sorted event: whether some probe's window of at most `w_max` can hold it.

        A key's events inside ``[first probe - w_max, last probe)``: each key's range is a run
        of sorted positions found by two searches; a +1 at each run's start and a -1 at its end,
        summed, marks them (runs of different keys never overlap).
        """
        first_last = self.pr.group_by(_ID).agg(
            _minus(pl.col(PROBE_TIME).min(), w_max).alias("lo"),
            pl.col(PROBE_TIME).max().alias("hi"),
        )
        codes = first_last.select(
            (pl.col(_ID) * self._stride + self._offset(pl.col("lo"))).alias("lo"),
            (pl.col(_ID) * self._stride + self._offset(pl.col("hi"))).alias("hi"),
        )
        lo = self.codes.search_sorted(codes["lo"], "left")
        hi = self.codes.search_sorted(codes["hi"], "left")
        runs = pl.DataFrame({"lo": lo, "hi": hi}).filter(pl.col("lo") < pl.col("hi"))
        # (`scatter` writes in place: two fresh Series.)
        starts = pl.zeros(self.n + 1, pl.Int32, eager=True).scatter(runs["lo"], 1).cum_sum()
        ends = pl.zeros(self.n + 1, pl.Int32, eager=True).scatter(runs["hi"], 1).cum_sum()
        return (starts - ends).head(self.n) > 0

    @property
    def fits(self) -> bool:
        """Whether the codes pack real time offsets (not ranks of times)."""
        return self._distinct is None

    def rolling_codes(self, span: int) -> pl.Series:
        """``id * span + (time - tmin)`` in sorted order, read off the codes (`fits` only)."""
        extra = span - self._stride  # >= 0: the MIN/MAX span is at least the sort's
        return self.codes + (self.codes // self._stride) * extra

    def sorted_ids(self) -> pl.Series:
        """Event key ids in (key, time) order."""
        if self._distinct is None:  # read off the codes: cheaper than a gather
            return self.codes // self._stride
        return self.ids.gather(self.perm)

    def sorted_times(self) -> pl.Series:
        """Event times in (key, time) order."""
        if self._distinct is None:
            return self.codes % self._stride + self.tmin
        return self.times.gather(self.perm)

    def sorted_column(self, column: pa.ChunkedArray, *, fill: bool) -> pl.Series:
        """A value column in (key, time) order; nulls become 0 when `fill` (for sums)."""
        s = _series(column, "v")
        if not s.null_count():
            return s.gather(self.perm)
        # A gather of values with validity is ~3x slower than one without (measured), so the
        # values are gathered with nulls filled, and for MIN/MAX the validity separately.
        values = s.fill_null(0).gather(self.perm)
        if fill:
            return values
        valid = s.is_not_null().gather(self.perm)
        return pl.select(pl.when(valid).then(values)).to_series()


def _minus(t: pl.Expr, w: int) -> pl.Expr:
    """``t - w`` for w > 0, saturating at the int64 minimum (no event is below it anyway)."""
    threshold = _I64_MIN + w  # t - w fits iff t >= threshold
    if threshold > _I64_MAX:
        return pl.lit(_I64_MIN, pl.Int64)
    return pl.when(t >= threshold).then(t - w).otherwise(pl.lit(_I64_MIN, pl.Int64))


def _plus(x: pl.Expr, w: int) -> pl.Expr:
    """``x + w`` for w > 0, saturating at the int64 maximum (no probe is above it anyway)."""
    threshold = _I64_MAX - w  # x + w fits iff x <= threshold
    if threshold < _I64_MIN:
        return pl.lit(_I64_MAX, pl.Int64)
    # w may exceed int64: add it in two halves (each fits, and so does every partial sum kept).
    half = w // 2
    return pl.when(x <= threshold).then(x + half + (w - half)).otherwise(pl.lit(_I64_MAX, pl.Int64))


def _window_diff(prefix: pl.Series, hi: pl.Series, lo: pl.Series) -> pl.Series:
    """``prefix[hi] - prefix[lo]`` for an exclusive prefix (wrapping: the difference is exact)."""
    return prefix.gather(hi) - prefix.gather(lo)


def _exclusive_prefix(s: pl.Series) -> pl.Series:
    """Exclusive prefix sums of `s` (length n + 1), int64, wrapping on overflow."""
    # rechunk: a gather from a two-chunk Series is several times slower.
    return pl.concat([pl.Series([0], dtype=pl.Int64), s.cast(pl.Int64).cum_sum()], rechunk=True)


def _schedule(
    events: pa.Table,
    by_time: dict[str, list[int]],
    ev_ids: pl.Series,
    n_ids: int,
    pr: pl.DataFrame,
    reqs: list[WindowRequest],
    out: dict[int, tuple[pl.Series, pl.Series]],
    pool: ThreadPoolExecutor,
) -> None:
    """Run every request on `pool`, in three phases of independent tasks.

    Why Python threads: Polars 2.1 runs a gather, a search or a rolling op on one thread
    (measured: a select of two rolling ops takes twice as long as one), so parallelism has to
    come from running independent operations at once. It is partial: some eager Series methods
    appear to hold the GIL (two threads of ``search_sorted`` took no less wall time than one).
    """

    def build(time: str) -> _Axis:
        axis = _Axis(ev_ids, _series(events.column(time), time), n_ids, pr)
        members = by_time[time]
        windows = {reqs[i].window_us for i in members if reqs[i].op in _PREFIX_OPS}
        if windows or any(reqs[i].window_us is None for i in members):
            axis.hi()  # every bound once (here, not racing in the tasks), shared by all columns
            for w in windows:
                axis.lo(w)
        return axis

    # Consuming a map re-raises the first exception of any task.
    axes = dict(zip(by_time, pool.map(build, by_time), strict=True))
    # MIN/MAX: the sorted values, once per (time, column), before the rolling tasks share them.
    minmax_columns = sorted(
        {
            (reqs[i].time, reqs[i].column)
            for m in by_time.values()
            for i in m
            if reqs[i].op in _NULLABLE
        }
    )

    def sort_column(task: tuple[str, str]) -> pl.Series:
        return axes[task[0]].sorted_column(events.column(task[1]), fill=False)

    sorted_values = dict(zip(minmax_columns, pool.map(sort_column, minmax_columns), strict=True))
    rolling: list[tuple[str, int | None, list[int]]] = []  # (time, window, members)
    prefix: list[tuple[int, str, str, list[int]]] = []  # (cost, time, column, members)
    for time, members in by_time.items():
        by_window: dict[int | None, list[int]] = defaultdict(list)
        by_column: dict[str, list[int]] = defaultdict(list)
        for i in members:
            r = reqs[i]
            if r.op not in _NULLABLE:
                by_column[r.column].append(i)
            elif r.window_us is None and _lifetime_min_max(axes[time], sorted_values, r, i, out):
                continue  # answered here: a running max, no rolling op
            else:
                by_window[r.window_us].append(i)
        rolling.extend((time, w, g) for w, g in by_window.items())
        prefix.extend((len(g), time, c, g) for c, g in by_column.items())
    prefix.sort(key=lambda task: -task[0])  # costliest first, so none is left alone at the end

    def run_prefix(task: tuple[int, str, str, list[int]]) -> None:
        _, time, column, members = task
        axis = axes[time]
        raw = events.column(column)
        if any(reqs[i].op in _PREFIX_OPS for i in members):
            _count_sum(axis, raw, reqs, members, axis.pr[_PID], out)
        distinct = [i for i in members if reqs[i].op == WindowOp.COUNT_DISTINCT]
        if distinct:
            _distinct(axis, raw, reqs, distinct, axis.pr[_PID], out)

    # The prefix-sum tasks start first; the merges below are built meanwhile.
    futures = [pool.submit(run_prefix, task) for task in prefix]

    # Short windows (at most the time range) of one time column share ONE merge of the events
    # with the probes (see `_SharedUnion`); each window is then a task of its own. Longer and
    # lifetime windows are rewritten per window (see `_min_max`) and run one after another:
    # each holds a merged copy of the events (~0.4 GB per 10M events).
    shared: dict[str, _SharedUnion] = {}
    for time in {t for t, _, _ in rolling}:
        axis = axes[time]
        short = [w for t, w, _ in rolling if t == time and _SharedUnion.takes(axis, w)]
        if short:
            values = {c: v for (t, c), v in sorted_values.items() if t == time}
            shared[time] = _SharedUnion(axis, values, max(w for w in short if w is not None))
    rolling_alone = [
        task
        for task in rolling
        if task[0] not in shared
        or task[1] is None
        or not _SharedUnion.takes(axes[task[0]], task[1])
    ]
    rolling_shared = [task for task in rolling if task not in rolling_alone]

    def run_rolling_alone() -> None:
        for time, w, members in rolling_alone:
            values = {c: v for (t, c), v in sorted_values.items() if t == time}
            _min_max(axes[time], values, n_ids, reqs, members, w, events, out)

    def run_rolling_shared(task: tuple[str, int | None, list[int]]) -> None:
        time, w, members = task
        assert w is not None
        shared[time].roll(reqs, members, w, out)

    futures += [pool.submit(run_rolling_shared, task) for task in rolling_shared]
    futures += [pool.submit(run_rolling_alone)] if rolling_alone else []
    for future in futures:
        future.result()  # re-raises the first failure


def _lifetime_min_max(
    axis: _Axis,
    sorted_values: dict[tuple[str, str], pl.Series],
    r: WindowRequest,
    i: int,
    out: dict[int, tuple[pl.Series, pl.Series]],
) -> bool:
    """A lifetime MIN/MAX as a running maximum, if the codes below fit (else False).

    With ``R = vmax - vmin + 1``, the code ``id * R + (v - vmin)`` (MAX) or
    ``id * R + (vmax - v)`` (MIN) orders events by key first, so over the sorted events ONE
    global ``cum_max`` holds, at each event, the best value of its key so far (rows of lower
    keys have lower codes). A probe reads it at its last event before t; if that event is of
    another key, the probe's key has none (null).
    """
    values = sorted_values[(r.time, r.column)]
    lo, hi = values.min(), values.max()
    if lo is None:  # all null: every window is empty, the defaults stand
        return True
    vmin, vmax = int(lo), int(hi)  # type: ignore[arg-type]
    span = vmax - vmin + 1
    if axis.n_ids * span > _I64_MAX:
        return False
    offset = (pl.col("v") - vmin) if r.op == WindowOp.MAX else (vmax - pl.col("v"))
    running = (
        pl.DataFrame({"id": axis.sorted_ids(), "v": values})
        .select((pl.col("id") * span + offset).cum_max().forward_fill())
        .to_series()
    )
    before = axis.hi().cast(pl.Int64)
    found = pl.DataFrame({"n": before, "id": axis.pr[_ID]}).select(
        pl.when(pl.col("n") > 0).then(pl.col("n") - 1).alias("at"), pl.col("id")
    )
    code = running.gather(found["at"])  # a null index reads null
    own = (code // span) == found["id"]
    rest = code % span
    value = rest + vmin if r.op == WindowOp.MAX else vmax - rest
    out[i] = (axis.pr[_PID], pl.select(pl.when(own).then(value)).to_series())
    return True


def _count_sum(
    axis: _Axis,
    raw: pa.ChunkedArray,
    reqs: list[WindowRequest],
    members: list[int],
    pids: pl.Series,
    out: dict[int, tuple[pl.Series, pl.Series]],
) -> None:
    """COUNT and SUM requests of one value column: differences of global prefix sums."""
    hi = axis.hi()
    count_prefix = None
    if raw.null_count and any(reqs[i].op == WindowOp.COUNT for i in members):
        valid = _series(raw, "v").is_not_null().cast(pl.UInt8)
        count_prefix = _exclusive_prefix(valid.gather(axis.perm))
    sum_prefix = None
    if any(reqs[i].op == WindowOp.SUM for i in members):
        sum_prefix = _exclusive_prefix(axis.sorted_column(raw, fill=True))
    for i in members:
        r = reqs[i]
        if r.op not in _PREFIX_OPS:
            continue
        lo = axis.lo(r.window_us)
        if r.op == WindowOp.SUM:
            assert sum_prefix is not None
            out[i] = (pids, _window_diff(sum_prefix, hi, lo))
        elif r.op == WindowOp.COUNT:
            if count_prefix is None:  # no nulls: the count is the length of the range
                out[i] = (pids, hi.cast(pl.Int64) - lo.cast(pl.Int64))
            else:
                out[i] = (pids, _window_diff(count_prefix, hi, lo))


class _SharedUnion:
    """The sorted events merged with the probes once, for every short MIN/MAX window of a time.

    A window ``w`` no longer than the time range needs no rewriting of the probes' times (see
    `_min_max`), so all such windows can share one merge whose code span ``D + w_max + 1``
    keeps keys apart by more than the longest of them: each window is then one `rolling_*_by`
    over the same frame. Only when the codes of all keys fit in int64 (`takes`).
    """

    @staticmethod
    def takes(axis: _Axis, w: int | None) -> bool:
        if w is None or not axis.fits or w > axis.tmax - axis.tmin + 1:
            return False
        span = 2 * (axis.tmax - axis.tmin) + 2  # the largest span a short window can need
        return axis.n_ids * span <= _I64_MAX

    def __init__(self, axis: _Axis, values: dict[str, pl.Series], w_max: int) -> None:
        tmin, tmax = axis.tmin, axis.tmax
        span = tmax - tmin + w_max + 1
        t = pl.col(PROBE_TIME)
        # Probes with nothing before t, or nothing at or after t - w_max, keep the defaults.
        live = t > tmin
        if tmax + w_max <= _I64_MAX:  # else no probe time is beyond it anyway
            live &= t <= tmax + w_max
        code = (pl.col(_ID) * span + (t - tmin)).alias(_CODE)
        columns = sorted(values)
        right = (
            axis.pr.filter(live)
            .select(code, pl.col(_PID))
            .with_columns(pl.lit(None, pl.Int64).alias(c) for c in columns)
            .sort(_CODE)
        )
        left = pl.DataFrame(
            {
                _CODE: axis.rolling_codes(span),
                _PID: pl.repeat(None, axis.n, dtype=pl.UInt32, eager=True),
            }
        ).with_columns(values[c].alias(c) for c in columns)
        left = left.filter(axis.seen_by_probes(w_max))
        self.union = left.merge_sorted(right, _CODE).with_columns(pl.col(_CODE).set_sorted())
        self.is_probe = self.union[_PID].is_not_null()
        self.pids = self.union[_PID].filter(self.is_probe)

    def roll(
        self,
        reqs: list[WindowRequest],
        group: list[int],
        w: int,
        out: dict[int, tuple[pl.Series, pl.Series]],
    ) -> None:
        """The requests of `group` (one window `w`), over the shared merge."""
        result = self.union.select(*_rolling_exprs(reqs, group, w)).filter(self.is_probe)
        for i in group:
            out[i] = (self.pids, result[str(i)])


def _min_max(
    axis: _Axis,
    sorted_values: dict[str, pl.Series],
    n_ids: int,
    reqs: list[WindowRequest],
    group: list[int],
    w: int | None,
    events: pa.Table,
    out: dict[int, tuple[pl.Series, pl.Series]],
) -> None:
    """MIN and MAX requests of one time column and window: one merge, global rolling ops.

    Every window is first made at most ``D + 1`` long (``D = tmax - tmin``), exactly: only
    ``[max(t - w, tmin), min(t, tmax + 1))`` matters. If ``t - w <= tmin`` the lower bound is
    moot, so the probe becomes ``(min(t, tmax + 1), D + 1)``; else ``t > tmax + 1`` for a
    longer window, so the upper bound is moot and the probe becomes ``(t - w + D + 1, D + 1)``,
    the same lower bound. Probes with ``t <= tmin`` or ``t - w > tmax`` have empty windows and
    keep the default; every other probe then has ``tmin < t' <= tmax + w'``, so a code span
    of ``D + w' + 1`` keeps the keys apart by more than the window.
    """
    tmin, tmax = axis.tmin, axis.tmax
    d = tmax - tmin
    t = pl.col(PROBE_TIME)
    # Empty windows (keep the default): nothing before t, or nothing at or after t - w.
    live = t > tmin
    if w is not None and tmax + w <= _I64_MAX:
        live &= t <= tmax + w
    if w is not None and w <= d + 1:
        w2 = w
        t2: pl.Expr = t
    else:
        w2 = d + 1
        # tmax + 1 is only needed when some t exceeds tmax, so it then fits.
        clamped = t if tmax == _I64_MAX else pl.when(t > tmax).then(tmax + 1).otherwise(t)
        if w is None or tmin + w > _I64_MAX:
            t2 = clamped
        else:
            t2 = pl.when(t <= tmin + w).then(clamped).otherwise(t - (w - d - 1))
    span = d + w2 + 1
    probes = axis.pr.filter(live).select(pl.col(_ID), pl.col(_PID), t2.alias(PROBE_TIME))
    if span > _I64_MAX:  # times spread over more than ~2**62 us: see `_min_max_by_join`
        for column in {reqs[i].column for i in group}:
            col_group = [i for i in group if reqs[i].column == column]
            raw = events.column(column)
            _min_max_by_join(axis, raw, reqs, col_group, probes, w2, out)
        return
    columns = sorted({reqs[i].column for i in group})
    per_chunk = _I64_MAX // span
    if per_chunk >= n_ids and axis.fits:
        # The usual case, in one pass: the codes come straight from the sort's codes.
        code = (pl.col(_ID) * span + (pl.col(PROBE_TIME) - tmin)).alias(_CODE)
        left = pl.DataFrame(
            {
                _CODE: axis.rolling_codes(span),
                _PID: pl.repeat(None, axis.n, dtype=pl.UInt32, eager=True),
            }
        ).with_columns(sorted_values[c].alias(c) for c in columns)
        _rolling(left, probes.select(code, pl.col(_PID)), columns, reqs, group, w2, out)
        return
    ev = pl.DataFrame({_ID: axis.sorted_ids(), PROBE_TIME: axis.sorted_times()})
    frame = ev.with_columns(sorted_values[c].alias(c) for c in columns)  # no copy
    # Keys per chunk so that chunk codes fit in int64 (a time range over ~2**61 us).
    parts = []
    for base in range(0, n_ids, per_chunk):
        chunk_ev, chunk_pr = frame, probes
        if per_chunk < n_ids:
            in_chunk = pl.col(_ID).is_between(base, base + per_chunk - 1)
            chunk_ev, chunk_pr = frame.filter(in_chunk), probes.filter(in_chunk)
        if not chunk_pr.height:
            continue
        code = ((pl.col(_ID) - base) * span + (pl.col(PROBE_TIME) - tmin)).alias(_CODE)
        left = chunk_ev.select(code, pl.lit(None, pl.UInt32).alias(_PID), *columns)
        _rolling(left, chunk_pr.select(code, pl.col(_PID)), columns, reqs, group, w2, out, parts)
    if parts:
        result = pl.concat(parts)
        for i in group:
            out[i] = (result[_PID], result[str(i)])


def _rolling(
    left: pl.DataFrame,
    probes: pl.DataFrame,
    columns: list[str],
    reqs: list[WindowRequest],
    group: list[int],
    w: int,
    out: dict[int, tuple[pl.Series, pl.Series]],
    parts: list[pl.DataFrame] | None = None,
) -> None:
    """Rolling MIN/MAX over ``[code - w, code)`` of sorted events (`left`) merged with probes.

    Probes carry null values, so they never count in a window; ``closed="left"`` is the
    strict upper bound. The results go to `out`, or are appended to `parts` (key chunks).
    """
    right = probes.with_columns(pl.lit(None, pl.Int64).alias(c) for c in columns).sort(_CODE)
    union = left.merge_sorted(right, _CODE).with_columns(pl.col(_CODE).set_sorted())
    exprs = _rolling_exprs(reqs, group, w)
    result = union.select(pl.col(_PID), *exprs).filter(pl.col(_PID).is_not_null())
    if parts is not None:
        parts.append(result)
        return
    for i in group:
        out[i] = (result[_PID], result[str(i)])


def _rolling_exprs(reqs: list[WindowRequest], group: list[int], w: int) -> list[pl.Expr]:
    """``rolling_min_by``/``rolling_max_by`` of each request over ``[code - w, code)``; the
    left-closed window is the strict upper bound. Outputs are named by request index."""
    return [
        getattr(pl.col(reqs[i].column), f"rolling_{reqs[i].op.value}_by")(
            _CODE, window_size=f"{w}i", closed="left"
        ).alias(str(i))
        for i in group
    ]


def _min_max_by_join(
    axis: _Axis,
    raw: pa.ChunkedArray,
    reqs: list[WindowRequest],
    group: list[int],
    probes: pl.DataFrame,
    w: int,
    out: dict[int, tuple[pl.Series, pl.Series]],
) -> None:
    """MIN/MAX by joining probes to their key's events: only for times spread over > 2**62 us.

    Cost is the number of (probe, event of its key) pairs; such data (sentinel times at the
    int64 limits) is pathological, and exactness matters more there than speed.
    """
    ev = pl.DataFrame({_ID: axis.ids, "__e": axis.times, "v": _series(raw, "v")}).drop_nulls("v")
    t = pl.col(PROBE_TIME)
    joined = probes.join(ev, on=_ID, how="inner").filter(
        (pl.col("__e") < t) & (pl.col("__e") >= _minus(t, w))
    )
    agg = joined.group_by(_PID).agg(
        *(getattr(pl.col("v"), reqs[i].op.value)().alias(str(i)) for i in group)
    )
    for i in group:
        out[i] = (agg[_PID], agg[str(i)])


def _distinct(
    axis: _Axis,
    raw: pa.ChunkedArray,
    reqs: list[WindowRequest],
    members: list[int],
    pids: pl.Series,
    out: dict[int, tuple[pl.Series, pl.Series]],
) -> None:
    """COUNT_DISTINCT requests of one value column (see the module docstring)."""
    occ = (
        pl.DataFrame({_ID: axis.ids, "__e": axis.times, "v": _series(raw, "v")})
        .drop_nulls("v")
        .unique()  # repeats of the same (key, value, time) count once
        .sort(_ID, "v", "__e")
    )
    first = (pl.col(_ID) != pl.col(_ID).shift(1)) | (pl.col("v") != pl.col("v").shift(1))
    first = first.fill_null(True)
    previous = pl.col("__e").shift(1)
    for i in members:
        w = reqs[i].window_us
        if w is None:
            points = occ.filter(first).select(_ID, pl.col("__e").alias("__x"))
            counts = _count_below(points, axis.pr)
        else:
            enter = (
                pl.when(first)
                .then(pl.col("__e"))
                .otherwise(pl.max_horizontal(pl.col("__e"), _plus(previous, w)))
            )
            entered = _count_below(occ.select(_ID, enter.alias("__x")), axis.pr)
            left = _count_below(occ.select(_ID, _plus(pl.col("__e"), w).alias("__x")), axis.pr)
            counts = entered - left
        out[i] = (pids, counts)


def _count_below(points: pl.DataFrame, pr: pl.DataFrame) -> pl.Series:
    """Per probe (in `pr`'s order), the number of points of its key with ``x < t``.

    Probes sort before points at an equal x (kind 0 < 1), so a cumulative count of points per
    key at a probe's row counts exactly the points strictly below t.
    """
    both = pl.concat(
        [
            points.select(
                _ID, "__x", pl.lit(1, pl.Int64).alias("__kind"), pl.lit(None, pl.Int64).alias("__p")
            ),
            pr.select(
                _ID,
                pl.col(PROBE_TIME).alias("__x"),
                pl.lit(0, pl.Int64).alias("__kind"),
                pl.int_range(pl.len(), dtype=pl.Int64).alias("__p"),
            ),
        ]
    ).sort(_ID, "__x", "__kind")
    counted = both.select(pl.col("__p"), pl.col("__kind").cum_sum().over(_ID).alias("__n")).filter(
        pl.col("__p").is_not_null()
    )
    return counted.sort("__p")["__n"]
