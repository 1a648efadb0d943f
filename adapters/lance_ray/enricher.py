"""Mean-pooled embedding columns: the vectorised `pool` kernel and the Ray Data enricher.

`pool(table, requests, stores)` is the whole computation, a pure function of one table: each
row is pooled on its own, so running it per batch (in Ray actors) or once over everything (in
process) gives bit-identical columns. Its float64 sums run left to right over a row's found
ids, in list order; that order is part of the contract (tests compare it with a hand loop).

`RayLanceEnricher` runs `pool` as a Ray Data streaming pipeline: read the day's parquet file,
map batches through a fixed pool of actors (each opens its stores once, at the version the
driver validated), write ordered parquet parts. Ray's own `write_parquet` is not used: it
writes through `pyarrow.dataset.write_dataset(use_threads=True)` without `preserve_order`,
which is documented to be free to reorder rows within a file, and it names files after a
random write id. The small datasink here writes each write task's blocks with a plain parquet
writer (order kept), to a temporary name carrying the task index; with `preserve_order` the
task index follows the input order, so the parts are renamed `part-00000.parquet`, ... in
that order once the write has completed.

Ray's lifetime belongs to the process, not to a job or a thread. `ensure_ray` starts (or
joins) Ray at most once per process and every later enrich reuses it:

- `ray.init` always runs on one dedicated thread ("daedalus-ray") that lives until the
  process exits. Ray spawns its daemons with a parent-death signal (PR_SET_PDEATHSIG), which
  Linux sends when the spawning *thread* exits: started from a JSON-RPC/MCP job's thread, Ray
  died with the job and the server a minute later. Called on the main thread, `ensure_ray`
  also installs the SIGTERM -> SystemExit handler `ray.init` installs there.
- A local Ray (`address` None) gets a temp dir of its own (`daeda-ray-*`: it never joins a
  cluster another process started) and, started just before it, a watchdog process
  (`_ray_watchdog.py`). However this process ends (normal end, exception, SIGINT, SIGTERM,
  SIGKILL), the watchdog then SIGKILLs what is left of that Ray and removes the temp dir,
  within a second; it needs no code to run in the dying process. (Ray alone kills its GCS
  and raylet with the process, but its agents linger for a minute and its workers a few
  seconds.) `RayLanceEnricher.shutdown()` stops Ray earlier, its processes all gone when it
  returns; a later enrich starts a new one.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import queue
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
import ray.data
from daedalus.adapters.lance_ray.store import LanceEmbeddingStore
from ray.data.block import Block, BlockAccessor
from ray.data.datasource import Datasink
from ray.data.datasource.datasink import WriteResult

from daedalus.ports import (
    EmbeddingStorePort,
    EnricherPort,
    EnrichError,
    EnrichResult,
    Pooled,
    PoolRequest,
    StoreRef,
)

__all__ = ["RayLanceEnricher", "ensure_ray", "output_schema", "pool"]

T = TypeVar("T")

#: CPUs a locally started Ray may claim (small machines: leave the rest of the box usable).
LOCAL_NUM_CPUS = 2
#: Ids resolved and summed at once inside `pool` (per column): scratch memory stays bounded
#: whatever the table size, and a chunk's float64 sums stay in cache (measured: 2^16 ids run
#: ~5x faster than one chunk of 4M ids; results do not depend on it, rows are independent).
_CHUNK_IDS = 1 << 16
#: Logical CPUs asked by each pool actor and by each read / write task. Ray's default of 1 per
#: actor hangs a 2-CPU node: two actors hold both CPUs and no read task can ever start. Halves
#: leave room for the I/O tasks (the numbers are scheduling weights; nothing is pinned).
_ACTOR_CPUS = 0.5
_IO_TASK_CPUS = 0.5
#: Rows per parquet row group in the parts (~64 MiB with two 64-float columns).
_ROW_GROUP_ROWS = 131_072
#: `pool_table` pools a table of at most this many rows in the calling process, without Ray:
#: `pool` is vectorised over a store loaded into memory once (the large demo's 1M-row batch
#: of two embeddings in about 2 s here, where Ray Data's fixed cost alone is 3-4 s), so Ray
#: pays off only beyond one process's memory or on a cluster. Larger tables go to Ray Data.
IN_PROCESS_ROWS = 2_000_000
#: Default minimum rows per written part file (a day of a few hundred thousand rows is one file).
DEFAULT_MIN_ROWS_PER_FILE = 262_144


# =============================================================================== pool


def output_schema(schema: pa.Schema, requests: Sequence[PoolRequest]) -> pa.Schema:
    """`schema` plus one nullable fixed_size_list<float32>[dim] field per request, in order.

    Raises EnrichError when a source column is missing or not integer / list of integers, or
    when an output name is already taken.
    """
    names = set(schema.names)
    for req in requests:
        _source_kind(schema, req)
        if req.name in names:
            raise EnrichError(f"pooled column {req.name!r}: a column of that name already exists")
        names.add(req.name)
        schema = schema.append(pa.field(req.name, _vector_type(req.store.dim), nullable=True))
    return schema


def pool(
    table: pa.Table,
    requests: Sequence[PoolRequest],
    stores: Mapping[str, EmbeddingStorePort],
) -> pa.Table:
    """`table` plus one column per request: the mean store vector of each row's id(s).

    `stores` maps `StoreRef.name` to an open store (a `LanceEmbeddingStore`, or any store port).
    Per row, the source holds one id (integer column) or a list of ids (possibly empty or null,
    possibly holding nulls). Null ids and ids not in the store are skipped; an id listed twice
    counts twice. The mean is the float64 sum of the found vectors, taken left to right in list
    order, divided by their count, then cast to float32; the row is null when no id is found.
    Raises EnrichError for a request the table or the stores cannot serve.
    """
    output_schema(table.schema, requests)  # validates every request before any work
    for req in requests:
        store = stores.get(req.store.name)
        if store is None:
            raise EnrichError(f"pooled column {req.name!r}: store {req.store.name!r} is not open")
        if store.dim != req.store.dim:
            raise EnrichError(
                f"pooled column {req.name!r}: store {req.store.name!r} has dimension "
                f"{store.dim}, the request expects {req.store.dim}"
            )
        kind = _source_kind(table.schema, req)
        try:
            column = _pool_column(table.column(req.source), kind, store)
        except pa.ArrowInvalid as exc:  # uint64 ids beyond int64: they cannot be in a store
            raise EnrichError(
                f"pooled column {req.name!r}: ids of {req.source!r} do not fit int64 ({exc})"
            ) from exc
        table = table.append_column(pa.field(req.name, column.type, nullable=True), column)
    return table


def _vector_type(dim: int) -> pa.DataType:
    return pa.list_(pa.float32(), dim)


def _source_kind(schema: pa.Schema, req: PoolRequest) -> str:
    """Whether the source holds one id per row ("one") or a list ("many"); else EnrichError."""
    index = schema.get_field_index(req.source)
    if index < 0:
        raise EnrichError(f"pooled column {req.name!r}: source column {req.source!r} is missing")
    dtype = schema.field(index).type
    if pa.types.is_integer(dtype):
        return "one"
    is_list = (
        pa.types.is_list(dtype)
        or pa.types.is_large_list(dtype)
        or pa.types.is_fixed_size_list(dtype)
    )
    if is_list and pa.types.is_integer(dtype.value_type):
        return "many"
    raise EnrichError(
        f"pooled column {req.name!r}: source column {req.source!r} has type {dtype}, "
        "expected integers or lists of integers"
    )


def _flatten_ids(column: pa.ChunkedArray, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids as int64, nulls as 0; their valid mask; offsets): row i owns ids[o[i] : o[i + 1]]."""
    n = len(column)
    if kind == "one":
        values = column
        offsets = np.arange(n + 1, dtype=np.int64)
    else:
        # list_flatten emits nothing for null lists (whatever their slots hold) and honours
        # slicing, so it agrees with value lengths where null lists count 0.
        values = pc.list_flatten(column)
        lengths = pc.list_value_length(column).fill_null(0).to_numpy(zero_copy_only=False)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
    ids = pc.cast(values, pa.int64()).fill_null(0)  # ArrowInvalid beyond int64 (see `pool`)
    valid = pc.is_valid(values).to_numpy(zero_copy_only=False)
    ids_np = ids.to_numpy() if isinstance(ids, pa.Array) else ids.combine_chunks().to_numpy()
    assert len(ids_np) == offsets[-1], "flattened ids and list lengths disagree"
    return np.asarray(ids_np, dtype=np.int64), np.asarray(valid, dtype=bool), offsets


def _row_chunks(offsets: np.ndarray, max_ids: int) -> Iterator[tuple[int, int]]:
    """Consecutive row ranges holding at most `max_ids` ids each (a longer row is alone)."""
    n = len(offsets) - 1
    start = 0
    while start < n:
        end = int(np.searchsorted(offsets, offsets[start] + max_ids, side="right")) - 1
        end = min(max(end, start + 1), n)
        yield start, end
        start = end


def _resolve(
    store: EmbeddingStorePort, ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(matrix, rows of matrix per id, found): a Lance store answers with row numbers into its
    loaded matrix, so no (ids, dim) copy is made; any other store through `lookup`."""
    if isinstance(store, LanceEmbeddingStore):
        pos, found = store.positions(ids)
        return store.matrix, pos, found
    vectors, found = store.lookup(ids)
    return np.asarray(vectors, dtype=np.float32), np.arange(len(ids)), np.asarray(found, bool)


def _pool_column(column: pa.ChunkedArray, kind: str, store: EmbeddingStorePort) -> pa.Array:
    n, dim = len(column), store.dim
    ids, valid, offsets = _flatten_ids(column, kind)
    out = np.zeros((n, dim), dtype=np.float32)
    has = np.zeros(n, dtype=bool)
    for r0, r1 in _row_chunks(offsets, _CHUNK_IDS):
        lo, hi = offsets[r0], offsets[r1]
        if lo == hi:
            continue
        matrix, pos, found = _resolve(store, ids[lo:hi])
        keep = found & valid[lo:hi]
        # Row (relative to r0) of every kept id; rows stay in ascending order, ids in list order.
        rows = np.repeat(np.arange(r1 - r0), np.diff(offsets[r0 : r1 + 1]))[keep]
        if len(rows) == 0:
            continue
        counts = np.bincount(rows, minlength=r1 - r0)
        starts = np.zeros(r1 - r0, dtype=np.int64)
        np.cumsum(counts[:-1], out=starts[1:])
        means, pooled_rows = _segment_means(matrix, pos[keep], counts, starts)
        out[r0 + pooled_rows] = means
        has[r0 + pooled_rows] = True
    mask = None if has.all() else pa.array(~has)
    return pa.FixedSizeListArray.from_arrays(
        pa.array(out.reshape(-1)), type=_vector_type(dim), mask=mask
    )


def _segment_means(
    matrix: np.ndarray, pos: np.ndarray, counts: np.ndarray, starts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """float32 means of the non-empty segments, and the (chunk-relative) rows they belong to.

    Segment i is `matrix[pos[starts[i] : starts[i] + counts[i]]]`. The float64 sums run strictly
    left to right inside each segment, vectorised across rows: step k adds the k-th vector of
    every row that has more than k. (`np.add.reduceat` is not used: numpy sums a segment as
    first + pairwise(rest), deterministic but an implementation detail; this order is the plain
    loop a reader would write, and the one the tests compare with.)
    """
    # Rows by descending count, so the rows still summing at step k are a prefix.
    order = np.argsort(-counts, kind="stable")
    sorted_counts = counts[order]
    nonempty = int(np.count_nonzero(sorted_counts))
    order, sorted_counts = order[:nonempty], sorted_counts[:nonempty]
    first = starts[order]
    # Start from the first vector itself (not 0 + v): a single vector keeps its -0.0 signs.
    sums = matrix[pos[first]].astype(np.float64)
    neg_counts = -sorted_counts  # ascending, for searchsorted
    for k in range(1, int(sorted_counts[0]) if nonempty else 0):
        active = int(np.searchsorted(neg_counts, -k, side="left"))  # rows with count > k
        sums[:active] += matrix[pos[first[:active] + k]]
    sums /= sorted_counts[:, None]
    return sums.astype(np.float32), order


# =============================================================================== Ray

_ray_lock = threading.Lock()
_ray_started_here = False
#: The local Ray this process started (its temp dir and watchdog); None when it joined one.
_local: _LocalRay | None = None
_thread: _RayThread | None = None

#: Environment variable every process of a local Ray started here inherits (value: its temp
#: dir), so the watchdog finds them however they were spawned and reparented.
_OWNER_MARKER = "DAEDALUS_RAY_OWNER"
#: The watchdog script (the real file: an editable install may link this module elsewhere).
_WATCHDOG = os.path.join(os.path.dirname(os.path.realpath(__file__)), "_ray_watchdog.py")
#: Seconds to wait for the watchdog to say it is watching, and for it to finish a cleanup.
_WATCHDOG_READY_SECONDS = 30.0
_WATCHDOG_CLEANUP_SECONDS = 30.0

log = logging.getLogger(__name__)


def _drop_token_notice(record: logging.LogRecord) -> bool:
    return "Token authentication is enabled" not in record.getMessage()


def _drop_thread_notice(record: logging.LogRecord) -> bool:
    """Ray warns that `ray.init` off the main thread sets no SIGTERM handler: see
    `_exit_on_sigterm`, which sets Ray's when `ensure_ray` is called on the main thread."""
    return "SIGTERM handler is not set" not in record.getMessage()


_Call = tuple[Callable[[], Any], Future[Any]]


class _RayThread:
    """The one thread of the process that starts Ray: it lives until the process exits.

    Ray spawns its daemons (GCS, raylet, ...) with a parent-death signal (PR_SET_PDEATHSIG,
    SIGKILL), and Linux sends it when the *thread* that spawned them exits, not the process.
    So Ray started from a job's thread died when the job ended, and about a minute later the
    process too ("Failed to connect to GCS within 60 seconds"). Started from this thread,
    which never ends, the daemons die with the process and only then.
    """

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[_Call] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._serve, name="daedalus-ray", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            fn, future = self._calls.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the caller, re-raised there
                future.set_exception(exc)

    def call(self, fn: Callable[[], T]) -> T:
        """`fn()` run on this thread; its result or exception, here."""
        if threading.current_thread() is self.thread:
            return fn()
        future: Future[T] = Future()
        self._calls.put((fn, future))
        return future.result()


class _LocalRay:
    """A local Ray's own temp dir, and the watchdog that stops that Ray after this process.

    The watchdog (`_ray_watchdog.py`, a separate process in its own session) is started
    before Ray and waits for this process to end, however it ends (SIGKILL included: nothing
    here needs to run), or for `close`; then it SIGKILLs every process of that Ray (carrying
    the marker, or holding a file under the temp dir open) and removes the temp dir.
    """

    def __init__(self, temp_dir: str, watchdog: subprocess.Popen[bytes] | None) -> None:
        self.temp_dir = temp_dir
        self.watchdog = watchdog

    @classmethod
    def start(cls) -> _LocalRay:
        # Short and private: Ray's socket paths live under it, and with its own temp dir a
        # local Ray never joins a cluster another process started with `ray start`.
        root = os.environ.get("RAY_TMPDIR") or tempfile.gettempdir()
        temp_dir = tempfile.mkdtemp(prefix="daeda-ray-", dir=root)
        env = {k: v for k, v in os.environ.items() if k != _OWNER_MARKER}
        watchdog: subprocess.Popen[bytes] | None = None
        try:
            watchdog = subprocess.Popen(
                [sys.executable, "-I", "-S", _WATCHDOG, str(os.getpid()), temp_dir],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # out of reach of the terminal's Ctrl-C and hang-up
            )
            assert watchdog.stdout is not None
            with watchdog.stdout:
                readable, _, _ = select.select([watchdog.stdout], [], [], _WATCHDOG_READY_SECONDS)
                ready = bool(readable) and watchdog.stdout.readline() == b"ready\n"
        except OSError as exc:
            log.warning("cannot start the Ray watchdog (%s)", exc)
            ready = False
        if not ready:
            log.warning(
                "local Ray runs without its watchdog: if this process is killed, Ray's "
                "agents and workers may outlive it by a minute"
            )
            if watchdog is not None:
                watchdog.kill()
                watchdog.wait()
            watchdog = None
        return cls(temp_dir, watchdog)

    @contextlib.contextmanager
    def marking(self) -> Iterator[None]:
        """Every process spawned meanwhile (Ray's daemons, and all they spawn) is marked.

        The environment is the process's: a process another thread spawns meanwhile is
        marked too, and stopped with this Ray.
        """
        saved = os.environ.get(_OWNER_MARKER)
        os.environ[_OWNER_MARKER] = self.temp_dir
        try:
            yield
        finally:
            if saved is None:
                del os.environ[_OWNER_MARKER]
            else:
                os.environ[_OWNER_MARKER] = saved

    def close(self) -> None:
        """After `ray.shutdown()`: kill what is left of this Ray, remove its temp dir."""
        if self.watchdog is None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            return
        assert self.watchdog.stdin is not None
        with contextlib.suppress(OSError):
            self.watchdog.stdin.close()  # end of file: the watchdog cleans up now
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.watchdog.wait(timeout=_WATCHDOG_CLEANUP_SECONDS)


def _exit_on_sigterm() -> None:
    """What `ray.init` does on the main thread, which it no longer runs on: SIGTERM raises
    SystemExit, so the run unwinds (its `finally` blocks run) and Ray's exit hook stops Ray.
    A handler someone else installed is kept."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _sigterm_exit)


def _sigterm_exit(signum: int, frame: object) -> None:
    sys.exit(signum)


def _init(address: str | None) -> _LocalRay | None:
    """`ray.init` (on the Ray thread): a local Ray of its own when `address` is None."""
    # A local single-user cluster: Ray's notice about its token authentication is noise.
    logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(
        _drop_token_notice
    )
    logging.getLogger("ray._private.worker").addFilter(_drop_thread_notice)
    local = _LocalRay.start() if address is None else None
    try:
        with warnings.catch_warnings(), local.marking() if local else contextlib.nullcontext():
            # Lance warns at any fork once imported; Ray's fork+exec of its daemons is harmless.
            warnings.filterwarnings("ignore", message="lance is not fork-safe")
            ray.init(
                # "local": a new Ray here, whatever RAY_ADDRESS or a `ray start` says.
                address="local" if local else address,
                num_cpus=LOCAL_NUM_CPUS if local else None,
                include_dashboard=False,
                ignore_reinit_error=True,
                log_to_driver=False,  # workers' logs stay in Ray's session directory
                logging_level=logging.WARNING,
                **({"_temp_dir": local.temp_dir} if local else {}),
            )
    except BaseException:
        if local is not None:
            with contextlib.suppress(Exception):
                ray.shutdown()
            local.close()
        raise
    return local


def _forget_after_fork() -> None:
    """A forked child has no Ray thread (only the forking thread survives a fork), and the
    parent's Ray and watchdog are not its own."""
    global _ray_lock, _ray_started_here, _local, _thread
    _ray_lock = threading.Lock()
    _ray_started_here, _local, _thread = False, None, None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def ensure_ray(address: str | None) -> None:
    """Start (or connect to) Ray once per process; reuse a session someone else started.

    `address` None starts a local Ray of this process's own (see the module doc for its
    lifetime). Inside a Ray task or actor Ray is already initialised: the day runner's tasks
    enrich on the cluster that runs them.
    """
    global _thread
    with _ray_lock:
        if ray.is_initialized():
            return
        _exit_on_sigterm()
        if _thread is None or not _thread.thread.is_alive():
            _thread = _RayThread()
        _thread.call(lambda: _start(address))


def _start(address: str | None) -> None:
    """On the Ray thread (one start at a time, whoever waits for it): start Ray, and record
    it even if the caller stopped waiting (Ctrl-C)."""
    global _ray_started_here, _local
    if ray.is_initialized():
        return
    if _local is not None:  # Ray was shut down without `shutdown()`: finish its cleanup
        _local.close()
        _local = None
    _local = _init(address)
    _ray_started_here = True


def _stop_ray() -> None:
    """Stop Ray if this module started or joined it; a local one is gone when this returns."""
    with _ray_lock:
        if _thread is not None and _thread.thread.is_alive():
            _thread.call(_stop)
        else:
            _stop()


def _stop() -> None:
    global _ray_started_here, _local
    if _ray_started_here and ray.is_initialized():
        ray.shutdown()
    _ray_started_here = False
    local, _local = _local, None
    if local is not None:
        local.close()


@contextlib.contextmanager
def _data_context(target_block_bytes: int) -> Iterator[None]:
    """Ray Data settings for one enrich, restored afterwards (the context is process-global).

    `preserve_order` keeps the output rows in input order; smaller blocks let a single input
    file (one read task) feed every actor instead of one big block going to one actor.
    """
    ctx = ray.data.DataContext.get_current()
    saved = (
        ctx.execution_options.preserve_order,
        ctx.target_max_block_size,
        ctx.enable_progress_bars,
        ctx.print_on_execution_start,
    )
    ctx.execution_options.preserve_order = True
    ctx.target_max_block_size = target_block_bytes
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    # Ray Data logs every execution at INFO on the driver; a day's run wants warnings only.
    data_logger = logging.getLogger("ray.data")
    saved_level = data_logger.level
    data_logger.setLevel(logging.WARNING)
    progress_logger = logging.getLogger("ray.data._internal.progress")
    progress_logger.addFilter(_drop_progress_notice)
    try:
        with warnings.catch_warnings():
            # Ray Data's own deprecation and sizing notices are not the user's business.
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray\.")
            warnings.filterwarnings("ignore", category=UserWarning, module=r"ray\.")
            yield
    finally:
        data_logger.setLevel(saved_level)
        progress_logger.removeFilter(_drop_progress_notice)
        (
            ctx.execution_options.preserve_order,
            ctx.target_max_block_size,
            ctx.enable_progress_bars,
            ctx.print_on_execution_start,
        ) = saved


def _drop_progress_notice(record: logging.LogRecord) -> bool:
    """Drop Ray's "Progress bars disabled" warning: disabling them here is deliberate."""
    return not record.getMessage().startswith("Progress bars disabled")


class _PoolActor:
    """A Ray Data actor: opens the stores once (pinned versions, vectors loaded), pools batches."""

    def __init__(
        self,
        requests: tuple[PoolRequest, ...],
        refs: tuple[StoreRef, ...],
        versions: dict[str, str],
    ) -> None:
        self.requests = requests
        self.stores: dict[str, LanceEmbeddingStore] = {}
        for ref in refs:
            store = LanceEmbeddingStore.open(ref, version=versions[ref.name])
            store.load()
            self.stores[ref.name] = store

    def __call__(self, batch: pa.Table) -> pa.Table:
        return pool(batch, self.requests, self.stores)


class _OrderedParquetSink(Datasink[tuple[int, str, int]]):
    """Writes each write task's blocks, in order, to one temporary file named by task index."""

    def __init__(self, dest_dir: str, schema: pa.Schema, token: str, min_rows: int | None) -> None:
        self.dest_dir = dest_dir
        self.schema = schema
        self.token = token
        self._min_rows = min_rows
        self.written: list[tuple[int, str, int]] = []

    @property
    def min_rows_per_write(self) -> int | None:
        return self._min_rows

    def temp_path(self, task_idx: int) -> str:
        # Hidden (dot) name: readers globbing part-*.parquet never see a half-done write.
        return os.path.join(self.dest_dir, f".tmp-{self.token}-{task_idx:08d}.parquet")

    def write(self, blocks: Iterable[Block], ctx: Any) -> tuple[int, str, int]:
        path = self.temp_path(ctx.task_idx)
        writer: pq.ParquetWriter | None = None
        pending: list[pa.Table] = []
        pending_rows = rows = 0
        try:
            for block in blocks:
                table = _conform(BlockAccessor.for_block(block).to_arrow(), self.schema)
                if not table.num_rows:
                    continue
                pending.append(table)
                pending_rows += table.num_rows
                rows += table.num_rows
                if pending_rows < _ROW_GROUP_ROWS:
                    continue
                # Blocks are a batch each (a few thousand rows); writing them one by one would
                # make as many tiny row groups, slow to write and to read back.
                if writer is None:
                    # A retried task rewrites the same name: a retry never duplicates a part.
                    writer = pq.ParquetWriter(path, self.schema)
                buffered = pa.concat_tables(pending)
                while buffered.num_rows >= _ROW_GROUP_ROWS:
                    writer.write_table(buffered.slice(0, _ROW_GROUP_ROWS))
                    buffered = buffered.slice(_ROW_GROUP_ROWS)
                pending, pending_rows = [buffered], buffered.num_rows
            if not rows:
                return (ctx.task_idx, "", 0)
            if writer is None:
                writer = pq.ParquetWriter(path, self.schema)
            if pending_rows:
                writer.write_table(pa.concat_tables(pending))
        finally:
            if writer is not None:
                writer.close()
        return (ctx.task_idx, path, rows)

    def on_write_complete(self, write_result: WriteResult[tuple[int, str, int]]) -> None:
        self.written = sorted(r for r in write_result.write_returns if r and r[1])


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """The block with exactly `schema`: its columns in order, types cast if Ray changed them."""
    if table.schema.equals(schema):
        return table.replace_schema_metadata(schema.metadata)
    return table.select(schema.names).cast(schema)


class RayLanceEnricher(EnricherPort):
    """Appends mean-pooled embedding columns with Ray Data actors reading Lance stores.

    `address`: a Ray cluster to connect to (None starts a local Ray with 2 CPUs, lazily, on the
    first `enrich`). `num_actors`: the fixed actor pool size; each actor holds every store it
    needs in memory. `batch_size`: rows per `pool` call. `min_rows_per_file`: write tasks get
    at least this many rows (so a day is a few large files, not one per batch).
    """

    def __init__(
        self,
        address: str | None = None,
        num_actors: int = 2,
        batch_size: int = 4096,
        *,
        min_rows_per_file: int | None = DEFAULT_MIN_ROWS_PER_FILE,
        in_process_rows: int = IN_PROCESS_ROWS,
    ) -> None:
        if num_actors < 1 or batch_size < 1:
            raise ValueError("num_actors and batch_size must be positive")
        self.address = address
        self.num_actors = num_actors
        self.batch_size = batch_size
        self.min_rows_per_file = min_rows_per_file
        self.in_process_rows = in_process_rows

    # ------------------------------------------------------------------ the port

    def check(self, requests: Sequence[PoolRequest]) -> dict[str, str]:
        return {name: store.version() for name, store in self._open_stores(requests).items()}

    def pool_table(self, table: pa.Table, requests: Sequence[PoolRequest]) -> Pooled:
        """Pool in this process when the table has at most `in_process_rows` rows (the same
        `pool` function as the actors run, so the same bits; no Ray is started), else stream
        it through Ray Data actors (`enrich`)."""
        started = time.perf_counter()
        requests = tuple(requests)
        if table.num_rows <= self.in_process_rows:
            stores = self._open_stores(requests)
            versions = {name: store.version() for name, store in stores.items()}
            pooled = pool(table, requests, stores)
            return Pooled(pooled, versions, time.perf_counter() - started, "process")
        with tempfile.TemporaryDirectory(prefix="daeda-enrich-") as tmp:
            source = os.path.join(tmp, "rows.parquet")
            pq.write_table(table, source)
            result = self.enrich(source, os.path.join(tmp, "out"), requests)
            pooled = pa.concat_tables(pq.read_table(f) for f in result.files)
        return Pooled(
            pooled.combine_chunks(), result.store_versions, time.perf_counter() - started, "ray"
        )

    def enrich(self, source: str, dest_dir: str, requests: Sequence[PoolRequest]) -> EnrichResult:
        started = time.perf_counter()
        requests = tuple(requests)
        stores = self._open_stores(requests)
        versions = {name: store.version() for name, store in stores.items()}
        refs = tuple(store.ref for store in stores.values())
        metadata = pq.read_metadata(source)
        schema = output_schema(pq.read_schema(source), requests)
        os.makedirs(dest_dir, exist_ok=True)
        if glob.glob(os.path.join(dest_dir, "part-*.parquet")):
            raise FileExistsError(f"{dest_dir} already holds part files")

        token = uuid.uuid4().hex[:12]
        sink = _OrderedParquetSink(dest_dir, schema, token, self.min_rows_per_file)
        try:
            if metadata.num_rows:
                ensure_ray(self.address)
                with _data_context(self._block_bytes(metadata, requests)):
                    ds = ray.data.read_parquet(
                        source,
                        partitioning=None,  # no hive columns from a `dt=...` directory name
                        file_extensions=None,
                        num_cpus=_IO_TASK_CPUS,
                    )
                    ds = ds.map_batches(
                        _PoolActor,
                        fn_constructor_kwargs={
                            "requests": requests,
                            "refs": refs,
                            "versions": versions,
                        },
                        batch_format="pyarrow",
                        batch_size=self.batch_size,
                        # A small day fits in one batch: one actor, not a pool waiting on it.
                        compute=ray.data.ActorPoolStrategy(
                            size=max(
                                1, min(self.num_actors, -(-metadata.num_rows // self.batch_size))
                            )
                        ),
                        udf_modifying_row_count=False,
                        num_cpus=_ACTOR_CPUS,
                    )
                    ds.write_datasink(sink, ray_remote_args={"num_cpus": _IO_TASK_CPUS})
            files, rows = self._publish(sink, dest_dir)
            if not files:
                # Ray writes nothing for an empty input; the day still gets one valid file.
                path = os.path.join(dest_dir, "part-00000.parquet")
                pq.write_table(schema.empty_table(), path)
                files = [path]
        except BaseException:
            for path in glob.glob(os.path.join(dest_dir, f".tmp-{token}-*.parquet")):
                with contextlib.suppress(OSError):
                    os.remove(path)
            raise
        if rows != metadata.num_rows:
            raise EnrichError(f"enrich of {source} wrote {rows} rows, read {metadata.num_rows}")
        return EnrichResult(
            files=tuple(files),
            rows=rows,
            store_versions=versions,
            seconds=time.perf_counter() - started,
        )

    def shutdown(self) -> None:
        """Stop Ray if this process started it (a cluster joined elsewhere only loses this
        driver); a local Ray's processes are all gone when this returns."""
        _stop_ray()

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _open_stores(requests: Sequence[PoolRequest]) -> dict[str, LanceEmbeddingStore]:
        """Each distinct store once, by name; two refs sharing a name must be identical."""
        stores: dict[str, LanceEmbeddingStore] = {}
        for req in requests:
            known = stores.get(req.store.name)
            if known is None:
                stores[req.store.name] = LanceEmbeddingStore.open(req.store)
            elif known.ref != req.store:
                raise EnrichError(
                    f"embedding store {req.store.name!r} is named with two definitions: "
                    f"{known.ref} and {req.store}"
                )
        return stores

    def _block_bytes(self, metadata: pq.FileMetaData, requests: Sequence[PoolRequest]) -> int:
        """A block size of about `batch_size` input rows, so batches spread over the actors."""
        raw = sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
        per_row = raw / max(1, metadata.num_rows) + sum(4 * r.store.dim for r in requests)
        return int(min(128 * 1024 * 1024, max(1024 * 1024, per_row * self.batch_size)))

    @staticmethod
    def _publish(sink: _OrderedParquetSink, dest_dir: str) -> tuple[list[str], int]:
        """Rename the temporary parts to part-00000.parquet, ... in task (= input) order."""
        files, rows = [], 0
        for i, (_, temp, n) in enumerate(sink.written):
            final = os.path.join(dest_dir, f"part-{i:05d}.parquet")
            os.replace(temp, final)
            files.append(final)
            rows += n
        return files, rows
