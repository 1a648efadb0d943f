"""Ray for the enricher: one Ray per process, started on a thread of its own, and the Ray Data
pieces of `RayLanceEnricher.enrich` (the pool actor and the ordered parquet datasink).

Imported only when a table goes to Ray Data or a batch runs on a cluster (`ensure_ray`): a
training run that pools in process never imports Ray.

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
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq
import ray
import ray.data
from daedalus.adapters.lance_ray.enricher import pool
from daedalus.adapters.lance_ray.store import LanceEmbeddingStore
from ray.data.block import Block, BlockAccessor
from ray.data.datasource import Datasink
from ray.data.datasource.datasink import WriteResult

from daedalus.ports import PoolRequest, StoreRef

__all__ = ["ensure_ray", "stop_ray"]

T = TypeVar("T")

#: CPUs a locally started Ray may claim (small machines: leave the rest of the box usable).
LOCAL_NUM_CPUS = 2
#: Rows per parquet row group in the parts (~64 MiB with two 64-float columns).
_ROW_GROUP_ROWS = 131_072

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


def stop_ray() -> None:
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
