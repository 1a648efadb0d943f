"""A trained day is stale only when something it can see changed, end to end on the CLI:
(a) a new file of later rows, (b) rows of one day changed in an old file, (c) a file rewritten
with the same rows or touched, (d) a definition changed; `status` says why, `--dry-run` says
what a run would do and writes nothing."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from daedalus.adapters.cli.app import app

from tests.e2e.conftest import copy_workspace

REPO = Path(__file__).resolve().parents[2]
START, END = "2026-10-01", "2026-10-03"
TRAINED = ["2026-10-01", "2026-10-02", "2026-10-03"]


def daeda(*tokens: str) -> int:
    return app(list(tokens), result_action="return_value")


@pytest.fixture(scope="module")
def trained(tiny_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = copy_workspace(tiny_demo, tmp_path_factory.mktemp("stale") / "demo")
    assert daeda(*train_args(root)) == 0
    return root


@pytest.fixture
def ws(trained: Path, tmp_path: Path) -> Path:
    return copy_workspace(trained, tmp_path / "demo")


def train_args(ws: Path, *extra: str, end: str = END) -> list[str]:
    return [
        "pipeline", "train", "feed_ranking", "--workspace", str(ws),
        "--start", START, "--end", end, "--json", *extra,
    ]  # fmt: skip


def status(ws: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    capsys.readouterr()
    assert daeda("pipeline", "status", "feed_ranking", "--workspace", str(ws), "--json") == 0
    return json.loads(capsys.readouterr().out)


def stale_days(ws: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, list[str]]:
    return {d["day"]: d["why"] for d in status(ws, capsys)["days"] if not d["current"]}


def retrain(ws: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    capsys.readouterr()
    assert daeda(*train_args(ws)) == 0
    return json.loads(capsys.readouterr().out)


def written(summary: dict) -> list[str]:
    return [d["day"] for d in summary["days"] if d["status"] != "skipped"]


def test_a_new_file_of_later_rows_makes_no_trained_day_stale(
    ws: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = ws / "data" / "events"
    table = pq.read_table(events / "part-2026-10-05.parquet")
    later = pc.add(table["event_ts"], pa.scalar(dt.timedelta(days=4)))
    pq.write_table(table.set_column(4, "event_ts", later), events / "part-2026-10-09.parquet")
    assert stale_days(ws, capsys) == {}
    assert written(retrain(ws, capsys)) == []


def test_changed_rows_of_one_day_make_stale_exactly_the_days_that_see_them(
    ws: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = ws / "data" / "events" / "part-2026-10-02.parquet"
    table = pq.read_table(path)
    pq.write_table(table.set_column(3, "dwell_ms", pc.multiply(table["dwell_ms"], 2.0)), path)
    stale = stale_days(ws, capsys)
    # 2026-10-01 cannot see rows of 10-02; 10-02 and 10-03 can (lifetime windows among them).
    assert sorted(stale) == ["2026-10-02", "2026-10-03"]
    assert any(
        "inputs of user_activity changed (rows visible to 2026-10-03" in why
        for why in stale["2026-10-03"]
    )
    assert written(retrain(ws, capsys)) == ["2026-10-02", "2026-10-03"]
    assert stale_days(ws, capsys) == {}


def test_a_file_rewritten_with_the_same_rows_or_touched_makes_nothing_stale(
    ws: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = ws / "data" / "events" / "part-2026-10-02.parquet"
    pq.write_table(pq.read_table(path), path, compression="snappy", row_group_size=100)
    os.utime(ws / "data" / "impressions" / "part-2026-10-01.parquet")
    assert daeda("demo", "init", str(ws), "--scale", "tiny") == 0  # a complete demo: unchanged
    assert stale_days(ws, capsys) == {}
    assert written(retrain(ws, capsys)) == []


def test_a_changed_definition_makes_every_day_of_its_services_stale(
    ws: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    view = ws / "feature_views" / "artwork_popularity.yaml"
    view.write_text(
        view.read_text().replace(
            "window: 7d, filter: {action: like}", "window: 6d, filter: {action: like}"
        )
    )
    stale = stale_days(ws, capsys)
    assert sorted(stale) == TRAINED
    assert all(
        "the definitions the service uses changed" in why
        and "the contract (resolved schema) changed" not in why
        for why in stale.values()
    )


def test_status_lists_the_spine_days_not_written(
    ws: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert status(ws, capsys)["missing"] == ["2026-10-04", "2026-10-05"]


def test_dry_run_says_what_a_run_would_do_and_writes_nothing(
    ws: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = ws / "data" / "events" / "part-2026-10-03.parquet"
    table = pq.read_table(path)
    pq.write_table(table.set_column(3, "dwell_ms", pc.add(table["dwell_ms"], 1.0)), path)
    before = {
        str(p.relative_to(ws)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(ws.rglob("*"))
        if p.is_file()
    }
    capsys.readouterr()
    assert daeda(*train_args(ws, "--dry-run", end="2026-10-04")) == 0
    plan = json.loads(capsys.readouterr().out)
    actions = {d["day"]: d["action"] for d in plan["days"]}
    assert actions == {
        "2026-10-01": "skip",
        "2026-10-02": "skip",
        "2026-10-03": "compute",
        "2026-10-04": "compute",
    }
    why = {d["day"]: d["why"] for d in plan["days"]}
    assert why["2026-10-04"] == ["not trained yet"] and why["2026-10-01"] == ["current"]
    assert plan["batches"] == [
        {"days": ["2026-10-03", "2026-10-04"], "rows": plan["batches"][0]["rows"]}
    ]
    after = {
        str(p.relative_to(ws)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(ws.rglob("*"))
        if p.is_file()
    }
    assert after == before
    human = [a for a in train_args(ws, "--dry-run") if a != "--json"]
    assert daeda(*human) == 0
    out = capsys.readouterr().out
    assert "2026-10-03  compute  inputs of " in out
    assert "would compute 1 day(s) in 1 batch(es), skip 2; nothing written" in out
