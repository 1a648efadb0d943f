"""`daeda catalog plan`: what a catalog change does to a trained service, without training —
the contract diff against the last written day (a renamed, an added, a retyped feature), the
features it redefines, and which written days become stale and why; exit 9 on a contract
break, 0 otherwise."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from daedalus.adapters.cli.app import EXIT_CODES, app

REPO = Path(__file__).resolve().parents[2]
DAYS = ["2026-10-01", "2026-10-02", "2026-10-03"]
LIKES_1D = "{name: user_likes_1d, function: count, window: 1d, filter: {action: like}}"
LIKES_7D = "{name: user_likes_7d, function: count, window: 7d, filter: {action: like}}"
MAX_DWELL = "{name: user_max_dwell_7d, function: max, column: dwell_ms, window: 7d"


def daeda(*tokens: str) -> int:
    return app(list(tokens), result_action="return_value")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("plan") / "demo"
    assert daeda("demo", "init", str(root), "--scale", "tiny") == 0
    shutil.copytree(REPO / "feature_views", root / "feature_views")
    args = ["pipeline", "train", "feed_ranking", "--workspace", str(root)]
    assert daeda(*args, "--start", DAYS[0], "--end", DAYS[-1]) == 0
    return root


@pytest.fixture
def ws(trained: Path, tmp_path: Path) -> Path:
    root = tmp_path / "demo"
    shutil.copytree(trained, root)
    return root


def edit(ws: Path, old: str, new: str) -> None:
    path = ws / "feature_views" / "user_activity.yaml"
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))


def plan(ws: Path, capsys: pytest.CaptureFixture[str], code: int = 0) -> dict:
    capsys.readouterr()
    assert daeda("catalog", "plan", "--workspace", str(ws), "--json") == code
    data = json.loads(capsys.readouterr().out)
    (service,) = data["services"]
    assert service["service"] == "feed_ranking"
    return service


def stale_reasons(service: dict) -> dict[str, list[str]]:
    return {r["reason"]: r["days"] for r in service["stale"]["reasons"]}


def test_an_unchanged_catalog_plans_nothing(ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    service = plan(ws, capsys)
    assert service["state"] == "unchanged"
    assert service["contract"]["changed"] is False
    assert service["definition_changed"] is False
    assert service["stale"] == {"stale": 0, "current": 3, "reasons": []}
    assert service["trained"]["contract_hash"] == service["contract_hash"]
    capsys.readouterr()
    assert daeda("catalog", "plan", "--workspace", str(ws)) == 0
    out = capsys.readouterr().out
    assert "feed_ranking: unchanged" in out
    assert "all 3 written day(s) stay current" in out
    assert "no contract break" in out


def test_a_renamed_feature_is_a_contract_break(
    ws: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(ws, LIKES_1D, LIKES_1D.replace("user_likes_1d", "user_likes_24h"))
    service = plan(ws, capsys, EXIT_CODES["audit_failed"])
    contract = service["contract"]
    assert service["state"] == "contract break"
    assert contract["breaking"] is True
    assert [c["name"] for c in contract["removed"]] == ["user_likes_1d"]
    assert [(c["name"], c["type"]) for c in contract["added"]] == [("user_likes_24h", "BIGINT")]
    assert contract["added"][0]["position"] == contract["removed"][0]["position"]
    assert contract["renamed"] == [
        {"from": "user_likes_1d", "to": "user_likes_24h", "type": "BIGINT"}
    ]
    assert contract["retyped"] == [] and contract["reordered"] == []
    reasons = stale_reasons(service)
    assert reasons["the contract (resolved schema) changed"] == DAYS
    assert reasons["the definitions the service uses changed"] == DAYS
    assert service["stale"]["stale"] == 3
    # the human plan: what goes, what comes, and the exit code for CI
    capsys.readouterr()
    assert daeda("catalog", "plan", "--workspace", str(ws)) == 9
    out = capsys.readouterr().out
    assert "feed_ranking: contract break" in out
    assert "- removed  user_likes_1d BIGINT" in out
    assert "+ added    user_likes_24h BIGINT" in out
    assert "? renamed  user_likes_1d → user_likes_24h?" in out
    assert "3 of 3 written day(s) become stale" in out
    assert "contract break in: feed_ranking" in out


def test_an_added_feature_changes_the_contract_without_breaking_it(
    ws: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    added = "{name: user_likes_30d, function: count, window: 30d, filter: {action: like}}"
    edit(ws, LIKES_7D, f"{LIKES_7D}\n  - {added}")
    service = plan(ws, capsys)  # exit 0: nothing a reader by name relies on is gone
    contract = service["contract"]
    assert service["state"] == "contract change"
    assert contract["changed"] is True and contract["breaking"] is False
    assert contract["removed"] == [] and contract["retyped"] == [] and contract["renamed"] == []
    (column,) = contract["added"]
    assert column["name"] == "user_likes_30d" and column["type"] == "BIGINT"
    # placed right after user_likes_7d: the columns after it move, but keep their order
    assert contract["reordered"] == []
    assert stale_reasons(service)["the contract (resolved schema) changed"] == DAYS


def test_a_retyped_feature_is_a_contract_break(
    ws: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(ws, MAX_DWELL, MAX_DWELL.replace("function: max", "function: count_distinct"))
    service = plan(ws, capsys, EXIT_CODES["audit_failed"])
    contract = service["contract"]
    assert service["state"] == "contract break"
    assert contract["retyped"] == [{"name": "user_max_dwell_7d", "from": "DOUBLE", "to": "BIGINT"}]
    assert contract["added"] == [] and contract["removed"] == []
    assert contract["redefined"] == [
        {"name": "user_max_dwell_7d", "changes": ["function max → count_distinct"]}
    ]
    assert service["stale"]["stale"] == 3


def test_a_changed_window_keeps_the_contract_and_names_the_feature_it_redefines(
    ws: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(ws, LIKES_7D, LIKES_7D.replace("window: 7d", "window: 14d"))
    service = plan(ws, capsys)
    assert service["state"] == "stale"
    assert service["contract"]["changed"] is False
    assert service["definition_changed"] is True
    assert service["contract"]["redefined"] == [
        {"name": "user_likes_7d", "changes": ["window 7d → 14d"]}
    ]
    assert stale_reasons(service) == {"the definitions the service uses changed": DAYS}
    capsys.readouterr()
    assert daeda("catalog", "plan", "--workspace", str(ws)) == 0
    assert "* redefined user_likes_7d: window 7d → 14d" in capsys.readouterr().out


def test_a_service_never_trained_is_planned_as_such(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "fresh"
    shutil.copytree(trained, root, ignore=shutil.ignore_patterns("out"))
    service = plan(root, capsys)
    assert service["state"] == "not trained"
    assert service["days_written"] == 0 and service["contract"] is None


def test_an_invalid_catalog_exits_3(ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit(ws, LIKES_7D, LIKES_7D.replace("function: count", "function: cuont"))
    capsys.readouterr()
    assert daeda("catalog", "plan", "--workspace", str(ws)) == EXIT_CODES["invalid_catalog"]
    assert "user_activity.yaml:" in capsys.readouterr().err
