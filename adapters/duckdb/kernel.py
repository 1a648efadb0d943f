"""DuckDB window kernel: exact point-in-time window aggregates computed in SQL over Arrow tables.

How it computes, per time column (details in `_time_column`):

- Times go on a doubled axis (see `_TimeFrame`): an event at T sits at 2T, so a probe's bounds
  can sit at odd values or exactly on an event, which makes every strict and non-strict bound
  of the contract a plain `<`.
- COUNT and SUM are invertible: a window is a difference of two prefix sums. ONE window pass
  computes every count and sum prefix of every event in the global (key, time) order (no
  `PARTITION BY`, which is ~2x slower on skewed keys; the default RANGE frame, so events at one
  time share a prefix; one sentinel row per key below every time, so that every match below is
  of the probe's own key), and ONE `ASOF JOIN` reads, for each probe and bound (`t`, `t - w`
  for each distinct finite window, the key's start for lifetime windows), the prefix of the
  last row strictly before the bound. Counts of several columns share one SUM, each in its
  own lane of bits (see `_Lanes`). Lifetime MIN and MAX are a cumulative MAX of a (key,
  value) code (see `_KeyCode`) read at `t`, in the same pass.
- Finite-window MIN, MAX and COUNT_DISTINCT are not invertible: a second pass sorts events and
  probes together and evaluates each window as a ROWS frame ending at the probe; the frame's
  length (events and other probes inside the window) comes from the first pass, which then
  also counts the probe rows. ROWS, not RANGE, frames: DuckDB binary-searches the start of a
  RANGE frame for every row, and on a hot key with millions of events each search misses the
  cache (measured: 5-10x a ROWS frame).
- Events that no probe can see (keys nobody asks for, events after a key's last probe or before
  its first probe's longest window) are dropped before any window pass.
- Every probe carries its row id; results are put back in the probes' order by id.
- More than `chunk_rows` events: the probes are split by a hash of their key into chunks run
  one after another, each reading only its keys' events, so DuckDB holds one chunk at a time.

Everything is integer arithmetic (HUGEINT where a prefix could leave int64, then wrapped to
int64: the difference of wrapped prefixes is exact when the window's own sum fits), so results
do not depend on row order, thread count or partitioning.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Sequence

import attrs
import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from daedalus.pit.kernel import (
    KEY,
    PROBE_TIME,
    WindowKernel,
    WindowOp,
    WindowRequest,
    key_chunks,
)

__all__ = ["DuckDBKernel"]

#: Times are shifted to [0, span] and doubled (see `_TimeFrame`); BIGINT holds every order value
#: and frame bound while the span is at most this, beyond it the kernel orders by HUGEINT.
_BIGINT_SPAN = 2**60
#: Events per chunk (see `DuckDBKernel.window_aggregate`): DuckDB's sorts and window state
#: cost ~350 bytes per event row, so about 1.4 GB for a chunk of this size.
_CHUNK_ROWS = 1_000_000
#: The normalised empty window (a positive int is a finite window in microseconds, None a
#: lifetime).
_EMPTY = 0
#: The events column holding each row's chunk (several chunks only).
_CHUNK = "__duckdb_chunk"
_INVERTIBLE = frozenset({WindowOp.COUNT, WindowOp.SUM})
_FRAMED = {
    WindowOp.MIN: "min({})",
    WindowOp.MAX: "max({})",
    WindowOp.COUNT_DISTINCT: "count(DISTINCT {})",
}


class DuckDBKernel(WindowKernel):
    """The window kernel on an in-process DuckDB: exact, order and thread-count independent.

    Each call opens its own in-memory connection, so concurrent calls are safe. `threads` is the
    number of DuckDB worker threads (None: DuckDB's default) and `memory_limit` an optional
    DuckDB memory limit such as "2GB" (None: DuckDB's default).
    """

    name = "duckdb"

    def __init__(
        self,
        threads: int | None = None,
        memory_limit: str | None = None,
        chunk_rows: int = _CHUNK_ROWS,
    ) -> None:
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
        self.threads = threads
        self.memory_limit = memory_limit
        self.chunk_rows = chunk_rows

    def __repr__(self) -> str:
        return (
            f"DuckDBKernel(threads={self.threads!r}, memory_limit={self.memory_limit!r}, "
            f"chunk_rows={self.chunk_rows!r})"
        )

    def window_aggregate(
        self, events: pa.Table, probes: pa.Table, requests: Sequence[WindowRequest]
    ) -> pa.Table:
        """Compute every request for every probe (see `WindowKernel`).

        More than `chunk_rows` events are split by a hash of the key into chunks of about that
        many, computed one after another: a key's events and probes stay together, so each
        chunk is a complete, smaller problem, and DuckDB's memory is that of one chunk.
        """
        _check(events, probes, requests)
        n = probes.num_rows
        if not requests:  # like the reference: Arrow keeps no row count without columns
            return pa.table({})
        if n == 0 or events.num_rows == 0:
            return pa.table({r.output: _constant(r.op, n) for r in requests})
        chunks = -(-events.num_rows // self.chunk_rows)
        pr_chunk = (
            key_chunks(probes[KEY].to_numpy(), chunks) if chunks > 1 else np.zeros(n, np.int64)
        )
        by_time: dict[str, list[WindowRequest]] = defaultdict(list)
        for request in requests:
            by_time[request.time].append(request)
        positions, parts = [], []
        ranges = _Ranges(events)
        if chunks > 1:  # each row's chunk: a chunk's passes filter on it before any join
            events = events.append_column(
                _CHUNK, pa.array(key_chunks(events[KEY].to_numpy(), chunks).astype(np.int16))
            )
        con = self._connect()
        try:
            con.register("ev", events)
            for c in range(chunks):
                rows = np.flatnonzero(pr_chunk == c) if chunks > 1 else np.arange(n)
                if not len(rows):
                    continue
                chunk = probes if chunks == 1 else probes.take(pa.array(rows))
                columns = _chunk(con, ranges, chunk, by_time, c if chunks > 1 else None)
                positions.append(rows)
                parts.append(pa.table({r.output: columns[r.output] for r in requests}))
        except (duckdb.Error, RuntimeError) as exc:
            # DuckDB turns Ctrl-C (SIGINT) into an error of its own ("Query interrupted", or
            # an input error wrapping the KeyboardInterrupt raised while it read an Arrow
            # table): give the caller the KeyboardInterrupt, so a run stops as cancelled.
            if isinstance(exc, duckdb.InterruptException) or "interrupt" in str(exc).lower():
                raise KeyboardInterrupt(str(exc)) from exc
            raise
        finally:
            _close_in_background(con)
        if chunks == 1:
            return parts[0]
        # Back to the probes' order: part rows are the probes at `positions`, in that order.
        return pa.concat_tables(parts).take(_placing(np.concatenate(positions))).combine_chunks()

    def _connect(self) -> duckdb.DuckDBPyConnection:
        # Results are put in probe order by id afterwards, so DuckDB need not keep row order.
        config: dict[str, str | int | bool] = {"preserve_insertion_order": False}
        if self.threads is not None:
            config["threads"] = self.threads
        if self.memory_limit is not None:
            config["memory_limit"] = self.memory_limit
        return duckdb.connect(config=config)


def _close_in_background(con: duckdb.DuckDBPyConnection) -> None:
    """Close the call's connection on another thread: freeing DuckDB's memory takes 10 ms
    after an as-of call (3% of it) and more after a large rolling one, and the results no
    longer need it. The thread is not a daemon: the interpreter waits for it at exit."""
    threading.Thread(target=con.close, name="daedalus-duckdb-close").start()


def _chunk(
    con: duckdb.DuckDBPyConnection,
    ranges: _Ranges,
    probes: pa.Table,
    by_time: dict[str, list[WindowRequest]],
    chunk: int | None = None,
) -> dict[str, pa.Array]:
    """Every request for the probes of one chunk (the events table `ev` is registered).

    Only events of the chunk's keys are ever read: every pass starts from the events joined
    with `kr`, the chunk's probed keys, so no copy of the events is made per chunk.
    """
    n = probes.num_rows
    rid = pa.array(np.arange(n, dtype=np.int64))
    con.register("pr", pa.table({KEY: probes[KEY], PROBE_TIME: probes[PROBE_TIME], "rid": rid}))
    run = _Run(
        con,
        ranges,
        n,
        _min_max(probes[PROBE_TIME]) or (0, 0),
        _min_max(probes[KEY]) or (0, 0),
        chunk,
    )
    columns: dict[str, pa.Array] = {}
    for time, group in by_time.items():
        columns.update(_time_column(run, run.frame(time), group))
    return columns


def _check(events: pa.Table, probes: pa.Table, requests: Sequence[WindowRequest]) -> None:
    """Fail loudly on inputs outside the contract rather than compute something else."""
    for table, role, names in (
        (events, "events", {KEY} | {r.time for r in requests} | {r.column for r in requests}),
        (probes, "probes", {KEY, PROBE_TIME}),
    ):
        for name in sorted(names):
            if name not in table.column_names:
                raise KeyError(f"{role} table has no column {name!r}")
            if not pa.types.is_integer(table.schema.field(name).type):
                raise TypeError(f"{role} column {name!r} must be an integer column")
    outputs = [r.output for r in requests]
    if len(set(outputs)) != len(outputs):
        raise ValueError(f"request outputs must be unique, got {outputs}")


def _placing(positions: np.ndarray) -> pa.Array:
    """Indices that put rows back in order: row i of a result belongs at `positions[i]`
    (a permutation of 0..len-1), so `result.take(_placing(positions))` is in that order."""
    order = np.empty(len(positions), dtype=np.int64)
    order[positions] = np.arange(len(positions), dtype=np.int64)
    return pa.array(order)


def _constant(op: WindowOp, n: int) -> pa.Array:
    """The value of an empty window for `n` probes: 0, or null for MIN and MAX."""
    if op in (WindowOp.MIN, WindowOp.MAX):
        return pa.nulls(n, pa.int64())
    return pa.array(np.zeros(n, dtype=np.int64))


def _min_max(column: pa.ChunkedArray) -> tuple[int, int] | None:
    """Smallest and largest non-null value, or None when there is none."""
    stats = pc.min_max(column)
    lo, hi = stats["min"].as_py(), stats["max"].as_py()
    return None if lo is None else (int(lo), int(hi))


class _Ranges:
    """The smallest and largest value of each events column, computed once per call (every
    chunk reads the same events table, so each range is a scan of all of it)."""

    def __init__(self, events: pa.Table) -> None:
        self.events = events
        self._found: dict[str, tuple[int, int] | None] = {}

    def __call__(self, column: str) -> tuple[int, int] | None:
        if column not in self._found:
            self._found[column] = _min_max(self.events[column])
        return self._found[column]


def _quote(name: str) -> str:
    """A SQL identifier for any column name."""
    return '"' + name.replace('"', '""') + '"'


#: Each probed key's first and last probe time (a CTE over the probes `pr`): the event filter
#: of every pass (see `_TimeFrame.visible_events`) and the keys of the sentinel rows.
_KR = (
    f"kr AS (SELECT {_quote(KEY)} AS kr_key, min({_quote(PROBE_TIME)}) AS kr_lo, "
    f"max({_quote(PROBE_TIME)}) AS kr_hi FROM pr GROUP BY {_quote(KEY)})"
)


def _big(value: int) -> str:
    """An exact BIGINT literal (a bare -2**63 would parse as the negation of a HUGEINT)."""
    return f"({value})::BIGINT"


def _huge(value: int) -> str:
    return f"({value})::HUGEINT"


@attrs.define
class _Run:
    """One `window_aggregate` call: its connection, inputs and the probes' time range."""

    con: duckdb.DuckDBPyConnection
    ranges: _Ranges  # the events and their columns' ranges
    n: int  # number of probes
    probe_times: tuple[int, int]
    probe_keys: tuple[int, int]
    chunk: int | None  # the events' chunk (their `_CHUNK` value), None: every event

    @property
    def events(self) -> pa.Table:
        return self.ranges.events

    def frame(self, time: str) -> _TimeFrame:
        event_times = self.ranges(time)
        assert event_times is not None  # events are non-empty and times have no nulls
        base = min(event_times[0], self.probe_times[0])
        span = max(event_times[1], self.probe_times[1]) - base
        return _TimeFrame(
            time=time,
            time_sql="BIGINT" if span <= _BIGINT_SPAN else "HUGEINT",
            base=base,
            reach=self.probe_times[1] - event_times[0],
            chunk=self.chunk,
        )


@attrs.frozen
class _TimeFrame:
    """How one time column is put on the SQL order axis.

    Times are shifted by `base` (so they are >= 0 and no bound overflows) and doubled: an event
    at time T sits at 2T. A probe's row sits at 2t - 1, between the events before t and those
    at t. The prefix read for the bound at t is that of the rows below 2t - 1 (events before
    t, probes before t); for the bound of a window w it is that of the rows below 2(t - w)
    (events before t - w, probes at or before t - w).
    """

    time: str  # the events' time column
    time_sql: str  # SQL type of the order axis: BIGINT, or HUGEINT for absurdly wide spans
    base: int  # subtracted from every time
    reach: int  # largest t - min(event time): a window at least this long is a lifetime
    chunk: int | None = None  # only the events of this chunk (see `_Run.chunk`)

    def literal(self, value: int) -> str:
        return _big(value) if self.time_sql == "BIGINT" else _huge(value)

    def event(self) -> str:
        """SQL for the order value of the event `e`."""
        return f"(e.{_quote(self.time)}::{self.time_sql} - {self.literal(self.base)}) * 2"

    def probe(self, minus: str = "1") -> str:
        """SQL for the order value of the probe `p`'s row (2t - 1), or 2t minus `minus`."""
        return (
            f"(p.{_quote(PROBE_TIME)}::{self.time_sql} - {self.literal(self.base)}) * 2 - {minus}"
        )

    def effective(self, window_us: int | None) -> int | None:
        """The window with the same result for every probe: None (lifetime), 0 (empty) or w > 0."""
        if window_us is None:
            return None
        if window_us <= 0:
            return _EMPTY
        if window_us >= self.reach:
            return None
        return window_us

    def visible_events(self, windows: Sequence[int | None]) -> str:
        """The FROM clause that selects, as `e`, only the events some probe can see.

        An event can be in a window of some probe of its key only if it is before the key's last
        probe and, when every window is finite, not before the key's first probe minus the
        longest window (prefix sums only enter as differences, so there too the earlier events
        cancel). Events of keys that no probe asks for go as well. `kr` holds each probed key's
        first and last probe time.
        """
        where = f"e.{_quote(self.time)} < kr.kr_hi"
        if windows and None not in windows:
            longest = max(w for w in windows if w is not None)
            first = f"(kr.kr_lo::{self.time_sql} - {self.literal(self.base)}) * 2"
            where += f" AND {self.event()} >= {first} - {self.literal(2 * longest)}"
        if self.chunk is not None:
            where = f"e.{_quote(_CHUNK)} = {self.chunk} AND {where}"
        return f"ev AS e JOIN kr ON e.{_quote(KEY)} = kr.kr_key WHERE {where}"


_TWO64 = 2**64
_TWO63 = 2**63


def _wrapped(value: str) -> str:
    """SQL turning a HUGEINT into the BIGINT equal to it modulo 2**64 (two's complement wrap)."""
    m = _huge(_TWO64)
    y = f"((({value}) % {m} + {m}) % {m})"
    return f"({y} - CASE WHEN {y} >= {_huge(_TWO63)} THEN {m} ELSE {_huge(0)} END)::BIGINT"


@attrs.frozen
class _KeyCode:
    """A code whose order is (key, value) for MAX, (key, -value) for MIN.

    ``(k - kmin) * span + (v - vmin)`` (MAX) or ``... + (vmax - v)`` (MIN), with
    ``span = vmax - vmin + 1``: BIGINT when every code fits, else HUGEINT over the full int64
    ranges. In the global (key, time) order a cumulative MAX of it is, at a row of key k, the
    largest (or smallest) value among k's rows so far: rows of smaller keys have smaller codes.
    """

    sql: str
    kmin: int
    vmin: int
    vmax: int

    @classmethod
    def of(cls, run: _Run, column: str) -> _KeyCode:
        keys = [run.ranges(KEY), run.probe_keys]
        kmin = min(k[0] for k in keys if k is not None)
        kmax = max(k[1] for k in keys if k is not None)
        values = run.ranges(column)
        assert values is not None  # all-null columns are constants, never coded
        vmin, vmax = values
        if (kmax - kmin + 1) * (vmax - vmin + 1) <= _TWO63 - 1:
            return cls("BIGINT", kmin, vmin, vmax)
        return cls("HUGEINT", 0, -_TWO63, _TWO63 - 1)

    def literal(self, value: int) -> str:
        return _big(value) if self.sql == "BIGINT" else _huge(value)

    @property
    def span(self) -> int:
        return self.vmax - self.vmin + 1

    def start(self, key: str) -> str:
        """The smallest code of key `key`."""
        return f"({key}::{self.sql} - {self.literal(self.kmin)}) * {self.literal(self.span)}"

    def coded(self, op: WindowOp, value: str) -> str:
        """The code of the row `u`'s `value`."""
        offset = (
            f"({value}::{self.sql} - {self.literal(self.vmin)})"
            if op == WindowOp.MAX
            else f"({self.literal(self.vmax)} - {value}::{self.sql})"
        )
        return f"{self.start('u.k')} + {offset}"

    def decoded(self, op: WindowOp, coded: str, key: str) -> str:
        """The value of a cumulative MAX of codes read at a bound of `key`; NULL if not its key."""
        offset = f"({coded} - {self.start(key)})"  # in [0, span) on the THEN branch only
        value = (
            f"({offset} + {self.literal(self.vmin)})"
            if op == WindowOp.MAX
            else f"({self.literal(self.vmax)} - {offset})"
        )
        return f"CASE WHEN {coded} >= {self.start(key)} THEN {value}::BIGINT END"


@attrs.frozen
class _Lanes:
    """COUNTs of several columns as ONE window SUM: lanes of `bits` bits in a BIGINT.

    An event's packed value has a 1 in the lane of each counted column whose value is present,
    so a prefix sum holds every column's count in its lane. A count never exceeds the number
    of events, which is below 2**bits, so no lane carries into the next, and the difference of
    two prefixes (a later minus an earlier: every lane grows) has each window's count in its
    lane. A window SUM costs what a COUNT does, so k columns cost k / lanes_per_sum of them.
    """

    bits: int
    columns: list[list[str]]  # the counted columns of each packed column, by lane
    lane: dict[str, tuple[str, int]]  # counted column -> (packed column, shift)

    @classmethod
    def of(cls, counted: Sequence[str], run: _Run) -> _Lanes:
        bits = max(run.events.num_rows, 1).bit_length()
        per_sum = max(1, 63 // bits)
        groups = [list(counted[i : i + per_sum]) for i in range(0, len(counted), per_sum)]
        lane = {c: (f"c{g}", j * bits) for g, cs in enumerate(groups) for j, c in enumerate(cs)}
        return cls(bits, groups, lane)

    @property
    def names(self) -> list[str]:
        """The packed columns, `c0`, `c1`, ..."""
        return [f"c{g}" for g in range(len(self.columns))]

    @property
    def mask(self) -> int:
        return (1 << self.bits) - 1

    def packed(self, g: int, events: pa.Table) -> str:
        """SQL for the event `e`'s packed value of the packed column `g`."""
        terms, constant = [], 0
        for j, c in enumerate(self.columns[g]):
            if events[c].null_count:
                terms.append(
                    f"CASE WHEN e.{_quote(c)} IS NULL THEN 0 ELSE {_big(1 << (j * self.bits))} END"
                )
            else:  # present in every row
                constant += 1 << (j * self.bits)
        if constant or not terms:
            terms.append(_big(constant))
        return " + ".join(terms)


def _time_column(
    run: _Run, frame: _TimeFrame, requests: Sequence[WindowRequest]
) -> dict[str, pa.Array]:
    """Every request on one time column, in one or two passes (see the module docstring).

    The visible events `ve` (key, doubled time, values) are a CTE of each pass: a chunk's
    events are found by its chunk column before the join with its keys, so reading them twice
    costs less than a temp table's write.

    Pass 1 is ONE window pass over `ve`, in the global (key, time) order with the default RANGE
    frame (rows at one time share their prefix), plus one sentinel row per probed key below
    every time, so that the last row before any bound of a probe is always one of its key: the
    global prefix there minus the global prefix at another bound is the window's value. An
    ASOF JOIN reads the prefixes at each probe's bounds. Lifetime MIN/MAX are a cumulative MAX
    of a (key, value) code. When pass 2 is needed, pass 1 also runs over the probe rows and
    counts the rows (events and probes) below each bound: a window's ROWS frame length.

    Pass 2 sorts `ve` and the probe rows by (key, time, probe id) and evaluates each MIN, MAX
    and COUNT_DISTINCT as a ROWS frame of that length ending at the probe's row; frames never
    leave the key, so no partitioning is needed.
    """
    n = run.n
    windows = {r.output: frame.effective(r.window_us) for r in requests}
    out = {r.output: _constant(r.op, n) for r in requests if windows[r.output] == _EMPTY}
    # Windows of an all-null column, and sums of an all-zero one, are constants. (Arrow keeps
    # null counts: counts need no pass over the column.)
    magnitude: dict[str, int] = {}
    for column in {r.column for r in requests if r.op == WindowOp.SUM}:
        stats = run.ranges(column)
        magnitude[column] = 0 if stats is None else max(abs(stats[0]), abs(stats[1]))
    for r in requests:
        values = run.events[r.column]
        if values.null_count == len(values) or (r.op == WindowOp.SUM and not magnitude[r.column]):
            out.setdefault(r.output, _constant(r.op, n))
    live = [r for r in requests if r.output not in out]
    if not live:
        return out
    lifetime_minmax = [
        r for r in live if r.op in (WindowOp.MIN, WindowOp.MAX) and windows[r.output] is None
    ]
    summed = [r for r in live if r.op in _INVERTIBLE]
    framed = [r for r in live if r not in summed and r not in lifetime_minmax]
    finite = sorted({w for r in live if (w := windows[r.output]) is not None})
    slot_of: dict[int | None, int] = {w: i + 1 for i, w in enumerate(finite)}
    needs_start = any(windows[r.output] is None for r in summed + framed)
    if needs_start:
        slot_of[None] = len(finite) + 1  # the bound just above the key's sentinel
    n_slots = 1 + len(slot_of)
    lengths = sorted({slot_of[windows[r.output]] for r in framed})

    columns = sorted({r.column for r in live})
    alias = {c: f"v{i}" for i, c in enumerate(columns)}
    # COUNTs only need to know which values are present: they are packed (see `_Lanes`), and
    # a column that nothing else reads is never stored.
    lanes = _Lanes.of(sorted({r.column for r in summed if r.op == WindowOp.COUNT}), run)
    valued = [c for c in columns if any(r.op != WindowOp.COUNT for r in live if r.column == c)]
    event_values = "".join(f", e.{_quote(c)}::BIGINT AS {alias[c]}" for c in valued)
    event_values += "".join(
        f", {lanes.packed(g, run.events)} AS {name}" for g, name in enumerate(lanes.names)
    )
    visible = frame.visible_events([windows[r.output] for r in live])
    ve = f"SELECT e.{_quote(KEY)} AS k, {frame.event()} AS t2{event_values} FROM {visible}"
    # `ve` is a CTE of each pass: recomputing it (a scan of the chunk's events and a join with
    # its keys) costs less than writing it to a temp table that both passes read.
    ctes = f"{_KR}, ve AS ({ve}),"
    sentinel = -(2**62) if frame.time_sql == "BIGINT" else -(2**126)

    # -- pass 1: prefixes of every row, read at every probe's bounds
    aggregates: dict[tuple[WindowOp, str], str] = {}
    for r in summed + lifetime_minmax:
        if r.op != WindowOp.COUNT:
            aggregates.setdefault((r.op, r.column), f"a{len(aggregates)}")
    windowed, selects = [], []
    for name in lanes.names:  # every lane's count is below 2**bits: the packed sum fits
        windowed.append(f"sum(u.{name}) OVER w AS {name}")
        selects.append(f"coalesce(pre.{name}::BIGINT, 0) AS {name}")
    rows_bound = max(run.events.num_rows, 1)
    for (op, column), name in aggregates.items():
        v = f"u.{alias[column]}"
        if op == WindowOp.SUM:
            windowed.append(f"sum({v}) OVER w AS {name}")
            fits = rows_bound * magnitude[column] < _TWO63
            value = f"pre.{name}::BIGINT" if fits else _wrapped(f"pre.{name}")
            selects.append(f"coalesce({value}, 0) AS {name}")
        else:
            code = _KeyCode.of(run, column)
            windowed.append(f"max({code.coded(op, v)}) OVER w AS {name}")
            selects.append(f"{code.decoded(op, f'pre.{name}', 'b.k')} AS {name}")
    if lengths:
        windowed.append("count(*) OVER w AS m")
        selects.append("pre.m AS m")
    # pass 2's columns stay out of its sort
    pass1 = [alias[c] for c in sorted({c for _, c in aggregates})] + lanes.names
    nulls = "".join(f", NULL::BIGINT AS {x}" for x in pass1)
    # Sentinels are only read through differences of prefixes (sums, counts, frame lengths);
    # a lifetime MIN/MAX alone needs none: no row of the key before t reads as NULL already.
    sentinels = (
        f"UNION ALL SELECT kr_key, {frame.literal(sentinel)}{nulls} FROM kr"
        if summed or lengths
        else ""
    )
    event_rows = ", ".join(["k", "t2", *pass1])
    probe_rows = (
        f"UNION ALL SELECT p.{_quote(KEY)}, {frame.probe()}{nulls} FROM pr AS p" if lengths else ""
    )
    bounds = ", ".join(
        f"({s}, {frame.literal(2 * w)})" for w, s in slot_of.items() if w is not None
    )
    bound_t2 = f"{frame.probe('s.d')}"
    if needs_start:
        bound_t2 = (
            f"CASE WHEN s.slot = {slot_of[None]} THEN {frame.literal(sentinel + 1)} "
            f"ELSE {bound_t2} END"
        )
    values = (
        f"(0, {frame.literal(1)})"
        + "".join(f", ({s}, {frame.literal(0)})" for w, s in slot_of.items() if w is None)
        + (f", {bounds}" if bounds else "")
    )
    sql = f"""
    WITH {ctes}
    u AS (
        SELECT {event_rows} FROM ve
        {sentinels}
        {probe_rows}
    ),
    pre AS (
        SELECT u.k, u.t2, {", ".join(windowed)} FROM u WINDOW w AS (ORDER BY u.k, u.t2)
    ),
    b AS (
        SELECT p.rid * {n_slots} + s.slot AS pos, p.{_quote(KEY)} AS k, {bound_t2} AS t2
        FROM pr AS p CROSS JOIN (VALUES {values}) AS s(slot, d)
    )
    SELECT b.pos, {", ".join(selects)}
    FROM b ASOF LEFT JOIN pre ON b.k = pre.k AND b.t2 > pre.t2
    """
    first = run.con.sql(sql).to_arrow_table()
    first = first.drop_columns(["pos"]).take(_placing(first["pos"].combine_chunks().to_numpy()))

    def at_slot(name: str, s: int) -> pa.Array:
        column = first[name].combine_chunks()
        if n_slots == 1:
            return column
        return column.take(pa.array(np.arange(s, n * n_slots, n_slots)))

    def at_slot_np(name: str, s: int) -> np.ndarray:
        return first[name].combine_chunks().to_numpy()[s::n_slots]

    for r in summed:
        slot = slot_of[windows[r.output]]
        if r.op == WindowOp.COUNT:
            name, shift = lanes.lane[r.column]
            diff = at_slot_np(name, 0) - at_slot_np(name, slot)
            out[r.output] = pa.array((diff >> shift) & lanes.mask, pa.int64())
            continue
        name = aggregates[(r.op, r.column)]
        # int64 arithmetic wraps: the difference of wrapped prefixes is the exact sum.
        diff = at_slot_np(name, 0) - at_slot_np(name, slot)
        out[r.output] = pa.array(diff, pa.int64())
    for r in lifetime_minmax:
        out[r.output] = at_slot(aggregates[(r.op, r.column)], 0)
    if not framed:
        return out

    # -- pass 2: MIN, MAX and COUNT_DISTINCT as ROWS frames over events and probe rows
    m = {s: at_slot_np("m", 0) - at_slot_np("m", s) for s in lengths}
    run.con.register(
        "lengths",
        pa.table(
            {"rid": pa.array(np.arange(n, dtype=np.int64)), **{f"l{s}": m[s] for s in lengths}}
        ),
    )
    framed_columns = sorted({r.column for r in framed})
    names = [f"n{s}" for s in lengths]
    # A frame holds the rows below the probe's row from the window's start (counted in pass
    # 1), plus the probes at the same time sorted before it (ties: by row id).
    tie = (
        f"row_number() OVER (PARTITION BY p.{_quote(KEY)}, p.{_quote(PROBE_TIME)} "
        f"ORDER BY p.rid) - 1"
    )
    aggregates2 = [
        f"{_FRAMED[r.op].format(alias[r.column])} OVER (ORDER BY k, t2, rid "
        f"ROWS BETWEEN n{slot_of[windows[r.output]]} PRECEDING AND CURRENT ROW) AS q{i}"
        for i, r in enumerate(framed)
    ]
    sql = f"""
    WITH {ctes}
    pl AS (
        SELECT p.rid, p.{_quote(KEY)} AS k, {frame.probe()} AS t2
            {"".join(f", l.l{s} + {tie} AS n{s}" for s in lengths)}
        FROM pr AS p JOIN lengths AS l ON l.rid = p.rid
    ),
    u AS (
        SELECT k, t2, NULL::BIGINT AS rid {"".join(f", 0 AS {x}" for x in names)}
            {"".join(f", {alias[c]}" for c in framed_columns)}
        FROM ve
        UNION ALL
        SELECT k, t2, rid {"".join(f", {x}" for x in names)}
            {"".join(f", NULL::BIGINT AS {alias[c]}" for c in framed_columns)}
        FROM pl
    )
    SELECT rid, {", ".join(aggregates2)} FROM u QUALIFY rid IS NOT NULL
    """
    second = run.con.sql(sql).to_arrow_table()
    taken = second.take(_placing(second["rid"].combine_chunks().to_numpy()))
    for i, r in enumerate(framed):
        out[r.output] = taken[f"q{i}"].combine_chunks()
    return out
