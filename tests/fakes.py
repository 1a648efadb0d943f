"""In-memory adapters for unit tests of the core: real subclasses of the ports, inspectable."""

from __future__ import annotations

import contextlib
import datetime as dt
import fnmatch
import hashlib
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from daedalus.aggregation import KernelAggregator
from daedalus.pit.errors import PitError
from daedalus.pit.kernel import WindowKernel, WindowRequest
from daedalus.pit.sources import check_file_columns, range_mask, read_type
from daedalus.pit.spec import Engine, SourceSpec
from daedalus.ports import (
    DayBatch,
    DayFunction,
    DayRunnerPort,
    EmbeddingStorePort,
    EnricherPort,
    EnrichError,
    Pooled,
    PoolRequest,
    SinkError,
    SinkPort,
    SourceFile,
    SourceReaderPort,
    SourceReadError,
)
from daedalus.ports import R as _R
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


class InMemoryAggregator(KernelAggregator):
    """The compute core driven by the in-memory kernel (stands in for any engine), reading
    stored sources through `reader` (None: the registered default, the parquet reader)."""

    def __init__(self, reader: SourceReaderPort | None = None) -> None:
        super().__init__(InMemoryKernel(), Engine.DUCKDB, reader)


class InMemorySourceReader(SourceReaderPort):
    """Source "files" held in memory: `files` maps a path to its table (rows in file order).

    A source path is matched as a glob against the stored paths (`events/*.parquet`), as a
    directory (every stored path under it) or exactly. `broken` maps a path to a reason: every
    read of it raises SourceReadError. Each call is recorded in `calls` as `(method, what,
    columns, lo_us, hi_us)`, so a test can see what the core asked for.
    """

    def __init__(
        self,
        files: Mapping[str, pa.Table] | None = None,
        *,
        broken: Mapping[str, str] | None = None,
    ) -> None:
        self.tables: dict[str, pa.Table] = dict(files or {})
        self.broken: dict[str, str] = dict(broken or {})
        self.versions: dict[str, int] = dict.fromkeys(self.tables, 1)
        self.calls: list[tuple[str, str, tuple[str, ...] | None, int | None, int | None]] = []

    def put(self, path: str, table: pa.Table) -> None:
        """Write (or rewrite) the file `path`."""
        self.tables[path] = table
        self.versions[path] = self.versions.get(path, 0) + 1

    def _table(self, path: str) -> pa.Table:
        if path in self.broken:
            raise SourceReadError(path, self.broken[path])
        if path not in self.tables:
            raise SourceReadError(path, "no such file")
        return self.tables[path]

    def files(self, source: SourceSpec) -> list[str]:
        self.calls.append(("files", source.name, None, None, None))
        names = sorted({*self.tables, *self.broken})
        found: list[str] = []
        for path in source.paths:
            if any(ch in path for ch in "*?["):
                found += [n for n in names if fnmatch.fnmatchcase(n, path)]
            elif path in names:
                found.append(path)
            else:
                found += [n for n in names if n.startswith(path.rstrip("/") + "/")]
        if not found:
            raise PitError(
                f"source of {source.name!r}: no parquet files match {', '.join(source.paths)}",
                code="missing_source",
            )
        return found

    def stat(self, path: str) -> tuple[int, int]:
        table = self._table(path)
        return table.nbytes, self.versions.get(path, 0)

    def footer(self, path: str) -> SourceFile:
        self.calls.append(("footer", path, None, None, None))
        table = self._table(path)
        nulls: dict[str, int | None] = {name: table[name].null_count for name in table.schema.names}
        return SourceFile(path, table.schema, table.num_rows, nulls)

    def read_file(
        self, path: str, columns: Sequence[str] | None = None, *, dictionary: Sequence[str] = ()
    ) -> pa.Table:
        self.calls.append(
            ("read_file", path, None if columns is None else tuple(columns), None, None)
        )
        table = self._table(path)
        if columns is not None:
            table = table.select([c for c in columns if c in table.column_names])
        return _dictionary_encoded(table, dictionary)

    def read(
        self,
        source: SourceSpec,
        columns: Sequence[str],
        lo_us: int | None,
        hi_us: int | None,
        *,
        dictionary: Sequence[str] = (),
    ) -> pa.Table:
        columns = list(dict.fromkeys(columns))
        self.calls.append(("read", source.name, tuple(columns), lo_us, hi_us))
        where = f"source of {source.name!r}"
        tables = []
        for path in self.files(source):
            table = self._table(path)
            check_file_columns(source, table.schema, columns, f"{where}, file {path}", dictionary)
            tables.append(_dictionary_encoded(table.select(columns), dictionary))
        if any(not t.schema.equals(tables[0].schema) for t in tables[1:]):
            found = {c: [t.schema.field(c).type for t in tables] for c in columns}
            unified = pa.schema(
                [pa.field(c, read_type(source, c, found[c], c in dictionary)) for c in columns]
            )
            tables = [t.cast(unified) for t in tables]
        table = pa.concat_tables(tables)
        mask = range_mask(table[source.timestamp], lo_us, hi_us)
        return table if mask is None else table.filter(mask)


def _dictionary_encoded(table: pa.Table, columns: Sequence[str]) -> pa.Table:
    """`table` with its string columns named in `columns` dictionary-encoded (int32 indices,
    as parquet reads them)."""
    for name in columns:
        if name in table.column_names and pa.types.is_string(table[name].type):
            i = table.column_names.index(name)
            encoded = pc.dictionary_encode(table[name])
            table = table.set_column(i, name, encoded)
    return table


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
    """Mean-pools vectors from in-memory stores, row by row; counts what it enriched
    (`enriched_rows`) and how often it was called (`calls`: once per batch)."""

    def __init__(self, stores: dict[str, InMemoryEmbeddingStore]) -> None:
        self.stores = stores
        self.enriched_rows = 0
        self.calls = 0

    def check(self, requests: Sequence[PoolRequest]) -> dict[str, str]:
        missing = [r.store.name for r in requests if r.store.name not in self.stores]
        if missing:
            raise EnrichError(f"unknown store(s): {', '.join(missing)}")
        return {r.store.name: self.stores[r.store.name].version() for r in requests}

    def pool_table(self, table: pa.Table, requests: Sequence[PoolRequest]) -> Pooled:
        self.enriched_rows += table.num_rows
        self.calls += 1
        for req in requests:
            store = self.stores[req.store.name]
            pooled: list[list[float] | None] = []
            for value in table[req.source].to_pylist():
                ids = [] if value is None else (value if isinstance(value, list) else [value])
                ids = [i for i in ids if i is not None]
                vecs, found = store.lookup(np.asarray(ids, dtype=np.int64))
                mean = vecs[found].astype(np.float64).mean(axis=0) if found.any() else None
                pooled.append(None if mean is None else mean.astype(np.float32).tolist())
            table = table.append_column(
                pa.field(req.name, pa.list_(pa.float32(), req.store.dim)),
                pa.array(pooled, pa.list_(pa.float32(), req.store.dim)),
            )
        return Pooled(table, self.check(requests))


class InMemorySink(SinkPort):
    """Days kept in dicts (staging in a temp directory); inspectable state:

    `days[(service, day)]` = (table, manifest as published), `files[(service, day)]` = each
    part file's bytes (tests may corrupt them for `verify_day`), `writes` lists every commit,
    `claims` every claim taken (service, holder), `locked` the services claimed right now
    (a second claim of one of them raises SinkError(code="conflict"), as a second writer
    would), `aborted` counts thrown-away staging directories.
    """

    def __init__(self) -> None:
        self.owner: str | None = None
        self.days: dict[tuple[str, dt.date], tuple[pa.Table, dict[str, Any]]] = {}
        self.files: dict[tuple[str, dt.date], dict[str, bytes]] = {}
        self.writes: list[tuple[str, dt.date]] = []
        self.claims: list[tuple[str, dict[str, Any]]] = []
        self.locked: set[str] = set()
        self.aborted = 0

    def location(self, service: str) -> str:
        return f"memory://{service}"

    def claim(
        self, service: str, holder: dict[str, Any]
    ) -> contextlib.AbstractContextManager[None]:
        return self._claim(service, dict(holder))

    @contextlib.contextmanager
    def _claim(self, service: str, holder: dict[str, Any]) -> Iterator[None]:
        if service in self.locked:
            current = next(h for s, h in reversed(self.claims) if s == service)
            raise SinkError(
                f"memory://{service} is being written by {current}",
                code="conflict",
                data={"path": self.location(service), "holder": current},
            )
        if self.owner not in (None, service):
            raise SinkError(f"output belongs to service {self.owner!r}", code="conflict")
        self.owner = service
        self.claims.append((service, holder))
        self.locked.add(service)
        try:
            yield
        finally:
            self.locked.discard(service)

    def begin_day(self, service: str, day: dt.date) -> str:
        return tempfile.mkdtemp(prefix=f"stage-{day}-")

    def write_staged(self, staging: str, name: str, table: pa.Table) -> str:
        path = Path(staging) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
        return str(path)

    def abort_day(self, staging: str) -> None:
        self.aborted += 1
        shutil.rmtree(staging, ignore_errors=True)

    def commit_day(
        self, service: str, day: dt.date, staging: str, manifest: dict[str, Any], schema: pa.Schema
    ) -> str:
        parts = sorted(Path(staging).glob("part-*.parquet"))
        if not parts:
            raise SinkError(f"day {day}: nothing was written", code="contract")
        tables = [pq.read_table(p) for p in parts]
        for part, table in zip(parts, tables, strict=True):
            if not table.schema.remove_metadata().equals(schema):
                raise SinkError(
                    f"day {day}: {part.name}: schema mismatch: {table.schema} != {schema}",
                    code="contract",
                )
        files = {p.name: p.read_bytes() for p in parts}
        entries = [
            {
                "name": name,
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "rows": table.num_rows,
            }
            for (name, data), table in zip(files.items(), tables, strict=True)
        ]
        shutil.rmtree(staging)
        self.days[(service, day)] = (pa.concat_tables(tables), {**manifest, "files": entries})
        self.files[(service, day)] = files
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

    def verify_day(
        self, service: str, day: dt.date, *, thorough: bool = True
    ) -> list[dict[str, Any]]:
        iso = day.isoformat()

        def problem(file: str | None, kind: str, expected: Any, found: Any) -> dict[str, Any]:
            return {"day": iso, "file": file, "problem": kind, "expected": expected, "found": found}

        if (service, day) not in self.days:
            return [problem(None, "missing", f"memory://{service}/dt={iso}", None)]
        entries = self.days[(service, day)][1].get("files")
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            return [problem("_manifest.json", "manifest", "file entries with checksums", None)]
        files = self.files.get((service, day), {})
        listed = {e["name"] for e in entries}
        problems = [problem(n, "extra", None, len(files[n])) for n in files if n not in listed]
        for entry in entries:
            data = files.get(entry["name"])
            if data is None:
                problems.append(problem(entry["name"], "missing", entry["bytes"], None))
            elif len(data) != entry["bytes"]:
                problems.append(problem(entry["name"], "size", entry["bytes"], len(data)))
            elif hashlib.sha256(data).hexdigest() != entry["sha256"]:
                found = hashlib.sha256(data).hexdigest()
                problems.append(problem(entry["name"], "checksum", entry["sha256"], found))
        return problems


class OutOfOrderDayRunner(DayRunnerPort):
    """A cluster runner's behaviour, in process: `in_flight` batches are started (on_start)
    before any of them runs, then they run and are yielded newest first. Records what it did,
    by the first day of each batch: `started` (in start order), `finished` (in yield order),
    `failed` (raised), `cancelled` (started, never run: a batch failed or the caller stopped
    reading)."""

    name = "fake"

    def __init__(self, in_flight: int = 2) -> None:
        self.in_flight = in_flight
        self.started: list[dt.date] = []
        self.finished: list[dt.date] = []
        self.failed: list[dt.date] = []
        self.cancelled: list[dt.date] = []

    def run(
        self,
        fn: DayFunction[_R],
        batches: Sequence[DayBatch],
        *,
        on_start: Callable[[DayBatch], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Iterator[_R]:
        stop = should_stop or (lambda: False)
        batches = list(batches)
        for i in range(0, len(batches), self.in_flight):
            group: list[DayBatch] = []
            for batch in batches[i : i + self.in_flight]:
                if stop():
                    break
                if on_start is not None:
                    on_start(batch)
                self.started.append(batch.first)
                group.append(batch)
            pending = list(reversed(group))
            try:
                while pending:
                    batch = pending.pop(0)
                    try:
                        result = fn(batch, lambda: False)  # remote work can't see the caller's flag
                    except BaseException:
                        self.failed.append(batch.first)
                        raise
                    self.finished.append(batch.first)
                    yield result
            finally:
                self.cancelled.extend(b.first for b in pending)
            if len(group) < len(batches[i : i + self.in_flight]):
                return
