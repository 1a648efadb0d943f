"""The Lance store, the pooling kernel and the Ray enricher: validation, hand-checked means, and
a Ray run that writes, in input order, exactly what `pool` computes in process."""

from __future__ import annotations

import glob
import itertools
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import lance
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from daedalus.adapters.demo import DemoSummary, write_demo_workspace
from daedalus.adapters.lance_ray.enricher import RayLanceEnricher, output_schema, pool
from daedalus.adapters.lance_ray.store import LanceEmbeddingStore

from daedalus.ports import EnrichError, PoolRequest, StoreRef

# Ray deep-copies its DataContext for every dataset, which trips its own deprecation warnings.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")

DIM = 4
#: The hand-made store: id 3 is stored twice (the later row wins), id 4 has a null vector.
KNOWN = {
    1: [1.0, -2.0, 0.5, -0.0],
    2: [0.1, 0.2, 0.3, 0.4],
    3: [1e8, 1.0, -3.25, 7.0],
    5: [-1.5, 2.5, 1e-7, 3.0],
}
STALE_3 = [9.0, 9.0, 9.0, 9.0]


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoSummary:
    return write_demo_workspace(tmp_path_factory.mktemp("demo"), scale="tiny")


@pytest.fixture(scope="module")
def demo_ref(demo: DemoSummary) -> StoreRef:
    return StoreRef("artworks", str(demo.embeddings_path), "artwork_id", "vector", 64)


@pytest.fixture(scope="module")
def known_ref(tmp_path_factory: pytest.TempPathFactory) -> StoreRef:
    path = tmp_path_factory.mktemp("known") / "known.lance"
    ids = [1, 2, 3, 5, 3, 4]
    vectors = [KNOWN[1], KNOWN[2], STALE_3, KNOWN[5], KNOWN[3], None]
    table = pa.table(
        {
            "item_id": pa.array(ids, pa.int32()),  # any integer type is served as int64
            "emb": pa.array(vectors, pa.list_(pa.float32(), DIM)),
        }
    )
    lance.write_dataset(table, str(path))
    return StoreRef("known", str(path), "item_id", "emb", DIM)


@pytest.fixture(scope="module")
def enricher() -> Iterator[RayLanceEnricher]:
    # Small batches and files so that 10k rows span many batches, actor calls and part files.
    enricher = RayLanceEnricher(num_actors=2, batch_size=1000, min_rows_per_file=2000)
    yield enricher
    enricher.shutdown()


def _write_lance(path: Path, columns: dict[str, pa.Array]) -> str:
    lance.write_dataset(pa.table(columns), str(path))
    return str(path)


def _bits(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(null mask, float32 bit patterns of every element): `==` would call -0.0 equal to 0.0."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    nulls = array.is_null().to_numpy(zero_copy_only=False)
    values = array.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    return nulls, values.view(np.int32)


def _assert_same_table(actual: pa.Table, expected: pa.Table, pooled: Sequence[str]) -> None:
    assert actual.schema.names == expected.schema.names
    for name in expected.schema.names:
        if name in pooled:
            a_nulls, a_bits = _bits(actual[name])
            e_nulls, e_bits = _bits(expected[name])
            np.testing.assert_array_equal(a_nulls, e_nulls, err_msg=name)
            np.testing.assert_array_equal(a_bits, e_bits, err_msg=name)
        else:
            assert actual[name].equals(expected[name]), name


def _hand_mean(ids: list[int | None] | None) -> list[float] | None:
    """The contract spelled out: float64 sum left to right over found ids, / count, float32."""
    found = [KNOWN[i] for i in (ids or []) if i is not None and i in KNOWN]
    if not found:
        return None
    total = [float(x) for x in found[0]]
    for vector in found[1:]:
        total = [t + float(np.float32(x)) for t, x in zip(total, vector, strict=True)]
    return [float(np.float32(t / len(found))) for t in total]


# ------------------------------------------------------------------------------ the store


def test_the_store_serves_the_demo_embeddings(demo: DemoSummary, demo_ref: StoreRef) -> None:
    store = LanceEmbeddingStore.open(demo_ref)
    assert store.version() == str(demo.lance_version)
    assert store.dim == 64
    assert len(store) == demo.embedding_rows

    table = lance.dataset(demo_ref.path).to_table()
    present = table["artwork_id"].to_numpy()
    missing = np.array(demo.missing_embedding_ids, dtype=np.int64)
    query = np.array([present[3], missing[0], present[0], present[3], -1, 2**62], dtype=np.int64)
    vectors, found = store.lookup(query)
    assert vectors.dtype == np.float32 and vectors.shape == (6, 64)
    assert found.tolist() == [True, False, True, True, False, False]
    stored = np.stack(table["vector"].to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(vectors[0], stored[3])
    np.testing.assert_array_equal(vectors[3], stored[3])
    np.testing.assert_array_equal(vectors[2], stored[0])
    assert not vectors[[1, 4, 5]].any()  # not found: zero rows
    empty_vectors, empty_found = store.lookup(np.array([], dtype=np.int64))
    assert empty_vectors.shape == (0, 64) and empty_found.shape == (0,)


def test_the_last_stored_row_of_an_id_wins_and_null_vectors_are_absent(
    known_ref: StoreRef,
) -> None:
    store = LanceEmbeddingStore.open(known_ref)
    vectors, found = store.lookup(np.array([3, 4, 1, 6, 0], dtype=np.int64))
    assert found.tolist() == [True, False, True, False, False]
    np.testing.assert_array_equal(vectors[0], np.float32(KNOWN[3]))
    np.testing.assert_array_equal(vectors[2], np.float32(KNOWN[1]))


def test_sparse_ids_are_looked_up_by_binary_search(tmp_path: Path) -> None:
    ids = np.array([-(2**40), 7, 2**50, 2**62], dtype=np.int64)  # too sparse for a slot table
    vectors = np.arange(4 * DIM, dtype=np.float32).reshape(4, DIM)
    path = _write_lance(
        tmp_path / "sparse.lance",
        {"id": pa.array(ids), "v": pa.FixedSizeListArray.from_arrays(vectors.ravel(), DIM)},
    )
    store = LanceEmbeddingStore.open(StoreRef("sparse", path, "id", "v", DIM))
    got, found = store.lookup(np.array([2**62, 8, -(2**40), 7, -1], dtype=np.int64))
    assert found.tolist() == [True, False, True, True, False]
    np.testing.assert_array_equal(got[[0, 2, 3]], vectors[[3, 0, 1]])


def _bad_store(tmp_path: Path, case: str) -> tuple[StoreRef, str]:
    """A store reference with one thing wrong, and the words the error must contain."""
    ids = pa.array([1, 2], pa.int64())
    vectors = pa.array([[0.0] * DIM, [1.0] * DIM], pa.list_(pa.float32(), DIM))
    ref = StoreRef("bad", str(tmp_path / f"{case}.lance"), "id", "v", DIM)
    if case == "missing path":
        return ref, "does not exist"
    if case == "not lance":
        (tmp_path / "not lance.lance").mkdir()
        return ref, "not a Lance dataset"
    columns: dict[str, pa.Array] = {"id": ids, "v": vectors}
    expected = {
        "missing id column": ("id column 'id' is missing", {"key": ids, "v": vectors}),
        "string ids": ("expected integers", {"id": pa.array(["a", "b"]), "v": vectors}),
        "missing vector column": ("vector column 'v' is missing", {"id": ids}),
        "variable-size vectors": (
            "expected a fixed-size list of floats",
            {"id": ids, "v": pa.array([[0.0] * DIM, [1.0] * DIM], pa.list_(pa.float32()))},
        ),
        "integer vectors": (
            "expected a fixed-size list of floats",
            {"id": ids, "v": pa.array([[0] * DIM, [1] * DIM], pa.list_(pa.int32(), DIM))},
        ),
        "wrong dim": (
            f"has dimension 8, expected {DIM}",
            {"id": ids, "v": pa.array([[0.0] * 8, [1.0] * 8], pa.list_(pa.float32(), 8))},
        ),
    }
    words, columns = expected[case]
    _write_lance(Path(ref.path), columns)
    return ref, words


@pytest.mark.parametrize(
    "case",
    [
        "missing path",
        "not lance",
        "missing id column",
        "string ids",
        "missing vector column",
        "variable-size vectors",
        "integer vectors",
        "wrong dim",
    ],
)
def test_a_bad_store_is_refused_naming_the_store_the_path_and_the_problem(
    tmp_path: Path, case: str
) -> None:
    ref, words = _bad_store(tmp_path, case)
    with pytest.raises(EnrichError) as error:
        LanceEmbeddingStore.open(ref)
    message = str(error.value)
    assert "'bad'" in message and ref.path in message and words in message, message


# ------------------------------------------------------------------------------ pool


def test_pool_equals_the_hand_computation(known_ref: StoreRef) -> None:
    one = [1, 99, None, 3, 5, 4, 2]  # found, missing, null, the later 3, found, null vector, found
    many = [
        [1],  # a single id
        [1, 99],  # one id missing from the store: skipped
        [],  # empty: null
        [98, 97, 4],  # nothing found (4 has a null vector): null
        None,  # null list: null
        [2, None, 2, 3],  # a null id is skipped; a repeated id counts twice
        [3, 1, 5, 2, 3],
    ]
    table = pa.table(
        {
            "key": pa.array(range(len(one)), pa.int64()),
            "one": pa.array(one, pa.int32()),
            "many": pa.array(many, pa.list_(pa.int64())),
        }
    )
    requests = [
        PoolRequest("one_emb", "one", known_ref),
        PoolRequest("many_emb", "many", known_ref),
    ]
    out = pool(table, requests, {"known": LanceEmbeddingStore.open(known_ref)})

    assert out.schema.names == ["key", "one", "many", "one_emb", "many_emb"]
    for name in ("one_emb", "many_emb"):
        field = out.schema.field(name)
        assert field.type == pa.list_(pa.float32(), DIM) and field.nullable
    expected_one = pa.array([_hand_mean([i]) for i in one], pa.list_(pa.float32(), DIM))
    expected_many = pa.array([_hand_mean(ids) for ids in many], pa.list_(pa.float32(), DIM))
    for name, expected in (("one_emb", expected_one), ("many_emb", expected_many)):
        got_nulls, got_bits = _bits(out[name])
        want_nulls, want_bits = _bits(expected)
        np.testing.assert_array_equal(got_nulls, want_nulls, err_msg=name)
        np.testing.assert_array_equal(got_bits, want_bits, err_msg=name)
    assert out["many_emb"].null_count == 3
    # The -0.0 of a single vector survives (the sum starts from the vector, not from 0.0).
    assert np.signbit(out["one_emb"][0].values.to_numpy()[3])


def test_pool_is_independent_of_how_the_table_is_cut(demo_ref: StoreRef) -> None:
    rng = np.random.default_rng(3)
    n = 9000
    lengths = rng.integers(0, 40, n)
    lengths[17] = 70_000  # one row longer than a whole internal chunk
    values = rng.integers(10_000_001 - 5, 10_000_001 + 310, int(lengths.sum()))
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    nulls = rng.random(len(values)) < 0.02
    lists = pa.ListArray.from_arrays(offsets, pa.array(values, mask=nulls))
    table = pa.table({"ids": lists})
    requests = [PoolRequest("emb", "ids", demo_ref)]
    stores = {"artworks": LanceEmbeddingStore.open(demo_ref)}
    whole = pool(table, requests, stores)
    cuts = [0, 1, 17, 18, 1000, 4321, 8999, n]
    pieces = pa.concat_tables(
        pool(table.slice(a, b - a), requests, stores) for a, b in itertools.pairwise(cuts)
    )
    _assert_same_table(pieces, whole, ["emb"])
    # Null exactly where a row has no non-null id in the store (empty rows included).
    usable = stores["artworks"].lookup(values)[1] & ~nulls
    hits = np.bincount(np.repeat(np.arange(n), lengths)[usable], minlength=n)
    assert whole["emb"].is_null().to_pylist() == (hits == 0).tolist()
    assert (hits == 0).sum() > (lengths == 0).sum()  # some rows lose every id, not only empty ones


def test_pool_refuses_sources_it_cannot_read(known_ref: StoreRef) -> None:
    table = pa.table({"f": pa.array([1.0]), "s": pa.array([["a"]]), "known_emb": pa.array([1])})
    stores = {"known": LanceEmbeddingStore.open(known_ref)}
    cases = {
        "missing": "source column 'missing' is missing",
        "f": "has type double, expected integers or lists of integers",
        "s": "expected integers or lists of integers",
    }
    for source, words in cases.items():
        with pytest.raises(EnrichError, match=words):
            pool(table, [PoolRequest("x", source, known_ref)], stores)
    with pytest.raises(EnrichError, match="already exists"):
        pool(table, [PoolRequest("known_emb", "known_emb", known_ref)], stores)
    with pytest.raises(EnrichError, match="is not open"):
        pool(table, [PoolRequest("x", "known_emb", known_ref)], {})


# ------------------------------------------------------------------------------ the enricher


def _impressions(demo: DemoSummary, n: int) -> pa.Table:
    """n rows shaped like an enrich input: keys, a UTC timestamp, a label, one id and id lists."""
    rng = np.random.default_rng(11)
    base = pq.read_table(demo.impression_files[0])
    idx = rng.integers(0, base.num_rows, n)
    artwork = base["artwork_id"].take(pa.array(idx)).to_numpy().copy()
    artwork[rng.random(n) < 0.05] = 10_000_001 + 5_000_000  # never in the store
    lengths = rng.integers(0, 30, n)
    flat = rng.integers(10_000_001, 10_000_001 + 305, int(lengths.sum()))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    recent = pa.ListArray.from_arrays(
        pa.array(offsets), pa.array(flat, mask=rng.random(len(flat)) < 0.03)
    )
    recent = pa.array(
        [None if k % 97 == 0 else v for k, v in enumerate(recent.to_pylist())],
        pa.list_(pa.int64()),
    )
    return pa.table(
        {
            "row": pa.array(np.arange(n), pa.int64()),
            "user_id": base["user_id"].take(pa.array(idx)),
            "ts": base["ts"].take(pa.array(idx)),
            "clicked": base["clicked"].take(pa.array(idx)),
            "artwork_id": pa.array(artwork, mask=rng.random(n) < 0.02),
            "recent_artworks": recent,
        }
    )


def _requests(ref: StoreRef) -> list[PoolRequest]:
    return [
        PoolRequest("artwork_emb", "artwork_id", ref),
        PoolRequest("recent_artworks_emb", "recent_artworks", ref),
    ]


def test_check_opens_each_store_once_and_reports_its_version(
    enricher: RayLanceEnricher, demo_ref: StoreRef, known_ref: StoreRef, tmp_path: Path
) -> None:
    requests = [*_requests(demo_ref), PoolRequest("k", "artwork_id", known_ref)]
    assert enricher.check(requests) == {"artworks": "1", "known": "1"}
    ref, _ = _bad_store(tmp_path, "wrong dim")
    with pytest.raises(EnrichError, match="has dimension 8"):
        enricher.check([*requests, PoolRequest("bad_emb", "artwork_id", ref)])


def test_enrich_writes_ordered_parts_equal_to_pool_in_process(
    enricher: RayLanceEnricher, demo: DemoSummary, demo_ref: StoreRef, tmp_path: Path
) -> None:
    # Laid out like a staged day: the skeleton under the day directory that receives the parts
    # (the `dt=` name must not turn into a hive partition column).
    day_dir = tmp_path / "dt=2026-10-01"
    (day_dir / "_skeleton").mkdir(parents=True)
    source = str(day_dir / "_skeleton" / "skeleton.parquet")
    table = _impressions(demo, 10_000)
    assert table.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    pq.write_table(table, source, row_group_size=3_000)
    requests = _requests(demo_ref)

    result = enricher.enrich(source, str(day_dir), requests)

    assert result.rows == 10_000
    assert result.store_versions == {"artworks": "1"}
    assert result.seconds > 0
    names = [os.path.basename(f) for f in result.files]
    assert len(names) > 1, "the run should span several part files"
    assert names == [f"part-{i:05d}.parquet" for i in range(len(names))]
    assert sorted(glob.glob(str(day_dir / "*.parquet"))) == list(result.files)
    assert not glob.glob(str(day_dir / ".*"))  # no temporary file left behind

    expected_schema = output_schema(table.schema, requests)
    for path in result.files:
        assert pq.read_schema(path).equals(expected_schema), path
    assert expected_schema.names == [*table.schema.names, "artwork_emb", "recent_artworks_emb"]
    for req in requests:
        field = expected_schema.field(req.name)
        assert field.type == pa.list_(pa.float32(), 64) and field.nullable

    written = pa.concat_tables(pq.read_table(f) for f in result.files)
    assert written["row"].to_pylist() == list(range(10_000))  # input order
    in_process = pool(table, requests, {"artworks": LanceEmbeddingStore.open(demo_ref)})
    _assert_same_table(written, in_process, [r.name for r in requests])
    assert 0 < written["recent_artworks_emb"].null_count < 10_000

    with pytest.raises(FileExistsError):
        enricher.enrich(source, str(day_dir), requests)


def test_enrich_of_an_empty_input_writes_one_empty_part(
    enricher: RayLanceEnricher, demo: DemoSummary, demo_ref: StoreRef, tmp_path: Path
) -> None:
    source = str(tmp_path / "empty.parquet")
    empty = _impressions(demo, 10).slice(0, 0)
    pq.write_table(empty, source)
    result = enricher.enrich(source, str(tmp_path / "out"), _requests(demo_ref))
    assert result.rows == 0
    assert [os.path.basename(f) for f in result.files] == ["part-00000.parquet"]
    written = pq.read_table(result.files[0])
    assert written.num_rows == 0
    assert written.schema.equals(output_schema(empty.schema, _requests(demo_ref)))


def test_enrich_refuses_a_bad_request_before_running_anything(
    enricher: RayLanceEnricher, demo: DemoSummary, demo_ref: StoreRef, tmp_path: Path
) -> None:
    source = str(tmp_path / "in.parquet")
    pq.write_table(_impressions(demo, 10), source)
    with pytest.raises(EnrichError, match="source column 'nope' is missing"):
        enricher.enrich(source, str(tmp_path / "out"), [PoolRequest("x", "nope", demo_ref)])
    assert not glob.glob(str(tmp_path / "out" / "*"))


def test_pool_table_gives_the_same_bits_in_process_and_on_ray(
    demo: DemoSummary, demo_ref: StoreRef
) -> None:
    table = _impressions(demo, 5_000)
    requests = _requests(demo_ref)
    small = RayLanceEnricher(in_process_rows=10_000).pool_table(table, requests)
    assert small.where == "process" and small.store_versions == {"artworks": "1"}
    large = RayLanceEnricher(in_process_rows=0, batch_size=1_000).pool_table(table, requests)
    assert large.where == "ray" and large.store_versions == {"artworks": "1"}
    assert large.table["row"].to_pylist() == list(range(5_000))  # input order
    _assert_same_table(large.table, small.table, [r.name for r in requests])
    assert small.table.schema.equals(output_schema(table.schema, requests))
