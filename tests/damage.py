"""Damaging parquet files on purpose, for tests of what the pipeline does with them."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq


def corrupt_column_chunk(path: Path, column: str, row_group: int = 0) -> None:
    """Scramble bytes inside the first page of `column`'s chunk in `row_group`: the footer stays
    readable (the schema checks pass), the column's values cannot be decoded."""
    meta = pq.ParquetFile(path).metadata.row_group(row_group)
    chunk = next(
        meta.column(i) for i in range(meta.num_columns) if meta.column(i).path_in_schema == column
    )
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    data = bytearray(path.read_bytes())
    for k in range(start + 30, start + 60):
        data[k] ^= 0xFF
    path.write_bytes(bytes(data))
