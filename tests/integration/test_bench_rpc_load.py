"""The JSON-RPC load benchmark runs from one command and prints its table (at a tiny size).

It starts a real `daeda serve-api` on a free loopback port against a tiny demo workspace it
creates, trains one day, and sends a handful of sequential and concurrent requests. Every row
must be printed with no failed request. Times are printed, never asserted.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "rpc_load.py"
ROWS = [
    "sequential service.schema",
    "sequential catalog.list",
    "4 at once service.schema",
    "4 at once days.preview",
]


def test_rpc_load_bench_prints_every_row_without_errors() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--sequential", "3", "--concurrent", "4", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("server http://127.0.0.1:"), lines
    for label in ROWS:
        (line,) = [line for line in lines if line.startswith(label)]
        fields = line[len(label) :].split()
        assert len(fields) == 6, line  # n, p50, p95/p99, max, wall, errors
        assert int(fields[0]) in (3, 4) and fields[-1] == "0", line
        assert all(float(f) >= 0 for f in fields[1:5]), line
