"""Compute benchmark: rolling PIT aggregates and as-of joins, DuckDB vs Polars vs naive baselines.

    .venv/bin/python bench/compute.py                    # default: 10M events, 1M spine rows
    .venv/bin/python bench/compute.py --events 1000000 --spine 100000 --users 50000
    .venv/bin/python bench/compute.py --repeat 3          # median of 3 rounds of every job
    .venv/bin/python bench/compute.py --jobs duckdb-kernel,polars-kernel --repeat 5
    .venv/bin/python bench/compute.py --jobs polars,polars-outliers,duckdb,duckdb-outliers

The `-kernel` jobs (not run by default) time each engine's window kernel alone, on the inputs
the core builds for the rolling job (built before the clock starts; peak RSS includes them).
The `-outliers` jobs run the rolling job on the same events with two extreme `dwell_ms` values
(1e300 in row 0, one of the hot user's, and 5e-324 in the middle row): their sums must cost
about what the clean ones do. Their time is compared with the clean job of their engine round
by round, and their results with count, sum (`math.fsum`), mean, min and max recomputed by
brute force on 1000 random spine rows plus up to 300 per outlier whose 7d window holds it.
The `polars` job is compared with `naive-polars` round by round (exact within 1.1x of naive).

Each job runs in its own process (so peak RSS is its own) and prints seconds, rows/s and peak
RSS. With --repeat, every round runs each job once, so machine drift touches all jobs alike; the
as-of jobs are also compared with the bare ASOF JOIN round by round. The engines' results are
checked to be bit-identical to each other; the naive baselines' float sums are compared with the
exact ones and the share of bit-equal values is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DAY_US = 86_400_000_000
START_US = 1_790_000_000_000_000 - (1_790_000_000_000_000 % DAY_US)
TS = pa.timestamp("us", tz="UTC")
WINDOWS = {"1h": 3_600_000_000, "1d": DAY_US, "7d": 7 * DAY_US}


#: The outlier jobs' events: the default events with these `dwell_ms` values at these rows
#: (row 0 is the hot user's; the other is the middle row, `events // 2`).
OUTLIERS = {"first": 1e300, "middle": 5e-324}


def outlier_rows(events: int) -> dict[int, float]:
    """The rows of the outlier jobs' events that hold an extreme value, and the values."""
    return {0: OUTLIERS["first"], events // 2: OUTLIERS["middle"]}


def generate(
    root: Path, events: int, spine: int, users: int, days: int, seed: int, outliers: bool = False
) -> None:
    """Seeded data: Zipf-skewed users and artworks, a hot user, spine times equal to event times
    (and, with `outliers`, a copy of the events with two extreme values, `outlier_rows`)."""
    rng = np.random.default_rng(seed)
    span = days * DAY_US

    # Zipf-like users and artworks: P(rank r) ∝ (r + 10) ** -1.1, ids shuffled; on top of
    # that one hot user holds 1% of all events (a very large history).
    def zipf_ids(n_ids: int, size: int) -> np.ndarray:
        weights = (np.arange(n_ids) + 10.0) ** -1.1
        ranks = rng.choice(n_ids, size, p=weights / weights.sum())
        return rng.permutation(n_ids)[ranks]

    user = zipf_ids(users, events)
    hot_user = int(user[0])
    user[rng.random(events) < 0.01] = hot_user
    artwork = zipf_ids(200_000, events)
    ts = START_US + rng.integers(0, span, events)
    action = rng.choice(
        np.array(["view", "like", "bookmark", "generate"]), events, p=[0.8, 0.12, 0.05, 0.03]
    )
    dwell = np.round(rng.lognormal(8.5, 1.0, events), 3)
    table = pa.table(
        {
            "user_id": pa.array(user, pa.int64()),
            "artwork_id": pa.array(artwork, pa.int64()),
            "action": pa.array(action),
            "dwell_ms": pa.array(dwell, pa.float64()),
            "event_ts": pa.array(ts, pa.int64()).cast(TS),
        }
    )
    pq.write_table(table, root / "events.parquet", row_group_size=1_000_000)
    if outliers:
        extreme = dwell.copy()
        for row, value in outlier_rows(events).items():
            extreme[row] = value
        pq.write_table(
            table.set_column(3, "dwell_ms", pa.array(extreme, pa.float64())),
            root / "events_outliers.parquet",
            row_group_size=1_000_000,
        )
    # Spine: half the rows at exactly an event's time for that user (ties with the upper bound).
    pick = rng.integers(0, events, spine)
    exact = rng.random(spine) < 0.5
    spine_ts = np.where(exact, ts[pick], START_US + rng.integers(DAY_US, span, spine))
    spine_user = np.where(exact, user[pick], zipf_ids(users, spine))
    pq.write_table(
        pa.table(
            {
                "user_id": pa.array(spine_user, pa.int64()),
                "ts": pa.array(spine_ts, pa.int64()).cast(TS),
            }
        ),
        root / "spine.parquet",
    )
    # Profiles: ~1.6M versions for the as-of join, some written late (created > valid_from).
    n_prof = int(spine * 1.6)
    prof_user = rng.integers(0, users, n_prof)
    valid = START_US - 30 * DAY_US + rng.integers(0, span + 30 * DAY_US, n_prof)
    created = valid + np.where(rng.random(n_prof) < 0.2, rng.integers(0, DAY_US, n_prof), 0)
    pq.write_table(
        pa.table(
            {
                "user_id": pa.array(prof_user, pa.int64()),
                "valid_from": pa.array(valid, pa.int64()).cast(TS),
                "created_at": pa.array(created, pa.int64()).cast(TS),
                "follower_count": pa.array(rng.integers(0, 100_000, n_prof), pa.int64()),
            }
        ),
        root / "profiles.parquet",
    )


def rolling_specs(root: Path, events: str = "events.parquet") -> list:
    from daedalus.catalog.model import AggFunction, FilterDef
    from daedalus.pit.spec import AggregationSpec, SourceSpec

    schema = pa.schema(
        [
            ("user_id", pa.int64()),
            ("artwork_id", pa.int64()),
            ("action", pa.string()),
            ("dwell_ms", pa.float64()),
            ("event_ts", TS),
        ]
    )
    source = SourceSpec("events", "event_ts", schema, paths=(str(root / events),))
    specs = []
    for label, w in WINDOWS.items():
        for fn in (
            AggFunction.COUNT,
            AggFunction.SUM,
            AggFunction.MEAN,
            AggFunction.MIN,
            AggFunction.MAX,
        ):
            col = None if fn is AggFunction.COUNT else "dwell_ms"
            specs.append(AggregationSpec(f"{fn.value}_{label}", fn, ("user_id",), source, w, col))
        specs.append(
            AggregationSpec(
                f"likes_{label}",
                AggFunction.COUNT,
                ("user_id",),
                source,
                w,
                filters=(FilterDef("action", ("like",)),),
            )
        )
    return specs


def asof_specs(root: Path) -> list:
    from daedalus.pit.spec import AsOfSpec, SourceSpec

    schema = pa.schema(
        [
            ("user_id", pa.int64()),
            ("valid_from", TS),
            ("created_at", TS),
            ("follower_count", pa.int64()),
        ]
    )
    source = SourceSpec(
        "profiles",
        "valid_from",
        schema,
        paths=(str(root / "profiles.parquet"),),
        created_timestamp="created_at",
    )
    return [AsOfSpec("follower_count", "follower_count", ("user_id",), source)]


def run_job(job: str, root: Path, out: Path | None) -> dict:
    """One job in this process: returns seconds and the row count (and writes its output)."""
    spine = pq.read_table(root / "spine.parquet")
    # Libraries are imported before the clock starts, for every job alike: the figures are
    # the work, not the interpreter loading DuckDB or Polars.
    import duckdb
    import polars as pl

    from daedalus.pit.engine import get_aggregate_pit_table

    aggregate = None
    if job in (
        "duckdb",
        "polars",
        "duckdb-asof",
        "polars-asof",
        "duckdb-outliers",
        "polars-outliers",
    ):
        aggregate = get_aggregate_pit_table(job.split("-")[0])
    if job in ("duckdb-kernel", "polars-kernel"):
        kernel, inputs = kernel_inputs(job.split("-")[0], root, spine)
    started = time.perf_counter()
    if aggregate is not None:
        if job.endswith("asof"):
            specs = asof_specs(root)
        elif job.endswith("outliers"):
            specs = rolling_specs(root, "events_outliers.parquet")
        else:
            specs = rolling_specs(root)
        result = aggregate(spine, specs)
    elif job.endswith("-kernel"):
        result = kernel.window_aggregate(*inputs)
    elif job == "naive-duckdb":
        con = duckdb.connect()
        con.execute(f"CREATE VIEW e AS SELECT * FROM read_parquet('{root / 'events.parquet'}')")
        con.register("s", spine.append_column("rid", pa.array(np.arange(spine.num_rows))))
        aggs = []
        for label, w in WINDOWS.items():
            inw = f"e.event_ts >= s.ts - INTERVAL {w // 1_000_000} SECOND"
            aggs += [
                f"count(*) FILTER (WHERE {inw}) AS count_{label}",
                f"sum(dwell_ms) FILTER (WHERE {inw}) AS sum_{label}",
                f"avg(dwell_ms) FILTER (WHERE {inw}) AS mean_{label}",
                f"min(dwell_ms) FILTER (WHERE {inw}) AS min_{label}",
                f"max(dwell_ms) FILTER (WHERE {inw}) AS max_{label}",
                f"count(*) FILTER (WHERE {inw} AND action = 'like') AS likes_{label}",
            ]
        result = con.execute(
            f"SELECT s.rid, {', '.join(aggs)} FROM s LEFT JOIN e ON e.user_id = s.user_id "
            f"AND e.event_ts < s.ts AND e.event_ts >= s.ts - INTERVAL 7 DAY GROUP BY s.rid ORDER BY s.rid"
        ).to_arrow_table()
    elif job == "naive-duckdb-asof":
        con = duckdb.connect()
        con.execute(f"CREATE VIEW p AS SELECT * FROM read_parquet('{root / 'profiles.parquet'}')")
        con.register("s", spine)
        result = con.execute(
            "SELECT s.*, p.follower_count FROM s ASOF LEFT JOIN p ON s.user_id = p.user_id AND s.ts > p.valid_from"
        ).to_arrow_table()
    elif job == "naive-polars":
        ev = pl.read_parquet(root / "events.parquet").select(
            "user_id", "event_ts", "action", "dwell_ms"
        )
        ev = ev.with_columns(pl.lit(None, pl.UInt32).alias("rid"))
        probes = (
            pl.from_arrow(spine)
            .with_row_index("rid")
            .select(
                "user_id",
                pl.col("ts").alias("event_ts"),
                pl.lit(None, pl.String).alias("action"),
                pl.lit(None, pl.Float64).alias("dwell_ms"),
                "rid",
            )
        )
        # The naive way: put the spine rows into the event stream and roll over everything.
        union = pl.concat([ev, probes]).sort("user_id", "event_ts")
        parts = [union.select("rid")]
        for label, w in WINDOWS.items():
            rolled = union.rolling(
                "event_ts", period=f"{w // 1_000_000}s", closed="left", group_by="user_id"
            ).agg(
                pl.col("dwell_ms").count().alias(f"count_{label}"),
                pl.col("dwell_ms").sum().alias(f"sum_{label}"),
                pl.col("dwell_ms").mean().alias(f"mean_{label}"),
                pl.col("dwell_ms").min().alias(f"min_{label}"),
                pl.col("dwell_ms").max().alias(f"max_{label}"),
                (pl.col("action") == "like").sum().alias(f"likes_{label}"),
            )
            parts.append(rolled.drop("user_id", "event_ts"))
        result = (
            pl.concat(parts, how="horizontal")
            .filter(pl.col("rid").is_not_null())
            .sort("rid")
            .to_arrow()
        )
    else:
        raise SystemExit(f"unknown job {job}")
    seconds = time.perf_counter() - started
    if out is not None:
        pq.write_table(result, out)
    return {"job": job, "seconds": seconds, "rows": spine.num_rows}


class _Captured(Exception):
    pass


def kernel_inputs(engine: str, root: Path, spine: pa.Table) -> tuple[Any, tuple]:
    """The engine's window kernel, and the inputs the core hands it for the rolling job (the
    events, probes and requests of its one call): built here, before the clock starts."""
    from daedalus.adapters.duckdb.kernel import DuckDBKernel
    from daedalus.adapters.polars.kernel import PolarsKernel

    from daedalus.pit.compute import compute_pit_table
    from daedalus.pit.kernel import WindowKernel

    captured: list[tuple] = []

    class Capture(WindowKernel):
        name = "capture"

        def window_aggregate(self, events: pa.Table, probes: pa.Table, requests: Any) -> pa.Table:
            captured.append((events, probes, list(requests)))
            raise _Captured

    with contextlib.suppress(_Captured):
        compute_pit_table(spine, rolling_specs(root), Capture())
    assert len(captured) == 1, "the rolling job makes one kernel call"
    kernel = DuckDBKernel() if engine == "duckdb" else PolarsKernel()
    return kernel, captured[0]


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM belongs to the process's own address space; ru_maxrss
    would also count the parent's RSS at fork (Linux carries it across exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(job: str, root: str, out: str | None) -> None:
    info = run_job(job, Path(root), Path(out) if out else None)
    info["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(info))


def bits_equal(a: pa.Table, b: pa.Table) -> bool:
    if a.schema != b.schema:
        return False
    for name in a.column_names:
        x, y = a[name].combine_chunks(), b[name].combine_chunks()
        if pa.types.is_floating(x.type):
            xv = np.asarray(x.fill_null(0.0)).view(np.int64)
            yv = np.asarray(y.fill_null(0.0)).view(np.int64)
            if not (np.array_equal(xv, yv) and x.is_null().equals(y.is_null())):
                return False
        elif not x.equals(y):
            return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--spine", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=500_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--jobs",
        default=(
            "duckdb,duckdb-outliers,polars,polars-outliers,naive-duckdb,naive-polars,"
            "duckdb-asof,polars-asof,naive-duckdb-asof"
        ),
    )
    parser.add_argument(
        "--timeout", type=float, default=300, help="seconds per job before it is stopped"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per job: prints the median (and the range)"
    )
    parser.add_argument("--child", nargs=3, metavar=("JOB", "ROOT", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], None if args.child[2] == "-" else args.child[2])
        return
    with tempfile.TemporaryDirectory(prefix="daeda-bench-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        jobs = args.jobs.split(",")
        generate(
            root,
            args.events,
            args.spine,
            args.users,
            args.days,
            args.seed,
            outliers=any(j.endswith("-outliers") for j in jobs),
        )
        print(
            f"data: {args.events:,} events, {args.spine:,} spine rows, {args.users:,} users, "
            f"{args.days} days, seed {args.seed} (generated in {time.perf_counter() - t0:.1f}s)"
        )
        runs: dict[str, list[dict]] = {job: [] for job in jobs}
        failures: dict[str, str] = {}
        # Rounds go through every job once, so a drift in the machine's speed (this VM's is
        # ±10% over minutes) touches every job alike, and round r's runs can be compared.
        for r in range(max(1, args.repeat)):
            for job in jobs:
                if job in failures:
                    continue
                print(f"round {r + 1}: {job}", file=sys.stderr, flush=True)
                out = root / f"{job}.parquet"
                cmd = [sys.executable, __file__, "--child", job, str(root), str(out)]
                try:
                    proc = subprocess.run(
                        cmd,
                        capture_output=True,
                        text=True,
                        timeout=args.timeout,
                        env={**os.environ, "PYTHONWARNINGS": "ignore"},
                    )
                except subprocess.TimeoutExpired:
                    failures[job] = (
                        f"{'>' + str(int(args.timeout)):>10}{'-':>14}{'-':>14}  stopped at the timeout"
                    )
                    continue
                if proc.returncode != 0:
                    last = (proc.stderr.strip().splitlines() or ["?"])[-1]
                    failures[job] = f"{'failed':>10}{'-':>14}{'-':>14}  {last[:80]}"
                    continue
                runs[job].append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"{'job':<20}{'seconds':>10}{'rows/s':>14}{'peak RSS MB':>14}  note")
        outputs = {job: root / f"{job}.parquet" for job in jobs if job not in failures}
        for job in jobs:
            if job in failures:
                print(f"{job:<20}{failures[job]}")
                continue
            print(f"{job:<20}{_row(job, runs, outputs, root)}")


def fsum_check(root: Path, result: pa.Table, sample: int = 1000, hit: int = 300) -> str:
    """Recompute count, sum, mean, min and max of every window by brute force (`math.fsum`)
    on `sample` random spine rows and on up to `hit` rows whose 7d window holds an outlier, and
    compare them with `result` bit for bit."""
    import math

    events = pq.read_table(
        root / "events_outliers.parquet", columns=["user_id", "event_ts", "dwell_ms"]
    )
    user = events["user_id"].to_numpy()
    ts = events["event_ts"].cast(pa.int64()).to_numpy()
    dwell = events["dwell_ms"].to_numpy()
    spine_user = result["user_id"].to_numpy()
    spine_ts = result["ts"].cast(pa.int64()).to_numpy()
    rng = np.random.default_rng(0)
    rows = set(rng.choice(len(spine_user), min(sample, len(spine_user)), replace=False).tolist())
    holding: list[int] = []
    for row in outlier_rows(len(user)):
        inside = (spine_user == user[row]) & (spine_ts > ts[row])
        inside &= spine_ts <= ts[row] + WINDOWS["7d"]
        holding += np.flatnonzero(inside)[:hit].tolist()
    rows |= set(holding)
    order = np.lexsort((ts, user))
    user, ts, dwell = user[order], ts[order], dwell[order]
    columns = {name: result[name].to_pylist() for name in result.column_names}
    bad = 0
    for i in sorted(rows):
        first = np.searchsorted(user, spine_user[i], "left")
        last = np.searchsorted(user, spine_user[i], "right")
        times = ts[first:last]
        end = first + np.searchsorted(times, spine_ts[i], "left")
        for label, w in WINDOWS.items():
            start = first + np.searchsorted(times, spine_ts[i] - w, "left")
            values = dwell[start:end].tolist()
            total = math.fsum(values)
            want = {
                f"count_{label}": len(values),
                f"sum_{label}": total if values else None,
                f"mean_{label}": total / len(values) if values else None,
                f"min_{label}": min(values) if values else None,
                f"max_{label}": max(values) if values else None,
            }
            for name, value in want.items():
                got = columns[name][i]
                if isinstance(value, float):
                    same = isinstance(got, float) and got.hex() == value.hex()
                else:
                    same = got == value
                bad += not same
    verdict = "all bit-equal" if not bad else f"{bad} values DIFFER"
    return f"fsum-checked {len(rows)} rows ({len(set(holding))} holding an outlier): {verdict}"


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def _row(job: str, runs: dict[str, list[dict]], outputs: dict[str, Path], root: Path) -> str:
    """One job's line: median seconds, rows/s, peak RSS and notes (checks against the others)."""
    seconds = sorted(r["seconds"] for r in runs[job])
    median = _median(seconds)
    peak = max(r["peak_rss_mb"] for r in runs[job])
    rows = runs[job][0]["rows"]
    out = outputs[job]
    notes = []
    if len(seconds) > 1:
        notes.append(f"median of {len(seconds)}: {seconds[0]:.2f}-{seconds[-1]:.2f}s")
    twin = job.replace("polars", "duckdb", 1) if job.startswith("polars") else None
    if twin in outputs:  # the same job on the other engine
        same = bits_equal(pq.read_table(outputs[twin]), pq.read_table(out))
        notes.append(f"bit-identical to {twin}" if same else f"DIFFERS from {twin}")
    if job in ("duckdb-asof", "polars-asof") and "naive-duckdb-asof" in outputs:
        # Runs of one round ran minutes apart at most: their ratio is the fair comparison.
        paired = [
            a["seconds"] / b["seconds"]
            for a, b in zip(runs[job], runs["naive-duckdb-asof"], strict=False)
        ]
        notes.append(f"{_median(paired):.2f}x the ASOF JOIN (median of paired runs)")
    if job == "polars" and runs.get("naive-polars"):  # the target: exact within 1.1x naive
        paired = [
            a["seconds"] / b["seconds"]
            for a, b in zip(runs[job], runs["naive-polars"], strict=False)
        ]
        notes.append(f"{_median(paired):.2f}x naive-polars (median of paired runs)")
    if job.endswith("-outliers"):
        clean = job.removesuffix("-outliers")
        if runs.get(clean):
            paired = [
                a["seconds"] / b["seconds"] for a, b in zip(runs[job], runs[clean], strict=False)
            ]
            notes.append(f"{_median(paired):.2f}x {clean} (median of paired runs)")
        notes.append(fsum_check(root, pq.read_table(out)))
    if job.startswith("naive") and not job.endswith("asof") and "duckdb" in outputs:
        exact = pq.read_table(outputs["duckdb"])
        naive = pq.read_table(out)
        a = np.asarray(exact["sum_7d"].fill_null(0.0)).view(np.int64)
        b = np.asarray(naive["sum_7d"].cast(pa.float64()).fill_null(0.0)).view(np.int64)
        if len(a) == len(b):
            notes.append(f"sum_7d bit-equal to the exact sum in {np.mean(a == b):.1%} of rows")
    return f"{median:>10.2f}{rows / median:>14,.0f}{peak:>14,.0f}  {'; '.join(notes)}"


if __name__ == "__main__":
    main()
