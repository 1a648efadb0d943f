"""The `daeda catalog …` and `daeda service schema` commands, driven through cyclopts itself."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from daedalus.adapters.cli.app import EXIT_CODES, app

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

SHIPPED_VIEWS = {
    "artwork_metadata",
    "artwork_popularity",
    "user_activity",
    "user_artwork_engagement",
    "user_profile",
}


@pytest.fixture(autouse=True)
def _in_the_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from the repo root with no DAEDA_* overrides, so `feature_views` is the catalog."""
    for var in ("DAEDA_CATALOG", "DAEDA_WORKSPACE", "DAEDA_OUT", "DAEDA_ENGINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("COLUMNS", "200")  # rich tables: no wrapped or truncated cells
    monkeypatch.chdir(REPO)


def daeda(*tokens: str) -> int:
    """Run the CLI in-process and return the command's exit code."""
    return app(list(tokens), result_action="return_value")


# --------------------------------------------------------------------------- catalog list / show


def test_catalog_list_json_names_every_view_service_store_and_entity(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert daeda("catalog", "list", "--json") == 0
    out = capsys.readouterr()
    data = json.loads(out.out)
    assert {v["name"] for v in data["views"]} == SHIPPED_VIEWS
    assert [s["name"] for s in data["services"]] == ["feed_ranking"]
    assert data["services"][0]["embeddings"] == 2
    assert [s["name"] for s in data["stores"]] == ["artwork_embeddings"]
    assert data["stores"][0]["dim"] == 64
    assert {"name": "user", "join_keys": ["user_id"], "type": "BIGINT"} in data["entities"]
    assert Path(data["catalog_dir"]) == REPO / "feature_views"
    assert out.err == ""


def test_catalog_list_human_prints_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert daeda("catalog", "list") == 0
    out = capsys.readouterr().out
    for title in ("Entities", "Feature views", "Feature services", "Embedding stores"):
        assert title in out
    for name in SHIPPED_VIEWS | {"feed_ranking", "artwork_embeddings"}:
        assert name in out


def test_catalog_show_a_view_prints_its_definition_and_output_types(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert daeda("catalog", "show", "user_activity", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["kind"] == "feature_view"
    path = REPO / "feature_views" / "user_activity.yaml"
    first_key = next(
        i for i, line in enumerate(path.read_text().splitlines(), 1) if line.startswith("kind:")
    )
    assert data["location"] == f"{path}:{first_key}:1"
    assert data["definition"]["name"] == "user_activity"
    assert data["definition"]["entity"] == "user"
    outputs = {o["name"]: o["type"] for o in data["outputs"]}
    assert outputs["user_views_1h"] == "BIGINT"
    assert outputs["user_mean_dwell_7d"] == "DOUBLE"
    assert outputs["user_recent_artworks"] == "BIGINT[]"

    assert daeda("catalog", "show", "user_activity") == 0
    human = capsys.readouterr().out
    assert "feature_view user_activity" in human
    assert "name: user_activity" in human  # the YAML definition
    assert "user_recent_artworks" in human and "BIGINT[]" in human


def test_catalog_show_a_service_prints_its_schema_and_hashes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert daeda("catalog", "show", "feed_ranking", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["kind"] == "feature_service"
    assert data["definition"]["spine"]["entity"] == ["user", "artwork"]
    assert [c["name"] for c in data["schema"][:4]] == ["user_id", "artwork_id", "ts", "clicked"]
    assert re.fullmatch(r"[0-9a-f]{64}", data["contract_hash"])
    assert re.fullmatch(r"[0-9a-f]{64}", data["definition_hash"])

    assert daeda("catalog", "show", "feed_ranking") == 0
    human = capsys.readouterr().out
    assert "feature_service feed_ranking" in human
    assert "Resolved schema" in human
    assert "FLOAT[64]" in human


def test_catalog_show_an_unknown_name_exits_4_and_lists_what_is_known(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert daeda("catalog", "show", "nope") == EXIT_CODES["not_found"] == 4
    out = capsys.readouterr()
    assert out.out == ""
    assert "error: unknown view, service, store or entity 'nope'" in out.err
    assert "known: " in out.err and "feed_ranking" in out.err and "user_activity" in out.err


def test_catalog_show_a_near_miss_exits_4_with_a_suggestion(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert daeda("catalog", "show", "user_activty") == 4
    err = capsys.readouterr().err
    assert "unknown view, service, store or entity 'user_activty'" in err
    assert "did you mean user_activity?" in err


def test_catalog_show_unknown_with_json_prints_the_error_as_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert daeda("catalog", "show", "nope", "--json") == 4
    data = json.loads(capsys.readouterr().out)
    assert data["error"]["kind"] == "not_found"
    assert data["error"]["data"]["name"] == "nope"


# --------------------------------------------------------------------------- catalog validate


def test_catalog_validate_the_shipped_catalog_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert daeda("catalog", "validate", "feature_views") == 0
    out = capsys.readouterr()
    assert out.out.startswith("ok: 5 views, 1 services, 1 embedding stores in ")
    assert out.err == ""


BROKEN_VIEW = """\
kind: feature_view
name: clicks
entity: usr
source:
  path: data/events/*.parquet
  timestamp: event_ts
schema:
  user_id: BIGINT
  dwell_ms: BIGIN
  event_ts: TIMESTAMPTZ
aggregations:
  - {name: clicks_1d, function: count, window: 7x}
"""


@pytest.fixture
def broken_dir(tmp_path: Path) -> Path:
    """Three broken files: 1 + 3 + 1 errors."""
    directory = tmp_path.resolve() / "broken"
    directory.mkdir()
    (directory / "a.yaml").write_text("kind: feature_view\nname: x\n  bad: indentation\n")
    (directory / "b.yaml").write_text(BROKEN_VIEW)
    (directory / "c.yaml").write_text(
        BROKEN_VIEW.replace("name: clicks", "name: views")
        .replace("entity: usr", "entity: user")
        .replace("dwell_ms: BIGIN", "dwell_ms: DOUBLE")
        .replace("window: 7x", "window: 1d, filter: {dwel_ms: 1.5}")
    )
    return directory


def test_catalog_validate_a_broken_directory_exits_3_with_one_located_line_per_error(
    broken_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert daeda("catalog", "validate", str(broken_dir)) == EXIT_CODES["invalid_catalog"] == 3
    out = capsys.readouterr()
    assert out.out == ""
    lines = out.err.splitlines()
    assert lines[-1] == f"5 errors in {broken_dir}"
    located = [re.match(r"^(.+?):(\d+):(\d+): (.+)$", line) for line in lines[:-1]]
    assert all(located), lines
    assert [(Path(m[1]).name, int(m[2]), int(m[3])) for m in located if m] == [
        ("a.yaml", 3, 6),
        ("b.yaml", 3, 9),
        ("b.yaml", 9, 13),
        ("b.yaml", 12, 48),
        ("c.yaml", 12, 60),
    ]
    assert "YAML syntax error" in lines[0]
    assert lines[1].endswith("unknown entity 'usr' — did you mean user?")
    assert lines[2].endswith("unknown dtype 'BIGIN' — did you mean BIGINT?")
    assert "bad duration '7x'" in lines[3]
    assert lines[4].endswith("which the schema lacks — did you mean dwell_ms?")
    assert all(line.startswith(str(broken_dir)) for line in lines[:-1])


def test_catalog_validate_json_reports_every_error_as_data(
    broken_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert daeda("catalog", "validate", str(broken_dir), "--json") == 3
    out = capsys.readouterr()
    data = json.loads(out.out)
    assert data["ok"] is False
    assert len(data["errors"]) == 5
    assert set(data["errors"][0]) == {"file", "line", "column", "message", "hint"}
    assert len(out.err.splitlines()) == 6  # the located lines are on stderr in JSON mode too


def test_catalog_list_on_a_broken_catalog_exits_3_and_locates_every_error(
    broken_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert daeda("catalog", "list", "--catalog", str(broken_dir)) == 3
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"error: the catalog in {broken_dir} has 5 error(s)"
    assert len(err) == 6
    assert err[2].startswith(f"{broken_dir / 'b.yaml'}:3:9: unknown entity 'usr'")


# --------------------------------------------------------------------------- service schema


def test_service_schema_prints_a_table_with_the_contract_hash(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert daeda("service", "schema", "feed_ranking") == 0
    out = capsys.readouterr().out
    assert re.search(r"feed_ranking \(contract [0-9a-f]{12}\)", out)
    rows = {m[1]: (m[2], m[3]) for m in re.finditer(r"│ (\w+)\s+│ (\S+)\s+│ (\w+)\s+│", out)}
    assert rows["user_id"] == ("BIGINT", "False")
    assert rows["ts"] == ("TIMESTAMPTZ", "False")
    assert rows["clicked"] == ("BOOLEAN", "True")
    assert rows["user_recent_artworks"] == ("BIGINT[]", "True")
    assert rows["artwork_embedding"] == ("FLOAT[64]", "True")


def test_service_schema_json_is_the_resolved_contract(capsys: pytest.CaptureFixture[str]) -> None:
    assert daeda("service", "schema", "feed_ranking", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["service"] == "feed_ranking"
    assert re.fullmatch(r"[0-9a-f]{64}", data["contract_hash"])
    columns = data["columns"]
    assert columns[:4] == [
        {"name": "user_id", "type": "BIGINT", "nullable": False},
        {"name": "artwork_id", "type": "BIGINT", "nullable": False},
        {"name": "ts", "type": "TIMESTAMPTZ", "nullable": False},
        {"name": "clicked", "type": "BOOLEAN", "nullable": True},
    ]
    assert columns[-1] == {
        "name": "recent_artworks_embedding",
        "type": "FLOAT[64]",
        "nullable": True,
    }
    assert len(columns) == len({c["name"] for c in columns})


def test_service_schema_of_an_unknown_service_exits_4(capsys: pytest.CaptureFixture[str]) -> None:
    assert daeda("service", "schema", "feed_rankng") == 4
    assert "did you mean feed_ranking?" in capsys.readouterr().err


# --------------------------------------------------------------------------- the installed script


def test_the_daeda_script_prints_help_and_exits_0() -> None:
    script = BIN / "daeda"
    assert script.exists(), f"no daeda script next to {sys.executable}"
    result = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=60, check=False, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    assert "catalog" in result.stdout and "service" in result.stdout


def test_building_the_help_does_not_import_heavy_adapter_libraries() -> None:
    code = """
import contextlib, io, json, sys
from daedalus.adapters.cli.app import app
with contextlib.redirect_stdout(io.StringIO()) as out:
    try:
        app(["--help"], result_action="return_value")
        app(["catalog", "--help"], result_action="return_value")
    except SystemExit:
        pass
assert "catalog" in out.getvalue()
heavy = ("ray", "dagster", "lance", "lancedb", "mcp")
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
