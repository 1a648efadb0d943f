"""Child process for tests/e2e/test_ray_lifetime.py: a process that starts a local Ray.

Every mode starts Ray through `ensure_ray(None)` (as the enricher does), runs a few tasks so
that worker processes exist, and prints one JSON line per step on stdout.

python ray_lifetime_driver.py serve main|thread
    Start Ray from the main thread ("main", as `daeda pipeline train` does) or from a
    short-lived thread ("thread", as a JSON-RPC/MCP job does), print {"ready": ...}, then
    sleep until killed or interrupted.

python ray_lifetime_driver.py end normal|raise
    Start Ray, then end: return from main, or raise an exception.

python ray_lifetime_driver.py survive SECONDS
    Start Ray inside a thread that then ends, print the processes Ray had spawned by then
    (gcs_server, raylet, ...), wait SECONDS after the thread's end, then print which of them died and whether Ray
    still answers (`ray.get(ray.put(1))` and a task), each with a timeout.

python ray_lifetime_driver.py restart
    Start Ray, stop it with `RayLanceEnricher.shutdown()`, print which of Ray's processes are
    still alive afterwards, start it again and use it.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import ray
from daedalus.adapters.lance_ray.enricher import RayLanceEnricher, ensure_ray


def say(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


@ray.remote(num_cpus=0.5)
def _plus_one(x: int) -> int:
    return x + 1


def use_ray(timeout: float = 60.0) -> bool:
    """Put, get and run tasks; False if Ray does not answer within `timeout` seconds."""

    def work() -> bool:
        assert ray.get(ray.put(1)) == 1
        return ray.get([_plus_one.remote(i) for i in range(4)]) == [1, 2, 3, 4]

    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        return pool.submit(work).result(timeout=timeout)
    except Exception:
        return False
    finally:
        pool.shutdown(wait=False)


def children() -> dict[int, str]:
    """Live child processes of this process: pid -> command line (Ray's daemons)."""
    me = os.getpid()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except (OSError, ValueError, IndexError):
            continue
        if int(fields[1]) == me and fields[0] != "Z" and cmd:
            found[int(entry.name)] = cmd
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def start_in_thread() -> dict[int, str]:
    """`ensure_ray(None)` in a thread that then ends; the processes Ray had spawned by then."""
    errors: list[BaseException] = []
    spawned: dict[int, str] = {}

    def job() -> None:
        try:
            ensure_ray(None)
            spawned.update(children())
        except BaseException as exc:  # pragma: no cover - reported to the test
            errors.append(exc)

    thread = threading.Thread(target=job, name="job")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return spawned


def main(argv: list[str]) -> int:
    mode, arg = argv[0], argv[1] if len(argv) > 1 else ""
    if mode == "serve":
        if arg == "thread":
            start_in_thread()
        else:
            ensure_ray(None)
        say(ready=use_ray(), pid=os.getpid())
        while True:
            time.sleep(3600)
    if mode == "end":
        ensure_ray(None)
        say(ready=use_ray(), pid=os.getpid())
        if arg == "raise":
            raise RuntimeError("the run failed after Ray started")
        return 0
    if mode == "survive":
        spawned = start_in_thread()
        say(spawned=spawned)
        time.sleep(float(arg))
        say(
            died=sorted(spawned[pid] for pid in spawned if not alive(pid)),
            answers=use_ray(timeout=30.0),
        )
        return 0
    if mode == "restart":
        ensure_ray(None)
        first = use_ray()
        spawned = children()
        RayLanceEnricher().shutdown()
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in spawned) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = sorted(spawned[pid] for pid in spawned if alive(pid))
        ensure_ray(None)
        say(first=first, left_after_shutdown=left, second=use_ray())
        RayLanceEnricher().shutdown()
        return 0
    raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
