"""`ParquetSourceReader`: the SourceReaderPort over parquet files — globbing, footers and
range-pruned reads (the time range pushed down to the row groups)."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from daedalus.pit.errors import PitError
from daedalus.pit.sources import check_file_columns, read_type, time_bound
from daedalus.pit.spec import SourceSpec
from daedalus.ports import SourceFile, SourceReaderPort, SourceReadError

__all__ = ["ParquetSourceReader", "locate_unreadable"]


def _clip(exc: BaseException, width: int) -> str:
    return str(exc)[:width]


class ParquetSourceReader(SourceReaderPort):
    """Reads sources stored as parquet files on the local filesystem.

    A source path is a glob (`data/events/*.parquet`), a directory (every `*.parquet` under
    it) or a file. Stateless: picklable, safe to share between threads and to send to a
    cluster's workers.
    """

    def files(self, source: SourceSpec) -> list[str]:
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

    def stat(self, path: str) -> tuple[int, int]:
        try:
            st = os.stat(path)
        except OSError as exc:
            raise SourceReadError(path, str(exc.strerror or exc)) from exc
        return st.st_size, st.st_mtime_ns

    def footer(self, path: str) -> SourceFile:
        try:
            meta = pq.ParquetFile(path).metadata
            schema = meta.schema.to_arrow_schema()
        except (pa.ArrowException, OSError) as exc:
            raise SourceReadError(path, _clip(exc, 120)) from exc
        return SourceFile(path, schema, meta.num_rows, _null_counts(meta))

    def read_file(
        self, path: str, columns: Sequence[str] | None = None, *, dictionary: Sequence[str] = ()
    ) -> pa.Table:
        try:
            parquet = pq.ParquetFile(path, read_dictionary=list(dictionary) or None)
            if columns is not None:
                present = set(parquet.schema_arrow.names)
                columns = [c for c in columns if c in present]
            return parquet.read(columns=columns)
        except (pa.ArrowException, OSError) as exc:
            names = list(columns) if columns is not None else _names(path)
            where = locate_unreadable([path], names) or path
            raise SourceReadError(where, _clip(exc, 200)) from exc

    def read(
        self,
        source: SourceSpec,
        columns: Sequence[str],
        lo_us: int | None,
        hi_us: int | None,
        *,
        dictionary: Sequence[str] = (),
    ) -> pa.Table:
        where = f"source of {source.name!r}"
        columns = list(dict.fromkeys(columns))
        files = self.files(source)
        try:
            options = ds.ParquetReadOptions(dictionary_columns=list(dictionary))
            fmt = ds.ParquetFileFormat(read_options=options)
            dataset = ds.dataset(files, format=fmt)
            schemas = [(f.path, f.physical_schema) for f in dataset.get_fragments()]
        except (pa.ArrowInvalid, OSError) as exc:
            raise PitError(f"{where}: cannot read parquet: {exc}", code="bad_source") from exc
        for path, schema in schemas:
            check_file_columns(source, schema, columns, f"{where}, file {path}", dictionary)
        if any(
            not schema.field(c).type.equals(schemas[0][1].field(c).type)
            for _path, schema in schemas[1:]
            for c in columns
        ):  # the files disagree (losslessly, as checked): read every file as one type
            found = {c: [schema.field(c).type for _path, schema in schemas] for c in columns}
            unified = pa.schema(
                [pa.field(c, read_type(source, c, found[c], c in dictionary)) for c in columns]
            )
            dataset = ds.dataset(files, schema=unified, format=fmt)
        ts_type = dataset.schema.field(source.timestamp).type
        expr = None
        if pa.types.is_timestamp(ts_type) or pa.types.is_date32(ts_type):
            field = ds.field(source.timestamp)
            if lo_us is not None:
                expr = field >= time_bound(lo_us, ts_type)
            if hi_us is not None:
                upper = (
                    field < time_bound(hi_us, ts_type)
                    if not pa.types.is_date32(ts_type)
                    else (field <= time_bound(hi_us, ts_type))
                )
                expr = upper if expr is None else expr & upper
        try:
            return dataset.to_table(columns=columns, filter=expr)
        except (pa.ArrowInvalid, OSError) as exc:
            raise PitError(
                f"{where}: cannot read {locate_unreadable(files, columns) or 'parquet'}: "
                f"{_clip(exc, 200)}",
                code="bad_source",
            ) from exc


def _null_counts(meta: pq.FileMetaData) -> dict[str, int | None]:
    """Per top-level column, its null count summed over the row groups' statistics (None when
    a row group has no null count for it)."""
    index = {meta.schema.column(i).path: i for i in range(meta.num_columns)}
    out: dict[str, int | None] = {}
    for name, i in index.items():
        total: int | None = 0
        for g in range(meta.num_row_groups):
            stats = meta.row_group(g).column(i).statistics
            if stats is None or not stats.has_null_count:
                total = None
                break
            total += stats.null_count
        out[name] = total
    return out


def _names(path: str) -> list[str]:
    """The file's column names, or none when not even its footer can be read."""
    try:
        return pq.read_schema(path).names
    except (pa.ArrowException, OSError):
        return []


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
