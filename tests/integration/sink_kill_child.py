"""Child process for tests/integration/test_parquet_sink.py: a writer that can be killed.

python sink_kill_child.py commit ROOT SERVICE VERSION KILL_AT MODE CLAIM
    Publish version VERSION ("old" or "new") of DAY into ParquetSink(ROOT), printing each
    step of `commit_day` as it is done; SIGKILL itself right after step KILL_AT ("-":
    never). MODE "fallback" makes renameat2 fail with EINVAL (as on a filesystem without
    RENAME_EXCHANGE) so the two-rename publish runs; "exchange" leaves it alone. CLAIM
    "claim" holds the output's claim around the write (as the CLI does), "worker" does
    not (as a Ray worker does, its driver holding the claim).

python sink_kill_child.py hold ROOT SERVICE
    Claim the output, begin a day (printing the staging path), print "locked", then wait
    for a line on stdin (or to be killed).
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import signal
import sys
from typing import Any

import pyarrow as pa
from daedalus.adapters.parquet import sink as sink_module
from daedalus.adapters.parquet.sink import ParquetSink

DAY = dt.date(2026, 10, 2)
SCHEMA = pa.schema([("user_id", pa.int64()), ("score", pa.float64()), ("tag", pa.string())])


def version_parts(version: str) -> dict[str, pa.Table]:
    """The part files of each version: the old one has one part, the new one two."""
    if version == "old":
        return {
            "part-00000.parquet": pa.table(
                {"user_id": [1, 2, 3], "score": [0.5, 1.5, 2.5], "tag": ["a", "b", "c"]},
                schema=SCHEMA,
            )
        }
    return {
        "part-00000.parquet": pa.table(
            {"user_id": [10, 11], "score": [9.0, 8.0], "tag": ["x", None]}, schema=SCHEMA
        ),
        "part-00001.parquet": pa.table(
            {"user_id": [12, 13, 14, 15], "score": [1.0, 2.0, 3.0, 4.0], "tag": list("wxyz")},
            schema=SCHEMA,
        ),
    }


def publish(sink: ParquetSink, service: str, version: str) -> str:
    parts = version_parts(version)
    staging = sink.begin_day(service, DAY)
    for name, table in parts.items():
        sink.write_staged(staging, name, table)
    manifest: dict[str, Any] = {
        "version": version,
        "rows": sum(t.num_rows for t in parts.values()),
    }
    return sink.commit_day(service, DAY, staging, manifest, SCHEMA)


def _commit(root: str, service: str, version: str, kill_at: str, mode: str, claim: str) -> None:
    if mode == "fallback":

        def unsupported(src: object, dst: object, flags: int) -> None:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))

        sink_module._renameat2 = unsupported  # type: ignore[assignment]

    def on_step(name: str) -> None:
        print(name, flush=True)
        if name == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    sink = ParquetSink(root, on_step=on_step)
    if claim == "claim":
        with sink.claim(service, {"job": "kill-test"}):
            publish(sink, service, version)
    else:
        publish(sink, service, version)


def _hold(root: str, service: str) -> None:
    sink = ParquetSink(root)
    with sink.claim(service, {"job": "holder-test", "surface": "test"}):
        print(sink.begin_day(service, DAY), flush=True)
        print("locked", flush=True)
        sys.stdin.readline()


if __name__ == "__main__":
    if sys.argv[1] == "commit":
        _commit(*sys.argv[2:8])
    elif sys.argv[1] == "hold":
        _hold(*sys.argv[2:4])
    else:
        raise SystemExit(f"unknown command {sys.argv[1]!r}")
