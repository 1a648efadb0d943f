"""The composition root's engine table: each `Engine`'s aggregator and `aggregate_pit_table`,
and the default source reader, registered in the core's one registry
(`daedalus.pit.engine.ENGINES`).

Part of the composition root (with `daedalus.container`, which builds every aggregator through
this table), outside the core's import-linter contracts. Each adapter is imported inside its
factory — import-linter sees the dependency, and importing this module (which the registry
does on its first lookup) loads no DuckDB, Polars or pyarrow.dataset.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from daedalus.pit.engine import Engine, register_engine, register_source_reader

if TYPE_CHECKING:
    from daedalus.pit.engine import AggregatePitTable
    from daedalus.ports import AggregatorPort, SourceReaderPort

__all__ = ["parquet_reader"]


def parquet_reader() -> SourceReaderPort:
    """The source reader of production: parquet files on the local filesystem."""
    from daedalus.adapters.parquet.reader import ParquetSourceReader

    return ParquetSourceReader()


def _load_default_reader() -> None:
    """Import the default reader's module with the engine: an engine chosen without a reader
    reads through it, and its libraries (pyarrow.dataset) then load with the engine's, not
    inside the first computation."""
    import daedalus.adapters.parquet.reader  # noqa: F401


def _duckdb(reader: SourceReaderPort | None = None) -> AggregatorPort:
    from daedalus.adapters.duckdb.aggregator import DuckDBAggregator

    if reader is None:
        _load_default_reader()
    return DuckDBAggregator(reader=reader)


def _duckdb_function() -> AggregatePitTable:
    from daedalus.adapters.duckdb.aggregator import aggregate_pit_table

    _load_default_reader()
    return aggregate_pit_table


def _polars(reader: SourceReaderPort | None = None) -> AggregatorPort:
    from daedalus.adapters.polars.aggregator import PolarsAggregator

    if reader is None:
        _load_default_reader()
    return PolarsAggregator(reader=reader)


def _polars_function() -> AggregatePitTable:
    from daedalus.adapters.polars.aggregator import aggregate_pit_table

    _load_default_reader()
    return aggregate_pit_table


register_engine(Engine.DUCKDB, aggregator=_duckdb, function=_duckdb_function)
register_engine(Engine.POLARS, aggregator=_polars, function=_polars_function)
register_source_reader(parquet_reader)
