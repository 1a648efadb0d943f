"""A JSON-RPC server lives long: `daeda serve-api` trains, cancels and fails jobs (pooling on a
Ray its job threads start), then still answers two minutes after the first job ended.

Slow (about 2.5 minutes): the MCP server's twin of this test runs in the default suite and
covers the same process-owned Ray; this one runs with `pytest -m slow`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import LOST_SERVICE, copy_workspace

DAEDA = Path(sys.executable).with_name("daeda")
TOKEN = "lifetime-token"
FINISHED = ("succeeded", "failed", "cancelled")


@pytest.fixture
def server(tiny_demo: Path, tmp_path: Path) -> Iterator[str]:
    ws = copy_workspace(tiny_demo, tmp_path / "demo")
    (ws / "feature_views" / "lost.yaml").write_text(LOST_SERVICE)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DAEDA_", "RAY_"))},
        "DAEDA_API_TOKEN": TOKEN,
        "DAEDA_ENRICH_IN_PROCESS_ROWS": "0",  # every job pools on Ray Data
    }
    proc = subprocess.Popen(
        [str(DAEDA), "serve-api", "--workspace", str(ws), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line, deadline = "", time.monotonic() + 60
        while "listening on" not in line:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "the server exited"
            assert time.monotonic() < deadline
        yield line.split("listening on ", 1)[1].split()[0].rstrip("/")
        assert proc.poll() is None, "the server died"
    finally:
        proc.terminate()
        proc.wait(30)


def call(client: httpx.Client, method: str, params: dict[str, Any] | None = None) -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    answer = client.post("/rpc", content=json.dumps(body), headers=headers).json()
    assert "result" in answer, answer
    return answer["result"]


def wait(client: httpx.Client, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 240
    while True:
        job = call(client, "job.status", {"job_id": job_id})
        if job["state"] in FINISHED:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.5)


@pytest.mark.slow
def test_the_server_answers_two_minutes_after_its_jobs(server: str) -> None:
    train = {"service": "feed_ranking", "start": "2026-10-01", "end": "2026-10-05"}
    with httpx.Client(base_url=server, timeout=60) as client:
        first = wait(client, call(client, "pipeline.train", train)["id"])
        assert first["state"] == "succeeded", first
        ended = time.monotonic()
        manifest = call(client, "days.manifest", {"service": "feed_ranking", "day": "2026-10-03"})
        assert manifest["batch"]["enriched_in"] == "ray"
        second = call(client, "pipeline.train", {**train, "force": True})
        call(client, "job.cancel", {"job_id": second["id"]})
        assert wait(client, second["id"])["state"] == "cancelled"
        lost = {"service": "lost_ranking", "start": "2026-10-01", "end": "2026-10-01"}
        third = wait(client, call(client, "pipeline.train", lost)["id"])
        assert third["state"] == "failed" and third["error"]["kind"] == "invalid_input"
        while time.monotonic() - ended < 125:
            assert call(client, "catalog.list")["services"]
            assert len(call(client, "job.list")["jobs"]) == 3
            time.sleep(5)
        last = wait(client, call(client, "pipeline.train", {**train, "force": True})["id"])
        assert last["state"] == "succeeded", last
