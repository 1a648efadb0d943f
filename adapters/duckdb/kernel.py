"""DuckDB window kernel: exact point-in-time window aggregates computed in SQL over Arrow tables.

How it computes (per time column, one SQL statement per family of operations):

- COUNT and SUM are invertible, so a window is a difference of two prefix sums. The events and
  one "bound" row per probe and bound (`t`, and `t - w` for each distinct finite window `w`) go
  through ONE partitioned window pass of cumulative sums; a pivot by probe id then takes the
  differences. A bound sorts before the events at its own time (see `_TimeFrame`), so its prefix
  holds exactly the events with time < bound.
- A DuckDB window aggregate costs about the same whatever it sums, so all the count and sum
  prefixes of a time column are packed into a few HUGEINT "words" of bit fields whose widths are
  proven from the data (most events of one key times the largest magnitude). Integer addition
  never lets a field spill into its neighbour, so unpacking is exact; e.g. 4 counts and 3 limb
  sums take 2 cumulative aggregates instead of 7.
- MIN, MAX and COUNT_DISTINCT are not invertible: events and probes are unioned and each request
  is a RANGE frame ending at the probe on the integer time axis.
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
                frame = run.frame(time)
                columns.update(_prefix_pass(run, frame, [r for r in group if r.op in _INVERTIBLE]))
                columns.update(
                    _frame_pass(run, frame, [r for r in group if r.op not in _INVERTIBLE])
                )
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

    def fetch(
        self, sql: str, requests: Sequence[WindowRequest], out: dict[str, pa.Array]
    ) -> dict[str, pa.Array]:
        """Run a pass whose columns q0, q1, ... answer `requests`, and put them in probe order."""
        table = self.con.sql(sql).to_arrow_table()
        ids = table["rid"].combine_chunks().to_numpy()
        index = np.empty(self.n, dtype=np.int64)
        index[ids] = np.arange(len(ids), dtype=np.int64)
        order = pa.array(index)
        for i, r in enumerate(requests):
            out[r.output] = table[f"q{i}"].take(order).combine_chunks()
        return out


@attrs.frozen
class _TimeFrame:
    """How one time column is put on the SQL order axis.

    Times are shifted by `base` (so they are >= 0 and no bound overflows) and doubled: an event
    at time T sits at 2T and a probe bound b at 2b - 1. A bound then sorts strictly after the
    events before it and strictly before the events at its own time, which gives the contract's
    strict upper bound with one plain ORDER BY column and frames that end at CURRENT ROW.
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
        """SQL for the order value of the probe bound at t (columns of `pr`)."""
        return f"({_quote(PROBE_TIME)}::{self.time_sql} - {self.literal(self.base)}) * 2 - 1"

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


def _pack(
    widths: dict[tuple[str, WindowOp], tuple[int, bool]],
) -> dict[tuple[str, WindowOp], _Field]:
    """Assign fields to words, first fit by decreasing width (fewer words, fewer aggregates)."""
    used: list[int] = []
    fields: dict[tuple[str, WindowOp], _Field] = {}
    for name, (bits, signed) in sorted(widths.items(), key=lambda item: (-item[1][0], item[0])):
        word = next((i for i, taken in enumerate(used) if taken + bits <= _WORD_BITS), len(used))
        if word == len(used):
            used.append(0)
        fields[name] = _Field(word, used[word], bits, signed)
        used[word] += bits
    return fields


def _words(fields: dict[tuple[str, WindowOp], _Field]) -> int:
    return 1 + max(f.word for f in fields.values())


def _prefix_pass(
    run: _Run, frame: _TimeFrame, requests: Sequence[WindowRequest]
) -> dict[str, pa.Array]:
    """COUNT and SUM on one time column as differences of packed prefix sums at bound rows."""
    windows = {r.output: frame.effective(r.window_us) for r in requests}
    out = {r.output: _constant(r.op, run.n) for r in requests if windows[r.output] == _EMPTY}
    live = [r for r in requests if windows[r.output] != _EMPTY]

    # A count field is unsigned and at most the most events of one key; a sum field is signed
    # and at most that times the largest magnitude. Sums of all-zero (or all-null) columns and
    # counts of all-null columns are constants and need no field.
    # (A count only needs the null count, which Arrow keeps: no pass over the column.)
    magnitude: dict[str, int] = {}
    for column in {r.column for r in live if r.op == WindowOp.SUM}:
        stats = _min_max(run.events[column])
        magnitude[column] = 0 if stats is None else max(abs(stats[0]), abs(stats[1]))
    for r in live:
        values = run.events[r.column]
        if values.null_count == len(values) or (r.op == WindowOp.SUM and not magnitude[r.column]):
            out[r.output] = _constant(r.op, run.n)
    live = [r for r in live if r.output not in out]
    if not live:
        return out

    def layout(most: int) -> dict[tuple[str, WindowOp], _Field]:
        return _pack(
            {
                (r.column, r.op): (
                    (most.bit_length(), False)
                    if r.op == WindowOp.COUNT
                    else ((most * magnitude[r.column]).bit_length() + 1, True)
                )
                for r in live
            }
        )

    # Bounding prefixes by all events is free; the per-key bound costs a GROUP BY over the
    # events, worth it only when it can save a word (one cumulative aggregate less).
    fields = layout(run.events.num_rows)
    if _words(fields) > _words(layout(1)):
        fields = layout(run.most_per_key())
    n_words = _words(fields)

    # Slot 0 is the bound at t; slot i >= 1 the bound at t - w_i.
    finite = sorted({w for r in live if (w := windows[r.output]) is not None})
    slot_of: dict[int | None, int] = {None: 0} | {w: i + 1 for i, w in enumerate(finite)}
    n_slots = 1 + len(finite)

    terms: list[list[str]] = [[] for _ in range(n_words)]
    for (column, op), field in fields.items():
        value = f"e.{_quote(column)}"
        value = (
            f"({value} IS NOT NULL)::HUGEINT"
            if op == WindowOp.COUNT
            else f"coalesce({value}, 0)::HUGEINT"
        )
        # A multiplication, not a shift: DuckDB refuses to left-shift negative numbers.
        terms[field.word].append(f"{value} * {_huge(1 << field.shift)}" if field.shift else value)
    words = ", ".join(f"{' + '.join(t)} AS w{j}" for j, t in enumerate(terms))
    null_words = ", ".join(f"NULL::HUGEINT AS w{j}" for j in range(n_words))
    prefixes = ", ".join(f"sum(w{j}) OVER win AS p{j}" for j in range(n_words))
    bounds = ", ".join(f"({slot}, {frame.literal(2 * w)})" for slot, w in enumerate([0, *finite]))

    # Per probe, word and needed slot: the window's packed value plus the word's bias, which
    # makes every field non-negative so a shift and a mask read it.
    bias = [sum(f.bias for f in fields.values() if f.word == j) for j in range(n_words)]
    diffs = []
    for slot in sorted({slot_of[windows[r.output]] for r in live}):
        for j in range(n_words):
            value = (
                f"sum(CASE WHEN slot = 0 THEN p{j} END)"
                if slot == 0
                else f"sum(CASE slot WHEN 0 THEN p{j} WHEN {slot} THEN -p{j} END)"
            )
            diffs.append(f"coalesce({value}, 0) + {_huge(bias[j])} AS d{slot}_{j}")
    selects = []
    for i, r in enumerate(live):
        field = fields[(r.column, r.op)]
        word = f"d{slot_of[windows[r.output]]}_{field.word}"
        value = f"({word} >> {field.shift})" if field.shift else word
        value = f"({value} & {_huge((1 << field.bits) - 1)})"
        if field.signed:
            value = f"({value} - {_huge(1 << (field.bits - 1))})"
        selects.append(f"{value}::BIGINT AS q{i}")

    visible = frame.visible_events([windows[r.output] for r in live])
    sql = f"""
    WITH u AS (
        SELECT e.{_quote(KEY)} AS k, {frame.event()} AS t, NULL::BIGINT AS rs, {words}
        FROM {visible}
        UNION ALL
        SELECT {_quote(KEY)}, {frame.probe()} - b.w, rid * {n_slots} + b.slot, {null_words}
        FROM pr CROSS JOIN (VALUES {bounds}) AS b(slot, w)
    ),
    pre AS (
        SELECT rs // {n_slots} AS rid, rs % {n_slots} AS slot, {prefixes}
        FROM u
        WINDOW win AS (PARTITION BY k ORDER BY t ROWS UNBOUNDED PRECEDING)
        QUALIFY rs IS NOT NULL
    ),
    d AS (SELECT rid, {", ".join(diffs)} FROM pre GROUP BY rid)
    SELECT rid, {", ".join(selects)} FROM d
    """
    return run.fetch(sql, live, out)


def _frame_pass(
    run: _Run, frame: _TimeFrame, requests: Sequence[WindowRequest]
) -> dict[str, pa.Array]:
    """MIN, MAX and COUNT_DISTINCT on one time column as RANGE frames over events and probes."""
    windows = {r.output: frame.effective(r.window_us) for r in requests}
    out = {r.output: _constant(r.op, run.n) for r in requests if windows[r.output] == _EMPTY}
    live = [r for r in requests if windows[r.output] != _EMPTY]
    if not live:
        return out
    columns = sorted({r.column for r in live})
    alias = {c: f"v{i}" for i, c in enumerate(columns)}
    values = ", ".join(f"e.{_quote(c)}::BIGINT AS {alias[c]}" for c in columns)
    nulls = ", ".join(f"NULL::BIGINT AS {alias[c]}" for c in columns)
    selects = []
    for i, r in enumerate(live):
        w = windows[r.output]
        # The probe at 2t - 1 sees the events at 2T in [2t - 2w, 2t - 2]; its peers at 2t - 1
        # are probes, whose values are null.
        lower = "UNBOUNDED" if w is None else frame.literal(2 * w - 1)
        selects.append(
            f"{_FRAMED[r.op].format(alias[r.column])} OVER (PARTITION BY k ORDER BY t "
            f"RANGE BETWEEN {lower} PRECEDING AND CURRENT ROW) AS q{i}"
        )
    visible = frame.visible_events([windows[r.output] for r in live])
    sql = f"""
    WITH u AS (
        SELECT e.{_quote(KEY)} AS k, {frame.event()} AS t, NULL::BIGINT AS rid, {values}
        FROM {visible}
        UNION ALL
        SELECT {_quote(KEY)}, {frame.probe()}, rid, {nulls} FROM pr
    )
    SELECT rid, {", ".join(selects)} FROM u QUALIFY rid IS NOT NULL
    """
    return run.fetch(sql, live, out)
