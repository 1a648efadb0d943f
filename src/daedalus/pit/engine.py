"""Choosing a compute engine explicitly: `Engine` and `get_aggregate_pit_table(engine)`."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from daedalus.pit.spec import Engine

__all__ = ["ENGINE_MODULES", "Engine", "get_aggregate_pit_table"]

#: Where each engine's module-level `aggregate_pit_table` lives. The core names the adapter
#: module by string and imports it only when asked: it never depends on an engine statically
#: (import-linter enforces that), and importing the core never loads DuckDB or Polars.
ENGINE_MODULES: dict[Engine, str] = {
    Engine.DUCKDB: "daedalus.adapters.duckdb.aggregator",
    Engine.POLARS: "daedalus.adapters.polars.aggregator",
}

AggregatePitTable = Callable[..., pa.Table]


def get_aggregate_pit_table(engine: Engine | str) -> AggregatePitTable:
    """The `aggregate_pit_table(spine, specs, **options)` function of `engine`.

    Raises ValueError for an unknown engine name.
    """
    try:
        chosen = Engine(engine)
    except ValueError:
        known = ", ".join(e.value for e in Engine)
        raise ValueError(f"unknown engine {engine!r}; choose one of: {known}") from None
    module: Any = importlib.import_module(ENGINE_MODULES[chosen])
    return module.aggregate_pit_table
