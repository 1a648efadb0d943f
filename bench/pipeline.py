"""Pipeline benchmark: train the demo service at the large scale for 1, 7 and 30 days, each engine.

    .venv/bin/python bench/pipeline.py                       # large demo (~10M events, 30 days)
    .venv/bin/python bench/pipeline.py --scale small --days 1,7
    .venv/bin/python bench/pipeline.py --days 1,7 --repeat 3  # medians, ratio to one day

Each training run is its own `daeda pipeline train … --force --json` process, ending on the
demo's last day (so every run's last day has the same lookback). It prints per run the days,
rows, batches, wall seconds of the process, rows/s, the seconds of each stage from the run
summary (prepare: input checks, fingerprints and skip decisions; read: spine reads; skeleton:
the feature operators; enrich: pooling embeddings; publish: staging, checksums and atomic
commits), the peak RSS of the training process (what must stay bounded as the range grows)
and of its whole process tree (with a local Ray cluster, when one is started).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
DAEDA = str(Path(sys.executable).with_name("daeda"))


def _watch(proc: subprocess.Popen, peaks: dict[str, float], stop: threading.Event) -> None:
    """Sample the RSS of the process and of its whole tree until it ends."""
    try:
        root = psutil.Process(proc.pid)
    except psutil.NoSuchProcess:
        return
    while not stop.is_set():
        try:
            own = root.memory_info().rss
            tree = own
            for child in root.children(recursive=True):
                try:
                    tree += child.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
        except psutil.NoSuchProcess:
            return
        peaks["own"] = max(peaks["own"], own)
        peaks["tree"] = max(peaks["tree"], tree)
        time.sleep(0.2)


def train(ws: Path, out: Path, engine: str, end: dt.date, days: int) -> dict:
    # Every run ends on the last day, so each run's last day has the same (longest) lookback:
    # a longer run adds days, and its peak memory should not grow with them.
    start = end - dt.timedelta(days=days - 1)
    shutil.rmtree(out, ignore_errors=True)
    cmd = [
        DAEDA,
        "pipeline",
        "train",
        "feed_ranking",
        "--workspace",
        str(ws),
        "--catalog",
        str(REPO / "feature_views"),
        "--out",
        str(out),
        "--start",
        str(start),
        "--end",
        str(end),
        "--engine",
        engine,
        "--force",
        "--json",
    ]
    peaks = {"own": 0.0, "tree": 0.0}
    stop = threading.Event()
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watcher = threading.Thread(target=_watch, args=(proc, peaks, stop), daemon=True)
    watcher.start()
    stdout, stderr = proc.communicate()
    stop.set()
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"training failed ({proc.returncode}):\n{stderr[-2000:]}")
    summary = json.loads(stdout)
    return {
        "engine": engine,
        "days": days,
        "rows": summary["rows"],
        "seconds": seconds,
        "batches": summary["batches"],
        "stages": summary["stages"],
        "own_mb": peaks["own"] / 2**20,
        "tree_mb": peaks["tree"] / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", default="large", choices=["tiny", "small", "medium", "large"])
    parser.add_argument("--days", default="1,7,30", help="comma-separated run lengths")
    parser.add_argument("--engines", default="duckdb,polars")
    parser.add_argument("--workspace", type=Path, help="reuse (or create) this demo workspace")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs of each length, interleaved (1 day, 7 days, ..., then again): the summary "
        "gives each length's median and range, and the ratio of medians to the first length",
    )
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    tmp = None
    ws = args.workspace
    if ws is None:
        tmp = tempfile.TemporaryDirectory(prefix="daeda-bench-pipeline-")
        ws = Path(tmp.name) / "demo"
    marker = ws / "workspace.json"
    if not marker.exists() or json.loads(marker.read_text()).get("scale") != args.scale:
        t0 = time.perf_counter()
        subprocess.run(
            [DAEDA, "demo", "init", str(ws), "--scale", args.scale, "--overwrite"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        print(f"demo workspace ({args.scale}) written in {time.perf_counter() - t0:.1f}s")
    info = json.loads(marker.read_text())
    first = dt.date.fromisoformat(info["start"])
    last = dt.date.fromisoformat(info["end"])
    available = (last - first).days + 1
    stages = ("prepare", "read", "skeleton", "enrich", "publish")
    print(
        f"{'engine':<8}{'days':>6}{'rows':>12}{'batches':>8}{'seconds':>9}{'rows/s':>9}"
        + "".join(f"{s:>10}" for s in stages)
        + f"{'train RSS MB':>14}{'+Ray tree MB':>14}"
    )
    lengths = [min(int(d), available) for d in args.days.split(",")]
    seconds: dict[tuple[str, int], list[float]] = {}
    for engine in args.engines.split(","):
        for _ in range(args.repeat):
            for days in lengths:
                r = train(ws, ws / f"out-bench-{engine}", engine, last, days)
                seconds.setdefault((engine, days), []).append(r["seconds"])
                print(
                    f"{r['engine']:<8}{r['days']:>6}{r['rows']:>12,}{r['batches']:>8}"
                    f"{r['seconds']:>9.1f}{r['rows'] / r['seconds']:>9,.0f}"
                    + "".join(f"{r['stages'].get(s, 0.0):>10.1f}" for s in stages)
                    + f"{r['own_mb']:>14,.0f}{r['tree_mb']:>14,.0f}",
                    flush=True,
                )
    if args.repeat > 1:
        print(f"\nmedian of {args.repeat} runs (range), and ratio to the {lengths[0]}-day median")
        for (engine, days), runs in seconds.items():
            base = statistics.median(seconds[(engine, lengths[0])])
            mid = statistics.median(runs)
            print(
                f"{engine:<8}{days:>6}{mid:>9.1f} s  ({min(runs):.1f}-{max(runs):.1f})"
                f"{mid / base:>8.2f}x"
            )
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
