"""Reading source rows for point-in-time features: only the columns and time range that can be visible."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from daedalus.catalog.dtypes import format_dtype
from daedalus.pit.errors import PitError
from daedalus.pit.spec import SourceSpec

__all__ = [
    "compatible",
    "expand_paths",
    "file_problems",
    "locate_unreadable",
    "read_source",
    "timestamps_to_micros",
]

_MICROS_PER = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": None}


def expand_paths(source: SourceSpec) -> list[str]:
    """The parquet files behind a source, sorted; raises PitError when none match."""
    files: list[str] = []
    for path in source.paths:
        if any(ch in path for ch in "*?["):
            files += sorted(p for p in glob.glob(path) if os.path.isfile(p))
        elif os.path.isdir(path):
            files += sorted(str(p) for p in Path(path).rglob("*.parquet"))
        elif os.path.isfile(path):
            files.append(path)
    if not files:
        raise PitError(
            f"source of {source.name!r}: no parquet files match {', '.join(source.paths)}",
            code="missing_source",
        )
    return files


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
    columns: list[str],
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


def _read_type(
    source: SourceSpec, name: str, found: list[pa.DataType], dictionary: bool
) -> pa.DataType:
    """The one type a column is read as when the files of a source store it differently."""
    if all(pa.types.is_timestamp(t) for t in found):
        units = ("s", "ms", "us", "ns")
        return pa.timestamp(max((t.unit for t in found), key=units.index), tz="UTC")
    declared = source.schema.field(name).type if name in source.schema.names else found[0]
    if dictionary and pa.types.is_string(declared):
        return pa.dictionary(pa.int32(), pa.string())
    return declared


def _bound(value: int, t: pa.DataType) -> pa.Scalar:
    if pa.types.is_date32(t):
        return pa.scalar(value // 86_400_000_000, pa.date32())
    return pa.scalar(value, pa.timestamp("us", tz=t.tz))


def read_source(
    source: SourceSpec,
    columns: list[str],
    lo_us: int | None,
    hi_us: int | None,
    *,
    dictionary: Sequence[str] = (),
) -> pa.Table:
    """Rows of `source` with `lo_us <= timestamp < hi_us` (either bound optional), only `columns`.

    Parquet sources are scanned with the time range pushed down; rows keep the files' order
    (files sorted by path), which the as-of tie-break relies on. String columns named in
    `dictionary` come back dictionary-encoded from parquet (for columns only compared with
    filter values: reading the dictionary's indices skips building millions of strings).
    """
    where = f"source of {source.name!r}"
    columns = list(dict.fromkeys(columns))
    if source.table is not None:
        table = source.table
        _check_columns(source, table.schema, columns, where)
        table = table.select(columns)
        mask = _range_mask(table[source.timestamp], lo_us, hi_us)
        return table if mask is None else table.filter(mask)
    files = expand_paths(source)
    try:
        options = ds.ParquetReadOptions(dictionary_columns=list(dictionary))
        dataset = ds.dataset(files, format=ds.ParquetFileFormat(read_options=options))
    except (pa.ArrowInvalid, OSError) as exc:
        raise PitError(f"{where}: cannot read parquet: {exc}", code="bad_source") from exc
    try:
        schemas = [(f.path, f.physical_schema) for f in dataset.get_fragments()]
    except (pa.ArrowInvalid, OSError) as exc:
        raise PitError(f"{where}: cannot read parquet: {exc}", code="bad_source") from exc
    times = [c for c in (source.timestamp, source.created_timestamp) if c in columns]
    for path, schema in schemas:
        _check_columns(source, schema, columns, f"{where}, file {path}", dictionary)
        for name in times:
            t = schema.field(name).type
            if pa.types.is_timestamp(t) and t.tz is None and not source.naive_timestamps_are_utc:
                raise PitError(
                    f"{where}, file {path}: column {name!r} holds tz-naive timestamps; store "
                    "them in UTC with a time zone, or set naive_timestamps_are_utc: true in the "
                    "definition",
                    code="naive_timestamps",
                )
    if any(
        not schema.field(c).type.equals(schemas[0][1].field(c).type)
        for _path, schema in schemas[1:]
        for c in columns
    ):  # the files disagree (losslessly, as checked): read every file as one type
        found = {c: [schema.field(c).type for _path, schema in schemas] for c in columns}
        unified = pa.schema(
            [pa.field(c, _read_type(source, c, found[c], c in dictionary)) for c in columns]
        )
        dataset = ds.dataset(
            files, schema=unified, format=ds.ParquetFileFormat(read_options=options)
        )
    ts_type = dataset.schema.field(source.timestamp).type
    expr = None
    if pa.types.is_timestamp(ts_type) or pa.types.is_date32(ts_type):
        field = ds.field(source.timestamp)
        if lo_us is not None:
            expr = field >= _bound(lo_us, ts_type)
        if hi_us is not None:
            upper = (
                field < _bound(hi_us, ts_type)
                if not pa.types.is_date32(ts_type)
                else (field <= _bound(hi_us, ts_type))
            )
            expr = upper if expr is None else expr & upper
    try:
        table = dataset.to_table(columns=columns, filter=expr)
    except (pa.ArrowInvalid, OSError) as exc:
        raise PitError(
            f"{where}: cannot read {locate_unreadable(files, columns) or 'parquet'}: "
            f"{str(exc)[:200]}",
            code="bad_source",
        ) from exc
    return table


def locate_unreadable(files: Sequence[str], columns: Sequence[str]) -> str | None:
    """`file, row group N, column 'c'`: the first place whose values cannot be decoded (None if
    every one decodes). Reads one column chunk at a time: only called after a read failed."""
    for path in files:
        try:
            reader = pq.ParquetFile(path)
        except (pa.ArrowException, OSError):
            return path
        present = [c for c in columns if c in reader.schema_arrow.names]
        for group in range(reader.metadata.num_row_groups):
            for column in present:
                try:
                    reader.read_row_group(group, columns=[column])
                except (pa.ArrowException, OSError):
                    return f"{path}, row group {group}, column {column!r}"
    return None


def _range_mask(column: pa.ChunkedArray, lo_us: int | None, hi_us: int | None) -> pa.Array | None:
    if lo_us is None and hi_us is None:
        return None
    t = column.type
    if not (pa.types.is_timestamp(t) or pa.types.is_date32(t)):
        return None  # the type error is reported when the column is converted
    mask = None
    if lo_us is not None:
        mask = pc.greater_equal(column, _bound(lo_us, t))
    if hi_us is not None:
        upper = (
            pc.less(column, _bound(hi_us, t))
            if not pa.types.is_date32(t)
            else pc.less_equal(column, _bound(hi_us, t))
        )
        mask = upper if mask is None else pc.and_(mask, upper)
    return mask
