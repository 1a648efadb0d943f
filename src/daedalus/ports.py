"""The core's ports: the roles adapters play (compute engine, embedding store, enricher, sink)."""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from daedalus.pit.compute import PitReport
from daedalus.pit.spec import Engine, PitSpec

__all__ = ["AggregatorPort", "EmbeddingStorePort", "EnricherPort", "PoolRequest", "SinkPort"]


class AggregatorPort(abc.ABC):
    """Computes point-in-time features for a spine (one engine: DuckDB, Polars, in-memory)."""

    engine: Engine

    @abc.abstractmethod
    def aggregate_pit_table(
        self,
        spine: pa.Table,
        specs: Sequence[PitSpec],
        *,
        timestamp: str = "ts",
        naive_timestamps_are_utc: bool = False,
        report: PitReport | None = None,
    ) -> pa.Table:
        """The spine, row for row, plus one column per spec; raises PitError on bad input."""


class EmbeddingStorePort(abc.ABC):
    """A vector store keyed by integer ids (a Lance dataset in production)."""

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """The vectors' dimension."""

    @abc.abstractmethod
    def version(self) -> str:
        """An identifier of the store's current contents (recorded in manifests)."""

    @abc.abstractmethod
    def lookup(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectors for `ids` (int64): a float32 array (len(ids), dim) and a found mask."""


class PoolRequest:
    """Append `name`: the mean store vector of the id(s) in column `source` (None if none found)."""

    def __init__(self, name: str, source: str, store: str, dim: int) -> None:
        self.name, self.source, self.store, self.dim = name, source, store, dim

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "store": self.store, "dim": self.dim}


class EnricherPort(abc.ABC):
    """Appends average-pooled embedding columns to a day's rows."""

    @abc.abstractmethod
    def enrich(self, table: pa.Table, requests: Sequence[PoolRequest]) -> pa.Table:
        """`table` plus one fixed_size_list<float32>[dim] column per request, rows in order."""

    @abc.abstractmethod
    def store_versions(self, requests: Sequence[PoolRequest]) -> dict[str, str]:
        """The version of each store the requests read."""


class SinkPort(abc.ABC):
    """Where a service's days are written: atomically, one directory per day, with a manifest."""

    @abc.abstractmethod
    def claim(self, service: str) -> None:
        """Mark the output as the service's; raises SinkError if it belongs to another service."""

    @abc.abstractmethod
    def write_day(
        self, service: str, day: dt.date, table: pa.Table, manifest: dict[str, Any]
    ) -> str:
        """Write `table` as the day's data and `manifest` beside it, atomically; returns its path.

        Either the whole new day is visible afterwards or (after a crash) the previous state is.
        """

    @abc.abstractmethod
    def read_manifest(self, service: str, day: dt.date) -> dict[str, Any] | None:
        """The committed manifest of a day, or None when the day is not written."""

    @abc.abstractmethod
    def list_days(self, service: str) -> list[dt.date]:
        """The committed days of a service, in order."""

    @abc.abstractmethod
    def read_day(self, service: str, day: dt.date, *, limit: int | None = None) -> pa.Table:
        """The rows of a committed day (the first `limit` rows if given)."""
