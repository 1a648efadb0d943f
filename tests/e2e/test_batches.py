"""Batches of days: a batched run writes the same bytes as a day-by-day run (both engines), and
a run killed in the middle of a batch, then run again, equals an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from daedalus.adapters.cli.app import app

from tests.e2e.conftest import copy_workspace

REPO = Path(__file__).resolve().parents[2]
DAEDA = str(Path(sys.executable).with_name("daeda"))
START, END = "2026-10-01", "2026-10-05"


def daeda(*tokens: str) -> int:
    return app(list(tokens), result_action="return_value")


@pytest.fixture(scope="module")
def ws(tiny_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_workspace(tiny_demo, tmp_path_factory.mktemp("batches") / "demo")


def train_args(ws: Path, out: Path, *extra: str) -> list[str]:
    return [
        "pipeline", "train", "feed_ranking", "--workspace", str(ws), "--out", str(out),
        "--start", START, "--end", END, "--json", *extra,
    ]  # fmt: skip


def parts(out: Path) -> dict[str, bytes]:
    """Every published part file, by day and name."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted((out / "feed_ranking").glob("dt=*/part-*.parquet"))
    }


@pytest.mark.parametrize("engine", ["duckdb", "polars"])
def test_a_batched_run_writes_the_bytes_of_a_day_by_day_run(
    ws: Path, tmp_path: Path, engine: str, capsys: pytest.CaptureFixture[str]
) -> None:
    by_day, batched = tmp_path / "by-day", tmp_path / "batched"
    assert daeda(*train_args(ws, by_day, "--engine", engine, "--batch-rows", "1")) == 0
    one = json.loads(capsys.readouterr().out)
    assert daeda(*train_args(ws, batched, "--engine", engine, "--batch-rows", "600")) == 0
    several = json.loads(capsys.readouterr().out)
    assert one["batches"] == 5 and 1 < several["batches"] < 5  # crosses several batches
    assert len(parts(by_day)) >= 5 and parts(batched) == parts(by_day)
    manifest = json.loads((batched / "feed_ranking" / f"dt={END}" / "_manifest.json").read_text())
    assert END in manifest["batch"]["days"]


def test_a_run_killed_in_a_batch_then_run_again_equals_an_uninterrupted_run(
    ws: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    assert daeda(*train_args(ws, clean, "--batch-rows", "600")) == 0
    capsys.readouterr()
    proc = subprocess.Popen(
        [DAEDA, *train_args(ws, killed, "--batch-rows", "600")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    service = killed / "feed_ranking"
    deadline = time.monotonic() + 120
    # Kill it once a batch has published a day but not all of its days.
    while time.monotonic() < deadline and proc.poll() is None:
        if service.is_dir() and 1 <= len(list(service.glob("dt=*"))) < 5:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    published = sorted(p.name for p in service.glob("dt=*"))
    assert published, "the run ended before it published a day"
    # What was published is whole; the rerun skips it and computes the rest.
    assert (
        daeda("pipeline", "verify", "feed_ranking", "--workspace", str(ws), "--out", str(killed))
        == 0
    )
    assert daeda(*train_args(ws, killed, "--batch-rows", "600")) == 0
    capsys.readouterr()
    assert parts(killed) == parts(clean)
    assert not [p for p in service.iterdir() if p.name.startswith((".staging-", ".trash-"))]
