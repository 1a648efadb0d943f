"""End to end, the scale-out path: `daeda pipeline train --ray-address` against a real Ray
cluster (a head started with `ray start` in its own session, token authentication on), compared
with a local run of the same days.

Every `daeda` run is a subprocess, so this test process never joins either cluster. The head
gets its own temp dir and ports, and teardown stops exactly its processes (its session), never
another Ray on the machine (`ray stop` would stop them all).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from daedalus.adapters.cli.app import EXIT_CODES
from daedalus.adapters.demo.generator import write_demo_workspace

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
START, END = dt.date(2026, 10, 2), dt.date(2026, 10, 3)
DAYS = [START, END]
#: The demo's last day: 2026-10-01 + LAST_DAY_INDEX.
LAST_DAY_INDEX = 11
#: Logical CPUs of the test head: two days in flight by default (half of them), each with room
#: for its enrich actor pool and read/write tasks (see adapters/lance_ray/days.py).
HEAD_CPUS = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _session_pids(sid: int) -> list[int]:
    """Every live process of session `sid` (the head and all it started, workers included);
    zombies (dead, waiting to be reaped) are not counted."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            state, session = fields[0], int(fields[3])
        except (OSError, ValueError, IndexError):
            continue
        if session == sid and state != "Z":
            pids.append(int(entry.name))
    return pids


@pytest.fixture(scope="module")
def cluster() -> Iterator[dict[str, Any]]:
    """A Ray head on free ports, in its own session; yields its address and client env."""
    if not Path("/proc").is_dir():
        pytest.skip("needs /proc to find the head's processes")
    temp_dir = tempfile.mkdtemp(prefix="daeda-ray-", dir="/tmp")  # short: Ray's socket paths
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "DAEDA_"))}
    env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    log = open(Path(temp_dir) / "head.log", "w+")  # noqa: SIM115 - closed in teardown
    cmd = [
        str(BIN / "ray"),
        "start",
        "--head",
        f"--port={port}",
        f"--num-cpus={HEAD_CPUS}",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
        "--object-store-memory=200000000",
        f"--ray-client-server-port={_free_port()}",
        f"--dashboard-port={_free_port()}",
        f"--dashboard-agent-listen-port={_free_port()}",
        f"--dashboard-agent-grpc-port={_free_port()}",
        f"--metrics-export-port={_free_port()}",
        f"--runtime-env-agent-port={_free_port()}",
        "--block",
    ]
    head = subprocess.Popen(
        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 90
        while "Ray runtime started" not in Path(log.name).read_text():
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start failed:\n{Path(log.name).read_text()[-3000:]}")
            time.sleep(0.2)
        yield {"address": f"127.0.0.1:{port}", "env": env}
    finally:
        # SIGTERM, then SIGKILL what is left after a short grace (Ray's daemons can take 15 s
        # or more on SIGTERM; a throwaway test head needs no graceful shutdown).
        for sig, grace in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 10.0)):
            for pid in _session_pids(head.pid):  # workers have their own process groups
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + grace
            while _session_pids(head.pid) and time.monotonic() < deadline:
                head.poll()  # reap the head as soon as it exits
                time.sleep(0.1)
        head.wait(timeout=10)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("raydays")
    # 12 days of data (tiny: ~200 impressions a day): DAYS for most tests, a long queue of
    # days for the Ctrl-C test
    write_demo_workspace(root, scale="tiny", days=LAST_DAY_INDEX + 1)
    shutil.copytree(REPO / "feature_views", root / "feature_views")
    return root


def train_command(workspace: Path, out: Path, end: dt.date, *extra: str) -> list[str]:
    """`daeda pipeline train feed_ranking --json` over START..end."""
    return [
        str(BIN / "daeda"),
        "pipeline",
        "train",
        "feed_ranking",
        "--workspace",
        str(workspace),
        "--catalog",
        str(workspace / "feature_views"),
        "--out",
        str(out),
        "--start",
        str(START),
        "--end",
        str(end),
        "--json",
        *extra,
    ]


def train(
    workspace: Path, out: Path, env: dict[str, str], *extra: str
) -> tuple[int, dict[str, Any], str]:
    """`daeda pipeline train feed_ranking --json` over DAYS; returns (exit code, JSON, stderr)."""
    cmd = train_command(workspace, out, END, *extra)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    try:
        data = json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"stdout is not JSON:\n{done.stdout}\nstderr:\n{done.stderr[-3000:]}")
    return done.returncode, data, done.stderr


def day_files(out: Path) -> dict[str, bytes]:
    """Every published part file, by `dt=.../part-*.parquet`, with its bytes."""
    service = out / "feed_ranking"
    return {
        str(p.relative_to(service)): p.read_bytes()
        for p in sorted(service.glob("dt=*/part-*.parquet"))
    }


def manifest(out: Path, day: dt.date) -> dict[str, Any]:
    return json.loads((out / "feed_ranking" / f"dt={day}" / "_manifest.json").read_text())


@pytest.fixture(scope="module")
def local(workspace: Path) -> Path:
    """The reference: the same days trained locally (no Ray address)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "DAEDA_"))}
    code, summary, stderr = train(workspace, workspace / "out_local", env)
    assert code == 0, stderr[-3000:]
    assert summary["runner"] == "local" and summary["days_written"] == len(DAYS)
    return workspace / "out_local"


@pytest.fixture(scope="module")
def on_ray(workspace: Path, cluster: dict[str, Any]) -> dict[str, Any]:
    code, summary, stderr = train(
        workspace, workspace / "out_ray", cluster["env"], "--ray-address", cluster["address"]
    )
    assert code == 0, stderr[-3000:]
    return summary


def test_the_days_run_on_the_cluster_and_the_summary_says_so(
    workspace: Path, on_ray: dict[str, Any]
) -> None:
    assert on_ray["runner"] == "ray"
    assert on_ray["days_written"] == len(DAYS) and on_ray["days_skipped"] == 0
    assert [d["day"] for d in on_ray["days"]] == [d.isoformat() for d in DAYS]
    assert all(d["status"] == "written" and d["rows"] > 0 for d in on_ray["days"])
    # The job record names the driver process; the days were computed elsewhere, by workers.
    jobs = json.loads(
        subprocess.run(
            [str(BIN / "daeda"), "job", "list", "--workspace", str(workspace), "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    )["jobs"]
    driver = next(j for j in jobs if j["result"] and j["result"]["runner"] == "ray")["owner"]
    for day in DAYS:
        written = manifest(workspace / "out_ray", day)
        assert written["runner"] == "ray"
        assert (
            written["worker"] != driver and written["worker"].split("@")[1] == socket.gethostname()
        )


def test_the_cluster_writes_the_same_bytes_as_a_local_run(
    local: Path, workspace: Path, on_ray: dict[str, Any]
) -> None:
    ours, reference = day_files(workspace / "out_ray"), day_files(local)
    assert list(ours) == list(reference) and len(ours) >= len(DAYS)
    for name, content in ours.items():
        assert content == reference[name], f"{name} differs from the local run"
    for day in DAYS:
        ray_manifest, local_manifest = manifest(workspace / "out_ray", day), manifest(local, day)
        assert local_manifest["runner"] == "local"
        for key in ("timings", "written_at", "runner", "worker"):
            ray_manifest.pop(key), local_manifest.pop(key)
        for m in (ray_manifest, local_manifest):  # when a file was written is not its content
            m["files"] = [{k: v for k, v in f.items() if k != "mtime_ns"} for f in m["files"]]
        assert ray_manifest == local_manifest


def test_a_rerun_on_the_cluster_skips_every_day(
    workspace: Path, cluster: dict[str, Any], on_ray: dict[str, Any]
) -> None:
    before = {day: manifest(workspace / "out_ray", day)["written_at"] for day in DAYS}
    code, summary, stderr = train(
        workspace, workspace / "out_ray", cluster["env"], "--ray-address", cluster["address"]
    )
    assert code == 0, stderr[-3000:]
    assert summary["days_skipped"] == len(DAYS) and summary["days_written"] == 0
    assert {day: manifest(workspace / "out_ray", day)["written_at"] for day in DAYS} == before


def test_days_written_locally_are_current_for_the_cluster(
    local: Path, workspace: Path, cluster: dict[str, Any], tmp_path: Path
) -> None:
    """The runner is not part of a day's identity: where a day ran does not make it stale."""
    out = tmp_path / "out"
    shutil.copytree(local, out)
    code, summary, stderr = train(
        workspace, out, cluster["env"], "--ray-address", cluster["address"]
    )
    assert code == 0, stderr[-3000:]
    assert summary["runner"] == "ray" and summary["days_skipped"] == len(DAYS)


def test_a_failing_day_is_a_clear_error_and_leaves_no_partial_day(
    workspace: Path, cluster: dict[str, Any], tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(workspace, ws, ignore=shutil.ignore_patterns("out_*", ".daedalus"))
    # A BIGINT column whose lifetime sums overflow on the last day only: every input is valid,
    # the failure happens inside that day's batch, on the cluster.
    for path in sorted((ws / "data" / "events").glob("*.parquet")):
        table = pq.read_table(path)
        value = 2**63 - 1 if path.name == f"part-{END}.parquet" else 1
        points = pa.array([value] * table.num_rows, pa.int64())
        pq.write_table(table.append_column("points", points), path)
    view = ws / "feature_views" / "user_activity.yaml"
    view.write_text(
        view.read_text()
        .replace("  dwell_ms: DOUBLE\n", "  dwell_ms: DOUBLE\n  points: BIGINT\n", 1)
        .replace(
            "aggregations:\n",
            "aggregations:\n  - {name: user_points_total, function: sum, column: points, window: lifetime}\n",
            1,
        )
    )
    out = ws / "out"
    code, data, stderr = train(
        ws, out, cluster["env"], "--ray-address", cluster["address"], "--batch-rows", "1"
    )
    assert code == EXIT_CODES["invalid_input"], stderr[-3000:]
    assert data["error"]["kind"] == "invalid_input"
    message = data["error"]["message"]
    assert message == f"day {END}: feature 'user_points_total': the sum overflows BIGINT"
    assert f"error: day {END}: feature 'user_points_total'" in stderr
    service = out / "feed_ranking"
    assert not (service / f"dt={END}").exists()
    assert not [p.name for p in service.iterdir() if p.name.startswith((".staging-", ".trash-"))]
    for day_dir in service.glob("dt=*"):  # a day that finished before the failure is whole
        written = json.loads((day_dir / "_manifest.json").read_text())
        parts = sorted(day_dir.glob("part-*.parquet"))
        assert [p.name for p in parts] == [f["name"] for f in written["files"]]
        assert sum(pq.read_metadata(p).num_rows for p in parts) == written["rows"]


def test_interrupting_the_driver_cancels_the_days_in_flight_cleanly(
    workspace: Path, cluster: dict[str, Any], tmp_path: Path
) -> None:
    """Ctrl-C while days run on the cluster: the driver cancels their tasks, which throw their
    staging away before it exits; what was published is whole."""
    out = tmp_path / "out"
    last = dt.date(2026, 10, 1) + dt.timedelta(days=LAST_DAY_INDEX)
    cmd = train_command(
        workspace,
        out,
        last,
        "--ray-address",
        cluster["address"],
        "--batch-rows",
        "1",  # one day a task, one task at a time: when the first day is published, nine
        "--ray-days-in-flight",  # are still to go (a tiny day takes ~0.1 s on a warm cluster)
        "1",
    )
    total = (last - START).days + 1
    proc = subprocess.Popen(
        cmd, env=cluster["env"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    service = out / "feed_ranking"
    deadline = time.monotonic() + 120
    # Interrupt once a day is staged or published. A staging directory of a tiny day lives for
    # milliseconds and a poll under load can miss it; the first published day stays, and the
    # days queued behind it cannot all finish before the signal lands.
    while time.monotonic() < deadline and proc.poll() is None:
        names = [p.name for p in service.iterdir()] if service.is_dir() else []
        if any(n.startswith((".staging-", "dt=")) for n in names):
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.01)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_CODES["cancelled"], (
        f"the run was not interrupted in time:\n{stderr[-3000:]}"
    )
    assert "interrupted" in stderr
    assert not [p.name for p in service.iterdir() if p.name.startswith((".staging-", ".trash-"))]
    published = sorted(service.glob("dt=*"))
    assert len(published) < total
    for day_dir in published:
        written = json.loads((day_dir / "_manifest.json").read_text())
        parts = sorted(day_dir.glob("part-*.parquet"))
        assert [p.name for p in parts] == [f["name"] for f in written["files"]]
