"""The compute benchmark runs from one command and prints its table (at a tiny size).

It checks what the benchmark itself checks: the engines agree bit for bit, and every job
prints a line. Times are printed, never asserted.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "compute.py"
JOBS = [
    "duckdb",
    "polars",
    "naive-duckdb",
    "naive-polars",
    "duckdb-asof",
    "polars-asof",
    "naive-duckdb-asof",
]


def run_bench(*args: str) -> dict[str, str]:
    """Run the benchmark at a tiny size; its printed lines by job."""
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--events",
            "20000",
            "--spine",
            "2000",
            "--users",
            "500",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {line.split()[0]: line for line in proc.stdout.splitlines()[2:] if line.strip()}


def test_compute_bench_prints_every_job_and_the_engines_agree() -> None:
    lines = run_bench()
    assert sorted(lines) == sorted(JOBS), lines
    assert "bit-identical to duckdb" in lines["polars"], lines["polars"]
    assert "bit-identical to duckdb-asof" in lines["polars-asof"], lines["polars-asof"]
    assert "x the ASOF JOIN" in lines["duckdb-asof"], lines["duckdb-asof"]
    for job in JOBS:
        assert "failed" not in lines[job] and "timeout" not in lines[job], lines[job]


def test_kernel_jobs_time_each_engine_kernel_alone_and_agree() -> None:
    lines = run_bench("--jobs", "duckdb-kernel,polars-kernel")
    assert sorted(lines) == ["duckdb-kernel", "polars-kernel"], lines
    assert "bit-identical to duckdb-kernel" in lines["polars-kernel"], lines["polars-kernel"]
