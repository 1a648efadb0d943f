"""The DuckDB engine: module-level `aggregate_pit_table` and the `DuckDBAggregator` adapter."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
from daedalus.adapters.duckdb.kernel import DuckDBKernel

from daedalus.aggregation import KernelAggregator
from daedalus.pit.compute import PitReport
from daedalus.pit.spec import Engine, PitSpec
from daedalus.ports import SourceReaderPort

__all__ = ["DuckDBAggregator", "aggregate_pit_table"]


class DuckDBAggregator(KernelAggregator):
    """Point-in-time features whose window work DuckDB does (`DuckDBKernel`)."""

    def __init__(
        self, kernel: DuckDBKernel | None = None, reader: SourceReaderPort | None = None
    ) -> None:
        super().__init__(kernel or DuckDBKernel(), Engine.DUCKDB, reader)


def aggregate_pit_table(
    spine: pa.Table,
    specs: Sequence[PitSpec],
    *,
    timestamp: str = "ts",
    naive_timestamps_are_utc: bool = False,
    report: PitReport | None = None,
    reader: SourceReaderPort | None = None,
) -> pa.Table:
    """The spine, row for row in its order, plus one column per spec, computed by DuckDB.

    Stored sources are read by `reader` (None: the registered default, the parquet reader).
    Raises PitError (before any work) for a bad spine, spec or source.
    """
    return DuckDBAggregator(reader=reader).aggregate_pit_table(
        spine,
        specs,
        timestamp=timestamp,
        naive_timestamps_are_utc=naive_timestamps_are_utc,
        report=report,
    )
