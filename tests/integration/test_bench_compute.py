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
    "duckdb-outliers",
    "polars",
    "polars-outliers",
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
    assert "x naive-polars (median of paired runs)" in lines["polars"], lines["polars"]
    assert "bit-identical to duckdb-outliers" in lines["polars-outliers"], lines
    assert "bit-identical to duckdb-asof" in lines["polars-asof"], lines["polars-asof"]
    assert "x the ASOF JOIN" in lines["duckdb-asof"], lines["duckdb-asof"]
    for job in JOBS:
        assert "failed" not in lines[job] and "timeout" not in lines[job], lines[job]


def test_kernel_jobs_time_each_engine_kernel_alone_and_agree() -> None:
    lines = run_bench("--jobs", "duckdb-kernel,polars-kernel")
    assert sorted(lines) == ["duckdb-kernel", "polars-kernel"], lines
    assert "bit-identical to duckdb-kernel" in lines["polars-kernel"], lines["polars-kernel"]


def test_outlier_jobs_agree_with_each_other_and_with_fsum() -> None:
    lines = run_bench("--jobs", "polars,polars-outliers,duckdb,duckdb-outliers")
    assert sorted(lines) == ["duckdb", "duckdb-outliers", "polars", "polars-outliers"], lines
    assert "bit-identical to duckdb-outliers" in lines["polars-outliers"], lines
    for job in ("polars-outliers", "duckdb-outliers"):
        clean = job.removesuffix("-outliers")
        assert f"x {clean} (median of paired runs)" in lines[job], lines[job]
        assert "holding an outlier): all bit-equal" in lines[job], lines[job]


def test_the_fsum_check_finds_a_wrong_value(tmp_path) -> None:
    """The brute-force check of the outlier jobs reports a value that is off by one bit."""
    import importlib.util
    import math

    import pyarrow as pa
    import pyarrow.parquet as pq

    from daedalus.pit.engine import get_aggregate_pit_table

    spec = importlib.util.spec_from_file_location("bench_compute", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.generate(tmp_path, 5_000, 500, 100, 30, 7, outliers=True)
    spine = pq.read_table(tmp_path / "spine.parquet")
    specs = bench.rolling_specs(tmp_path, "events_outliers.parquet")
    result = get_aggregate_pit_table("polars")(spine, specs)
    note = bench.fsum_check(tmp_path, result, sample=200)
    assert note.endswith("all bit-equal") and "0 holding" not in note, note
    sums = result["sum_7d"].to_pylist()
    row = next(i for i, v in enumerate(sums) if v is not None and v > 1.0)
    sums[row] = math.nextafter(sums[row], math.inf)
    wrong = result.set_column(
        result.schema.get_field_index("sum_7d"), "sum_7d", pa.array(sums, pa.float64())
    )
    assert "1 values DIFFER" in bench.fsum_check(tmp_path, wrong, sample=len(sums))
