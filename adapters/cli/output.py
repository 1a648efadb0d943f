"""Where the CLI's output goes: an answer as JSON on stdout (`--json`) or rendered for people,
errors as located messages on stderr, and an exit code that says what happened."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, TextIO

from daedalus.adapters.cli.render import error_lines

from daedalus.app.errors import AppError

__all__ = ["EXIT_CODES", "emit", "json_stdout", "release_stdout", "run"]

#: What each exit code means (also in the README).
EXIT_CODES = {
    "ok": 0,
    "internal": 1,
    "usage": 2,
    "invalid_catalog": 3,
    "not_found": 4,
    "invalid_argument": 5,
    "invalid_input": 6,
    "conflict": 7,
    "forbidden": 8,
    "audit_failed": 9,
    "cancelled": 10,
    "storage": 11,
}

# Where --json output goes: the real stdout, kept aside while a command runs with stdout pointed
# at stderr, so that nothing a library prints (Ray's notices, say) can corrupt the JSON.
_json_out: list[TextIO] = []
# The process's real stdout when `json_stdout` has pointed file descriptor 1 at stderr for a
# --json command (Ray's driver threads print raylet notices to sys.stdout at any moment, even
# between the command's end and the process's exit).
_real_stdout: list[TextIO] = []


def emit(data: Any, as_json: bool, human: Callable[[Any], None]) -> None:
    """`data` as JSON on the real stdout, or rendered by `human`."""
    if as_json:
        print(
            json.dumps(data, indent=2, default=str),
            file=_json_out[-1] if _json_out else sys.stdout,
            flush=True,
        )
    else:
        human(data)


def _ignore(_: Any) -> None:
    pass


def run(action: Callable[[], int], debug: bool, as_json: bool) -> int:
    """Run a command body; turn errors into located messages on stderr and an exit code."""
    if as_json:
        _json_out.append(_real_stdout[-1] if _real_stdout else sys.stdout)
        try:
            with contextlib.redirect_stdout(sys.stderr):
                return _guarded(action, debug, True)
        finally:
            _json_out.pop()
    return _guarded(action, debug, False)


def _fail(kind: str, error: dict[str, Any], lines: list[str], as_json: bool) -> int:
    if as_json:
        emit({"error": error}, True, _ignore)
    for line in lines:
        print(line, file=sys.stderr)
    return EXIT_CODES.get(kind, 1)


def _guarded(action: Callable[[], int], debug: bool, as_json: bool) -> int:
    try:
        return action()
    except AppError as exc:
        if debug:
            traceback.print_exc()
        return _fail(exc.kind, exc.to_dict(), error_lines(exc), as_json)
    except KeyboardInterrupt:  # Ctrl-C: the job (if any) is recorded as cancelled
        error = {"kind": "cancelled", "message": "interrupted (Ctrl-C)"}
        line = "error: interrupted (Ctrl-C); days published before are complete"
        return _fail("cancelled", error, [line], as_json)
    except OSError as exc:  # a filesystem fault no use case named (e.g. the job database)
        if debug:
            traceback.print_exc()
        where = f"{exc.filename}: " if exc.filename else ""
        message = f"storage: {where}{exc.strerror or exc}"
        return _fail(
            "storage", {"kind": "storage", "message": message}, [f"error: {message}"], as_json
        )
    except Exception as exc:  # the last line of defence: a message, not a traceback
        if debug:
            traceback.print_exc()
        line = f"error: {type(exc).__name__}: {exc} (run with --debug for the traceback)"
        print(line, file=sys.stderr)
        return EXIT_CODES["internal"]


def json_stdout() -> None:
    """For a --json command: only the JSON goes to the real stdout (a duplicate of fd 1); fd 1
    itself, and with it sys.stdout and native writes, points at stderr for the rest of the
    process."""
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
        real = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
        _real_stdout.append(real)


def release_stdout() -> None:
    """Flush the command's output; whatever libraries print while the process winds down
    (Ray's exit notices, from Python or from native threads) goes to stderr, so stdout holds
    the command's output alone and `--json` output stays parseable."""
    for stream in (*_real_stdout, sys.stdout):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    with contextlib.suppress(OSError, ValueError):
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
