"""In-memory adapters for unit tests of the core: real subclasses of the ports, inspectable."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from daedalus.pit.compute import PitReport, compute_pit_table
from daedalus.pit.kernel import WindowKernel, WindowRequest
from daedalus.pit.spec import Engine, PitSpec
from daedalus.ports import AggregatorPort, EmbeddingStorePort, EnricherPort, PoolRequest, SinkPort
from tests.kernel_contract import reference_window_aggregate


class InMemoryKernel(WindowKernel):
    """The window kernel by brute force in Python; records every call."""

    name = "memory"

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, list[WindowRequest]]] = []

    def window_aggregate(
        self, events: pa.Table, probes: pa.Table, requests: Sequence[WindowRequest]
    ) -> pa.Table:
        self.calls.append((events.num_rows, probes.num_rows, list(requests)))
        return reference_window_aggregate(events, probes, requests)


class InMemoryAggregator(AggregatorPort):
    """The compute core driven by the in-memory kernel."""

    engine = Engine.DUCKDB  # stands in for any engine

    def __init__(self) -> None:
        self.kernel = InMemoryKernel()

    def aggregate_pit_table(
        self,
        spine: pa.Table,
        specs: Sequence[PitSpec],
        *,
        timestamp: str = "ts",
        naive_timestamps_are_utc: bool = False,
        report: PitReport | None = None,
    ) -> pa.Table:
        return compute_pit_table(
            spine, specs, self.kernel, timestamp=timestamp,
            naive_timestamps_are_utc=naive_timestamps_are_utc, report=report,
        )  # fmt: skip


class InMemoryEmbeddingStore(EmbeddingStorePort):
    """Vectors in a dict; `lookups` counts the ids asked for."""

    def __init__(self, vectors: dict[int, Sequence[float]], dim: int, version: str = "1") -> None:
        self.vectors = {k: np.asarray(v, dtype=np.float32) for k, v in vectors.items()}
        self._dim = dim
        self._version = version
        self.lookups = 0

    @property
    def dim(self) -> int:
        return self._dim

    def version(self) -> str:
        return self._version

    def lookup(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.lookups += len(ids)
        out = np.zeros((len(ids), self._dim), dtype=np.float32)
        found = np.zeros(len(ids), dtype=bool)
        for i, key in enumerate(ids.tolist()):
            if key in self.vectors:
                out[i], found[i] = self.vectors[key], True
        return out, found


class InMemoryEnricher(EnricherPort):
    """Mean-pools vectors from in-memory stores, row by row."""

    def __init__(self, stores: dict[str, InMemoryEmbeddingStore]) -> None:
        self.stores = stores
        self.enriched_rows = 0

    def store_versions(self, requests: Sequence[PoolRequest]) -> dict[str, str]:
        return {r.store: self.stores[r.store].version() for r in requests}

    def enrich(self, table: pa.Table, requests: Sequence[PoolRequest]) -> pa.Table:
        self.enriched_rows += table.num_rows
        for req in requests:
            store = self.stores[req.store]
            pooled: list[list[float] | None] = []
            for value in table[req.source].to_pylist():
                ids = [] if value is None else (value if isinstance(value, list) else [value])
                ids = [i for i in ids if i is not None]
                vecs, found = store.lookup(np.asarray(ids, dtype=np.int64))
                pooled.append(vecs[found].mean(axis=0).tolist() if found.any() else None)
            table = table.append_column(req.name, pa.array(pooled, pa.list_(pa.float32(), req.dim)))
        return table


class InMemorySink(SinkPort):
    """Days kept in dicts; `writes` lists every (service, day) committed."""

    def __init__(self) -> None:
        self.owner: str | None = None
        self.days: dict[tuple[str, dt.date], tuple[pa.Table, dict[str, Any]]] = {}
        self.writes: list[tuple[str, dt.date]] = []

    def claim(self, service: str) -> None:
        if self.owner not in (None, service):
            raise ValueError(f"output belongs to service {self.owner!r}")
        self.owner = service

    def write_day(
        self, service: str, day: dt.date, table: pa.Table, manifest: dict[str, Any]
    ) -> str:
        self.days[(service, day)] = (table, dict(manifest))
        self.writes.append((service, day))
        return f"memory://{service}/dt={day.isoformat()}"

    def read_manifest(self, service: str, day: dt.date) -> dict[str, Any] | None:
        item = self.days.get((service, day))
        return None if item is None else item[1]

    def list_days(self, service: str) -> list[dt.date]:
        return sorted(d for s, d in self.days if s == service)

    def read_day(self, service: str, day: dt.date, *, limit: int | None = None) -> pa.Table:
        table = self.days[(service, day)][0]
        return table if limit is None else table.slice(0, limit)
