"""`daeda audit` checks the whole day against the spine: a tampered part file (a flipped label,
a deleted or duplicated row, another day's rows) fails the audit, through the real CLI on real
parquet files."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.e2e import test_cli_pipeline as cli
from tests.e2e.test_cli_pipeline import DAY, EXIT_CODES, daeda

ws = cli.ws  # fixture: the tiny demo workspace (one per module)
_env = cli._env  # autouse fixture: no DAEDA_* variables leak in

SERVICE = "feed_ranking"
NEXT_DAY = (dt.date.fromisoformat(DAY) + dt.timedelta(days=1)).isoformat()
KEYS = ("user_id", "artwork_id")
LABEL = "clicked"


@pytest.fixture(scope="module")
def trained_out(ws: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DAY and NEXT_DAY trained once into an output root of their own."""
    out = tmp_path_factory.mktemp("audit") / "out"
    code = daeda(
        "pipeline",
        "train",
        SERVICE,
        "--workspace",
        str(ws),
        "--out",
        str(out),
        "--start",
        DAY,
        "--end",
        NEXT_DAY,
        "--engine",
        "polars",
        "--json",
    )
    assert code == 0
    return out


@pytest.fixture
def out(trained_out: Path, tmp_path: Path) -> Path:
    """A private copy of the trained output, for one test to tamper with."""
    return Path(shutil.copytree(trained_out, tmp_path / "out"))


def audit(
    ws: Path, out: Path, capsys: pytest.CaptureFixture[str], day: str = DAY
) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = daeda(
        "audit",
        SERVICE,
        "--workspace",
        str(ws),
        "--out",
        str(out),
        "--day",
        day,
        "--sample",
        "5",
        "--json",
    )
    printed = capsys.readouterr()
    assert printed.out, printed.err
    return code, json.loads(printed.out)


def first_part(out: Path, day: str = DAY) -> tuple[Path, int]:
    """The first part file of `day` that holds rows, and the position of its first row in the
    day (parts are read in name order)."""
    offset = 0
    for part in sorted((out / SERVICE / f"dt={day}").glob("part-*.parquet")):
        rows = pq.read_metadata(part).num_rows
        if rows:
            return part, offset
        offset += rows
    raise AssertionError(f"day {day} has no rows")


def rewrite(part: Path, table: pa.Table) -> None:
    """Write `table` over `part`, keeping the part's schema (with its metadata)."""
    schema = pq.read_schema(part)
    pq.write_table(table.cast(schema), part)


def listed(data: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [d for d in data["row_differences"] if d["kind"] == kind]


def iso(ts: dt.datetime) -> str:
    return ts.isoformat()


class TestAuditRows:
    def test_an_untouched_day_is_ok(
        self, ws: Path, out: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, data = audit(ws, out, capsys)
        assert code == 0, data
        assert data["ok"] and data["row_differences"] == []
        assert data["rows_in_day"] == data["rows_in_manifest"] == data["rows_in_spine"] > 0
        assert data["missing_rows"] == data["extra_rows"] == data["duplicated_rows"] == 0
        assert data["label_differences"] == 0

    def test_a_flipped_label_names_the_column_and_the_row(
        self, ws: Path, out: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        part, offset = first_part(out)
        table = pq.read_table(part)
        row = table.slice(3, 1).to_pylist()[0]
        labels = table[LABEL].to_pylist()
        labels[3] = not labels[3]
        rewrite(part, table.set_column(table.schema.get_field_index(LABEL), LABEL, [labels]))

        code, data = audit(ws, out, capsys)
        assert code == EXIT_CODES["audit_failed"]
        assert not data["ok"]
        assert data["label_differences"] == 1
        assert data["missing_rows"] == data["extra_rows"] == data["duplicated_rows"] == 0
        [diff] = listed(data, "label")
        assert diff["column"] == LABEL and diff["row"] == offset + 3
        assert diff["keys"] == {k: row[k] for k in KEYS}
        assert diff["timestamp"] == iso(row["ts"]) and "T" in diff["timestamp"]
        assert diff["written"] is (not row[LABEL]) and diff["expected"] is row[LABEL]
        assert listed(data, "missing") == listed(data, "extra") == []

    def test_a_deleted_row_is_missing(
        self, ws: Path, out: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        part, _ = first_part(out)
        table = pq.read_table(part)
        row = table.slice(0, 1).to_pylist()[0]
        rewrite(part, table.slice(1))

        code, data = audit(ws, out, capsys)
        assert code == EXIT_CODES["audit_failed"]
        assert data["missing_rows"] == 1
        assert data["extra_rows"] == data["duplicated_rows"] == data["label_differences"] == 0
        [diff] = listed(data, "missing")
        assert diff["keys"] == {k: row[k] for k in KEYS}
        assert diff["timestamp"] == iso(row["ts"])
        assert diff["labels"] == {LABEL: row[LABEL]}
        [count] = listed(data, "row_count")
        assert count["written"] == data["rows_in_day"] == data["rows_in_spine"] - 1
        assert count["manifest"] == count["spine"] == data["rows_in_spine"]

    def test_a_duplicated_row_is_reported(
        self, ws: Path, out: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        part, offset = first_part(out)
        table = pq.read_table(part)
        row = table.slice(2, 1).to_pylist()[0]
        rewrite(part, pa.concat_tables([table, table.slice(2, 1)]))

        code, data = audit(ws, out, capsys)
        assert code == EXIT_CODES["audit_failed"]
        assert data["duplicated_rows"] == 1
        assert data["missing_rows"] == data["extra_rows"] == data["label_differences"] == 0
        [diff] = listed(data, "duplicated")
        assert diff["keys"] == {k: row[k] for k in KEYS}
        assert diff["timestamp"] == iso(row["ts"])
        assert diff["written_times"] == 2 and diff["expected_times"] == 1
        assert diff["rows"] == [offset + 2, offset + table.num_rows]
        assert data["rows_in_day"] == data["rows_in_spine"] + 1

    def test_another_days_part_gives_extra_and_missing_rows(
        self, ws: Path, out: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        day_dir, next_dir = out / SERVICE / f"dt={DAY}", out / SERVICE / f"dt={NEXT_DAY}"
        for part in day_dir.glob("part-*.parquet"):
            part.unlink()
        for part in next_dir.glob("part-*.parquet"):
            shutil.copy2(part, day_dir / part.name)
        next_rows = pq.read_table(sorted(next_dir.glob("part-*.parquet"))).num_rows

        code, data = audit(ws, out, capsys)
        assert code == EXIT_CODES["audit_failed"]
        assert data["extra_rows"] == data["rows_in_day"] == next_rows
        assert data["missing_rows"] == data["rows_in_spine"] > 0
        extra = listed(data, "extra")
        assert 0 < len(extra) <= 50
        assert all(d["timestamp"].startswith(f"{NEXT_DAY}T") for d in extra)
        missing = listed(data, "missing")
        assert 0 < len(missing) <= 50
        assert all(d["timestamp"].startswith(f"{DAY}T") for d in missing)
        assert listed(data, "row_count")
        json.dumps(data)  # JSON-ready

    def test_the_other_day_is_still_ok(
        self, ws: Path, out: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, data = audit(ws, out, capsys, NEXT_DAY)
        assert code == 0, data
        assert data["ok"]
