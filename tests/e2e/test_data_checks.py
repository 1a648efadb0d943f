"""`daeda catalog validate --with-data`: the catalog checked against the workspace's files
without training — every file against its declared schema, every filter value against the
values that occur — with located output and exit 3 on any problem, 0 when clean."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from daedalus.adapters.cli.app import EXIT_CODES, app

VIEW = """\
# a small catalog over three event files
kind: feature_view
name: activity
entity: user
source: {path: data/events/*.parquet, timestamp: event_ts}
schema: {user_id: BIGINT, action: VARCHAR, dwell_ms: DOUBLE, event_ts: TIMESTAMPTZ}
aggregations:
  - {name: likes_7d, function: count, window: 7d, filter: {action: %(likes)s}}
  - {name: views_1d, function: count, window: 1d, filter: {action: [view, %(share)s]}}
  - {name: dwell_1d, function: mean, column: dwell_ms, window: 1d}
---
kind: feature_service
name: ranking
spine: {path: data/spine/*.parquet, timestamp: ts, entity: user, labels: {clicked: BOOLEAN}}
features: [activity:*]
"""

UTC = dt.UTC


def daeda(*tokens: str) -> int:
    return app(list(tokens), result_action="return_value")


def _events(day: int, *, dwell_as_text: bool = False, naive: bool = False) -> pa.Table:
    tz = None if naive else "UTC"
    times = [dt.datetime(2026, 10, day, h, tzinfo=None if naive else UTC) for h in (1, 2, 3, 4)]
    dwell = [100.0, 250.5, None, 75.0]
    return pa.table(
        {
            "user_id": pa.array([1, 2, 1, 3], pa.int64()),
            "action": pa.array(["view", "like", "view", "bookmark"]),
            "dwell_ms": pa.array([str(d) for d in dwell]) if dwell_as_text else pa.array(dwell),
            "event_ts": pa.array(times, pa.timestamp("us", tz=tz)),
        }
    )


def workspace(
    root: Path,
    *,
    likes: str = "like",
    share: str = "view",
    third_dwell_as_text: bool = False,
    naive_spine: bool = False,
) -> Path:
    (root / "feature_views").mkdir(parents=True)
    (root / "feature_views" / "activity.yaml").write_text(VIEW % {"likes": likes, "share": share})
    events = root / "data" / "events"
    events.mkdir(parents=True)
    for i, day in enumerate((1, 2, 3), start=1):
        table = _events(day, dwell_as_text=third_dwell_as_text and i == 3)
        pq.write_table(table, events / f"part-{i}.parquet")
    spine = root / "data" / "spine"
    spine.mkdir(parents=True)
    tz = None if naive_spine else "UTC"
    pq.write_table(
        pa.table(
            {
                "user_id": pa.array([1, 2], pa.int64()),
                "ts": pa.array(
                    [dt.datetime(2026, 10, 3, 12), dt.datetime(2026, 10, 3, 13)],
                    pa.timestamp("us", tz=tz),
                ),
                "clicked": pa.array([True, False]),
            }
        ),
        spine / "part-0.parquet",
    )
    return root


def check(ws: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict, str]:
    capsys.readouterr()
    code = daeda("catalog", "validate", "--with-data", "--workspace", str(ws), "--json")
    out = capsys.readouterr()
    return code, json.loads(out.out), out.err


def position(path: Path, line_text: str, word: str) -> tuple[int, int]:
    """1-based line and column of `word` on the first line containing `line_text`."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line_text in line:
            return number, line.index(word, line.index("filter")) + 1
    raise AssertionError(f"{line_text!r} not in {path}")


def test_a_clean_workspace_passes_with_exit_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = workspace(tmp_path / "ws")
    code, data, _err = check(ws, capsys)
    assert code == 0
    assert data["ok"] is True
    assert data["data"]["ok"] is True
    assert data["data"]["problems"] == []
    assert data["data"]["files_checked"] == 4  # three event files and the spine
    assert data["data"]["filter_values_checked"] == 3
    capsys.readouterr()
    assert daeda("catalog", "validate", "--with-data", "--workspace", str(ws)) == 0
    assert "ok: 4 file(s) of 2 source(s)" in capsys.readouterr().out


def test_a_wrong_type_in_the_third_of_three_files_is_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = workspace(tmp_path / "ws", third_dwell_as_text=True)
    code, data, err = check(ws, capsys)
    assert code == EXIT_CODES["invalid_catalog"] == 3
    problems = data["data"]["problems"]
    assert len(problems) == 1, problems
    (p,) = problems
    assert p["kind"] == "type"
    assert Path(p["file"]) == ws / "data" / "events" / "part-3.parquet"
    assert p["column"] == "dwell_ms"
    assert p["declared"] == "DOUBLE"
    assert p["found"] == "string"
    assert p["sources"] == ["activity"]
    # located on stderr: the file, the column and both types
    assert "part-3.parquet: column 'dwell_ms' is string, but the definition declares DOUBLE" in err
    assert "part-1.parquet" not in err and "part-2.parquet" not in err


def test_a_filter_value_that_never_occurs_is_located_with_the_closest_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = workspace(tmp_path / "ws", likes="likes", share="share")
    code, data, err = check(ws, capsys)
    assert code == 3
    problems = {p["value"]: p for p in data["data"]["problems"]}
    assert set(problems) == {"likes", "share"}
    likes = problems["likes"]
    assert likes["kind"] == "filter_value"
    assert likes["column"] == "action"
    assert likes["view"] == "activity" and likes["aggregation"] == "likes_7d"
    assert likes["suggestions"][0] == "like"
    yaml_file = ws / "feature_views" / "activity.yaml"
    line, col = position(yaml_file, "likes_7d", "likes")
    assert likes["location"] == f"{yaml_file}:{line}:{col}"
    # a value inside a list is located at its own item
    line, col = position(yaml_file, "views_1d", "share")
    assert problems["share"]["location"] == f"{yaml_file}:{line}:{col}"
    # the human output: file:line:column, what never occurs, what occurs, did you mean
    capsys.readouterr()
    assert daeda("catalog", "validate", "--with-data", "--workspace", str(ws)) == 3
    err = capsys.readouterr().err
    located = f"{yaml_file}:{position(yaml_file, 'likes_7d', 'likes')[0]}:"
    assert located in err
    assert "filter value 'likes' of 'action'" in err
    assert "bookmark, like, view" in err
    assert "did you mean 'like'?" in err
    assert "2 problems in the data of" in err


def test_tz_naive_timestamps_are_reported_with_the_file_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = workspace(tmp_path / "ws", naive_spine=True)
    code, data, _err = check(ws, capsys)
    assert code == 3
    (p,) = data["data"]["problems"]
    assert p["kind"] == "time_zone"
    assert p["column"] == "ts"
    assert p["file"].endswith("spine/part-0.parquet")
    assert p["sources"] == ["spine of ranking"]


def test_a_source_without_files_is_a_problem_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = workspace(tmp_path / "ws")
    for f in (ws / "data" / "spine").iterdir():
        f.unlink()
    code, data, _err = check(ws, capsys)
    assert code == 3
    (p,) = data["data"]["problems"]
    assert p["kind"] == "no_files"
    assert "no parquet files match" in p["message"]


def test_the_use_case_answers_through_the_application(tmp_path: Path) -> None:
    from daedalus.app.settings import Settings
    from daedalus.container import build_container

    ws = workspace(tmp_path / "ws", likes="likes")
    application = build_container(Settings.from_env(workspace=ws)).application()
    data = application.call("catalog_validate_data", {})
    assert data["ok"] is False
    assert [p["value"] for p in data["problems"]] == ["likes"]
    json.dumps(data)  # JSON-ready for every surface
