"""`SqliteRunStore`: jobs in an SQLite database in the workspace (history survives restarts)."""

from __future__ import annotations

import datetime as dt
import errno
import json
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from daedalus.ports import RunStorePort

__all__ = ["SqliteRunStore"]

_JSON_FIELDS = ("params", "progress", "result", "error")
_COLUMNS = (
    "id",
    "kind",
    "params",
    "state",
    "progress",
    "result",
    "error",
    "owner",
    "cancel_requested",
    "created_at",
    "started_at",
    "finished_at",
)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    params TEXT NOT NULL,
    state TEXT NOT NULL,
    progress TEXT,
    result TEXT,
    error TEXT,
    owner TEXT NOT NULL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at);
"""


def _storage_error(path: Path, exc: sqlite3.Error) -> OSError:
    return OSError(errno.EIO, f"the job database cannot be used ({exc})", str(path))


class SqliteRunStore(RunStorePort):
    """One connection per call (so threads never share one); WAL so readers never block.

    Nothing is created until the first job is recorded: reading the jobs of a workspace that
    has none (status, list, a dry run) leaves the workspace as it was.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._ready = False

    def _create(self) -> None:
        if self._ready:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"cannot create the job database's directory ({exc.strerror})",
                str(self.path.parent),
            ) from exc
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
        self._ready = True

    def _exists(self) -> bool:
        if not self._ready and self.path.exists():
            self._create()  # an existing database: make sure its schema is there
        return self._ready

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection; an SQLite failure (disk full, read-only, not a database) is raised as
        an OSError naming the database file, so every surface reports it as a storage fault."""
        try:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.Error as exc:
            raise _storage_error(self.path, exc) from exc
        db.row_factory = sqlite3.Row
        try:
            yield db
        except sqlite3.Error as exc:
            raise _storage_error(self.path, exc) from exc
        finally:
            db.close()

    def _row(self, row: sqlite3.Row | None) -> dict[str, Any] | None:
        if row is None:
            return None
        out = dict(row)
        for key in _JSON_FIELDS:
            out[key] = json.loads(out[key]) if out[key] is not None else None
        out["cancel_requested"] = bool(out["cancel_requested"])
        return out

    def create(self, kind: str, params: dict[str, Any], owner: str) -> dict[str, Any]:
        self._create()
        job_id = uuid.uuid4().hex[:12]
        now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        with self._connect() as db:
            db.execute(
                "INSERT INTO jobs (id, kind, params, state, owner, created_at) VALUES (?, ?, ?, 'queued', ?, ?)",
                (job_id, kind, json.dumps(params), owner, now),
            )
        record = self.get(job_id)
        assert record is not None
        return record

    def update(self, job_id: str, **fields: Any) -> None:
        unknown = set(fields) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"unknown job field(s): {', '.join(sorted(unknown))}")
        values = [json.dumps(v, default=str) if k in _JSON_FIELDS else v for k, v in fields.items()]
        assignments = ", ".join(f"{k} = ?" for k in fields)
        if not self._exists():
            return
        with self._connect() as db:
            db.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (*values, job_id))

    def get(self, job_id: str) -> dict[str, Any] | None:
        if not self._exists():
            return None
        with self._connect() as db:
            return self._row(db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())

    def list(self, limit: int = 50) -> list[dict[str, Any]]:
        if not self._exists():
            return []
        with self._connect() as db:
            rows = db.execute(
                "SELECT * FROM jobs ORDER BY created_at DESC, rowid DESC LIMIT ?", (limit,)
            )
            return [r for r in (self._row(x) for x in rows.fetchall()) if r is not None]

    def request_cancel(self, job_id: str) -> bool:
        if not self._exists():
            return False
        with self._connect() as db:
            cur = db.execute(
                "UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND state IN ('queued', 'running')",
                (job_id,),
            )
            return cur.rowcount > 0
