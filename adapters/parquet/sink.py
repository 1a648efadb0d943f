"""`ParquetSink`: `<out>/<service>/dt=YYYY-MM-DD/part-*.parquet` + `_manifest.json`, atomically."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from daedalus.catalog.dtypes import format_dtype
from daedalus.ports import SinkError, SinkPort

__all__ = ["MANIFEST", "OWNER", "ParquetSink"]

MANIFEST = "_manifest.json"
OWNER = "_service.json"
_STAGING = ".staging-"
_TRASH = ".trash-"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _schema_text(schema: pa.Schema) -> str:
    return ", ".join(f"{f.name} {format_dtype(f.type)}" for f in schema)


class ParquetSink(SinkPort):
    """Days as hive-style directories under `root/<service>/`, each with its manifest.

    Publishing a day: files and manifest are written and fsynced in a hidden staging directory,
    the previous version (if any) is renamed aside, the staging directory is renamed into place,
    and the old version is deleted. Readers globbing `dt=*/part-*.parquet` never see staging or
    trash directories; `claim` sweeps those left by a crash.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _service_dir(self, service: str) -> Path:
        return self.root / service

    def _day_dir(self, service: str, day: dt.date) -> Path:
        return self._service_dir(service) / f"dt={day.isoformat()}"

    def location(self, service: str) -> str:
        return str(self._service_dir(service))

    def claim(self, service: str) -> None:
        """Own `root/<service>` (create it, or check its owner marker), and sweep crash debris."""
        sdir = self._service_dir(service)
        marker = sdir / OWNER
        if marker.exists():
            try:
                owner = json.loads(marker.read_text()).get("service")
            except (json.JSONDecodeError, OSError) as exc:
                raise SinkError(f"{marker} is unreadable: {exc}") from exc
            if owner != service:
                raise SinkError(
                    f"output directory {sdir} belongs to service {owner!r}, not {service!r}; "
                    "choose another --out"
                )
        elif sdir.exists() and any(sdir.iterdir()):
            raise SinkError(
                f"output directory {sdir} is not empty and was not written by daedalus; "
                "choose another --out"
            )
        else:
            sdir.mkdir(parents=True, exist_ok=True)
            tmp = sdir / f"{OWNER}.{uuid.uuid4().hex}"
            tmp.write_text(json.dumps({"service": service}))
            os.replace(tmp, marker)
        for debris in sdir.iterdir():
            if debris.name.startswith((_STAGING, _TRASH)):
                shutil.rmtree(debris, ignore_errors=True)

    def begin_day(self, service: str, day: dt.date) -> str:
        path = self._service_dir(service) / f"{_STAGING}{day.isoformat()}-{uuid.uuid4().hex[:8]}"
        path.mkdir(parents=True)
        return str(path)

    def write_staged(self, staging: str, name: str, table: pa.Table) -> str:
        path = Path(staging) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
        return str(path)

    def abort_day(self, staging: str) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def commit_day(
        self, service: str, day: dt.date, staging: str, manifest: dict[str, Any], schema: pa.Schema
    ) -> str:
        stage = Path(staging)
        for item in stage.iterdir():  # only part files and the manifest are published
            if not item.name.startswith("part-") or item.suffix != ".parquet":
                shutil.rmtree(item) if item.is_dir() else item.unlink()
        parts = sorted(stage.glob("part-*.parquet"))
        if not parts:
            raise SinkError(f"day {day}: nothing was written")
        for part in parts:
            actual = pq.read_schema(part)
            if not actual.remove_metadata().equals(schema):
                raise SinkError(
                    f"day {day}: {part.name} does not match the contract of {service!r}:\n"
                    f"  written:  {_schema_text(actual)}\n  contract: {_schema_text(schema)}"
                )
        (stage / MANIFEST).write_text(
            json.dumps({**manifest, "files": [p.name for p in parts]}, indent=2)
        )
        for part in [*parts, stage / MANIFEST]:
            with open(part, "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(stage)
        target = self._day_dir(service, day)
        trash = None
        if target.exists():
            trash = target.with_name(f"{_TRASH}{target.name}-{uuid.uuid4().hex[:8]}")
            os.replace(target, trash)
        os.replace(stage, target)
        _fsync_dir(target.parent)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
        return str(target)

    def read_manifest(self, service: str, day: dt.date) -> dict[str, Any] | None:
        path = self._day_dir(service, day) / MANIFEST
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return None  # an unreadable manifest means the day must be recomputed

    def list_days(self, service: str) -> list[dt.date]:
        sdir = self._service_dir(service)
        if not sdir.exists():
            return []
        days = []
        for item in sdir.iterdir():
            if item.is_dir() and item.name.startswith("dt=") and (item / MANIFEST).exists():
                try:
                    days.append(dt.date.fromisoformat(item.name[3:]))
                except ValueError:
                    continue
        return sorted(days)

    def read_day(self, service: str, day: dt.date, *, limit: int | None = None) -> pa.Table:
        ddir = self._day_dir(service, day)
        parts = sorted(ddir.glob("part-*.parquet"))
        if not parts:
            raise SinkError(f"day {day} of {service!r} is not written")
        dataset = ds.dataset([str(p) for p in parts], format="parquet")
        return dataset.head(limit) if limit is not None else dataset.to_table()
