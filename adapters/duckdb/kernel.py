"""DuckDB window kernel: exact point-in-time window aggregates computed in SQL over Arrow tables.

How it computes, per time column (details in `_time_column`):

- COUNT and SUM are invertible, so a window is a difference of two prefix sums. The events and
  one "bound" row per probe and bound (`t`, and `t - w` for each distinct finite window) go
  through ONE partitioned window pass of cumulative sums, and a pivot by probe id takes the
  differences. Times are doubled and bounds put at odd values (see `_TimeFrame`), so a bound
  sorts strictly between the events before it and those at its own time: its prefix holds
  exactly the events with time < bound.
- A DuckDB window aggregate costs about the same whatever it sums, so all the count and sum
  prefixes are packed into a few HUGEINT "words" of bit fields whose widths are proven from the
  data (most events of one key times the largest magnitude). Integer addition never lets a
  field spill into its neighbour, so unpacking is exact: e.g. 4 counts and 3 limb sums take 2
  cumulative aggregates instead of 7.
- MIN, MAX and COUNT_DISTINCT are not invertible: a second pass sorts the events and the probes
  the same way and evaluates each window as a ROWS frame ending at the probe, whose length (the
  number of rows in the window) the first pass counted with one more packed field.
- Events that no probe can see (keys nobody asks for, events after a key's last probe or before
  its first probe's longest window) are dropped before any window pass.
- Every probe carries its row id; results are put back in the probes' order with an Arrow take.

Everything is integer arithmetic (HUGEINT where an intermediate could leave int64), so results
do not depend on row order, thread count or partitioning.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import attrs
import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from daedalus.pit.kernel import KEY, PROBE_TIME, WindowKernel, WindowOp, WindowRequest

__all__ = ["DuckDBKernel"]

#: Bits of fields per packed HUGEINT word: every prefix and window value of a word, and the
#: word with its bias added, then stays inside the signed 128-bit range.
_WORD_BITS = 126
#: Times are shifted to [0, span] and doubled (see `_TimeFrame`); BIGINT holds every order value
#: and frame bound while the span is at most this, beyond it the kernel orders by HUGEINT.
_BIGINT_SPAN = 2**60
#: The normalised empty window (a positive int is a finite window in microseconds, None a
#: lifetime).
_EMPTY = 0
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

    def __init__(self, threads: int | None = None, memory_limit: str | None = None) -> None:
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self.threads = threads
        self.memory_limit = memory_limit

    def __repr__(self) -> str:
        return f"DuckDBKernel(threads={self.threads!r}, memory_limit={self.memory_limit!r})"

    def window_aggregate(
        self, events: pa.Table, probes: pa.Table, requests: Sequence[WindowRequest]
    ) -> pa.Table:
        """Compute every request for every probe (see `WindowKernel`)."""
        _check(events, probes, requests)
        n = probes.num_rows
        if not requests:  # like the reference: Arrow keeps no row count without columns
            return pa.table({})
        if n == 0 or events.num_rows == 0:
            return pa.table({r.output: _constant(r.op, n) for r in requests})

        con = self._connect()
        try:
            con.register("ev", events)
            rid = pa.array(np.arange(n, dtype=np.int64))
            con.register(
                "pr", pa.table({KEY: probes[KEY], PROBE_TIME: probes[PROBE_TIME], "rid": rid})
            )
            # Each probed key's first and last probe time, for the event filter of every pass.
            con.execute(
                f"CREATE TEMP TABLE kr AS SELECT {_quote(KEY)} AS kr_key, "
                f"min({_quote(PROBE_TIME)}) AS kr_lo, max({_quote(PROBE_TIME)}) AS kr_hi "
                f"FROM pr GROUP BY {_quote(KEY)}"
            )
            run = _Run(con, events, n, _min_max(probes[PROBE_TIME]) or (0, 0))
            by_time: dict[str, list[WindowRequest]] = defaultdict(list)
            for request in requests:
                by_time[request.time].append(request)
            columns: dict[str, pa.Array] = {}
            for time, group in by_time.items():
                columns.update(_time_column(run, run.frame(time), group))
        finally:
            con.close()
        return pa.table({r.output: columns[r.output] for r in requests})

    def _connect(self) -> duckdb.DuckDBPyConnection:
        # Results are put in probe order by id afterwards, so DuckDB need not keep row order.
        config: dict[str, str | int | bool] = {"preserve_insertion_order": False}
        if self.threads is not None:
            config["threads"] = self.threads
        if self.memory_limit is not None:
            config["memory_limit"] = self.memory_limit
        return duckdb.connect(config=config)


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


def _quote(name: str) -> str:
    """A SQL identifier for any column name."""
    return '"' + name.replace('"', '""') + '"'


def _big(value: int) -> str:
    """An exact BIGINT literal (a bare -2**63 would parse as the negation of a HUGEINT)."""
    return f"({value})::BIGINT"


def _huge(value: int) -> str:
    return f"({value})::HUGEINT"


@attrs.define
class _Run:
    """One `window_aggregate` call: its connection, inputs and lazily computed statistics."""

    con: duckdb.DuckDBPyConnection
    events: pa.Table
    n: int  # number of probes
    probe_times: tuple[int, int]
    _most_per_key: int | None = None

    def frame(self, time: str) -> _TimeFrame:
        event_times = _min_max(self.events[time])
        assert event_times is not None  # events are non-empty and times have no nulls
        base = min(event_times[0], self.probe_times[0])
        span = max(event_times[1], self.probe_times[1]) - base
        return _TimeFrame(
            time=time,
            time_sql="BIGINT" if span <= _BIGINT_SPAN else "HUGEINT",
            base=base,
            reach=self.probe_times[1] - event_times[0],
        )

    def most_per_key(self) -> int:
        """The largest number of events of one key: it bounds every per-key prefix count."""
        if self._most_per_key is None:
            sql = f"SELECT max(c) FROM (SELECT count(*) AS c FROM ev GROUP BY {_quote(KEY)})"
            self._most_per_key = int(self.con.execute(sql).fetchall()[0][0])
        return self._most_per_key

    def in_probe_order(
        self, table: pa.Table, requests: Sequence[WindowRequest], out: dict[str, pa.Array]
    ) -> None:
        """Store the columns q0, q1, ... of a pass's result, one row per probe id, in `out`."""
        ids = table["rid"].combine_chunks().to_numpy()
        index = np.empty(self.n, dtype=np.int64)
        index[ids] = np.arange(len(ids), dtype=np.int64)
        order = pa.array(index)
        for i, r in enumerate(requests):
            out[r.output] = table[f"q{i}"].take(order).combine_chunks()


@attrs.frozen
class _TimeFrame:
    """How one time column is put on the SQL order axis.

    Times are shifted by `base` (so they are >= 0 and no bound overflows) and doubled: an event
    at time T sits at 2T and a probe bound b at 2b - 1. A bound then sorts strictly after the
    events before it and strictly before the events at its own time, which is the contract's
    strict upper bound, and never ties with an event.
    """

    time: str  # the events' time column
    time_sql: str  # SQL type of the order axis: BIGINT, or HUGEINT for absurdly wide spans
    base: int  # subtracted from every time
    reach: int  # largest t - min(event time): a window at least this long is a lifetime

    def literal(self, value: int) -> str:
        return _big(value) if self.time_sql == "BIGINT" else _huge(value)

    def event(self) -> str:
        """SQL for the order value of the event `e`."""
        return f"(e.{_quote(self.time)}::{self.time_sql} - {self.literal(self.base)}) * 2"

    def probe(self) -> str:
        """SQL for the order value of the probe `p`'s bound at t."""
        return f"(p.{_quote(PROBE_TIME)}::{self.time_sql} - {self.literal(self.base)}) * 2 - 1"

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
        return f"ev AS e JOIN kr ON e.{_quote(KEY)} = kr.kr_key WHERE {where}"


@attrs.frozen
class _Field:
    """A bit field of a packed HUGEINT word: bits [shift, shift + bits) of word `word`.

    A signed field holds its value plus 2**(bits - 1) once the word's bias is added.
    """

    word: int
    shift: int
    bits: int
    signed: bool

    @property
    def bias(self) -> int:
        return 1 << (self.shift + self.bits - 1) if self.signed else 0


#: A packed field is named by (column, op); the rows-in-frame count of pass 2 by (None, COUNT).
_Name = tuple[str | None, WindowOp]
_Fields = dict[_Name, _Field]
_MEMBERS: _Name = (None, WindowOp.COUNT)


def _pack(widths: dict[_Name, tuple[int, bool]]) -> _Fields:
    """Assign fields to words, first fit by decreasing width (fewer words, fewer aggregates)."""
    used: list[int] = []
    fields: _Fields = {}
    for name, (bits, signed) in sorted(widths.items(), key=lambda i: (-i[1][0], str(i[0]))):
        word = next((i for i, taken in enumerate(used) if taken + bits <= _WORD_BITS), len(used))
        if word == len(used):
            used.append(0)
        fields[name] = _Field(word, used[word], bits, signed)
        used[word] += bits
    return fields


def _words(fields: _Fields) -> int:
    return 1 + max(f.word for f in fields.values())


def _layout(
    run: _Run, requests: Sequence[WindowRequest], magnitude: dict[str, int], members: bool
) -> _Fields:
    """The packed fields of COUNT and SUM requests (and pass 2's row count), proven wide enough.

    A count field is unsigned and at most the most events of one key; a sum field is signed and
    at most that times the column's largest magnitude; the row count at most that plus the
    probes. Bounding by all the events is free, the per-key bound costs a GROUP BY over the
    events: worth it only when it can save a word, i.e. a cumulative aggregate.
    """

    def layout(most: int) -> _Fields:
        widths: dict[_Name, tuple[int, bool]] = {
            (r.column, r.op): (
                (most.bit_length(), False)
                if r.op == WindowOp.COUNT
                else ((most * magnitude[r.column]).bit_length() + 1, True)
            )
            for r in requests
        }
        if members:
            widths[_MEMBERS] = ((most + run.n).bit_length(), False)
        return _pack(widths)

    fields = layout(run.events.num_rows)
    if _words(fields) > _words(layout(1)):
        fields = layout(run.most_per_key())
    return fields


def _time_column(
    run: _Run, frame: _TimeFrame, requests: Sequence[WindowRequest]
) -> dict[str, pa.Array]:
    """Every request on one time column, in one or two window passes.

    Pass 1 sorts the visible events and one bound row per probe and bound (`t`, and `t - w` for
    each distinct finite window) by (key, time, bound id) and computes packed prefix sums at
    the bound rows; a pivot by probe gives each window's packed difference. Besides the COUNT
    and SUM fields, a packed "members" count counts the rows of pass 2 (the events and each
    probe's own row), so the difference tells how many of them each finite window holds.

    Pass 2 (MIN, MAX and COUNT_DISTINCT) sorts just those rows the same way, and each window is
    a ROWS frame of that many rows ending at the probe's row. Why not RANGE frames: DuckDB
    binary-searches the start of a RANGE frame for every row, and on a hot key with millions
    of events each search misses the cache (measured: ~3 us per row and aggregate on a key of
    2M events, 5-10x a ROWS frame); a ROWS frame of given length needs no search.
    """
    windows = {r.output: frame.effective(r.window_us) for r in requests}
    out = {r.output: _constant(r.op, run.n) for r in requests if windows[r.output] == _EMPTY}
    # Windows of an all-null column, and sums of an all-zero one, are constants. (Arrow keeps
    # null counts: counts need no pass over the column.)
    magnitude: dict[str, int] = {}
    for column in {r.column for r in requests if r.op == WindowOp.SUM}:
        stats = _min_max(run.events[column])
        magnitude[column] = 0 if stats is None else max(abs(stats[0]), abs(stats[1]))
    for r in requests:
        values = run.events[r.column]
        if values.null_count == len(values) or (r.op == WindowOp.SUM and not magnitude[r.column]):
            out.setdefault(r.output, _constant(r.op, run.n))
    live = [r for r in requests if r.output not in out]
    summed = [r for r in live if r.op in _INVERTIBLE]
    framed = [r for r in live if r.op not in _INVERTIBLE]
    if not live:
        return out

    # Slot 0 is the bound at t, slot i >= 1 the bound at t - w_i. Bound rows sort among
    # themselves by their id rs = rid * n_slots + slot, and never tie with an event, so every
    # prefix at a bound row is well defined and pass 2 sees its rows in pass 1's order.
    finite = sorted({w for r in live if (w := windows[r.output]) is not None})
    slot_of: dict[int | None, int] = {None: 0} | {w: i + 1 for i, w in enumerate(finite)}
    n_slots = 1 + len(finite)
    visible = frame.visible_events([windows[r.output] for r in live])
    over = "PARTITION BY k ORDER BY t, rs"

    def union(
        event_cols: Sequence[str], bound_cols: Sequence[str], probes: str, w: Sequence[int]
    ) -> str:
        event_extra = "".join(f", {c}" for c in event_cols)
        bound_extra = "".join(f", {c}" for c in bound_cols)
        bounds = ", ".join(f"({slot}, {frame.literal(2 * x)})" for slot, x in enumerate(w))
        return f"""
            SELECT e.{_quote(KEY)} AS k, {frame.event()} AS t, NULL::BIGINT AS rs{event_extra}
            FROM {visible}
            UNION ALL
            SELECT p.{_quote(KEY)}, {frame.probe()} - b.w, p.rid * {n_slots} + b.slot{bound_extra}
            FROM {probes} CROSS JOIN (VALUES {bounds}) AS b(slot, w)"""

    # -- pass 1: packed prefix sums at the bound rows, pivoted by probe
    lengths = {slot_of[w] for r in framed if (w := windows[r.output]) is not None}
    if summed or lengths:
        fields = _layout(run, summed, magnitude, members=bool(lengths))
        n_words = _words(fields)
        terms: list[list[str]] = [[] for _ in range(n_words)]
        for (column, op), field in fields.items():
            if column is None:  # pass 2's row count: 1 per event
                value = "1::HUGEINT"
            elif op == WindowOp.COUNT:
                value = f"(e.{_quote(column)} IS NOT NULL)::HUGEINT"
            else:
                value = f"coalesce(e.{_quote(column)}, 0)::HUGEINT"
            # A multiplication, not a shift: DuckDB refuses to left-shift negative numbers.
            terms[field.word].append(
                f"{value} * {_huge(1 << field.shift)}" if field.shift else value
            )
        bound_words = ["NULL::HUGEINT"] * n_words
        if lengths:  # and 1 per probe's own row
            member = fields[_MEMBERS]
            bound_words[member.word] = f"CASE b.slot WHEN 0 THEN {_huge(1 << member.shift)} END"
        prefixes = ", ".join(
            f"sum(w{j}) OVER ({over} ROWS UNBOUNDED PRECEDING) AS p{j}" for j in range(n_words)
        )
        # Per probe, slot and word: the window's packed value plus the word's bias, which makes
        # every field non-negative so that a shift and a mask read it.
        bias = [sum(f.bias for f in fields.values() if f.word == j) for j in range(n_words)]
        pivots = []
        for slot in sorted({slot_of[windows[r.output]] for r in summed} | lengths):
            for j in range(n_words):
                minus = f" WHEN {slot} THEN -p{j}" if slot else ""
                value = f"sum(CASE slot WHEN 0 THEN p{j}{minus} END)"
                pivots.append(f"coalesce({value}, 0) + {_huge(bias[j])} AS d{slot}_{j}")

        def unpack(slot: int, field: _Field) -> str:
            value = f"d{slot}_{field.word}"
            value = f"({value} >> {field.shift})" if field.shift else value
            value = f"({value} & {_huge((1 << field.bits) - 1)})"
            return f"({value} - {_huge(1 << (field.bits - 1))})" if field.signed else value

        selects = [
            f"{unpack(slot_of[windows[r.output]], fields[(r.column, r.op)])}::BIGINT AS q{i}"
            for i, r in enumerate(summed)
        ]
        # A frame of n rows before the probe's row: the members after the bound row, but one.
        selects += [f"{unpack(s, fields[_MEMBERS])}::BIGINT - 1 AS n{s}" for s in sorted(lengths)]
        sql = f"""
        WITH u AS ({
            union(
                [f"{' + '.join(t)} AS w{j}" for j, t in enumerate(terms)],
                [f"{w} AS w{j}" for j, w in enumerate(bound_words)],
                "pr AS p",
                [0, *finite],
            )
        }),
        pre AS (
            SELECT rs // {n_slots} AS rid, rs % {n_slots} AS slot, {prefixes}
            FROM u QUALIFY rs IS NOT NULL
        ),
        d AS (SELECT rid, {", ".join(pivots)} FROM pre GROUP BY rid)
        SELECT rid, {", ".join(selects)} FROM d
        """
        first = run.con.sql(sql).to_arrow_table()
        run.in_probe_order(first, summed, out)
        if lengths:
            run.con.register("lengths", first.select(["rid", *(f"n{s}" for s in sorted(lengths))]))
    if not framed:
        return out

    # -- pass 2: MIN, MAX and COUNT_DISTINCT as ROWS frames over the members, in pass 1's order
    columns = sorted({r.column for r in framed})
    alias = {c: f"v{i}" for i, c in enumerate(columns)}
    names = [f"n{s}" for s in sorted(lengths)]
    aggregates = []
    for i, r in enumerate(framed):
        w = windows[r.output]
        start = "UNBOUNDED" if w is None else f"n{slot_of[w]}"
        aggregates.append(
            f"{_FRAMED[r.op].format(alias[r.column])} OVER "
            f"({over} ROWS BETWEEN {start} PRECEDING AND CURRENT ROW) AS q{i}"
        )
    sql = f"""
    WITH u AS ({
        union(
            [f"e.{_quote(c)}::BIGINT AS {alias[c]}" for c in columns]
            + [f"0 AS {n}" for n in names],
            [f"NULL::BIGINT AS {alias[c]}" for c in columns] + [f"l.{n}" for n in names],
            "pr AS p JOIN lengths AS l ON l.rid = p.rid" if names else "pr AS p",
            [0],
        )
    })
    SELECT rs // {n_slots} AS rid, {", ".join(aggregates)} FROM u QUALIFY rs IS NOT NULL
    """
    run.in_probe_order(run.con.sql(sql).to_arrow_table(), framed, out)
    return out
