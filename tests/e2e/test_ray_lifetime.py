"""The local Ray a process starts lives exactly as long as that process.

- However a run ends (normal end, exception, SIGINT from a terminal, SIGTERM, SIGKILL), no
  process of the Ray it started is left running a few seconds later: not the raylet or the
  GCS, and not what they spawned (dashboard agent, runtime-env agent, workers), which Ray
  itself only reaps when they notice, up to a minute later.
- Ray started from a thread that then ends (a JSON-RPC or MCP job) keeps running: its
  daemons' parent-death signal must not fire when the *thread* exits.
- The private temp dir the run's Ray used (`daeda-ray-*`) is removed.

Each run is a subprocess in its own session (`start_new_session`), so the processes it starts
are found by their session (and by the process tree seen just before it ends); teardown kills
exactly those, never another Ray on the machine (`ray stop` would stop them all).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daedalus.adapters.demo.generator import write_demo_workspace

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DRIVER = Path(__file__).with_name("ray_lifetime_driver.py")
#: Seconds allowed between the end of a run and the end of the last Ray process it started.
#: (Before the fix: about 60 s after a SIGKILL, while the agents waited for a dead GCS.)
GONE_WITHIN = 10.0
#: How long a run may take to bring Ray up (a busy 2-core box starts Ray in 5-20 s).
STARTUP_SECONDS = 180.0

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc; parent-death signals are Linux's"
)

Proc = tuple[int, int]  # (pid, start time in clock ticks): a pid cannot be confused when reused


def _stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, ppid, session id, start time) of `pid`, None once it is gone."""
    try:
        # "pid (comm) state ppid pgrp session ... starttime(22nd field)": comm may hold ")"
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0], int(fields[1]), int(fields[3]), int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def _all() -> dict[int, tuple[str, int, int, int]]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (st := _stat(int(entry.name))) is not None:
            found[int(entry.name)] = st
    return found


def _live(procs: set[Proc]) -> set[Proc]:
    """The processes of `procs` still running (zombies are dead, just not reaped yet)."""
    live = set()
    for pid, start in procs:
        st = _stat(pid)
        if st is not None and st[0] != "Z" and st[3] == start:
            live.add((pid, start))
    return live


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return "?"


class Run:
    """A subprocess in its own session and every process it starts."""

    def __init__(self, cmd: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        self.seen: set[Proc] = set()
        self.dirs: set[Path] = set()
        self.lines: queue.Queue[bytes | None] = queue.Queue()
        self.stderr: list[bytes] = []
        threading.Thread(target=self._pump_stdout, daemon=True).start()
        threading.Thread(target=self._pump_stderr, daemon=True).start()

    def _pump_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def message(self, timeout: float = STARTUP_SECONDS) -> dict[str, Any]:
        """The next JSON line the child prints."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no message from the child within {timeout} s{self.tail()}")
            if line is None:
                pytest.fail(f"the child ended (code {self.proc.poll()}) early{self.tail()}")
            with contextlib.suppress(json.JSONDecodeError):
                return json.loads(line)

    def tail(self) -> str:
        return "\nstderr:\n" + b"".join(self.stderr).decode(errors="replace")[-3000:]

    def track(self) -> set[Proc]:
        """Note the processes of the run now: its session, and the child's process tree (a
        daemon may have left the session); returns the live ones."""
        procs = _all()
        sid = self.proc.pid
        tree = {self.proc.pid}
        grew = True
        while grew:
            grew = False
            for pid, (_, ppid, _, _) in procs.items():
                if ppid in tree and pid not in tree:
                    tree.add(pid)
                    grew = True
        for pid, (state, _, session, start) in procs.items():
            if state != "Z" and (session == sid or pid in tree):
                self.seen.add((pid, start))
        self.dirs.update(self.temp_dirs())
        return _live(self.seen)

    def temp_dirs(self) -> list[Path]:
        """The private Ray temp dirs of this run (a session dir there is named after its
        driver's pid)."""
        root = Path(os.environ.get("RAY_TMPDIR") or tempfile.gettempdir())
        return sorted(p.parent for p in root.glob(f"daeda-ray-*/session_*_{self.proc.pid}"))

    def ray_processes(self) -> list[str]:
        return [_cmdline(pid) for pid, _ in self.track() if pid != self.proc.pid]

    def wait_gone(self, timeout: float = GONE_WITHIN + 5) -> tuple[float, list[str]]:
        """Seconds from now until no process of the run is left (or the leftovers)."""
        started = time.monotonic()
        while True:
            self.proc.poll()  # reap the child as soon as it ends
            live = self.track()
            if not live:
                return time.monotonic() - started, []
            if time.monotonic() - started > timeout:
                return time.monotonic() - started, sorted(_cmdline(p) for p, _ in live)
            time.sleep(0.05)

    def kill_all(self) -> None:
        """End the run: SIGKILL the child, give what it started time to end (a watchdog to
        clean up), then SIGKILL whatever is left of the run (only its own processes)."""
        self.track()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.wait_gone()
        for pid, _ in self.track():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while self.track() and time.monotonic() < deadline:
            time.sleep(0.1)


@contextlib.contextmanager
def run(*args: str, env: dict[str, str] | None = None) -> Iterator[Run]:
    r = Run([*args], env=env)
    try:
        yield r
    finally:
        r.kill_all()


def _env() -> dict[str, str]:
    """The environment without a Ray address or Daedalus settings: a local Ray is started."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "DAEDA_"))}


def driver(*args: str) -> list[str]:
    return [sys.executable, str(DRIVER), *args]


def assert_all_gone(r: Run, how: str) -> float:
    """Every process of the run ends within GONE_WITHIN seconds, and the temp dir of the Ray
    it started is removed; returns the seconds it took."""
    seconds, left = r.wait_gone()
    assert not left, (
        f"{how}: {len(left)} process(es) of the run still running {seconds:.1f} s later:\n"
        + "\n".join(left)
    )
    assert seconds <= GONE_WITHIN, f"{how}: the last Ray process ended {seconds:.1f} s later"
    assert not [d for d in r.dirs if d.exists()], f"{how}: Ray's temp dir is left behind"
    print(f"{how}: every Ray process gone {seconds:.2f} s later")
    return seconds


def _ready(r: Run) -> None:
    msg = r.message()
    assert msg["ready"], f"Ray did not answer in the child{r.tail()}"
    assert any("raylet" in cmd for cmd in r.ray_processes()), r.ray_processes()


# ============================================================================ the CLI


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("raylife")
    write_demo_workspace(root, scale="tiny")
    shutil.copytree(REPO / "feature_views", root / "feature_views")
    return root


def _wait_for_enrich(r: Run) -> list[str]:
    """Wait until the run's Ray is fully up: raylet, both agents and a worker (the enrich)."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if r.proc.poll() is not None:
            pytest.fail(f"the run ended (code {r.proc.returncode}) before enriching{r.tail()}")
        cmds = r.ray_processes()
        agents = {"ray::DashboardAgent", "ray::RuntimeEnvAgent"}
        workers = [c for c in cmds if c.startswith("ray::") and c not in agents]
        if any("raylet" in c for c in cmds) and agents <= set(cmds) and workers:
            return cmds
        time.sleep(0.1)
    pytest.fail(f"Ray did not come up within {STARTUP_SECONDS} s{r.tail()}")


def test_sigkill_of_a_training_run_leaves_no_ray_process(workspace: Path) -> None:
    """The issue: `kill -9` of `daeda pipeline train` while it enriches."""
    cmd = [
        str(BIN / "daeda"),
        "pipeline",
        "train",
        "feed_ranking",
        "--workspace",
        str(workspace),
        "--catalog",
        str(workspace / "feature_views"),
        "--out",
        str(workspace / "out"),
        "--start",
        "2026-10-01",
        "--end",
        "2026-10-05",
        "--json",
    ]
    # enrich on Ray Data (the tiny demo is far below what is pooled in process)
    with run(*cmd, env={**_env(), "DAEDA_ENRICH_IN_PROCESS_ROWS": "0"}) as r:
        _wait_for_enrich(r)
        os.kill(r.proc.pid, signal.SIGKILL)
        assert_all_gone(r, "SIGKILL of daeda pipeline train")


# ============================================================================ every way to end


@pytest.mark.parametrize(
    ("started_from", "how"),
    [
        ("main", "SIGINT"),  # Ctrl-C: the terminal signals the whole foreground group
        ("main", "SIGTERM"),
        ("main", "SIGKILL"),
        ("thread", "SIGTERM"),  # a server: Ray started by a job's thread
        ("thread", "SIGKILL"),
    ],
)
def test_a_signalled_run_leaves_no_ray_process(started_from: str, how: str) -> None:
    where = {"main": "its main thread", "thread": "a thread that ended"}
    with run(*driver("serve", started_from), env=_env()) as r:
        _ready(r)
        if how == "SIGINT":
            os.killpg(r.proc.pid, signal.SIGINT)
        else:
            os.kill(r.proc.pid, getattr(signal, how))
        assert_all_gone(r, f"{how} of a run that started Ray from {where[started_from]}")


@pytest.mark.parametrize("end", ["normal", "raise"])
def test_a_run_that_ends_leaves_no_ray_process(end: str) -> None:
    with run(*driver("end", end), env=_env()) as r:
        _ready(r)
        code = r.proc.wait(timeout=60)
        assert code == (0 if end == "normal" else 1), r.tail()
        assert_all_gone(r, f"a run ending {'normally' if end == 'normal' else 'by exception'}")


def test_shutdown_stops_ray_and_a_later_enrich_starts_it_again() -> None:
    with run(*driver("restart"), env=_env()) as r:
        msg = r.message()
        r.track()
        assert msg == {"first": True, "left_after_shutdown": [], "second": True}, r.tail()
        assert r.proc.wait(timeout=60) == 0, r.tail()
        assert_all_gone(r, "a run that stopped Ray itself")


# ============================================================================ thread-started Ray


def test_ray_started_by_a_thread_outlives_the_thread() -> None:
    """Fast: the daemons' parent-death signal fires within a second of the thread's end."""
    with run(*driver("survive", "5"), env=_env()) as r:
        spawned = r.message()["spawned"]
        r.track()
        assert any("gcs_server" in c for c in spawned.values()), spawned
        after = r.message(timeout=120)
        assert after == {"died": [], "answers": True}, r.tail()
        assert r.proc.wait(timeout=60) == 0, r.tail()
        assert_all_gone(r, "a run that started Ray from a thread that ended")


@pytest.mark.slow
def test_ray_started_by_a_thread_still_answers_75_seconds_later() -> None:
    """The server's symptom: ~60 s after a job's thread ends, 'Failed to connect to GCS'."""
    with run(*driver("survive", "75"), env=_env()) as r:
        r.message()
        r.track()
        after = r.message(timeout=200)
        assert after == {"died": [], "answers": True}, r.tail()
        assert r.proc.wait(timeout=60) == 0, r.tail()
        assert_all_gone(r, "a run that started Ray from a thread that ended")
