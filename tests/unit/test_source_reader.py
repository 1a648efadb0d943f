"""The source-reader port: the core computes, checks and fingerprints sources it reads only
through `SourceReaderPort`; here every source lives in an `InMemorySourceReader` (no file on
disk), and the answers are those of the same rows given as in-memory tables."""

from __future__ import annotations

import datetime as dt

import attrs
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings

from daedalus.catalog.model import AggFunction, FilterDef
from daedalus.pipeline.inputs import InputPolicy, check_inputs
from daedalus.pipeline.staleness import source_fingerprints
from daedalus.pit.engine import default_source_reader
from daedalus.pit.errors import PitError
from daedalus.pit.reference import reference_pit_table
from daedalus.pit.sources import read_source
from daedalus.pit.spec import AggregationSpec, AsOfSpec, PitSpec, SourceSpec
from daedalus.ports import SourceReaderPort
from tests.fakes import InMemoryAggregator, InMemorySourceReader
from tests.pit_strategies import BASE, MINUTE, SOURCE_SCHEMA, TS, assert_bit_equal, problems

HOUR = 60 * MINUTE


def _stored(specs: list[PitSpec], reader: InMemorySourceReader, files: int = 3) -> list[PitSpec]:
    """`specs` with every table-backed source moved into `reader` as `files` files (the rows
    split in order, so the files' read order is the table's)."""
    moved: dict[int, SourceSpec] = {}
    out = []
    for spec in specs:
        src = spec.source
        if id(src) not in moved:
            assert src.table is not None
            n = src.table.num_rows
            step = max(1, -(-n // files))
            for i, start in enumerate(range(0, max(n, 1), step)):
                reader.put(f"mem/{src.name}/part-{i}.parquet", src.table.slice(start, step))
            moved[id(src)] = attrs.evolve(src, table=None, paths=f"mem/{src.name}/*.parquet")
        out.append(attrs.evolve(spec, source=moved[id(src)]))
    return out


def _events(rows: list[tuple[int, int, str, float | None]]) -> pa.Table:
    """Rows of (user, minutes after BASE, action, x) as a table of SOURCE_SCHEMA."""
    ts = [BASE + m * MINUTE for _u, m, _a, _x in rows]
    return pa.table(
        {
            "user_id": pa.array([u for u, _m, _a, _x in rows], pa.int64()),
            "event_ts": pa.array(ts, TS),
            "created_ts": pa.array(ts, TS),
            "action": pa.array([a for _u, _m, a, _x in rows], pa.string()),
            "x": pa.array([x for _u, _m, _a, x in rows], pa.float64()),
            "f32": pa.array([0.5] * len(rows), pa.float32()),
            "n": pa.array([1] * len(rows), pa.int64()),
            "flag": pa.array([True] * len(rows), pa.bool_()),
        },
        schema=SOURCE_SCHEMA,
    )


def _spine(*rows: tuple[int, int]) -> pa.Table:
    return pa.table(
        {
            "user_id": pa.array([u for u, _m in rows], pa.int64()),
            "ts": pa.array([BASE + m * MINUTE for _u, m in rows], TS),
        }
    )


def _source(paths: str = "mem/events/*.parquet") -> SourceSpec:
    return SourceSpec(
        "events", "event_ts", SOURCE_SCHEMA, paths=paths, created_timestamp="created_ts"
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_compute_over_the_in_memory_reader_equals_the_tables(problem) -> None:
    spine, specs = problem
    reader = InMemorySourceReader()
    stored = _stored(list(specs), reader)
    from_tables = InMemoryAggregator().aggregate_pit_table(spine, specs)
    through_port = InMemoryAggregator(reader).aggregate_pit_table(spine, stored)
    assert_bit_equal(through_port, from_tables, labels=("reader", "tables"))
    reference = reference_pit_table(spine, stored, reader=reader)
    assert_bit_equal(reference, from_tables, labels=("reference", "tables"))
    assert any(call[0] == "read" for call in reader.calls) or not len(specs) or not len(spine)


def test_the_core_asks_the_port_for_its_columns_and_time_range_only() -> None:
    reader = InMemorySourceReader(
        {
            "mem/events/a.parquet": _events([(1, 0, "like", 1.0), (1, 30, "view", 2.0)]),
            "mem/events/b.parquet": _events([(1, 90, "like", 4.0), (2, 100, "like", 8.0)]),
        }
    )
    source = _source()
    likes = AggregationSpec(
        "likes_1h",
        AggFunction.SUM,
        ("user_id",),
        source,
        HOUR,
        column="x",
        filters=FilterDef("action", "like"),
    )
    spine = _spine((1, 120), (2, 121), (1, 200))
    out = InMemoryAggregator(reader).aggregate_pit_table(spine, [likes])
    assert out["likes_1h"].to_pylist() == [4.0, 8.0, None]
    (read,) = [c for c in reader.calls if c[0] == "read"]
    _kind, name, columns, lo, hi = read
    assert name == "events"
    assert set(columns) == {"user_id", "event_ts", "created_ts", "action", "x"}  # not f32, n, flag
    assert lo == BASE + 120 * MINUTE - HOUR  # the earliest probe's window start
    assert hi == BASE + 200 * MINUTE + 1  # just after the last probe
    assert not any(c[0] in ("read_file", "footer") for c in reader.calls)  # no whole files


def test_files_that_store_a_column_differently_are_read_as_one_type() -> None:
    narrow = _events([(1, 0, "like", 1.5)])
    narrow = narrow.set_column(4, "x", narrow["x"].cast(pa.float32()))
    reader = InMemorySourceReader(
        {"mem/events/a.parquet": narrow, "mem/events/b.parquet": _events([(1, 1, "like", 2.25)])}
    )
    spec = AggregationSpec("s", AggFunction.SUM, ("user_id",), _source(), HOUR, column="x")
    out = InMemoryAggregator(reader).aggregate_pit_table(_spine((1, 10)), [spec])
    assert out["s"].to_pylist() == [3.75]


def test_a_bad_stored_column_is_refused_naming_the_file() -> None:
    bad = _events([(1, 0, "like", 1.0)])
    bad = bad.set_column(4, "x", bad["x"].cast(pa.string()))
    reader = InMemorySourceReader({"mem/events/a.parquet": bad})
    spec = AggregationSpec("s", AggFunction.SUM, ("user_id",), _source(), HOUR, column="x")
    with pytest.raises(PitError, match=r"file mem/events/a\.parquet: column 'x'") as info:
        InMemoryAggregator(reader).aggregate_pit_table(_spine((1, 10)), [spec])
    assert info.value.code == "bad_type"


def test_a_source_without_files_is_named() -> None:
    spec = AsOfSpec("last_x", "x", ("user_id",), _source("mem/nothing/*.parquet"))
    with pytest.raises(PitError, match="no parquet files match mem/nothing") as info:
        InMemoryAggregator(InMemorySourceReader()).aggregate_pit_table(_spine((1, 10)), [spec])
    assert info.value.code == "missing_source"


def test_a_table_backed_source_never_reaches_the_reader() -> None:
    reader = InMemorySourceReader()
    source = attrs.evolve(_source(), paths=(), table=_events([(1, 0, "like", 1.0)]))
    table = read_source(source, ["user_id", "event_ts"], None, None, reader=reader)
    assert table.num_rows == 1 and reader.calls == []


def test_input_checks_read_footers_and_counts_through_the_port() -> None:
    good = _events([(1, 0, "like", 1.0), (2, 1, "like", None)])
    with_null_key = _events([(1, 2, "like", 1.0), (1, 3, "like", 1.0)])
    with_null_key = with_null_key.set_column(0, "user_id", pa.array([None, 7], pa.int64()))
    reader = InMemorySourceReader(
        {"mem/events/a.parquet": good, "mem/events/b.parquet": with_null_key}
    )
    spine_table = _spine((1, 10), (2, 11))
    reader.put("mem/spine/day.parquet", spine_table)
    spine = SourceSpec("spine", "ts", spine_table.schema, paths="mem/spine/*.parquet")
    source = _source()
    files = {"spine": reader.files(spine), "events": reader.files(source)}
    report = check_inputs(
        spine=spine,
        spine_keys=["user_id"],
        spine_limit=None,
        sources={"events": (source, ["user_id"], 0.5)},
        files=files,
        days=[dt.date(2026, 9, 21)],
        policy=InputPolicy(),
        reader=reader,
    )
    assert report.sources["events"].rows == 4
    assert report.sources["events"].null_key == 1
    assert report.spine.rows == 2
    # A file that cannot be read is a problem of the check, named, before any write.
    reader.broken["mem/events/c.parquet"] = "truncated footer"
    with pytest.raises(PitError, match=r"mem/events/c\.parquet: not a readable parquet file"):
        check_inputs(
            spine=spine,
            spine_keys=["user_id"],
            spine_limit=None,
            sources={"events": (source, ["user_id"], 0.5)},
            files={**files, "events": reader.files(source)},
            days=[dt.date(2026, 9, 21)],
            policy=InputPolicy(),
            reader=reader,
        )


def test_fingerprints_read_through_the_port() -> None:
    reader = InMemorySourceReader({"mem/events/a.parquet": _events([(1, 0, "like", 1.0)])})
    files = ["mem/events/a.parquet"]
    before = source_fingerprints(files, "event_ts", threads=1, reader=reader).files[0]
    again = source_fingerprints(files, "event_ts", threads=1, reader=reader).files[0]
    assert before.digests() == again.digests()
    reader.put("mem/events/a.parquet", _events([(1, 0, "like", 2.0)]))
    after = source_fingerprints(files, "event_ts", threads=1, reader=reader).files[0]
    assert after.digests() != before.digests()
    reader.broken["mem/events/a.parquet"] = "gone"
    with pytest.raises(PitError, match=r"input file mem/events/a\.parquet: gone"):
        source_fingerprints(files, "event_ts", threads=1, reader=reader)


def test_the_default_reader_is_the_composition_roots_parquet_reader() -> None:
    reader = default_source_reader()
    assert isinstance(reader, SourceReaderPort)
    assert type(reader).__name__ == "ParquetSourceReader"
