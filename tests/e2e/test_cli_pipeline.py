"""The `daeda demo|pipeline|job|audit` commands, driven through cyclopts itself, human and --json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from daedalus.adapters.cli.app import EXIT_CODES, app

REPO = Path(__file__).resolve().parents[2]
DAY = "2026-10-03"


def daeda(*tokens: str) -> int:
    return app(list(tokens), result_action="return_value")


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli") / "demo"
    assert daeda("demo", "init", str(root), "--scale", "tiny") == 0
    shutil.copytree(REPO / "feature_views", root / "feature_views")
    return root


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("DAEDA_CATALOG", "DAEDA_WORKSPACE", "DAEDA_OUT", "DAEDA_ENGINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture(scope="module")
def trained(ws: Path) -> Path:
    assert (
        daeda(
            "pipeline",
            "train",
            "feed_ranking",
            "--workspace",
            str(ws),
            "--start",
            DAY,
            "--end",
            DAY,
            "--engine",
            "polars",
            "--json",
        )
        == 0
    )
    return ws


class TestDemo:
    def test_demo_init_json_says_what_it_wrote(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert daeda("demo", "init", str(tmp_path / "d"), "--scale", "tiny", "--json") == 0
        data = json.loads(capsys.readouterr().out)
        assert data["scale"] == "tiny" and data["rows"]["events"] > 0
        assert (tmp_path / "d" / "data" / "artwork_embeddings.lance").is_dir()

    def test_demo_init_refuses_an_unrelated_directory(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        (tmp_path / "mine.txt").write_text("keep me")
        assert daeda("demo", "init", str(tmp_path), "--scale", "tiny") == EXIT_CODES["conflict"]
        assert (tmp_path / "mine.txt").read_text() == "keep me"
        assert "error:" in capsys.readouterr().err

    def test_demo_init_rejects_an_unknown_scale(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert (
            daeda("demo", "init", str(tmp_path / "x"), "--scale", "huge")
            == EXIT_CODES["invalid_argument"]
        )
        assert "scale must be one of" in capsys.readouterr().err


class TestPipelineCommands:
    def test_compile_each_format(self, ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
        assert daeda("pipeline", "compile", "feed_ranking", "--workspace", str(ws)) == 0
        assert "rolling_user_activity: rolling_aggregate [duckdb]" in capsys.readouterr().out
        assert (
            daeda(
                "pipeline", "compile", "feed_ranking", "--workspace", str(ws), "--format", "mermaid"
            )
            == 0
        )
        assert capsys.readouterr().out.startswith("flowchart TD")
        assert (
            daeda(
                "pipeline",
                "compile",
                "feed_ranking",
                "--workspace",
                str(ws),
                "--format",
                "json",
                "--engine",
                "polars",
                "--json",
            )
            == 0
        )
        data = json.loads(capsys.readouterr().out)
        kinds = [op["kind"] for op in data["pipeline"]["operators"]]
        assert kinds[0] == "read_spine" and kinds[-2:] == ["enrich", "write_day"]
        assert data["pipeline"]["engine"] == "polars"

    def test_compile_rejects_an_unknown_format(
        self, ws: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert (
            daeda("pipeline", "compile", "feed_ranking", "--workspace", str(ws), "--format", "svg")
            == EXIT_CODES["invalid_argument"]
        )
        assert "format must be one of" in capsys.readouterr().err

    def test_train_json_summary(self, trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
        assert (
            daeda(
                "pipeline",
                "train",
                "feed_ranking",
                "--workspace",
                str(trained),
                "--start",
                DAY,
                "--end",
                DAY,
                "--json",
            )
            == 0
        )
        data = json.loads(capsys.readouterr().out)
        assert data["days_skipped"] == 1 and data["days_written"] == 0

    def test_train_human_summary_says_where_the_dataset_is(
        self, trained: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert (
            daeda(
                "pipeline",
                "train",
                "feed_ranking",
                "--workspace",
                str(trained),
                "--start",
                DAY,
                "--end",
                DAY,
            )
            == 0
        )
        out = capsys.readouterr().out
        assert "0 day(s) written, 1 skipped" in out
        assert f"dataset: {trained / 'out' / 'feed_ranking'}/dt=*/part-*.parquet" in out

    def test_train_errors_are_messages_with_exit_codes(
        self, ws: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert (
            daeda("pipeline", "train", "nope", "--workspace", str(ws), "--start", DAY, "--end", DAY)
            == EXIT_CODES["not_found"]
        )
        assert "unknown feature service 'nope'" in capsys.readouterr().err
        assert (
            daeda(
                "pipeline",
                "train",
                "feed_ranking",
                "--workspace",
                str(ws),
                "--start",
                "2026-10-05",
                "--end",
                DAY,
            )
            == EXIT_CODES["invalid_argument"]
        )
        err = capsys.readouterr().err
        assert "after" in err and "Traceback" not in err

    def test_status_human_and_json(self, trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
        assert daeda("pipeline", "status", "feed_ranking", "--workspace", str(trained)) == 0
        human = capsys.readouterr().out
        assert "current" in human and "runner" in human and "local" in human
        assert (
            daeda("pipeline", "status", "feed_ranking", "--workspace", str(trained), "--json") == 0
        )
        data = json.loads(capsys.readouterr().out)
        assert [(d["day"], d["current"], d["runner"]) for d in data["days"]] == [
            (DAY, True, "local")
        ]

    def test_preview_and_manifest(self, trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
        assert (
            daeda(
                "pipeline",
                "preview",
                "feed_ranking",
                "--workspace",
                str(trained),
                "--day",
                DAY,
                "--limit",
                "2",
            )
            == 0
        )
        assert "-- row 1" in capsys.readouterr().out
        assert (
            daeda(
                "pipeline",
                "preview",
                "feed_ranking",
                "--workspace",
                str(trained),
                "--day",
                DAY,
                "--json",
            )
            == 0
        )
        data = json.loads(capsys.readouterr().out)
        assert len(data["rows"]) == 5 and "artwork_embedding" in data["columns"]
        assert (
            daeda(
                "pipeline",
                "manifest",
                "feed_ranking",
                "--workspace",
                str(trained),
                "--day",
                DAY,
                "--json",
            )
            == 0
        )
        assert json.loads(capsys.readouterr().out)["day"] == DAY
        assert (
            daeda(
                "pipeline",
                "manifest",
                "feed_ranking",
                "--workspace",
                str(trained),
                "--day",
                "2026-10-04",
            )
            == EXIT_CODES["not_found"]
        )
        assert "is not written" in capsys.readouterr().err

    def test_audit_human_and_json(self, trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
        assert (
            daeda(
                "audit", "feed_ranking", "--workspace", str(trained), "--day", DAY, "--sample", "20"
            )
            == 0
        )
        assert "no differences" in capsys.readouterr().out
        assert (
            daeda(
                "audit",
                "feed_ranking",
                "--workspace",
                str(trained),
                "--day",
                DAY,
                "--sample",
                "20",
                "--json",
            )
            == 0
        )
        data = json.loads(capsys.readouterr().out)
        assert data["ok"] and data["rows_checked"] == 20


class TestJobCommands:
    def test_job_list_status_and_cancel(
        self, trained: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert daeda("job", "list", "--workspace", str(trained), "--json") == 0
        jobs = json.loads(capsys.readouterr().out)["jobs"]
        assert jobs and all(j["state"] == "succeeded" for j in jobs)
        job_id = jobs[-1]["id"]
        assert daeda("job", "list", "--workspace", str(trained)) == 0
        assert job_id[:8] in capsys.readouterr().out
        assert daeda("job", "status", job_id, "--workspace", str(trained)) == 0
        assert f"job {job_id}: succeeded" in capsys.readouterr().out
        assert daeda("job", "cancel", job_id, "--workspace", str(trained), "--json") == 0
        assert (
            json.loads(capsys.readouterr().out)["state"] == "succeeded"
        )  # already finished: unchanged
        assert (
            daeda("job", "status", "nope", "--workspace", str(trained)) == EXIT_CODES["not_found"]
        )
        assert "unknown job" in capsys.readouterr().err


def test_debug_shows_a_traceback_for_errors(ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        daeda(
            "pipeline",
            "train",
            "nope",
            "--workspace",
            str(ws),
            "--start",
            DAY,
            "--end",
            DAY,
            "--debug",
        )
        == EXIT_CODES["not_found"]
    )
    assert "Traceback" in capsys.readouterr().err


class TestSmallDefects:
    def test_status_of_a_missing_workspace_is_an_input_error_and_creates_nothing(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        missing = tmp_path / "typo"
        code = daeda(
            "pipeline", "status", "feed_ranking", "--workspace", str(missing),
            "--catalog", str(REPO / "feature_views"),
        )  # fmt: skip
        assert code == EXIT_CODES["invalid_input"]
        assert f"workspace {missing} does not exist" in capsys.readouterr().err
        assert not missing.exists()

    def test_no_progress_bar_before_an_argument_error(
        self, ws: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code = daeda(
            "pipeline", "train", "feed_ranking", "--workspace", str(ws),
            "--start", "2026-10-05", "--end", "2026-10-01",
        )  # fmt: skip
        assert code == EXIT_CODES["invalid_argument"]
        captured = capsys.readouterr()
        assert "━" not in captured.out + captured.err and captured.out.strip() == ""

    def test_a_run_that_skips_every_day_counts_their_rows(
        self, trained: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        common = ["--workspace", str(trained), "--start", DAY, "--end", DAY]
        assert daeda("pipeline", "train", "feed_ranking", *common, "--json") == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["days_skipped"] == 1 and summary["rows"] > 0
        assert daeda("job", "list", "--workspace", str(trained), "--json") == 0
        job = json.loads(capsys.readouterr().out)["jobs"][0]
        assert job["progress"]["rows"] == summary["rows"]

    def test_help_texts_keep_their_placeholders(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit):
            app(["pipeline", "train", "--help"])
        out = capsys.readouterr().out
        assert "WORKSPACE/feature_views" in out and "default: /feature_views" not in out
