"""Source rows for point-in-time features: the rules, not the files.

The files are read behind `SourceReaderPort` (`daedalus.ports`; the parquet adapter in
production): globbing, footers and range-pruned reads live there. What stays here
is pure: time columns as microseconds, which stored types a declared type accepts
(`compatible`), a file's problems from its schema (`file_problems`), the checks every reader
applies to a file's columns (`check_file_columns`), and the rows of an in-memory source
(`read_source`, which hands every stored source to the reader).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from daedalus.catalog.dtypes import format_dtype
from daedalus.pit.errors import PitError
from daedalus.pit.spec import SourceSpec

if TYPE_CHECKING:
    from daedalus.ports import SourceReaderPort

__all__ = [
    "check_file_columns",
    "compatible",
    "expand_paths",
    "file_problems",
    "range_mask",
    "read_source",
    "read_type",
    "source_reader",
    "time_bound",
    "timestamps_to_micros",
]

_MICROS_PER = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": None}


def source_reader(reader: SourceReaderPort | None = None) -> SourceReaderPort:
    """`reader`, or the default one the composition root registered (the parquet reader)."""
    if reader is not None:
        return reader
    from daedalus.pit.engine import default_source_reader

    return default_source_reader()


def expand_paths(source: SourceSpec, reader: SourceReaderPort | None = None) -> list[str]:
    """The files behind a source, sorted (`SourceReaderPort.files`); raises PitError when
    none match."""
    return source_reader(reader).files(source)


def timestamps_to_micros(
    column: pa.ChunkedArray | pa.Array, name: str, *, naive_is_utc: bool, where: str
) -> np.ndarray:
    """A timestamp or date column as int64 microseconds since the epoch, UTC.

    Raises PitError for tz-naive timestamps unless `naive_is_utc`, for nulls, and for a column
    that is not a time at all.
    """
    t = column.type
    if pa.types.is_date32(t):
        days = pc.cast(column, pa.int32()).to_numpy(zero_copy_only=False)
        micros = days.astype(np.int64) * 86_400_000_000
    elif pa.types.is_timestamp(t):
        if t.tz is None and not naive_is_utc:
            raise PitError(
                f"{where}: column {name!r} holds tz-naive timestamps; store them in UTC with a "
                "time zone, or set naive_timestamps_are_utc: true in the definition",
                code="naive_timestamps",
            )
        raw = pc.cast(column, pa.int64()).to_numpy(zero_copy_only=False)
        factor = _MICROS_PER[t.unit]
        micros = raw // 1000 if factor is None else raw if factor == 1 else raw * factor
    else:
        raise PitError(
            f"{where}: column {name!r} has type {t}, not a timestamp or date", code="bad_type"
        )
    if column.null_count:
        raise PitError(
            f"{where}: column {name!r} has {column.null_count} null timestamps",
            code="null_timestamp",
        )
    return micros.astype(np.int64, copy=False)


def _check_columns(
    source: SourceSpec,
    schema: pa.Schema,
    columns: Sequence[str],
    where: str,
    dictionary: Sequence[str] = (),
) -> None:
    for col in columns:
        if col not in schema.names:
            raise PitError(
                f"{where}: column {col!r} of {source.name!r} is missing (has: {', '.join(schema.names)})",
                code="missing_column",
            )
        declared = source.schema.field(col).type if col in source.schema.names else None
        actual = schema.field(col).type
        if col in dictionary and pa.types.is_dictionary(actual):
            actual = actual.value_type  # read dictionary-encoded on request
        if declared is not None and not compatible(declared, actual):
            raise PitError(
                f"{where}: column {col!r} of {source.name!r} is {actual}, but the definition "
                f"declares {format_dtype(declared)}",
                code="bad_type",
            )


def _widens(declared: pa.DataType, actual: pa.DataType) -> bool:
    """True when every value of `actual` is exactly a value of `declared` (a lossless cast)."""
    if pa.types.is_integer(declared) and pa.types.is_integer(actual):
        if pa.types.is_signed_integer(declared):
            limit = declared.bit_width - (0 if pa.types.is_signed_integer(actual) else 1)
            return actual.bit_width <= limit
        return pa.types.is_unsigned_integer(actual) and actual.bit_width <= declared.bit_width
    if pa.types.is_floating(declared) and pa.types.is_floating(actual):
        return actual.bit_width <= declared.bit_width
    return False


def compatible(declared: pa.DataType, actual: pa.DataType) -> bool:
    """Whether a file column of type `actual` may be read as the declared type.

    Allowed, because no value changes: equal types; timestamps of any unit and time zone (the
    instants are kept; tz-naive files are checked separately against `naive_timestamps_are_utc`;
    nanoseconds are truncated to the microseconds every timestamp is computed in); integers
    into a wider integer type and float32 into float64; large and dictionary-encoded variants of
    strings and binaries; lists of compatible items. Anything else (a number stored as text, a
    narrower type, a float for an integer) is refused.
    """
    if declared.equals(actual) or _widens(declared, actual):
        return True
    if pa.types.is_dictionary(actual):
        return compatible(declared, actual.value_type)
    if pa.types.is_timestamp(declared) and pa.types.is_timestamp(actual):
        return True
    if pa.types.is_string(declared) and pa.types.is_large_string(actual):
        return True
    if pa.types.is_binary(declared) and pa.types.is_large_binary(actual):
        return True
    return (
        pa.types.is_list(declared)
        and (pa.types.is_list(actual) or pa.types.is_large_list(actual))
        and compatible(declared.value_type, actual.value_type)
    )


def file_problems(source: SourceSpec, path: str, schema: pa.Schema) -> list[str]:
    """Every way the parquet file `path` (with `schema`, from its footer) breaks `source`'s
    definition: a declared column missing, a type that cannot be read losslessly as the declared
    one, a time column that is not a time or is tz-naive where the definition does not allow it.
    Each problem names the file, the column and both types."""
    problems = []
    times = {source.timestamp, *([source.created_timestamp] if source.created_timestamp else [])}
    for field in source.schema:
        name = field.name
        if name not in schema.names:
            problems.append(
                f"{path}: column {name!r} is missing (declared {format_dtype(field.type)}; "
                f"the file has: {', '.join(schema.names)[:200]})"
            )
            continue
        actual = schema.field(name).type
        if name in times and not (pa.types.is_timestamp(actual) or pa.types.is_date32(actual)):
            problems.append(
                f"{path}: time column {name!r} is {actual}, not a timestamp or date "
                f"(declared {format_dtype(field.type)})"
            )
        elif not compatible(field.type, actual):
            problems.append(
                f"{path}: column {name!r} is {actual}, but the definition declares "
                f"{format_dtype(field.type)}"
            )
        elif (
            pa.types.is_timestamp(actual)
            and actual.tz is None
            and pa.types.is_timestamp(field.type)
            and not source.naive_timestamps_are_utc
        ):
            problems.append(
                f"{path}: column {name!r} holds tz-naive timestamps ({actual}); store them in "
                "UTC with a time zone, or set naive_timestamps_are_utc: true in the definition"
            )
    return problems


def check_file_columns(
    source: SourceSpec,
    schema: pa.Schema,
    columns: Sequence[str],
    where: str,
    dictionary: Sequence[str] = (),
) -> None:
    """The checks every reader applies to a stored file (with `schema`) before reading
    `columns` of it: each is present and of a type the definition accepts (a string column
    named in `dictionary` may be stored dictionary-encoded), and the time columns read are not
    tz-naive unless the definition allows it. Raises PitError naming `where` (the file)."""
    _check_columns(source, schema, columns, where, dictionary)
    for name in (source.timestamp, source.created_timestamp):
        if name is None or name not in columns:
            continue
        t = schema.field(name).type
        if pa.types.is_timestamp(t) and t.tz is None and not source.naive_timestamps_are_utc:
            raise PitError(
                f"{where}: column {name!r} holds tz-naive timestamps; store them in UTC with a "
                "time zone, or set naive_timestamps_are_utc: true in the definition",
                code="naive_timestamps",
            )


def read_type(
    source: SourceSpec, name: str, found: Sequence[pa.DataType], dictionary: bool
) -> pa.DataType:
    """The one type a column is read as when the files of a source store it differently."""
    if all(pa.types.is_timestamp(t) for t in found):
        units = ("s", "ms", "us", "ns")
        return pa.timestamp(max((t.unit for t in found), key=units.index), tz="UTC")
    declared = source.schema.field(name).type if name in source.schema.names else found[0]
    if dictionary and pa.types.is_string(declared):
        return pa.dictionary(pa.int32(), pa.string())
    return declared


def time_bound(value: int, t: pa.DataType) -> pa.Scalar:
    """A bound in microseconds as a scalar comparable with a time column of type `t` (a
    date32 column compares by day)."""
    if pa.types.is_date32(t):
        return pa.scalar(value // 86_400_000_000, pa.date32())
    return pa.scalar(value, pa.timestamp("us", tz=t.tz))


def read_source(
    source: SourceSpec,
    columns: Sequence[str],
    lo_us: int | None,
    hi_us: int | None,
    *,
    dictionary: Sequence[str] = (),
    reader: SourceReaderPort | None = None,
) -> pa.Table:
    """Rows of `source` with `lo_us <= timestamp < hi_us` (either bound optional), only `columns`.

    A source backed by an in-memory table is selected here; a stored one is read by `reader`
    (None: the registered default, the parquet reader), which pushes the time range down and
    keeps the files' order (files sorted by path), which the as-of tie-break relies on. String
    columns named in `dictionary` may come back dictionary-encoded (for columns only compared
    with filter values: reading the dictionary's indices skips building millions of strings).
    """
    columns = list(dict.fromkeys(columns))
    if source.table is None:
        return source_reader(reader).read(source, columns, lo_us, hi_us, dictionary=dictionary)
    table = source.table
    _check_columns(source, table.schema, columns, f"source of {source.name!r}")
    table = table.select(columns)
    mask = range_mask(table[source.timestamp], lo_us, hi_us)
    return table if mask is None else table.filter(mask)


def range_mask(column: pa.ChunkedArray, lo_us: int | None, hi_us: int | None) -> pa.Array | None:
    """The rows of a time column with `lo_us <= t < hi_us` (None: every row, or a column that
    is not a time: its type error is reported when it is converted). A date counts as its
    midnight, so a date column keeps the day of `hi_us` too when `hi_us` falls inside it."""
    if lo_us is None and hi_us is None:
        return None
    t = column.type
    if not (pa.types.is_timestamp(t) or pa.types.is_date32(t)):
        return None  # the type error is reported when the column is converted
    mask = None
    if lo_us is not None:
        mask = pc.greater_equal(column, time_bound(lo_us, t))
    if hi_us is not None:
        upper = (
            pc.less(column, time_bound(hi_us, t))
            if not pa.types.is_date32(t)
            else pc.less_equal(column, time_bound(hi_us, t))
        )
        mask = upper if mask is None else pc.and_(mask, upper)
    return mask
