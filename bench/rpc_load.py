"""JSON-RPC load benchmark: latency of `daeda serve-api` under sequential and concurrent reads.

    .venv/bin/python bench/rpc_load.py                       # tiny demo, 200 sequential, 200 at once
    .venv/bin/python bench/rpc_load.py --sequential 50 --concurrent 20 --rounds 1

It creates a tiny demo workspace (the repository's `feature_views` as its catalog) in a
temporary directory, starts `daeda serve-api --port 0` on loopback as a separate process (its
log goes to a file; the port is read from the line it prints), trains one day through
`pipeline.train` (so `days.preview` has a day to read), then measures from this process:

- sequential: `--sequential` requests of `service.schema`, then of `catalog.list`, one after
  another on one keep-alive connection: p50 / p95 / max;
- concurrent: `--concurrent` requests of `service.schema`, then of `days.preview`, all sent at
  once (one connection each): p50 / p99 / max of each request's latency, the wall time of the
  burst, and the errors (an HTTP status other than 200 or a JSON-RPC error). With `--rounds`
  the burst is repeated and every latency counts.

The bursts' client (`--client raw`, the default) is a minimal asyncio HTTP/1.1 client: one
connection per request, `Connection: close`, the answer read to its end and parsed as JSON. It
shares the machine with the server (on 2 cores it takes CPU from it), so it is kept lean:
httpx's AsyncClient (`--client httpx`) spends about a second of its own CPU on a 200-request
burst here (a burst of `GET /health`: ~1.2 s with httpx, ~0.1 s with the raw client).

A few requests warm the server (and its catalog cache) before any clock starts. Times are
printed, never asserted; the exit code is 1 if any request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
DAEDA = Path(sys.executable).with_name("daeda")
SERVICE = "feed_ranking"
DAY = "2026-10-02"
TOKEN = "bench-token"


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of `values`, in the values' unit."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def prepare(root: Path) -> Path:
    """A tiny demo workspace with the repository's catalog."""
    from daedalus.adapters.demo.generator import write_demo_workspace

    workspace = root / "ws"
    write_demo_workspace(workspace, scale="tiny")
    shutil.copytree(REPO / "feature_views", workspace / "feature_views")
    return workspace


def start_server(workspace: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`daeda serve-api` on a free loopback port; the process and its URL."""
    env = {**os.environ, "DAEDA_API_TOKEN": TOKEN, "DAEDA_ENGINE": "polars"}
    env.pop("DAEDA_ALLOW_HOSTS", None)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(DAEDA),
                "serve-api",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--workspace",
                str(workspace),
                "--catalog",
                str(workspace / "feature_views"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    deadline = time.monotonic() + 60
    while True:
        text = log.read_text(errors="replace")
        if "listening on " in text:
            url = text.split("listening on ", 1)[1].split()[0]
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"the server did not start:\n{text[-2000:]}")
        time.sleep(0.05)
    while True:  # listening is printed just before uvicorn starts serving
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"the server did not answer:\n{log.read_text()[-2000:]}")
        time.sleep(0.05)


def rpc(client: httpx.Client, method: str, params: Any, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answer = client.post(
        "/rpc",
        json={"jsonrpc": "2.0", "method": method, "params": params, "id": 1},
        headers=headers,
    ).json()
    if "error" in answer:
        raise SystemExit(f"{method} failed: {answer['error']}")
    return answer["result"]


def train_one_day(client: httpx.Client) -> None:
    params = {"service": SERVICE, "start": DAY, "end": DAY}
    job = rpc(client, "pipeline.train", params, token=TOKEN)
    deadline = time.monotonic() + 600
    while job["state"] not in ("succeeded", "failed", "cancelled"):
        if time.monotonic() > deadline:
            raise SystemExit(f"training did not finish: {job}")
        time.sleep(0.5)
        job = rpc(client, "job.status", {"job_id": job["id"]})
    if job["state"] != "succeeded":
        raise SystemExit(f"training failed: {job}")


def ok(response: httpx.Response) -> bool:
    return response.status_code == 200 and "result" in response.json()


def sequential(client: httpx.Client, method: str, params: Any, n: int) -> dict[str, Any]:
    times, errors = [], 0
    body = {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}
    for _ in range(n):
        started = time.perf_counter()
        response = client.post("/rpc", json=body)
        times.append((time.perf_counter() - started) * 1000)
        errors += not ok(response)
    return {"times": times, "errors": errors, "wall": sum(times) / 1000}


def _answered(status: int, body: bytes) -> bool:
    try:
        return status == 200 and "result" in json.loads(body)
    except ValueError:
        return False


async def raw_burst(url: str, method: str, params: Any, n: int) -> dict[str, Any]:
    """`n` requests sent at once, each on its own connection (a minimal HTTP/1.1 client)."""
    authority = url.split("://", 1)[1]
    host, port = authority.rsplit(":", 1)

    async def one(i: int) -> tuple[float, bool]:
        body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": i})
        request = (
            f"POST /rpc HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n"
            f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n{body}"
        ).encode()
        started = time.perf_counter()
        try:
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(request)
            await writer.drain()
            answer = await reader.read()  # to the end: the server closes after answering
            writer.close()
        except OSError:
            return (time.perf_counter() - started) * 1000, False
        elapsed = (time.perf_counter() - started) * 1000
        head, _, payload = answer.partition(b"\r\n\r\n")
        status_line = head.split(b"\r\n", 1)[0].split()
        status = int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else 0
        chunked = b"transfer-encoding: chunked" in head.lower()
        return elapsed, _answered(status, _unchunk(payload) if chunked else payload)

    started = time.perf_counter()
    results = await asyncio.gather(*(one(i) for i in range(n)))
    wall = time.perf_counter() - started
    return {
        "times": [t for t, _ in results],
        "errors": sum(not good for _, good in results),
        "wall": wall,
    }


def _unchunk(payload: bytes) -> bytes:
    out = bytearray()
    while payload:
        size_line, _, rest = payload.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        payload = rest[size + 2 :]
    return bytes(out)


async def httpx_burst(url: str, method: str, params: Any, n: int) -> dict[str, Any]:
    """`n` requests sent at once with httpx's AsyncClient, each on its own connection."""
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def one(i: int) -> tuple[float, bool]:
            body = {"jsonrpc": "2.0", "method": method, "params": params, "id": i}
            started = time.perf_counter()
            try:
                response = await client.post("/rpc", json=body)
            except httpx.HTTPError:
                return (time.perf_counter() - started) * 1000, False
            return (time.perf_counter() - started) * 1000, ok(response)

        started = time.perf_counter()
        results = await asyncio.gather(*(one(i) for i in range(n)))
        wall = time.perf_counter() - started
    return {
        "times": [t for t, _ in results],
        "errors": sum(not good for _, good in results),
        "wall": wall,
    }


def row(label: str, n: int, stats: dict[str, Any], high: int) -> str:
    times = stats["times"]
    return (
        f"{label:<28} {n:>6} {statistics.median(times):>9.1f} {percentile(times, high):>9.1f} "
        f"{max(times):>9.1f} {stats['wall']:>8.2f} {stats['errors']:>6}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequential", type=int, default=200, help="requests per method")
    parser.add_argument("--concurrent", type=int, default=200, help="requests per burst")
    parser.add_argument("--rounds", type=int, default=3, help="bursts per method")
    parser.add_argument("--workspace", type=Path, help="reuse this demo workspace (with a catalog)")
    parser.add_argument(
        "--client", choices=("raw", "httpx"), default="raw", help="the bursts' HTTP client"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="daeda-rpc-bench-") as tmp:
        root = Path(tmp)
        workspace = args.workspace.resolve() if args.workspace else prepare(root)
        proc, url = start_server(workspace, root / "server.log")
        failed = 0
        try:
            with httpx.Client(base_url=url, timeout=120) as client:
                train_one_day(client)
                preview = {"service": SERVICE, "day": DAY, "limit": 10}
                for _ in range(5):  # warm-up: imports, the catalog cache, the day's files
                    rpc(client, "service.schema", {"service": SERVICE})
                    rpc(client, "catalog.list", {})
                    rpc(client, "days.preview", preview)
                print(
                    f"server {url} (pid {proc.pid}); workspace {workspace}; "
                    f"burst client {args.client}"
                )
                head = (
                    f"{'requests':<28} {'n':>6} {'p50 ms':>9} {'p95/p99':>9} {'max ms':>9} "
                    f"{'wall s':>8} {'errors':>6}"
                )
                print(head)
                print("-" * len(head))
                for method, params in (
                    ("service.schema", {"service": SERVICE}),
                    ("catalog.list", {}),
                ):
                    stats = sequential(client, method, params, args.sequential)
                    failed += stats["errors"]
                    print(row(f"sequential {method}", args.sequential, stats, 95), flush=True)
            for method, params in (
                ("service.schema", {"service": SERVICE}),
                ("days.preview", preview),
            ):
                merged: dict[str, Any] = {"times": [], "errors": 0, "wall": 0.0}
                for _ in range(args.rounds):
                    burst = raw_burst if args.client == "raw" else httpx_burst
                    stats = asyncio.run(burst(url, method, params, args.concurrent))
                    merged["times"] += stats["times"]
                    merged["errors"] += stats["errors"]
                    merged["wall"] = max(merged["wall"], stats["wall"])
                failed += merged["errors"]
                label = f"{args.concurrent} at once {method}"
                print(row(label, len(merged["times"]), merged, 99), flush=True)
            print(
                "p95/p99: p95 for sequential rows, p99 for concurrent ones; wall: the whole "
                "sequence, or the slowest burst"
            )
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if failed:
            log = (root / "server.log").read_text(errors="replace")
            print(f"{failed} request(s) failed; server log tail:\n{log[-2000:]}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
