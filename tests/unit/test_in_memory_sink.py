"""The in-memory sink behaves as the port promises: one claim at a time, checksummed files."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from daedalus.ports import SinkError
from tests.fakes import InMemorySink

DAY = dt.date(2026, 10, 2)
SCHEMA = pa.schema([("x", pa.int64())])


def commit(sink: InMemorySink, rows: list[int]) -> None:
    staging = sink.begin_day("svc", DAY)
    sink.write_staged(staging, "part-00000.parquet", pa.table({"x": rows}, schema=SCHEMA))
    sink.commit_day("svc", DAY, staging, {"rows": len(rows)}, SCHEMA)


def test_a_second_claim_is_a_conflict_naming_the_holder() -> None:
    sink = InMemorySink()
    with sink.claim("svc", {"job": "a"}):
        assert sink.locked == {"svc"}
        with pytest.raises(SinkError, match="job") as caught, sink.claim("svc", {"job": "b"}):
            pass
        assert caught.value.code == "conflict" and caught.value.data["holder"] == {"job": "a"}
    assert sink.locked == set()
    with sink.claim("svc", {"job": "c"}):
        pass
    assert [h["job"] for _, h in sink.claims] == ["a", "c"]
    with pytest.raises(SinkError, match="belongs to service 'svc'"), sink.claim("other", {}):
        pass


def test_files_are_listed_with_checksums_and_verified() -> None:
    sink = InMemorySink()
    commit(sink, [1, 2, 3])
    manifest = sink.read_manifest("svc", DAY)
    assert manifest is not None
    (entry,) = manifest["files"]
    assert entry["name"] == "part-00000.parquet" and entry["rows"] == 3
    assert sink.verify_day("svc", DAY) == []
    data = bytearray(sink.files[("svc", DAY)]["part-00000.parquet"])
    data[10] ^= 1
    sink.files[("svc", DAY)]["part-00000.parquet"] = bytes(data)
    assert [p["problem"] for p in sink.verify_day("svc", DAY)] == ["checksum"]
    assert [p["problem"] for p in sink.verify_day("svc", DAY + dt.timedelta(1))] == ["missing"]
    staging = sink.begin_day("svc", DAY)
    sink.write_staged(staging, "part-00000.parquet", pa.table({"y": [1]}))
    with pytest.raises(SinkError) as caught:
        sink.commit_day("svc", DAY, staging, {"rows": 1}, SCHEMA)
    assert caught.value.code == "contract"
