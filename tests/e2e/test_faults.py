"""Faults around a training run, through the real `daeda` command: each gets its exit code and a
message naming the day or path, and nothing already written is lost."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from daedalus.adapters.cli.app import EXIT_CODES, app
from daedalus.adapters.demo.generator import write_demo_workspace

from tests.e2e.conftest import copy_workspace

REPO = Path(__file__).resolve().parents[2]
DAEDA = [str(Path(sys.executable).with_name("daeda"))]
START, END = "2026-10-02", "2026-10-03"


def daeda(*tokens: str) -> int:
    return app(list(tokens), result_action="return_value")


@pytest.fixture
def ws(tiny_demo: Path, tmp_path: Path) -> Path:
    return copy_workspace(tiny_demo, tmp_path / "demo")


def train_args(ws: Path, *extra: str, start: str = START, end: str = END) -> list[str]:
    return [
        "pipeline", "train", "feed_ranking", "--workspace", str(ws),
        "--start", start, "--end", end, *extra,
    ]  # fmt: skip


def error_of(capsys: pytest.CaptureFixture[str]) -> dict:
    return json.loads(capsys.readouterr().out)["error"]


class TestStorageFaults:
    def test_an_out_that_is_a_file_is_a_storage_error_naming_it(
        self, ws: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        out = tmp_path / "not-a-dir"
        out.write_text("keep me")
        capsys.readouterr()
        assert daeda(*train_args(ws, "--out", str(out), "--json")) == EXIT_CODES["storage"]
        error = error_of(capsys)
        assert error["kind"] == "storage" and str(out) in error["message"]
        assert out.read_text() == "keep me"

    def test_a_malformed_owner_marker_is_a_conflict_naming_it(
        self, ws: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert daeda(*train_args(ws, "--json", end=START)) == 0
        marker = ws / "out" / "feed_ranking" / "_service.json"
        marker.write_text("{not json")
        day = ws / "out" / "feed_ranking" / f"dt={START}"
        before = {p.name: p.read_bytes() for p in day.iterdir()}
        capsys.readouterr()
        assert daeda(*train_args(ws, "--json", "--force")) == EXIT_CODES["conflict"]
        assert "_service.json" in error_of(capsys)["message"]
        assert {p.name: p.read_bytes() for p in day.iterdir()} == before

    def test_an_unusable_job_database_is_a_storage_error_naming_it(
        self, ws: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        (ws / ".daedalus").mkdir(exist_ok=True)
        (ws / ".daedalus" / "runs.sqlite").write_bytes(b"this is not a database" * 100)
        capsys.readouterr()
        assert daeda(*train_args(ws, "--json")) == EXIT_CODES["storage"]
        error = error_of(capsys)
        assert "runs.sqlite" in error["message"]
        assert not (ws / "out" / "feed_ranking").exists() or not list(
            (ws / "out" / "feed_ranking").glob("dt=*")
        )


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small demo (14 days): trained a day per batch, a run lasts long enough to be
    interrupted, or met by a second writer, in the middle."""
    root = tmp_path_factory.mktemp("small") / "demo"
    write_demo_workspace(root, scale="small")
    shutil.copytree(REPO / "feature_views", root / "feature_views")
    return root


@pytest.fixture
def long_ws(small_demo: Path, tmp_path: Path) -> Path:
    return copy_workspace(small_demo, tmp_path / "demo")


def _spawn(ws: Path, *extra: str, out: Path | None = None) -> subprocess.Popen[str]:
    args = train_args(ws, *extra, "--batch-rows", "1", start="2026-10-01", end="2026-10-14")
    if out is not None:
        args += ["--out", str(out)]
    return subprocess.Popen(
        [*DAEDA, *args, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


class TestInterruptsAndWriters:
    def test_ctrl_c_exits_10_and_records_the_job_as_cancelled(
        self, long_ws: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        ws = long_ws
        proc = _spawn(ws)
        _wait_for(ws / "out" / "feed_ranking" / "dt=2026-10-01", proc)  # in the middle
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == EXIT_CODES["cancelled"], err[-3000:]
        assert json.loads(out)["error"]["kind"] == "cancelled"
        capsys.readouterr()
        assert daeda("job", "list", "--workspace", str(ws), "--json") == 0
        (job,) = json.loads(capsys.readouterr().out)["jobs"]
        assert job["state"] == "cancelled"
        # Every day left behind is whole.
        assert daeda("pipeline", "verify", "feed_ranking", "--workspace", str(ws)) == 0

    def test_two_workspaces_writing_one_out_admit_one_writer(
        self, long_ws: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        ws = long_ws
        other = copy_workspace(ws, tmp_path / "other")
        out = tmp_path / "shared-out"
        first = _spawn(ws, out=out)
        _wait_for(out / "feed_ranking" / "dt=2026-10-01", first)  # the first is writing
        second = _spawn(other, out=out)
        out2, err2 = second.communicate(timeout=120)
        out1, err1 = first.communicate(timeout=300)
        assert first.returncode == 0, err1[-3000:]
        assert second.returncode == EXIT_CODES["conflict"], err2[-3000:]
        message = json.loads(out2)["error"]["message"]
        assert (
            f"pid {first.pid}" in message
            or f'"pid": {first.pid}' in message
            or str(first.pid) in message
        )
        assert json.loads(out1)["days_written"] == 14
        capsys.readouterr()
        assert (
            daeda("pipeline", "verify", "feed_ranking", "--workspace", str(ws), "--out", str(out))
            == 0
        )


class TestVerifiableDays:
    def test_a_tampered_part_is_damaged_in_status_and_fails_verify(
        self, ws: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert daeda(*train_args(ws, "--json")) == 0
        capsys.readouterr()
        assert daeda("pipeline", "verify", "feed_ranking", "--workspace", str(ws)) == 0
        assert "every file matches its manifest" in capsys.readouterr().out
        (part,) = (ws / "out" / "feed_ranking" / f"dt={END}").glob("part-*.parquet")
        data = bytearray(part.read_bytes())
        data[len(data) // 2] ^= 0x01  # same size, one bit flipped
        part.write_bytes(bytes(data))
        assert daeda("pipeline", "status", "feed_ranking", "--workspace", str(ws), "--json") == 0
        days = {d["day"]: d for d in json.loads(capsys.readouterr().out)["days"]}
        assert days[START]["files_ok"] and not days[END]["files_ok"]
        assert days[END]["problems"][0]["problem"] == "checksum"
        assert daeda("pipeline", "status", "feed_ranking", "--workspace", str(ws)) == 0
        assert "damaged" in capsys.readouterr().out
        code = daeda("pipeline", "verify", "feed_ranking", "--workspace", str(ws), "--json")
        assert code == EXIT_CODES["audit_failed"]
        report = json.loads(capsys.readouterr().out)
        assert not report["ok"] and report["days_checked"] == 2
        bad = [d for d in report["days"] if d["problems"]]
        assert [d["day"] for d in bad] == [END] and bad[0]["problems"][0]["file"] == part.name
        # A rerun repairs it: the damaged day (only) is computed again and matches.
        assert daeda(*train_args(ws, "--json")) == 0
        summary = json.loads(capsys.readouterr().out)
        assert (summary["days_written"], summary["days_skipped"]) == (1, 1)
        assert daeda("pipeline", "verify", "feed_ranking", "--workspace", str(ws)) == 0

    def test_verify_of_a_day_not_written_is_not_found(
        self, ws: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code = daeda("pipeline", "verify", "feed_ranking", "--workspace", str(ws), "--day", END)
        assert code == EXIT_CODES["not_found"]
