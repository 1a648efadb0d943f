"""Inputs are checked before any write: one bad file among good ones is refused with a message
naming the file and the column (exit 6), and what was already written stays byte for byte."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from daedalus.adapters.cli.app import EXIT_CODES, app

from tests.damage import corrupt_column_chunk
from tests.e2e.conftest import copy_workspace

REPO = Path(__file__).resolve().parents[2]
START, END = "2026-10-02", "2026-10-03"
EVENTS = "data/events/part-2026-10-03.parquet"  # one events file of five
SPINE = "data/impressions/part-2026-10-03.parquet"  # one spine file of five
SERVICE_OUT = Path("out") / "feed_ranking"


def daeda(*tokens: str) -> int:
    return app(list(tokens), result_action="return_value")


@pytest.fixture(scope="module")
def trained(tiny_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace trained on clean inputs: what every failing run must leave untouched."""
    root = copy_workspace(tiny_demo, tmp_path_factory.mktemp("trained") / "demo")
    assert train(root) == 0
    return root


@pytest.fixture
def ws(trained: Path, tmp_path: Path) -> Path:
    return copy_workspace(trained, tmp_path / "demo")


def train(ws: Path, *extra: str) -> int:
    return daeda(
        "pipeline",
        "train",
        "feed_ranking",
        "--workspace",
        str(ws),
        "--start",
        START,
        "--end",
        END,
        "--json",
        *extra,
    )


def rewrite(path: Path, change: Callable[[pa.Table], pa.Table]) -> None:
    pq.write_table(change(pq.read_table(path)), path)


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(".lock")
    }


def null_every(table: pa.Table, column: str, step: int) -> pa.Table:
    """`table` with `column` null in every `step`-th row."""
    col = table[column].combine_chunks()
    mask = pa.array([i % step == 0 for i in range(len(col))])
    nulled = pc.if_else(mask, pa.scalar(None, col.type), col)
    return table.set_column(table.schema.get_field_index(column), column, nulled)


def day_tables(ws: Path) -> dict[str, pa.Table]:
    out = ws / SERVICE_OUT
    return {
        d.name: pa.concat_tables(pq.read_table(p) for p in sorted(d.glob("part-*.parquet")))
        for d in sorted(out.glob("dt=*"))
    }


REFUSED = [
    pytest.param(
        EVENTS,
        lambda t: t.drop_columns(["action"]),
        ["part-2026-10-03.parquet", "'action'", "missing"],
        id="events-column-dropped",
    ),
    pytest.param(
        EVENTS,
        lambda t: t.drop_columns(["event_ts"]),
        ["part-2026-10-03.parquet", "'event_ts'", "missing"],
        id="events-timestamp-dropped",
    ),
    pytest.param(
        EVENTS,
        lambda t: t.set_column(3, "dwell_ms", pc.cast(t["dwell_ms"], pa.string())),
        ["part-2026-10-03.parquet", "'dwell_ms'", "string", "DOUBLE"],
        id="double-stored-as-strings",
    ),
    pytest.param(
        EVENTS,
        lambda t: t.set_column(4, "event_ts", pc.cast(t["event_ts"], pa.string())),
        ["part-2026-10-03.parquet", "'event_ts'", "string", "not a timestamp"],
        id="timestamp-stored-as-strings",
    ),
    pytest.param(
        EVENTS,
        lambda t: t.set_column(4, "event_ts", pc.cast(t["event_ts"], pa.timestamp("us"))),
        ["part-2026-10-03.parquet", "'event_ts'", "tz-naive"],
        id="events-tz-naive",
    ),
    pytest.param(
        EVENTS,
        lambda t: null_every(t, "event_ts", 10),
        ["user_activity", "null timestamp", "limit of 1.00%", "--max-invalid-fraction"],
        id="events-10pct-null-time",
    ),
    pytest.param(
        EVENTS,
        lambda t: null_every(t, "user_id", 10),
        ["user_activity", "null key", "limit of 1.00%"],
        id="events-10pct-null-key",
    ),
    pytest.param(
        SPINE,
        lambda t: null_every(t, "ts", 10),
        ["spine", "null timestamp", "limit of 1.00%"],
        id="spine-10pct-null-time",
    ),
    pytest.param(
        SPINE,
        lambda t: null_every(t, "user_id", 50),
        ["spine", "null entity key", "user_id"],
        id="spine-null-key",
    ),
    pytest.param(
        SPINE,
        lambda t: t.drop_columns(["clicked"]),
        ["impressions/part-2026-10-03.parquet", "'clicked'", "missing"],
        id="spine-label-dropped",
    ),
    pytest.param(
        "data/impressions/part-2026-10-02.parquet",
        lambda t: pa.table({"garbage": [1, 2, 3]}),
        ["part-2026-10-02.parquet", "'user_id'", "missing"],
        id="spine-unrelated-file",
    ),
]


class TestOneBadFileAmongGoodOnes:
    @pytest.mark.parametrize(("relpath", "change", "words"), REFUSED)
    def test_is_refused_before_any_write_naming_file_and_column(
        self,
        ws: Path,
        relpath: str,
        change: Callable[[pa.Table], pa.Table],
        words: list[str],
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        before = snapshot(ws / SERVICE_OUT)
        rewrite(ws / relpath, change)
        capsys.readouterr()
        assert train(ws, "--force") == EXIT_CODES["invalid_input"]
        captured = capsys.readouterr()
        error = json.loads(captured.out)["error"]
        assert error["kind"] == "invalid_input"
        for word in words:
            assert word in error["message"], (word, error["message"])
        assert "Traceback" not in captured.err and "Arrow" not in error["message"]
        assert snapshot(ws / SERVICE_OUT) == before

    def test_a_file_that_is_not_parquet_is_named(
        self, ws: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        (ws / "data" / "events" / "part-2026-10-09.parquet").write_bytes(b"PAR1 not really")
        capsys.readouterr()
        assert train(ws, "--force") == EXIT_CODES["invalid_input"]
        message = json.loads(capsys.readouterr().out)["error"]["message"]
        assert "part-2026-10-09.parquet: not a readable parquet file" in message

    def test_a_spine_value_that_cannot_be_decoded_is_named_before_any_write(
        self, ws: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        before = snapshot(ws / SERVICE_OUT)
        corrupt_column_chunk(ws / SPINE, "clicked")
        capsys.readouterr()
        assert train(ws, "--force") == EXIT_CODES["invalid_input"]
        message = json.loads(capsys.readouterr().out)["error"]["message"]
        assert f"{ws / SPINE}, row group 0, column 'clicked'" in message
        assert snapshot(ws / SERVICE_OUT) == before

    def test_a_source_value_that_cannot_be_decoded_is_named_before_any_write(
        self, ws: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        # Every input file is read once to fingerprint what each day can see: a page that
        # cannot be decoded is found there, before any day is touched.
        before = snapshot(ws / SERVICE_OUT)
        corrupt_column_chunk(ws / EVENTS, "dwell_ms")
        capsys.readouterr()
        assert train(ws, "--force") == EXIT_CODES["invalid_input"]
        message = json.loads(capsys.readouterr().out)["error"]["message"]
        assert f"{ws / EVENTS}, row group 0, column 'dwell_ms'" in message
        assert snapshot(ws / SERVICE_OUT) == before

    def test_every_bad_file_is_listed_at_once(
        self, ws: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        rewrite(ws / EVENTS, lambda t: t.drop_columns(["action"]))
        rewrite(ws / SPINE, lambda t: t.drop_columns(["clicked"]))
        capsys.readouterr()
        assert train(ws, "--force") == EXIT_CODES["invalid_input"]
        message = json.loads(capsys.readouterr().out)["error"]["message"]
        assert "2 problems" in message and "'action'" in message and "'clicked'" in message


class TestRowsThatCannotTakePart:
    def test_null_event_times_under_a_raised_limit_are_counted_and_left_out(
        self, ws: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        rewrite(ws / EVENTS, lambda t: null_every(t, "event_ts", 10))
        nulls = pq.read_table(ws / EVENTS)["event_ts"].null_count
        capsys.readouterr()
        assert train(ws, "--force", "--max-invalid-fraction", "0.05") == 0
        summary = json.loads(capsys.readouterr().out)
        counts = summary["inputs"]["sources"]["user_activity"]
        assert counts["null_timestamp"] == nulls and counts["unusable"] == nulls
        assert any("null timestamp" in w for w in summary["warnings"])
        manifest = json.loads((ws / SERVICE_OUT / f"dt={END}" / "_manifest.json").read_text())
        assert manifest["inputs"]["sources"]["user_activity"]["null_timestamp"] == nulls
        # The oracle: the same run on the files with those rows removed gives the same rows.
        oracle = tmp_path / "oracle"
        shutil.copytree(ws, oracle)
        shutil.rmtree(oracle / "out")
        rewrite(oracle / EVENTS, lambda t: t.filter(pc.is_valid(t["event_ts"])))
        assert train(oracle) == 0
        assert day_tables(ws) == day_tables(oracle)

    def test_a_limit_set_in_the_definition_is_used(
        self, ws: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        rewrite(ws / EVENTS, lambda t: null_every(t, "user_id", 10))
        for view in (ws / "feature_views").glob("*.yaml"):  # every view over the event log
            view.write_text(
                view.read_text().replace(
                    "  path: data/events/*.parquet\n",
                    "  path: data/events/*.parquet\n  max_invalid_fraction: 0.2\n",
                )
            )
        capsys.readouterr()
        assert train(ws, "--force") == 0
        counts = json.loads(capsys.readouterr().out)["inputs"]["sources"]["user_activity"]
        assert counts["null_key"] > 0 and counts["limit"] == 0.2

    def test_duplicate_spine_rows_are_an_error_unless_allowed(
        self, ws: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        shutil.copy(ws / SPINE, ws / "data" / "impressions" / "part-2026-10-03-copy.parquet")
        rows = pq.read_metadata(ws / SPINE).num_rows
        before = snapshot(ws / SERVICE_OUT)
        capsys.readouterr()
        assert train(ws, "--force") == EXIT_CODES["invalid_input"]
        message = json.loads(capsys.readouterr().out)["error"]["message"]
        assert f"{rows:,} row(s) repeat" in message and "--allow-duplicate-spine-rows" in message
        assert snapshot(ws / SERVICE_OUT) == before
        assert train(ws, "--force", "--allow-duplicate-spine-rows") == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["inputs"]["spine"]["duplicate_rows"] == rows
        manifest = json.loads((ws / SERVICE_OUT / f"dt={END}" / "_manifest.json").read_text())
        assert manifest["inputs"]["spine_duplicate_rows"] == rows

    def test_a_narrower_integer_file_is_read_losslessly(
        self, ws: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        clean = day_tables(ws)
        rewrite(
            ws / EVENTS, lambda t: t.set_column(0, "user_id", pc.cast(t["user_id"], pa.int32()))
        )
        capsys.readouterr()
        assert train(ws, "--force") == 0
        assert day_tables(ws) == clean


class TestBadArguments:
    def test_a_fraction_outside_zero_to_one_is_a_usage_error(
        self, ws: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        before = snapshot(ws / SERVICE_OUT)
        capsys.readouterr()
        assert train(ws, "--max-invalid-fraction", "1.5") == EXIT_CODES["invalid_argument"]
        error = json.loads(capsys.readouterr().out)["error"]
        assert "max_invalid_fraction" in error["message"]
        assert snapshot(ws / SERVICE_OUT) == before
