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

Ray itself (one per process, on a thread of its own) and the Ray Data pieces live in
`ray_runtime`, imported only when a table goes to Ray Data: pooling in process imports no Ray.
"""

from __future__ import annotations

import contextlib
import glob
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from daedalus.adapters.lance_ray.store import LanceEmbeddingStore

from daedalus.ports import (
    EmbeddingStorePort,
    EnricherPort,
    EnrichError,
    EnrichResult,
    Pooled,
    PoolRequest,
)

__all__ = ["RayLanceEnricher", "ensure_ray", "output_schema", "pool"]

if TYPE_CHECKING:
    from daedalus.adapters.lance_ray.ray_runtime import _OrderedParquetSink

#: Ids resolved and summed at once inside `pool` (per column): scratch memory stays bounded
#: whatever the table size, and a chunk's float64 sums stay in cache (measured: 2^16 ids run
#: ~5x faster than one chunk of 4M ids; results do not depend on it, rows are independent).
_CHUNK_IDS = 1 << 16
#: Logical CPUs asked by each pool actor and by each read / write task. Ray's default of 1 per
#: actor hangs a 2-CPU node: two actors hold both CPUs and no read task can ever start. Halves
#: leave room for the I/O tasks (the numbers are scheduling weights; nothing is pinned).
_ACTOR_CPUS = 0.5
_IO_TASK_CPUS = 0.5
#: `pool_table` pools a table of at most this many rows in the calling process, without Ray:
#: `pool` is vectorised over a store loaded into memory once (the large demo's 1M-row batch
#: of two embeddings in about 2 s here, where Ray Data's fixed cost alone is 3-4 s), so Ray
#: pays off only beyond one process's memory or on a cluster. Larger tables go to Ray Data.
IN_PROCESS_ROWS = 2_000_000
#: Default minimum rows per written part file (a day of a few hundred thousand rows is one file).
DEFAULT_MIN_ROWS_PER_FILE = 262_144


def ensure_ray(address: str | None) -> None:
    """Start (or connect to) Ray once per process (see `ray_runtime.ensure_ray`)."""
    from daedalus.adapters.lance_ray.ray_runtime import ensure_ray as start

    start(address)


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

        from daedalus.adapters.lance_ray import ray_runtime as rt

        token = uuid.uuid4().hex[:12]
        sink = rt._OrderedParquetSink(dest_dir, schema, token, self.min_rows_per_file)
        try:
            if metadata.num_rows:
                rt.ensure_ray(self.address)
                with rt._data_context(self._block_bytes(metadata, requests)):
                    ds = rt.ray.data.read_parquet(
                        source,
                        partitioning=None,  # no hive columns from a `dt=...` directory name
                        file_extensions=None,
                        num_cpus=_IO_TASK_CPUS,
                    )
                    ds = ds.map_batches(
                        rt._PoolActor,
                        fn_constructor_kwargs={
                            "requests": requests,
                            "refs": refs,
                            "versions": versions,
                        },
                        batch_format="pyarrow",
                        batch_size=self.batch_size,
                        # A small day fits in one batch: one actor, not a pool waiting on it.
                        compute=rt.ray.data.ActorPoolStrategy(
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
        driver); a local Ray's processes are all gone when this returns. Without Ray imported
        there is none to stop."""
        runtime = sys.modules.get("daedalus.adapters.lance_ray.ray_runtime")
        if runtime is not None:
            runtime.stop_ray()

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
