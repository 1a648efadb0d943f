"""Stops what is left of a local Ray session once the process that started it is gone.

Started by `enricher.ensure_ray` before it starts a local Ray, as

    python -I -S _ray_watchdog.py DRIVER_PID TEMP_DIR

in a session of its own (a Ctrl-C or a hang-up of the driver's terminal does not reach it),
with a pipe on stdin whose other end only the driver holds. A process of that Ray (GCS,
raylet, agents, workers, what they start) is known by `DAEDALUS_RAY_OWNER=TEMP_DIR` in its
environment (the driver sets it while `ray.init` spawns the daemons; all they spawn inherits
it), or by a file it holds open under TEMP_DIR (Ray's logs), since a process that renames
itself may blank the environment /proc shows.

It prints "ready" once it watches the driver, then waits until the driver exits (however:
SIGKILL included; a pidfd, the pipe's end of file and the parent pid all say so) or closes
the pipe (after `ray.shutdown()`), then SIGKILLs every live process of the session (never
the driver) until none is left, removes TEMP_DIR and exits. Standard library only: it must
start in a few milliseconds and import nothing of the driver's.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import shutil
import signal
import sys
import time

MARKER = "DAEDALUS_RAY_OWNER"
#: How long to keep looking for stragglers (a process being spawned as its parent dies).
SWEEP_SECONDS = 30.0
#: Consecutive empty scans that end the sweep.
QUIET_SCANS = 3


def wait_for_driver(driver: int) -> None:
    """Return once `driver` has exited, or has closed (or written to) our stdin."""
    watched = [sys.stdin.fileno()]
    pidfd = None
    with contextlib.suppress(AttributeError, OSError):  # Linux >= 5.3 (else: polling)
        pidfd = os.pidfd_open(driver)
        watched.append(pidfd)
    if os.getppid() != driver:  # gone already: we were handed to another parent
        return
    with contextlib.suppress(OSError):
        os.write(1, b"ready\n")
    devnull = os.open(os.devnull, os.O_WRONLY)  # let go of the driver's end of the pipe
    os.dup2(devnull, 1)
    os.close(devnull)
    while True:
        try:
            ready, _, _ = select.select(watched, [], [], 1.0)
        except InterruptedError:
            continue
        if ready or os.getppid() != driver:
            return


def belongs(pid: int, needle: bytes, temp_dir: str, driver: int) -> bool:
    """Whether `pid` is a process of the session: the marker is in its environment, or it
    holds a file under the session's temp dir open (Ray's daemons and workers all hold
    their logs there). The marker alone is not enough: a process that renames itself
    (setproctitle, as Ray's agents and workers do) may overwrite the memory that
    /proc/PID/environ shows. The driver's own logs (`..._PID.log`) do not count: a child
    the driver forked holds them too, and it is not Ray's."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            if needle in f.read().split(b"\0"):  # a zombie's environment reads empty
                return True
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    inside = temp_dir.rstrip("/") + "/"
    drivers = f"_{driver}.log"
    for fd in fds:
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith(inside) and not target.endswith(drivers):
                return True
    return False


def session_processes(temp_dir: str, driver: int) -> list[tuple[int, int | None]]:
    """(pid, pidfd or None) of every live process of the session but the driver and this.

    The pidfd is opened after a match and the match checked again through it, so a signal
    sent through it cannot reach another process that reused the pid in between.
    """
    needle = f"{MARKER}={temp_dir}".encode()
    me = os.getpid()
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:  # no /proc (not Linux): Ray's own reaper is all there is
        return []
    for name in entries:
        if not name.isdigit() or int(name) in (me, driver):
            continue
        if not belongs(int(name), needle, temp_dir, driver):
            continue
        pid, pidfd = int(name), None
        try:
            pidfd = os.pidfd_open(pid)
        except AttributeError:  # Python without pidfds: plain kill
            pass
        except OSError as exc:
            if exc.errno != errno.ENOSYS:  # kernel without pidfds: plain kill
                continue  # gone already
        if belongs(pid, needle, temp_dir, driver):
            found.append((pid, pidfd))
        elif pidfd is not None:
            os.close(pidfd)
    return found


def sweep(temp_dir: str, driver: int) -> int:
    """SIGKILL the session's processes until a few scans in a row find none; how many died."""
    killed = quiet = 0
    deadline = time.monotonic() + SWEEP_SECONDS
    while quiet < QUIET_SCANS and time.monotonic() < deadline:
        found = session_processes(temp_dir, driver)
        quiet = 0 if found else quiet + 1
        for pid, pidfd in found:
            try:
                if pidfd is not None:
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)
                killed += 1
            except OSError:  # gone meanwhile
                pass
            finally:
                if pidfd is not None:
                    os.close(pidfd)
        time.sleep(0.02 if found else 0.05)
    return killed


def main(argv: list[str]) -> int:
    driver, temp_dir = int(argv[0]), argv[1]
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    wait_for_driver(driver)
    sweep(temp_dir, driver)
    if os.path.basename(temp_dir).startswith("daeda-ray-"):  # only ever the dir it was given
        shutil.rmtree(temp_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
