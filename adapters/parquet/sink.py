"""`ParquetSink`: `<out>/<service>/dt=YYYY-MM-DD/part-*.parquet` + `_manifest.json`, published
with no window, one writer per output (an OS-level lock), every file checksummed."""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from daedalus.catalog.dtypes import format_dtype
from daedalus.ports import SinkError, SinkPort

__all__ = ["LOCK", "MANIFEST", "OWNER", "ParquetSink"]

MANIFEST = "_manifest.json"
OWNER = "_service.json"
LOCK = ".lock"
_STAGING = ".staging-"
_TRASH = ".trash-"
_TRASH_NAME = re.compile(r"^\.trash-(dt=\d{4}-\d{2}-\d{2})-(?P<stamp>[0-9a-f]*)")
_STAGING_DAY = re.compile(r"^\.staging-(\d{4}-\d{2}-\d{2})-")
_CHUNK = 1 << 20

# renameat2(2) flags (linux/fs.h).
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2
#: errno values meaning "this kernel or filesystem cannot do that rename": use the fallback.
_UNSUPPORTED = {errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP}
_libc_renameat2: Any = None


def _renameat2(src: str | Path, dst: str | Path, flags: int) -> None:
    """Linux renameat2(2) through libc; OSError(ENOSYS) where libc does not have it."""
    global _libc_renameat2
    if _libc_renameat2 is None:
        try:
            fn = ctypes.CDLL(None, use_errno=True).renameat2
            fn.argtypes = [
                ctypes.c_int,
                ctypes.c_char_p,
                ctypes.c_int,
                ctypes.c_char_p,
                ctypes.c_uint,
            ]
            fn.restype = ctypes.c_int
        except (OSError, AttributeError):
            fn = False
        _libc_renameat2 = fn
    if _libc_renameat2 is False:
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS), str(src), None, str(dst))
    if _libc_renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(src), None, str(dst))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _trash_rank(path: Path) -> tuple[bool, int]:
    """Which of several trashed copies of a day to restore: one with a manifest, newest."""
    match = _TRASH_NAME.match(path.name)
    stamp = match.group("stamp") if match else ""
    return (path / MANIFEST).is_file(), int(stamp or "0", 16)


def _schema_text(schema: pa.Schema) -> str:
    return ", ".join(f"{f.name} {format_dtype(f.type)}" for f in schema)


def _reason(exc: OSError) -> str:
    """The OS's reason, without Arrow's or Python's decoration."""
    return os.strerror(exc.errno) if exc.errno else str(exc)


def _storage_error(what: str, path: Path | str, exc: OSError, day: str | None) -> SinkError:
    prefix = f"day {day}: " if day else ""
    return SinkError(
        f"{prefix}cannot {what} {path}: {_reason(exc)}",
        code="storage",
        data={"path": str(path), "day": day, "errno": exc.errno, "reason": _reason(exc)},
    )


@contextlib.contextmanager
def _storage(what: str, path: Path | str, day: dt.date | str | None = None) -> Iterator[None]:
    """Turn an OSError of the block into SinkError(code="storage") naming the day and path."""
    try:
        yield
    except OSError as exc:
        day_text = day.isoformat() if isinstance(day, dt.date) else day
        raise _storage_error(what, path, exc, day_text) from exc


def _staging_day(staging: str | Path) -> str | None:
    match = _STAGING_DAY.match(Path(staging).name)
    return match.group(1) if match else None


def _describe_holder(holder: dict[str, Any]) -> str:
    if not holder:
        return "another writer (holder unknown)"
    pid, host = holder.get("pid", "?"), holder.get("host", "?")
    rest = ", ".join(f"{k}={v}" for k, v in holder.items() if k not in ("pid", "host"))
    return f"pid {pid} on {host}" + (f" ({rest})" if rest else "")


def _read_holder(fd: int) -> dict[str, Any]:
    """What the lock's holder wrote into the lock file ({} if it has not written it yet)."""
    for _ in range(20):  # the holder writes right after locking: give it a moment
        try:
            text = os.pread(fd, 1 << 16, 0)
        except OSError:
            return {}
        if text:
            try:
                found = json.loads(text)
            except ValueError:
                found = None
            if isinstance(found, dict):
                return found
        time.sleep(0.005)
    return {}


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """The columns worth dictionary-encoding: all but embeddings (fixed-size lists of floats,
    almost never repeated: the writer would build a dictionary per page only to drop it, ~40%
    of a day's write time, for the same file size)."""
    return [f.name for f in schema if not pa.types.is_fixed_size_list(f.type)]


class ParquetSink(SinkPort):
    """Days as hive-style directories under `root/<service>/`, each with its manifest.

    Writers: `claim` takes `fcntl.flock(LOCK_EX | LOCK_NB)` on `root/<service>/.lock` and
    writes the holder's details into it, so a second writer fails with the conflict naming the
    first; the kernel drops the lock when the holder exits, however it exits.

    Publishing a day: the part files are fsynced, their sizes, checksums, row counts and
    modification times go into the manifest, which is written and fsynced with the staging
    directory; then `renameat2(RENAME_EXCHANGE)` swaps the staging directory with the existing
    `dt=YYYY-MM-DD` in one step (a new day is renamed into place with `RENAME_NOREPLACE`), the
    parent is fsynced and the previous version, now at the staging path, is deleted. At every
    instant the day is the old version or the new one. Where the exchange is not supported
    (ENOSYS/EINVAL, non-Linux) the old version is renamed aside to `.trash-dt=…` first: a crash
    between the two renames leaves the day missing, and the next `claim` renames the trash back
    (it never deletes the only copy of a day). Readers globbing `dt=*/part-*.parquet` never
    see staging or trash directories; `claim` sweeps those a crash left.

    `on_step`, for tests, is called with the name of each step of `commit_day` once it is done:
    "checked", "manifest_written", "fsynced", then "exchanged" (or "renamed_aside" and
    "renamed_into_place" on the fallback, or "renamed_into_place" for a new day),
    "parent_fsynced", and "old_removed" when there was a previous version.

    Every OSError becomes SinkError(code="storage") naming the day (if any) and the path.
    """

    def __init__(self, root: str | Path, *, on_step: Callable[[str], None] | None = None) -> None:
        self.root = Path(root)
        self.on_step = on_step

    def _step(self, name: str) -> None:
        if self.on_step is not None:
            self.on_step(name)

    def _service_dir(self, service: str) -> Path:
        return self.root / service

    def _day_dir(self, service: str, day: dt.date) -> Path:
        return self._service_dir(service) / f"dt={day.isoformat()}"

    def location(self, service: str) -> str:
        return str(self._service_dir(service))

    # -- claiming the output ------------------------------------------------------------------

    def claim(
        self, service: str, holder: dict[str, Any]
    ) -> contextlib.AbstractContextManager[None]:
        """Hold `root/<service>` for a `with` block (see SinkPort.claim).

        Not re-entrant: a second claim of the same output, even in this process, is a
        conflict. The lock file descriptor is close-on-exec, but a process forked (without
        exec) while the claim is held shares the lock until it exits.
        """
        return self._claim(service, dict(holder))

    @contextlib.contextmanager
    def _claim(self, service: str, holder: dict[str, Any]) -> Iterator[None]:
        sdir = self._service_dir(service)
        self._check_owner(sdir, service)  # refuse before creating anything in the directory
        with _storage("create directory", sdir):
            sdir.mkdir(parents=True, exist_ok=True)
        lock = sdir / LOCK
        with _storage("open lock file", lock):
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                other = _read_holder(fd)
                raise SinkError(
                    f"output directory {sdir} is being written by {_describe_holder(other)}; "
                    f"wait for it to finish or choose another --out (lock: {lock})",
                    code="conflict",
                    data={"path": str(lock), "service": service, "holder": other},
                ) from None
            except OSError as exc:
                raise _storage_error("lock", lock, exc, None) from exc
            try:
                record = {
                    **holder,
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "service": service,
                }
                with _storage("write lock file", lock):
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, json.dumps(record, default=str).encode(), 0)
                if not self._check_owner(sdir, service):  # again, now that we hold the lock
                    self._mark_owner(sdir, service)
                self._recover(sdir)
                yield
            finally:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)  # before unlocking: the next holder writes its own
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @staticmethod
    def _refuse_foreign(sdir: Path) -> None:
        if (sdir / OWNER).exists() or not sdir.is_dir():
            return
        with _storage("list", sdir):
            foreign = [
                p.name
                for p in sdir.iterdir()
                if p.name != LOCK and not p.name.startswith(f"{OWNER}.")
            ]
        if foreign:
            raise SinkError(
                f"output directory {sdir} is not empty and was not written by daedalus; "
                "choose another --out",
                code="conflict",
                data={"path": str(sdir)},
            )

    def _check_owner(self, sdir: Path, service: str) -> bool:
        """Whether the owner marker says `service`; False when there is none and the
        directory is empty (or missing). Raises the conflict otherwise."""
        marker = sdir / OWNER
        try:
            text = marker.read_text()
        except (FileNotFoundError, NotADirectoryError):
            text = None
        except (IsADirectoryError, UnicodeDecodeError) as exc:
            raise self._bad_marker(marker, exc) from exc
        except OSError as exc:
            raise _storage_error("read", marker, exc, None) from exc
        if text is not None:
            try:
                owner = json.loads(text)["service"]
            except (ValueError, TypeError, KeyError) as exc:
                raise self._bad_marker(marker, exc) from exc
            if owner != service:
                raise SinkError(
                    f"output directory {sdir} belongs to service {owner!r}, not {service!r}; "
                    "choose another --out",
                    code="conflict",
                    data={"path": str(sdir), "owner": owner, "service": service},
                )
            return True
        self._refuse_foreign(sdir)
        return False

    @staticmethod
    def _mark_owner(sdir: Path, service: str) -> None:
        tmp = sdir / f"{OWNER}.{uuid.uuid4().hex}"
        with _storage("write", tmp):
            with open(tmp, "w") as fh:
                fh.write(json.dumps({"service": service}))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, sdir / OWNER)
            _fsync_dir(sdir)

    @staticmethod
    def _bad_marker(marker: Path, exc: Exception) -> SinkError:
        return SinkError(
            f"{marker} is unreadable ({type(exc).__name__}: {exc}); it should say which service "
            "owns the directory: fix or remove it, or choose another --out",
            code="conflict",
            data={"path": str(marker)},
        )

    def _recover(self, sdir: Path) -> None:
        """Finish what a crash interrupted (called with the lock, so no writer is running).

        A `.trash-dt=D-*` directory is a previous version renamed aside by the fallback
        publish: when `dt=D` is missing it is the only copy and is renamed back (the newest
        if there are several), otherwise it is deleted. Staging directories (an unpublished
        day, or an old version swapped out by the exchange) and temporary owner markers are
        deleted.
        """
        with _storage("list", sdir):
            entries = sorted(sdir.iterdir())
        trash: dict[str, list[Path]] = {}
        for item in entries:
            match = _TRASH_NAME.match(item.name)
            if match:
                trash.setdefault(match.group(1), []).append(item)
        for day_name, copies in trash.items():
            target = sdir / day_name
            if not target.exists():
                keep = max(copies, key=_trash_rank)
                with _storage("restore", target, day_name[3:]):
                    os.rename(keep, target)
                    _fsync_dir(sdir)
                copies = [c for c in copies if c != keep]
            for item in copies:
                shutil.rmtree(item, ignore_errors=True)
        for item in entries:
            if item.name.startswith(_STAGING) and item.exists():
                shutil.rmtree(item, ignore_errors=True)
            elif item.name.startswith(f"{OWNER}."):
                item.unlink(missing_ok=True)

    # -- writing a day ------------------------------------------------------------------------

    def begin_day(self, service: str, day: dt.date) -> str:
        path = self._service_dir(service) / f"{_STAGING}{day.isoformat()}-{uuid.uuid4().hex[:8]}"
        with _storage("create directory", path, day):
            path.mkdir(parents=True)
        return str(path)

    def write_staged(self, staging: str, name: str, table: pa.Table) -> str:
        path = Path(staging) / name
        with _storage("write", path, _staging_day(staging)):
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path, use_dictionary=_dictionary_columns(table.schema))
        return str(path)

    def abort_day(self, staging: str) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def commit_day(
        self, service: str, day: dt.date, staging: str, manifest: dict[str, Any], schema: pa.Schema
    ) -> str:
        stage = Path(staging)
        with _storage("read staging directory", stage, day):
            for item in stage.iterdir():  # only part files and the manifest are published
                if not item.name.startswith("part-") or item.suffix != ".parquet":
                    shutil.rmtree(item) if item.is_dir() else item.unlink()
            parts = sorted(stage.glob("part-*.parquet"))
        if not parts:
            raise SinkError(
                f"day {day}: nothing was written", code="contract", data={"day": str(day)}
            )
        for part in parts:
            self._check_schema(service, day, part, schema)
        self._step("checked")
        files = []
        for part in parts:
            with _storage("fsync", part, day):
                _fsync_file(part)
                stat = part.stat()
                files.append(
                    {
                        "name": part.name,
                        "bytes": stat.st_size,
                        "sha256": _sha256(part),
                        "rows": pq.read_metadata(part).num_rows,
                        "mtime_ns": stat.st_mtime_ns,
                    }
                )
        manifest_path = stage / MANIFEST
        with _storage("write", manifest_path, day):
            with open(manifest_path, "w") as fh:
                fh.write(json.dumps({**manifest, "files": files}, indent=2))
                fh.flush()
                self._step("manifest_written")
                os.fsync(fh.fileno())
            _fsync_dir(stage)
        self._step("fsynced")
        target = self._day_dir(service, day)
        with _storage("publish", target, day):
            if target.exists():
                try:
                    _renameat2(stage, target, _RENAME_EXCHANGE)
                except OSError as exc:
                    if exc.errno not in _UNSUPPORTED:
                        raise
                    self._publish_by_two_renames(stage, target)
                    return str(target)
                self._step("exchanged")
            else:
                try:
                    _renameat2(stage, target, _RENAME_NOREPLACE)
                except OSError as exc:
                    if exc.errno not in _UNSUPPORTED:
                        raise
                    os.rename(stage, target)
                self._step("renamed_into_place")
            _fsync_dir(target.parent)
            self._step("parent_fsynced")
        if stage.exists():  # the previous version, swapped out
            shutil.rmtree(stage, ignore_errors=True)  # what remains is swept by `claim`
            self._step("old_removed")
        return str(target)

    def _publish_by_two_renames(self, stage: Path, target: Path) -> None:
        """Without an atomic exchange: the old version aside, the new one into place. A crash
        in between leaves `dt=D` missing until `claim` renames the trash back."""
        trash = target.with_name(
            f"{_TRASH}{target.name}-{time.time_ns():016x}-{uuid.uuid4().hex[:8]}"
        )
        os.rename(target, trash)
        self._step("renamed_aside")
        os.rename(stage, target)
        self._step("renamed_into_place")
        _fsync_dir(target.parent)
        self._step("parent_fsynced")
        shutil.rmtree(trash, ignore_errors=True)
        self._step("old_removed")

    @staticmethod
    def _check_schema(service: str, day: dt.date, part: Path, schema: pa.Schema) -> None:
        try:
            with _storage("read", part, day):
                actual = pq.read_schema(part)
        except pa.ArrowInvalid as exc:
            raise SinkError(
                f"day {day}: {part.name} is not a readable parquet file: {exc}",
                code="contract",
                data={"day": str(day), "path": str(part)},
            ) from exc
        if not actual.remove_metadata().equals(schema):
            raise SinkError(
                f"day {day}: {part.name} does not match the contract of {service!r}:\n"
                f"  written:  {_schema_text(actual)}\n  contract: {_schema_text(schema)}",
                code="contract",
                data={"day": str(day), "path": str(part)},
            )

    # -- reading ------------------------------------------------------------------------------

    def read_manifest(self, service: str, day: dt.date) -> dict[str, Any] | None:
        path = self._day_dir(service, day) / MANIFEST
        try:
            text = path.read_text()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise _storage_error("read", path, exc, day.isoformat()) from exc
        try:
            found = json.loads(text)
        except ValueError:
            return None  # an unreadable manifest means the day must be recomputed
        return found if isinstance(found, dict) else None

    def list_days(self, service: str) -> list[dt.date]:
        sdir = self._service_dir(service)
        if not sdir.exists():
            return []
        days = []
        with _storage("list", sdir):
            for item in sdir.iterdir():
                if item.is_dir() and item.name.startswith("dt=") and (item / MANIFEST).exists():
                    try:
                        days.append(dt.date.fromisoformat(item.name[3:]))
                    except ValueError:
                        continue
        return sorted(days)

    def read_day(self, service: str, day: dt.date, *, limit: int | None = None) -> pa.Table:
        ddir = self._day_dir(service, day)
        with _storage("read", ddir, day):
            parts = sorted(ddir.glob("part-*.parquet"))
            if not parts:
                raise SinkError(
                    f"day {day} of {service!r} is not written",
                    code="conflict",
                    data={"day": day.isoformat(), "path": str(ddir)},
                )
            if limit is not None:  # the first rows: read no more batches than they need
                batches: list[pa.RecordBatch] = []
                schema = pq.read_schema(parts[0])
                for part in parts:
                    for batch in pq.ParquetFile(part).iter_batches(batch_size=max(limit, 1)):
                        batches.append(batch.slice(0, limit - sum(len(b) for b in batches)))
                        if sum(len(b) for b in batches) >= limit:
                            return pa.Table.from_batches(batches, schema=schema)
                return pa.Table.from_batches(batches, schema=schema)
            return ds.dataset([str(p) for p in parts], format="parquet").to_table()

    def verify_day(
        self, service: str, day: dt.date, *, thorough: bool = True
    ) -> list[dict[str, Any]]:
        ddir = self._day_dir(service, day)
        iso = day.isoformat()

        def problem(file: str | None, kind: str, expected: Any, found: Any) -> dict[str, Any]:
            return {"day": iso, "file": file, "problem": kind, "expected": expected, "found": found}

        if not ddir.is_dir():
            return [problem(None, "missing", f"directory {ddir}", None)]
        path = ddir / MANIFEST
        try:
            manifest = json.loads(path.read_text())
        except FileNotFoundError:
            return [problem(MANIFEST, "missing", "the day's manifest", None)]
        except ValueError as exc:
            return [problem(MANIFEST, "manifest", "a JSON manifest", f"unreadable: {exc}")]
        except OSError as exc:
            raise _storage_error("read", path, exc, iso) from exc
        entries = manifest.get("files") if isinstance(manifest, dict) else None
        if not isinstance(entries, list) or not all(
            isinstance(e, dict)
            and isinstance(e.get("name"), str)
            and isinstance(e.get("bytes"), int)
            and isinstance(e.get("sha256"), str)
            for e in entries
        ):
            return [
                problem(
                    MANIFEST,
                    "manifest",
                    "file entries with sizes and checksums",
                    "no checksums (written by an older daedalus): write the day again to verify it",
                )
            ]
        problems: list[dict[str, Any]] = []
        listed = {e["name"] for e in entries}
        with _storage("list", ddir, iso):
            present = sorted(p.name for p in ddir.iterdir())
        for name in present:
            if name != MANIFEST and name not in listed:
                extra = ddir / name
                with _storage("read", extra, iso):
                    found = "a directory" if extra.is_dir() else extra.stat().st_size
                problems.append(problem(name, "extra", None, found))
        for entry in entries:
            name, part = entry["name"], ddir / entry["name"]
            try:
                stat = part.stat()
            except FileNotFoundError:
                problems.append(problem(name, "missing", entry["bytes"], None))
                continue
            except OSError as exc:
                raise _storage_error("read", part, exc, iso) from exc
            changed = False
            if stat.st_size != entry["bytes"]:
                problems.append(problem(name, "size", entry["bytes"], stat.st_size))
                changed = True
            elif thorough or stat.st_mtime_ns != entry.get("mtime_ns"):
                with _storage("read", part, iso):
                    digest = _sha256(part)
                if digest != entry["sha256"]:
                    problems.append(problem(name, "checksum", entry["sha256"], digest))
                    changed = True
            if changed and isinstance(entry.get("rows"), int):
                try:
                    rows = pq.read_metadata(part).num_rows
                except (OSError, pa.ArrowException):
                    rows = None  # not parquet any more: size/checksum already say so
                if rows is not None and rows != entry["rows"]:
                    problems.append(problem(name, "rows", entry["rows"], rows))
        counted = [e.get("rows") for e in entries]
        total = manifest.get("rows")
        if (
            isinstance(total, int)
            and all(isinstance(r, int) for r in counted)
            and sum(counted) != total
        ):
            problems.append(problem(None, "rows", total, sum(counted)))
        return problems
