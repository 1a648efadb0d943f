"""The core's ports: the roles adapters play (compute engine, source reader, embedding store,
enricher, sink, day runner, run store)."""

from __future__ import annotations

import abc
import contextlib
import datetime as dt
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import attrs
import numpy as np
import pyarrow as pa

from daedalus.pit.compute import PitReport
from daedalus.pit.errors import PitError
from daedalus.pit.spec import Engine, PitSpec, SourceSpec

__all__ = [
    "AggregatorPort",
    "DayBatch",
    "DayFunction",
    "DayRunnerPort",
    "EmbeddingStorePort",
    "EnrichError",
    "EnrichResult",
    "EnricherPort",
    "PoolRequest",
    "Pooled",
    "RunStorePort",
    "SinkError",
    "SinkPort",
    "SourceFile",
    "SourceReadError",
    "SourceReaderPort",
    "StoreRef",
]


class EnrichError(ValueError):
    """An embedding store that cannot serve a request (missing, wrong columns, wrong dim)."""


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


@attrs.frozen
class SourceFile:
    """What a source file's footer says: its Arrow schema, its row count, and per top-level
    column the null count from its statistics (None where a statistic is missing)."""

    path: str
    schema: pa.Schema
    rows: int
    null_counts: Mapping[str, int | None] = attrs.field(factory=dict)

    def nulls(self, columns: Sequence[str]) -> bool | None:
        """Whether any of `columns` holds a null, by the statistics (None: unknown)."""
        counts = [self.null_counts.get(c) for c in columns]
        if any(n is None for n in counts):
            return None
        return any(n for n in counts)


class SourceReadError(PitError):
    """A source file that cannot be read: `where` locates it (the file, or the file, row group
    and column whose values do not decode), `reason` says why (short)."""

    def __init__(self, where: str, reason: str, *, code: str = "bad_source") -> None:
        super().__init__(f"{where}: cannot read: {reason}", code=code)
        self.where = where
        self.reason = reason


class SourceReaderPort(abc.ABC):
    """Reads the stored rows of a source (parquet files in production, tables in memory in
    unit tests): which files a source has, what their footers say, and the columns and time
    range the core asks for.

    Sources backed by an in-memory table (`SourceSpec.table`) never reach a reader: the core
    selects their rows itself (`daedalus.pit.sources.read_source`).
    """

    @abc.abstractmethod
    def files(self, source: SourceSpec) -> list[str]:
        """The files behind `source`, in read order (sorted by path); raises PitError
        (code "missing_source") when none match."""

    @abc.abstractmethod
    def stat(self, path: str) -> tuple[int, int]:
        """`(size in bytes, modification time in ns)` of one file: what changes when its
        content may have (caches of fingerprints are keyed by it). Raises SourceReadError when
        the file cannot be reached."""

    @abc.abstractmethod
    def footer(self, path: str) -> SourceFile:
        """The footer of one file (no rows are read); raises SourceReadError when the file
        is not readable."""

    @abc.abstractmethod
    def read_file(
        self, path: str, columns: Sequence[str] | None = None, *, dictionary: Sequence[str] = ()
    ) -> pa.Table:
        """Every row of one file, exactly (no discovery, no partition columns), in file
        order: only those of `columns` the file has (None: all). String columns named in
        `dictionary` come back dictionary-encoded. Raises SourceReadError locating the first
        value that does not decode."""

    @abc.abstractmethod
    def read(
        self,
        source: SourceSpec,
        columns: Sequence[str],
        lo_us: int | None,
        hi_us: int | None,
        *,
        dictionary: Sequence[str] = (),
    ) -> pa.Table:
        """The rows of `source` with `lo_us <= timestamp < hi_us` (microseconds since the
        epoch, UTC; either bound optional), only `columns`, in read order (files by path, rows
        in file order: the as-of tie-break relies on it). The time range may be pushed down.

        Files storing a column differently (losslessly, per `daedalus.pit.sources.compatible`)
        are read as one type (`daedalus.pit.sources.read_type`); string columns named in
        `dictionary` may come back dictionary-encoded (columns only compared with filter
        values). Raises PitError: no files ("missing_source"), a column missing
        ("missing_column") or of a type the definition does not allow ("bad_type"), tz-naive
        time columns the definition does not allow ("naive_timestamps"), a file that cannot
        be read ("bad_source", naming the file, row group and column)."""


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


@attrs.frozen
class StoreRef:
    """Where an embedding store is and how to read it (resolved from an EmbeddingStoreDef)."""

    name: str
    path: str
    id_column: str
    vector_column: str
    dim: int


@attrs.frozen
class PoolRequest:
    """Append column `name`: the mean of the store vectors of the id(s) in column `source`.

    `source` holds one id (an integer column) or several (a list of integers). Ids not in the
    store are skipped; when none is found (or the list is empty or null) the result is null.
    The mean is computed in float64 over the found vectors, then stored as float32.
    """

    name: str
    source: str
    store: StoreRef


@attrs.frozen
class Pooled:
    """What `EnricherPort.pool_table` gave: the rows with their pooled columns appended, the
    version of each store it read, how long it took and where it ran ("process" or "ray")."""

    table: pa.Table
    store_versions: dict[str, str]
    seconds: float = 0.0
    where: str = "process"


@attrs.frozen
class EnrichResult:
    """What a file-to-file enrichment wrote: files, rows, and the version of each store it
    read (`RayLanceEnricher.enrich`, the Ray Data path)."""

    files: tuple[str, ...]
    rows: int
    store_versions: dict[str, str]
    seconds: float = 0.0


class EnricherPort(abc.ABC):
    """Appends average-pooled embedding columns to a batch's rows."""

    @abc.abstractmethod
    def check(self, requests: Sequence[PoolRequest]) -> dict[str, str]:
        """Open every store the requests name and check it (id column, vector column, dim).

        Returns each store's version; raises EnrichError naming the store and what is wrong.
        Called before any day is computed, so a bad store fails the run before any write.
        """

    @abc.abstractmethod
    def pool_table(self, table: pa.Table, requests: Sequence[PoolRequest]) -> Pooled:
        """`table` (rows in order) with one fixed_size_list<float32>[dim] column appended per
        request, in request order: the mean of the store vectors of each row's id(s). The same
        bits wherever it runs: in this process for small work, on Ray for large work."""


class SinkError(ValueError):
    """The output cannot take a write, or a day cannot be published.

    `code` says which kind of failure it is:

    - `"conflict"`: the output belongs to another service (or is a directory daedalus did not
      write), is locked by another writer, or its owner marker is malformed (the message names
      the holder or the file); also the default, e.g. `read_day` of a day not written;
    - `"storage"`: an OS-level fault (read-only, not a directory, disk full, permission
      denied, ...); the message names the day (if any), the path and the OS's reason;
    - `"contract"`: a staged file breaks the resolved schema (or nothing was staged).

    `data` holds JSON-ready details, e.g. `{"path": ..., "day": ..., "holder": {...}}`.
    """

    def __init__(
        self, message: str, *, code: str = "conflict", data: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.data: dict[str, Any] = dict(data or {})


class SinkPort(abc.ABC):
    """Where a service's days are written: one directory per day, published atomically.

    A writer first takes the service's output with `claim` (an exclusive lock: one writer per
    output at a time). A day is built in a staging directory that readers never see, then
    published with its manifest so that at every instant the day is either its previous
    version or the complete new one, whatever crashes; the next `claim` recovers what a crash
    left and never deletes the only copy of a day. The manifest lists every file with its size
    and checksum, so `verify_day` can tell whether a day is still what was written.

    Every method that touches storage (all but `location` and `abort_day`) raises SinkError
    with `code="storage"` for an OS-level fault, naming the day and the path; `"conflict"` and
    `"contract"` are raised as documented below.
    """

    @abc.abstractmethod
    def claim(
        self, service: str, holder: dict[str, Any]
    ) -> contextlib.AbstractContextManager[None]:
        """Hold the service's output for the duration of a `with` block.

        Entering takes an exclusive lock on the output, recording `holder` (JSON details of the
        writer: job id, surface, start time, ...; the sink adds the process id and host) for
        others to read; then marks the output as the service's, recovers days left half
        published by a crash and sweeps leftover staging. Leaving releases the lock (so does
        the death of the process). Raises SinkError(code="conflict") naming the holder when
        another writer (another process, or another claim in this one: claims are not
        re-entrant) holds the output, or when the output belongs to another service.

        `begin_day`, `write_staged`, `commit_day` and `abort_day` do not need the lock in the
        calling process: workers elsewhere may publish days while the driver holds the claim.
        """

    @abc.abstractmethod
    def location(self, service: str) -> str:
        """Where the service's days are (a directory path or URL), for people to read."""

    @abc.abstractmethod
    def begin_day(self, service: str, day: dt.date) -> str:
        """A new, empty staging directory for the day (a local path)."""

    @abc.abstractmethod
    def write_staged(self, staging: str, name: str, table: pa.Table) -> str:
        """Write `table` as parquet file `name` inside a staging directory; returns its path."""

    @abc.abstractmethod
    def commit_day(
        self, service: str, day: dt.date, staging: str, manifest: dict[str, Any], schema: pa.Schema
    ) -> str:
        """Check every staged file has exactly `schema`, then publish the staged `part-*.parquet`
        files and the manifest as the day, replacing any previous version with no window.
        Returns the day's path.

        The manifest published is `manifest` plus `"files"`: one entry per part file,
        `{"name", "bytes", "sha256", "rows", "mtime_ns"}` (`"rows"` stays as given).
        Raises SinkError(code="contract"), publishing nothing, when a file's schema differs
        or nothing was staged.
        """

    @abc.abstractmethod
    def abort_day(self, staging: str) -> None:
        """Throw a staging directory away (never raises)."""

    @abc.abstractmethod
    def read_manifest(self, service: str, day: dt.date) -> dict[str, Any] | None:
        """The committed manifest of a day, or None when the day is not written (or its
        manifest cannot be parsed: the day must be recomputed)."""

    @abc.abstractmethod
    def list_days(self, service: str) -> list[dt.date]:
        """The committed days of a service, in order."""

    @abc.abstractmethod
    def read_day(self, service: str, day: dt.date, *, limit: int | None = None) -> pa.Table:
        """The rows of a committed day (the first `limit` rows if given)."""

    @abc.abstractmethod
    def verify_day(
        self, service: str, day: dt.date, *, thorough: bool = True
    ) -> list[dict[str, Any]]:
        """The problems of a committed day: [] when its files are exactly those its manifest
        lists, with the recorded sizes, checksums and row counts.

        Each problem is `{"day": "YYYY-MM-DD", "file": name or None, "problem": kind,
        "expected": ..., "found": ...}`, kind one of `"missing"` (a listed file, or the day
        itself, is absent), `"extra"` (a file the manifest does not list), `"size"`,
        `"checksum"`, `"rows"`, `"manifest"` (unreadable, or written before manifests had
        checksums). `thorough` hashes every file; otherwise sizes are always checked but only
        files whose size or modification time differ from the manifest's are hashed (cheap
        enough for `status`).
        """


R = TypeVar("R")


@attrs.frozen
class DayBatch:
    """Consecutive days computed together: one aggregator call per feature operator over all
    their spine rows, then split and published day by day. `rows`: their spine rows."""

    days: tuple[dt.date, ...]
    rows: int = 0

    @property
    def first(self) -> dt.date:
        return self.days[0]

    @property
    def last(self) -> dt.date:
        return self.days[-1]

    def __str__(self) -> str:
        return str(self.first) if len(self.days) == 1 else f"{self.first}..{self.last}"


#: One batch's work: `fn(batch, cancelled) -> result`. `cancelled` is polled between the
#: batch's steps (it raises to stop); a runner that cannot reach the caller's flag passes one
#: that is always False and cancels the batch its own way.
DayFunction = Callable[[DayBatch, Callable[[], bool]], R]


class DayRunnerPort(abc.ABC):
    """Runs a batch function over batches of days: one after another in this process, or on a
    cluster.

    The function must be picklable (a runner may ship it to other processes or machines) and
    must publish each day atomically itself, so a batch stopped half-way leaves no partial day.
    """

    #: Recorded in each day's manifest and in the run summary ("local", "ray", ...).
    name: str

    def check(self) -> None:  # noqa: B027 - optional hook, nothing to check by default
        """Make sure days can run (e.g. connect to the cluster); raises before any write."""

    @abc.abstractmethod
    def run(
        self,
        fn: DayFunction[R],
        batches: Sequence[DayBatch],
        *,
        on_start: Callable[[DayBatch], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Iterator[R]:
        """Run `fn` for every batch and yield each result as soon as its batch is done (not
        necessarily in order). At most a bounded number of batches is in flight, so memory is
        bounded by those batches, not by the range.

        `on_start(batch)` is called (in the caller's thread) when a batch is started or
        submitted. `should_stop` is polled (in the caller's thread) between batches and while
        waiting; when it returns True the runner stops starting batches, cancels those in
        flight and the iterator ends early. An exception of a batch propagates (the original
        exception, not a wrapper) after the batches still in flight were cancelled. Closing the
        iterator early cancels the batches in flight too.
        """


class RunStorePort(abc.ABC):
    """Where jobs (training runs) are recorded, so their history survives a restart."""

    @abc.abstractmethod
    def create(self, kind: str, params: dict[str, Any], owner: str) -> dict[str, Any]:
        """Record a new job in state `queued`; returns the job record (with its `id`)."""

    @abc.abstractmethod
    def update(self, job_id: str, **fields: Any) -> None:
        """Change fields of a job (`state`, `progress`, `result`, `error`, `started_at`, …)."""

    @abc.abstractmethod
    def get(self, job_id: str) -> dict[str, Any] | None:
        """The job record, or None."""

    @abc.abstractmethod
    def list(self, limit: int = 50) -> list[dict[str, Any]]:
        """The most recent jobs, newest first."""

    @abc.abstractmethod
    def request_cancel(self, job_id: str) -> bool:
        """Ask a queued or running job to stop; False if it had already finished."""
