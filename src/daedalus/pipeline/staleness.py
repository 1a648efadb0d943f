"""Which trained days an input change can reach: per-hour content digests of input files, and
the digest of the rows a day can see.

A day is stale only when something it can see changed (design §6). For the inputs that means:
the content of the rows whose time falls in the day's visible range. This module makes that
cheap to decide:

1. `source_fingerprints` reads each parquet file of a source once (or not at all: the
   `FingerprintCache` remembers files by path, size and modification time), buckets its rows by
   the hour of the time column and hashes each bucket's rows (every column, in file order,
   nulls included), and records per UTC day the order in which the day's rows interleave
   hours. The result keeps one entry per file, in the order given (the read order).
2. `day_input_digest` folds the buckets whose hour overlaps a day's visible range (per source
   a `VisibleRange`) into one digest: appending a later file, touching a file or rewriting it
   with the same rows leaves it unchanged; changing, adding, removing or moving a visible row
   (to another hour, another file, or a renamed file) changes it, and so does reordering rows
   with the same hour (the as-of tie-break follows read order), or, for the spine, reordering a
   day's rows at all (its rows come out in read order).
3. `explain_stale` turns two day identities into sentences for `daeda pipeline status`.

Pure: numpy, pyarrow and hashlib; no engine, no executor. Files are read through the
`SourceReaderPort` (the parquet reader by default).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import json
import os
import struct
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from daedalus.pit.errors import PitError
from daedalus.pit.sources import source_reader
from daedalus.pit.spec import AggregationSpec, AsOfSpec, PitSpec
from daedalus.ports import SourceReaderPort, SourceReadError

__all__ = [
    # what a day can see
    "HOUR_US",
    "DAY_US",
    "VisibleRange",
    "visible_ranges",
    # fingerprints of input files
    "FileFingerprint",
    "SourceFingerprint",
    "FingerprintCache",
    "source_fingerprints",
    # per-day digests and why a day is stale
    "INPUTS_KEY",
    "day_input_digest",
    "day_input_digests",
    "explain_input_changes",
    "explain_stale",
]

HOUR_US = 3_600_000_000
DAY_US = 86_400_000_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
#: Bumped whenever what is hashed changes: a cache of another format is ignored, and every
#: digest changes with it (every day becomes stale once, which is the safe direction).
FORMAT = "daedalus.staleness/1"
_DIGEST = 32  # sha256
_RECORD = np.dtype([("key", "<i8"), ("digest", "u1", (_DIGEST,))])
#: The key under which a day identity holds its per-source input digests (`explain_stale`).
INPUTS_KEY = "input_digests"
#: Hours of the time column's unit (date32 columns count days).
_UNITS_PER_HOUR = {"s": 3_600, "ms": 3_600_000, "us": HOUR_US, "ns": HOUR_US * 1_000}
#: A radix sort on 16-bit keys is much faster than numpy's stable sort on 64-bit ones.
_RADIX_SPAN = 1 << 16


# --------------------------------------------------------------------------- visible ranges


@attrs.frozen
class VisibleRange:
    """The rows of one source that day D can see: time in `[D - lookback_us, D + 1 day)`.

    `lookback_us=None` is a lifetime range: everything before `D + 1 day` (lifetime windows,
    as-of features without TTL). The upper bound is the end of the day (not `- delay`): it is
    what a day reads, and rows read but never visible cost at most one needless recompute.

    `row_order`: the order of the rows across hours counts too, not only within an hour. Off
    for feature sources (rows of different times never tie, and every function orders rows by
    time); on for the spine, whose rows the day writes in the order they are read.
    """

    lookback_us: int | None
    row_order: bool = False

    @classmethod
    def lifetime(cls) -> VisibleRange:
        """No lower bound."""
        return cls(None)

    @classmethod
    def spine(cls) -> VisibleRange:
        """A day's own spine rows: `[D, D + 1 day)`, in their order."""
        return cls(0, row_order=True)

    @classmethod
    def of_specs(cls, specs: Iterable[PitSpec]) -> VisibleRange:
        """The union of what `specs` (features of one source used by one service) can see:
        `delay + window` for a rolling aggregate, `delay + ttl` for an as-of feature; lifetime
        windows and as-of features without TTL see everything before the day's end.

        Raises ValueError when `specs` is empty.
        """
        lookbacks: list[int | None] = []
        for spec in specs:
            if isinstance(spec, AggregationSpec):
                width = spec.window_us
            else:
                assert isinstance(spec, AsOfSpec)
                width = spec.ttl_us
            lookbacks.append(None if width is None else spec.delay_us + width)
        if not lookbacks:
            raise ValueError("a visible range needs at least one feature spec")
        if any(lb is None for lb in lookbacks):
            return cls(None)
        return cls(max(lb for lb in lookbacks if lb is not None))

    def bounds_us(self, day: dt.date) -> tuple[int | None, int]:
        """`(lo, hi)` in microseconds since the epoch; `lo` is None for a lifetime range."""
        start = _day_us(day)
        lo = None if self.lookback_us is None else start - self.lookback_us
        return lo, start + DAY_US

    def hours(self, day: dt.date) -> tuple[int | None, int]:
        """`(first, end)`: the hours `h` (hour `h` is `[h, h+1) × 1 h` from the epoch) with
        `first <= h < end` are those that overlap the range. Conservative at the lower edge:
        a lower bound inside an hour includes that whole hour (less than one hour too early)."""
        lo, hi = self.bounds_us(day)
        return (None if lo is None else lo // HOUR_US), -(-hi // HOUR_US)

    def describe(self, day: dt.date) -> str:
        """`[2026-09-02 23:55, 2026-10-04)`, or `everything before 2026-10-04`."""
        lo, hi = self.bounds_us(day)
        if lo is None:
            return f"everything before {_format_us(hi)}"
        return f"[{_format_us(lo)}, {_format_us(hi)})"


def visible_ranges(specs: Iterable[PitSpec]) -> dict[str, VisibleRange]:
    """Per source (`spec.source.name`, the view's name), what the features in `specs` can
    see (`VisibleRange.of_specs`), sorted by source. Add the spine (`VisibleRange.spine()`)."""
    by_source: dict[str, list[PitSpec]] = {}
    for spec in specs:
        by_source.setdefault(spec.source.name, []).append(spec)
    return {name: VisibleRange.of_specs(by_source[name]) for name in sorted(by_source)}


def _day_us(day: dt.date) -> int:
    return (day - _EPOCH.date()).days * DAY_US


def _format_us(us: int) -> str:
    when = _EPOCH + dt.timedelta(microseconds=us)
    if us % DAY_US == 0:
        return when.date().isoformat()
    if us % 60_000_000 == 0:
        return when.strftime("%Y-%m-%d %H:%M")
    return when.strftime("%Y-%m-%d %H:%M:%S.%f").rstrip("0").rstrip(".")


# --------------------------------------------------------------------------- fingerprints


def _keys_of(records: bytes) -> np.ndarray:
    return np.frombuffer(records, dtype=_RECORD)["key"].copy()


@attrs.frozen
class _Hashed:
    """What hashing one file gives (and the cache keeps)."""

    records: bytes
    order: bytes
    rows: int
    nulls: int


@attrs.frozen
class FileFingerprint:
    """The per-hour content digests of one input file.

    `records` holds one 40-byte record per hour that has rows, sorted by hour: the hour
    (int64 little-endian, hours since the epoch) then the sha256 of that hour's rows
    (see `source_fingerprints`). `order` holds one such record per UTC day that has rows: the
    day (days since the epoch) then the sha256 of the hour of day of each of its rows in file
    order (how the day's rows interleave hours; used for `VisibleRange.row_order`). `name` is
    what the day digest hashes for the file (the path, or the path relative to the `root`
    given to `source_fingerprints`); `path`, `size` and `mtime_ns` are what the cache is keyed
    on. `rows` counts the rows with a time, `null_timestamps` those without (never visible, so
    never hashed).
    """

    path: str
    name: str
    size: int
    mtime_ns: int
    records: bytes = attrs.field(repr=False)
    order: bytes = attrs.field(repr=False)
    rows: int
    null_timestamps: int = 0
    hours: np.ndarray = attrs.field(
        default=attrs.Factory(lambda self: _keys_of(self.records), takes_self=True),
        eq=False,
        repr=False,
    )
    days: np.ndarray = attrs.field(
        default=attrs.Factory(lambda self: _keys_of(self.order), takes_self=True),
        eq=False,
        repr=False,
    )

    @classmethod
    def of_table(
        cls,
        table: pa.Table,
        timestamp: str,
        *,
        name: str = "<table>",
        columns: Sequence[str] | None = None,
    ) -> FileFingerprint:
        """The fingerprint of an in-memory table (a source given as a table rather than files),
        hashed exactly as a file of the same rows would be; `size` and `mtime_ns` are 0.

        Raises PitError when the time column is missing or not a time.
        """
        selected = None if columns is None else tuple(sorted({*columns, timestamp}))
        return cls._of(name, name, 0, 0, _fingerprint_table(table, timestamp, selected, name))

    @classmethod
    def _of(cls, path: str, name: str, size: int, mtime_ns: int, h: _Hashed) -> FileFingerprint:
        return cls(path, name, size, mtime_ns, h.records, h.order, h.rows, h.nulls)

    def digests(self) -> dict[int, str]:
        """Hour (since the epoch) → hex digest of that hour's rows; for reports and tests."""
        recs = np.frombuffer(self.records, dtype=_RECORD)
        return {int(r["key"]): r["digest"].tobytes().hex() for r in recs}

    def span(self, first: int | None, end: int, *, days: bool = False) -> tuple[int, int]:
        """Indices `[a, b)` of the records (of `order` with `days`) whose hour (day) is in
        `[first, end)`: two binary searches."""
        keys = self.days if days else self.hours
        a = 0 if first is None else int(np.searchsorted(keys, first, side="left"))
        b = int(np.searchsorted(keys, end, side="left"))
        return a, max(a, b)


@attrs.frozen
class SourceFingerprint:
    """The fingerprints of one source's files, in read order (files sorted by path, as the
    readers scan them: the as-of tie-break depends on it), for one time column."""

    timestamp: str
    files: tuple[FileFingerprint, ...]
    columns: tuple[str, ...] | None = None

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)


def source_fingerprints(
    files: Sequence[str],
    timestamp: str,
    *,
    cache: FingerprintCache | None = None,
    root: str | os.PathLike[str] | None = None,
    columns: Sequence[str] | None = None,
    threads: int | None = None,
    reader: SourceReaderPort | None = None,
) -> SourceFingerprint:
    """Per-hour content digests of every file of a source, in the order given.

    Each file whose `(path, size, mtime_ns)` (and `timestamp`, `columns`) is not in `cache` is
    read once: its rows are bucketed by the hour of `timestamp`
    (`floor(micros / 3_600_000_000)`; a date column puts a day's rows in its first hour) and
    each bucket's rows are hashed with sha256: the row count, then every column (only
    `columns` and the time column when given, else all; sorted by name, so column order in the
    file is irrelevant) as its name, a normalised type tag and the rows' content in file order
    (validity, then values; null slots hash as zeros; strings as lengths then bytes; lists as
    validity, lengths, then the child; dictionaries decoded). Rows whose time is null belong to
    no bucket: they are never visible. Content, not bytes: compression, row-group size, string
    vs large_string or dictionary encoding do not change a digest; a changed value, a row
    added, removed or moved to another hour does, and so does row order within an hour. A
    column's type counts (a column rewritten as int32 instead of int64 is a change). Per UTC
    day, the hour of day of each row in file order is hashed too (`FileFingerprint.order`).

    `root`: file names in the day digest are relative to it (so moving the whole workspace
    keeps days current); default the paths as given. `threads`: files fingerprinted at once
    (default: the CPU count, at most 4). `reader` reads the files (None: the registered
    default, the parquet reader).

    Raises PitError naming the file when it cannot be read or has no usable time column.
    The cache is updated in memory; call `cache.save()` to persist it.
    """
    selected = None if columns is None else tuple(sorted({*columns, timestamp}))
    reader = source_reader(reader)
    stats = [_stat(p, reader) for p in files]
    found: dict[int, _Hashed] = {}
    todo: list[int] = []
    for i, (path, (size, mtime)) in enumerate(zip(files, stats, strict=True)):
        hit = cache.get(path, size, mtime, timestamp, selected) if cache is not None else None
        if hit is None:
            todo.append(i)
        else:
            found[i] = hit
    workers = max(1, min(len(todo), threads or min(os.cpu_count() or 1, 4)))
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            done = list(
                pool.map(lambda i: _fingerprint_file(files[i], timestamp, selected, reader), todo)
            )
    else:
        done = [_fingerprint_file(files[i], timestamp, selected, reader) for i in todo]
    for i, result in zip(todo, done, strict=True):
        found[i] = result
        # a file that changed while it was read is not remembered: the next run reads it again
        if cache is not None and _stat(files[i], reader) == stats[i]:
            cache.put(files[i], *stats[i], timestamp, selected, result)
    out = []
    for i, path in enumerate(files):
        name = Path(os.path.relpath(path, root)).as_posix() if root is not None else path
        out.append(FileFingerprint._of(path, name, *stats[i], found[i]))
    return SourceFingerprint(timestamp, tuple(out), selected)


def _stat(path: str, reader: SourceReaderPort) -> tuple[int, int]:
    try:
        return reader.stat(path)
    except SourceReadError as exc:
        raise PitError(f"input file {path}: {exc.reason}", code="bad_source") from exc


def _read_file(path: str, columns: Sequence[str] | None, reader: SourceReaderPort) -> pa.Table:
    """One file, exactly (no dataset discovery, no partition columns: `read_file`); the one
    place files are read, so tests can count reads."""
    return reader.read_file(path, columns)


def _fingerprint_file(
    path: str, timestamp: str, columns: tuple[str, ...] | None, reader: SourceReaderPort
) -> _Hashed:
    """The hashes of one file."""
    try:
        table = _read_file(path, columns, reader)
    except SourceReadError as exc:
        raise PitError(
            f"input file {exc.where}: cannot read parquet: {exc.reason}", code="bad_source"
        ) from exc
    return _fingerprint_table(table, timestamp, columns, f"input file {path}")


def _fingerprint_table(
    table: pa.Table, timestamp: str, columns: tuple[str, ...] | None, where: str
) -> _Hashed:
    """The hashes of a table (see `source_fingerprints`)."""
    if timestamp not in table.column_names:
        raise PitError(
            f"{where}: time column {timestamp!r} is missing (has: {', '.join(table.column_names)})",
            code="missing_column",
        )
    hours, valid = _hour_of_rows(table.column(timestamp), where, timestamp)
    nulls = 0 if valid is None else int(len(valid) - np.count_nonzero(valid))
    index = None if valid is None else np.flatnonzero(valid)
    kept = hours if index is None else hours[index]  # the rows with a time, in file order
    n = len(kept)
    if n == 0:
        return _Hashed(b"", b"", 0, nulls)
    by_hour = _stable_order(kept)
    sorted_hours = kept if by_hour is None else kept[by_hour]
    take = by_hour if index is None else (index if by_hour is None else index[by_hour])
    if take is not None:
        table = table.take(pa.array(take))
    bounds = _runs(sorted_hours)
    hashers = [hashlib.sha256(FORMAT.encode()) for _ in range(len(bounds) - 1)]
    for h, count in zip(hashers, np.diff(bounds).tolist(), strict=True):
        h.update(struct.pack("<q", count))
    wanted = table.column_names if columns is None else list(columns)
    for name in sorted(wanted):
        if name in table.column_names:
            column = _single(table.column(name))
            tag = f"{name}\x00{_type_tag(column.type)}"
        else:  # declared but absent in this file: the input check reports it
            column, tag = None, f"{name}\x00<absent>"
        encoded = _frame(tag.encode())
        for h in hashers:
            h.update(encoded)
        if column is not None:
            _feed(column, bounds, hashers)
    return _Hashed(_records(sorted_hours[bounds[:-1]], hashers), _interleaving(kept), n, nulls)


def _runs(keys: np.ndarray) -> np.ndarray:
    """Bounds `[0, …, len(keys)]` of the runs of equal values of a sorted, non-empty array."""
    starts = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    return np.concatenate([[0], starts, [len(keys)]]).astype(np.int64)


def _records(keys: np.ndarray, hashers: list[Any]) -> bytes:
    records = np.empty(len(hashers), dtype=_RECORD)
    records["key"] = keys
    digests = b"".join(h.digest() for h in hashers)
    records["digest"] = np.frombuffer(digests, dtype=np.uint8).reshape(-1, _DIGEST)
    return records.tobytes()


def _interleaving(hours: np.ndarray) -> bytes:
    """Per UTC day, the sha256 of the hour of day (one byte) of each of its rows in file
    order: with the per-hour digests (rows in file order within each hour) this pins the
    day's rows' exact order."""
    days = np.floor_divide(hours, 24)
    by_day = _stable_order(days)
    if by_day is not None:
        days, hours = days[by_day], hours[by_day]
    of_day = memoryview((hours - days * 24).astype(np.uint8))
    bounds = _runs(days)
    hashers = []
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        hashers.append(hashlib.sha256(of_day[a:b]))
    return _records(days[bounds[:-1]], hashers)


def _hour_of_rows(
    column: pa.ChunkedArray, where: str, name: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """Hours since the epoch of each row (garbage where null) and the validity (None: no nulls)."""
    t = column.type
    if pa.types.is_dictionary(t):
        column = column.cast(t.value_type)
        t = column.type
    if pa.types.is_timestamp(t):
        raw = pc.cast(column, pa.int64())
        per_hour = _UNITS_PER_HOUR[t.unit]
    elif pa.types.is_date32(t) or pa.types.is_date64(t):
        raw = pc.cast(column.cast(pa.date32()), pa.int32())
        per_hour = 0  # days
    else:
        raise PitError(
            f"{where}: time column {name!r} has type {t}, not a timestamp or date",
            code="bad_type",
        )
    valid = None
    if column.null_count:
        valid = column.is_valid().to_numpy(zero_copy_only=False)
        raw = pc.fill_null(raw, 0)
    values = raw.to_numpy() if isinstance(raw, pa.Array) else _single(raw).to_numpy()
    values = values.astype(np.int64, copy=False)
    hours = values * 24 if per_hour == 0 else np.floor_divide(values, per_hour)
    return hours, valid


def _stable_order(keys: np.ndarray) -> np.ndarray | None:
    """Indices that sort `keys` keeping equal keys in their order (a stable sort); None when
    they are in order already (the usual case: files written in time order)."""
    if len(keys) < 2 or bool(np.all(keys[1:] >= keys[:-1])):
        return None
    low = int(keys.min())
    if int(keys.max()) - low < _RADIX_SPAN:
        return np.argsort((keys - low).astype(np.uint16), kind="stable")
    return np.argsort(keys, kind="stable")


def _single(column: pa.ChunkedArray) -> pa.Array:
    """One contiguous array; string/binary/list columns too large for 32-bit offsets widen."""
    if column.num_chunks == 1:
        return column.chunk(0)
    try:
        return column.combine_chunks()
    except (pa.ArrowInvalid, pa.ArrowCapacityError):
        t = column.type
        wider = (
            pa.large_string()
            if pa.types.is_string(t)
            else pa.large_binary()
            if pa.types.is_binary(t)
            else pa.large_list(t.value_field)
            if pa.types.is_list(t)
            else None
        )
        if wider is None:
            raise
        return column.cast(wider).combine_chunks()


def _frame(data: bytes) -> bytes:
    return struct.pack("<q", len(data)) + data


def _type_tag(t: pa.DataType) -> str:
    """A type name in which encodings of the same values agree (string = large_string = a
    dictionary of strings = string_view; list = large_list)."""
    if isinstance(t, pa.ExtensionType):
        return f"ext<{t.extension_name},{_type_tag(t.storage_type)}>"
    if pa.types.is_dictionary(t):
        return _type_tag(t.value_type)
    if pa.types.is_string(t) or pa.types.is_large_string(t) or _is(t, "is_string_view"):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or _is(t, "is_binary_view"):
        return "binary"
    if pa.types.is_map(t):
        return f"map<{_type_tag(t.key_type)},{_type_tag(t.item_type)}>"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or _is(t, "is_list_view"):
        return f"list<{_type_tag(t.value_type)}>"
    if pa.types.is_fixed_size_list(t):
        return f"list<{_type_tag(t.value_type)}>[{t.list_size}]"
    if pa.types.is_struct(t):
        inner = ",".join(
            f"{t.field(i).name}:{_type_tag(t.field(i).type)}" for i in range(t.num_fields)
        )
        return f"struct<{inner}>"
    return str(t)


def _is(t: pa.DataType, predicate: str) -> bool:
    check: Callable[[pa.DataType], bool] | None = getattr(pa.types, predicate, None)
    return bool(check and check(t))


def _feed(arr: pa.Array, bounds: np.ndarray, hashers: list[Any]) -> None:
    """Hash rows `[bounds[i], bounds[i+1])` of `arr` into `hashers[i]`, for every bucket i.

    The buckets are contiguous and in order, so each is one slice of each buffer: one hashlib
    call per buffer per bucket, no per-row Python. Each array hashes its validity (`_feed_validity`)
    then its values: fixed-width values as their bytes (null slots as zeros), booleans one byte
    each, strings and binaries as int64 lengths then bytes, lists as int64 lengths then the child
    rows, structs as each field in turn. Dictionaries are decoded and views cast to large types
    first, so every encoding of the same values hashes alike.
    """
    t = arr.type
    if isinstance(t, pa.ExtensionType):
        arr, t = arr.storage, t.storage_type
    if pa.types.is_dictionary(t):
        arr = arr.dictionary.take(arr.indices)
        t = arr.type
    if _is(t, "is_string_view") or _is(t, "is_binary_view") or _is(t, "is_list_view"):
        wider = (
            pa.large_string()
            if _is(t, "is_string_view")
            else pa.large_binary()
            if _is(t, "is_binary_view")
            else pa.large_list(t.value_field)
        )
        arr, t = arr.cast(wider), wider
    valid: np.ndarray | None = None
    if arr.null_count:
        valid = arr.is_valid().to_numpy(zero_copy_only=False)
        _feed_validity(valid, bounds, hashers)
    else:
        for h in hashers:
            h.update(b"\x00")
    if pa.types.is_null(t):
        return
    if pa.types.is_boolean(t):
        values = pc.fill_null(arr, False).to_numpy(zero_copy_only=False)
        _feed_rows(values.view(np.uint8), bounds, hashers)
        return
    binary = pa.types.is_binary(t) or pa.types.is_large_binary(t)
    if binary or pa.types.is_string(t) or pa.types.is_large_string(t):
        lengths = _lengths(arr)
        if valid is not None and bool(np.any(lengths[~valid])):
            # null slots backed by bytes (legal, if unusual): hash them as empty
            arr = pc.fill_null(arr, pa.scalar(b"" if binary else "", t))
            lengths = _lengths(arr)
        _feed_rows(lengths, bounds, hashers)
        buffer = arr.buffers()[2]
        data = memoryview(np.frombuffer(buffer, np.uint8) if buffer is not None else b"")
        starts = _offsets(arr)[bounds].tolist()
        for h, a, b in zip(hashers, starts[:-1], starts[1:], strict=True):
            h.update(data[a:b])
        return
    if pa.types.is_fixed_size_list(t):
        _feed(arr.values, (bounds + arr.offset) * t.list_size, hashers)
        return
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_map(t):
        lengths = _lengths(arr)
        if valid is not None and bool(np.any(lengths[~valid])):
            arr = pc.fill_null(arr, pa.scalar([], t))  # null lists backed by values: as empty
            lengths = _lengths(arr)
        _feed_rows(lengths, bounds, hashers)
        _feed(arr.values, _offsets(arr)[bounds], hashers)
        return
    if pa.types.is_struct(t):
        for i in range(t.num_fields):
            _feed(arr.field(i), bounds, hashers)
        return
    width = _byte_width(t)
    if width is not None:
        n = len(arr)
        buffer = np.frombuffer(arr.buffers()[1], dtype=np.uint8)
        values = buffer[arr.offset * width : (arr.offset + n) * width].reshape(n, width)
        if valid is not None:
            values = values.copy()
            values[~valid] = 0  # null slots hash as zeros, whatever the writer left there
        _feed_rows(values, bounds, hashers)
        return
    # anything else (unions, …): correct but slow, one Python value per row
    for h, a, b in zip(hashers, bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        h.update(repr(arr.slice(a, b - a).to_pylist()).encode())


def _byte_width(t: pa.DataType) -> int | None:
    try:
        bits = t.bit_width
    except ValueError:
        return None
    return None if bits % 8 else bits // 8


_WIDE_OFFSETS = (pa.large_string().id, pa.large_binary().id, pa.large_list(pa.int8()).id)


def _offsets(arr: pa.Array) -> np.ndarray:
    """The `len(arr) + 1` offsets of a string, binary, list or map array as int64 (absolute
    positions in its data or child array; slice-aware)."""
    wide = arr.type.id in _WIDE_OFFSETS
    raw = np.frombuffer(arr.buffers()[1], dtype=np.int64 if wide else np.int32)
    return raw[arr.offset : arr.offset + len(arr) + 1].astype(np.int64)


def _lengths(arr: pa.Array) -> np.ndarray:
    return np.diff(_offsets(arr))


def _feed_validity(valid: np.ndarray, bounds: np.ndarray, hashers: list[Any]) -> None:
    """A bucket without nulls hashes as one zero byte whether or not other buckets hold nulls
    (so a null elsewhere in the file changes no other hour's digest); a bucket with nulls as
    one byte 1, then one byte per row."""
    nulls = np.concatenate([[0], np.cumsum(~valid)])
    per_bucket = (nulls[bounds[1:]] - nulls[bounds[:-1]]).tolist()
    view = memoryview(valid.view(np.uint8))
    starts, ends = bounds[:-1].tolist(), bounds[1:].tolist()
    for h, count, a, b in zip(hashers, per_bucket, starts, ends, strict=True):
        if count:
            h.update(b"\x01")
            h.update(view[a:b])
        else:
            h.update(b"\x00")


def _feed_rows(rows: np.ndarray, bounds: np.ndarray, hashers: list[Any]) -> None:
    """Hash the bytes of rows `[bounds[i], bounds[i+1])` of `rows` (indexed on its first axis)
    into `hashers[i]`: one zero-copy slice per bucket."""
    rows = np.ascontiguousarray(rows)
    width = rows.itemsize * (rows.shape[1] if rows.ndim == 2 else 1)
    view = memoryview(rows.reshape(-1).view(np.uint8))
    for h, a, b in zip(hashers, bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        h.update(view[a * width : b * width])


# --------------------------------------------------------------------------- day digests


def day_input_digest(fp: SourceFingerprint, day: dt.date, visible: VisibleRange) -> str:
    """The digest of the rows of one source that `day` can see: sha256 over, for each file
    in order that has an hour overlapping `visible.hours(day)`, its name and the records
    (hour, bucket digest) of those hours, and with `visible.row_order` the records (day,
    interleaving digest) of the UTC days those hours fall in. Files with no such hour
    contribute nothing, so a file of later rows leaves every earlier day's digest unchanged.
    Cost: two or four binary searches per file and one hash over the records in range (no
    per-hour Python).
    """
    first, end = visible.hours(day)
    size = _RECORD.itemsize
    h = hashlib.sha256(FORMAT.encode())
    for f in fp.files:
        a, b = f.span(first, end)
        if a == b:
            continue
        h.update(_frame(f.name.encode()))
        h.update(struct.pack("<q", b - a))
        h.update(memoryview(f.records)[a * size : b * size])
        if visible.row_order:
            c, e = f.span(None if first is None else first // 24, -(-end // 24), days=True)
            h.update(struct.pack("<q", e - c))
            h.update(memoryview(f.order)[c * size : e * size])
    return h.hexdigest()


def day_input_digests(
    fingerprints: Mapping[str, SourceFingerprint],
    visible: Mapping[str, VisibleRange],
    day: dt.date,
) -> dict[str, str]:
    """`day_input_digest` of every source in `visible` (source name → digest), sorted by name:
    what a day identity stores under `INPUTS_KEY`. Raises KeyError for a source in `visible`
    without a fingerprint."""
    return {
        name: day_input_digest(fingerprints[name], day, visible[name]) for name in sorted(visible)
    }


# --------------------------------------------------------------------------- explanations


def explain_input_changes(
    recorded: Mapping[str, str] | None,
    current: Mapping[str, str],
    day: dt.date,
    visible: Mapping[str, VisibleRange],
) -> list[str]:
    """Why the inputs `day` can see differ between a manifest (`recorded`, per-source digests;
    None when the manifest has none) and now (`current`): one sentence per source, sorted by
    source. Empty when they agree."""
    if recorded is None:
        return ["the manifest records no per-source input digests (written by an older version)"]
    reasons = []
    for name in sorted({*recorded, *current}):
        if name not in recorded:
            reasons.append(f"source {name} is new to this day (not in its manifest)")
        elif name not in current:
            reasons.append(f"source {name} is no longer used")
        elif recorded[name] != current[name]:
            seen = visible[name].describe(day) if name in visible else "unknown range"
            reasons.append(f"inputs of {name} changed (rows visible to {day.isoformat()}: {seen})")
    return reasons


_NAMED = {
    "contract_hash": "the contract (resolved schema) changed",
    "definition_hash": "the definitions the service uses changed",
}


def explain_stale(
    recorded: Mapping[str, Any] | None,
    current: Mapping[str, Any],
    day: dt.date,
    visible: Mapping[str, VisibleRange],
) -> list[str]:
    """Why a day whose manifest says `recorded` is stale under the identity `current`: one
    sentence per difference (contract, definitions, each store version, each source's visible
    inputs under `INPUTS_KEY`, any other key by name). Empty when the day is current.
    `recorded=None`: the day was never trained."""
    if recorded is None:
        return ["not trained yet"]
    reasons: list[str] = []
    for key in current:
        old, new = recorded.get(key), current[key]
        if old == new:
            continue
        if key == INPUTS_KEY:
            reasons += explain_input_changes(old, new, day, visible)
        elif key == "store_versions" and isinstance(new, Mapping):
            old = old if isinstance(old, Mapping) else {}
            for store in sorted({*old, *new}):
                if old.get(store) != new.get(store):
                    reasons.append(
                        f"embedding store {store} changed (version {old.get(store, 'none')} → "
                        f"{new.get(store, 'none')})"
                    )
        else:
            reasons.append(_NAMED.get(key, f"{key} changed"))
    return reasons


# --------------------------------------------------------------------------- the cache


class FingerprintCache:
    """File fingerprints remembered between runs in one JSON file, keyed by path, size and
    modification time (and time column and columns), so an unchanged file is never read again.

    A missing, unreadable or corrupt cache file, or one of another `FORMAT`, is ignored (and
    replaced by `save`); `discarded` says why. `save` writes a temporary file beside it and
    renames it over the old one, so a reader sees the old cache or the new, never half of one.
    A file rewritten within the filesystem's timestamp granularity with the same size would be
    taken for the old one: the same assumption `make` relies on. Two processes saving one
    cache file at once: the last rename wins, and the other's new entries are read again next
    time.

    `path=None` keeps the cache in memory only (`save` does nothing): enough for one run in
    which several sources read the same files (two views over one event log).
    """

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = None if path is None else Path(path)
        self.discarded: str | None = None
        self._files: dict[str, dict[str, Any]] = {}
        self._dirty = False
        self._load()

    def _load(self) -> None:
        if self.path is None:
            return
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            self.discarded = f"unreadable: {exc}"
            return
        try:
            data = json.loads(raw.decode("utf-8"))
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                self.discarded = "another format"
                self._dirty = True
                return
            files = data["files"]
            if not isinstance(files, dict) or not all(
                isinstance(v, dict) and isinstance(v.get("fingerprints"), dict)
                for v in files.values()
            ):
                raise ValueError("bad entries")
        except (ValueError, KeyError, TypeError) as exc:
            self.discarded = f"corrupt: {exc}"
            self._dirty = True
            return
        self._files = files

    @staticmethod
    def _selector(timestamp: str, columns: tuple[str, ...] | None) -> str:
        return timestamp if columns is None else f"{timestamp}|{','.join(columns)}"

    def get(
        self, path: str, size: int, mtime_ns: int, timestamp: str, columns: tuple[str, ...] | None
    ) -> _Hashed | None:
        """The hashes remembered for this file version, else None."""
        entry = self._files.get(path)
        if not entry or entry.get("size") != size or entry.get("mtime_ns") != mtime_ns:
            return None
        hit = entry["fingerprints"].get(self._selector(timestamp, columns))
        try:
            records = base64.b64decode(hit["records"], validate=True)
            order = base64.b64decode(hit["order"], validate=True)
            rows, nulls = int(hit["rows"]), int(hit["null_timestamps"])
        except (TypeError, KeyError, ValueError):
            return None  # a damaged entry is read again
        if len(records) % _RECORD.itemsize or len(order) % _RECORD.itemsize:
            return None
        return _Hashed(records, order, rows, nulls)

    def put(
        self,
        path: str,
        size: int,
        mtime_ns: int,
        timestamp: str,
        columns: tuple[str, ...] | None,
        hashed: _Hashed,
    ) -> None:
        """Remember a file version's fingerprint (other versions of the path are forgotten)."""
        entry = self._files.get(path)
        if not entry or entry.get("size") != size or entry.get("mtime_ns") != mtime_ns:
            entry = {"size": size, "mtime_ns": mtime_ns, "fingerprints": {}}
            self._files[path] = entry
        entry["fingerprints"][self._selector(timestamp, columns)] = {
            "records": base64.b64encode(hashed.records).decode("ascii"),
            "order": base64.b64encode(hashed.order).decode("ascii"),
            "rows": hashed.rows,
            "null_timestamps": hashed.nulls,
        }
        self._dirty = True

    def __len__(self) -> int:
        return len(self._files)

    def save(self) -> None:
        """Write the cache atomically (nothing to do when unchanged); files that no longer
        exist are forgotten. Raises OSError when the directory cannot be written."""
        gone = [p for p in self._files if not os.path.exists(p)]
        for p in gone:
            del self._files[p]
        if self.path is None or not (self._dirty or gone):
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
        )
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump({"format": FORMAT, "files": self._files}, out, separators=(",", ":"))
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._dirty = False
