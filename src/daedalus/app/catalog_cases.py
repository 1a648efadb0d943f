"""Catalog use cases: list, describe, validate, and resolve a service's schema (JSON-ready).

The parsed catalog is cached per directory, keyed by the state of its YAML files: the sorted
(name, real path, kind, device, inode, size, mtime_ns, ctime_ns) of every `*.yaml`/`*.yml`
entry, symlinks followed. Each request lists the directory and stats its files again (tens of
microseconds) and reuses the parse while nothing changed; a changed, added or removed file
(or a link pointing elsewhere) is read again. Two guards keep the cache exact:

- a parse whose files were modified shortly before it began (within `_RACY_NS`: file systems
  stamp times with a coarse clock, so a later write could keep the same mtime) is used for
  that request only, never kept;
- the files are stat'ed again after the parse; if anything changed meanwhile, the directory
  is read again (so a parse never stands for a state it did not read).

An invalid catalog's errors are cached the same way. Loads are serialised (one lock), so many
concurrent requests after an edit parse once. `parses` counts the loads actually done.

When `file_guard` is set (the Application sets it to confine files to the workspace), it is
called with every entry the loader would open and its real path, before anything is opened.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from daedalus.app.errors import AppError
from daedalus.catalog.converter import CONVERTER
from daedalus.catalog.dtypes import format_dtype
from daedalus.catalog.errors import CatalogError, CatalogErrors, UnknownName
from daedalus.catalog.registry import FeatureCatalog

__all__ = ["CatalogCases"]

#: A parse is kept only when every file's mtime is at least this much older than the moment
#: the parse began (50 ms: well above the coarsest kernel clock tick, 10 ms at HZ=100).
_RACY_NS = 50_000_000
#: How many directories' parses are kept (the configured catalog, and directories that
#: `validate` was asked about).
_CACHED_DIRS = 8
#: How many times a directory that changes while it is read is read again.
_ATTEMPTS = 3


class _FileState(NamedTuple):
    """What the cache compares for one catalog entry (kind `missing` for a dangling link)."""

    name: str
    real: str
    kind: str
    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int


class _Parsed(NamedTuple):
    signature: tuple[_FileState, ...]
    catalog: FeatureCatalog | None
    errors: list[CatalogError] | None


def _snapshot(directory: Path) -> tuple[_FileState, ...] | None:
    """The state of every YAML entry the loader would consider, or None if `directory`
    cannot be listed (the loader then reports why)."""
    try:
        with os.scandir(directory) as entries:
            names = sorted(e.name for e in entries if Path(e.name).suffix in (".yaml", ".yml"))
    except OSError:
        return None
    states = []
    for name in names:
        path = os.path.join(directory, name)
        try:
            st = os.stat(path)  # through any symlink: the file that would be read
            real = os.path.realpath(path)
        except (OSError, ValueError):  # a dangling link (never read) or gone since the listing
            states.append(_FileState(name, "", "missing", 0, 0, 0, 0, 0))
            continue
        kind = (
            "file" if stat.S_ISREG(st.st_mode) else "dir" if stat.S_ISDIR(st.st_mode) else "other"
        )
        states.append(
            _FileState(
                name, real, kind, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns
            )
        )
    return tuple(states)


class CatalogCases:
    """Read-only questions about the feature catalog. Every answer is plain JSON-ready data."""

    def __init__(
        self,
        catalog_dir: Path,
        load: Callable[[Path], FeatureCatalog],
        *,
        file_guard: Callable[[Path, Path], None] | None = None,
    ) -> None:
        self._catalog_dir = catalog_dir
        self._load = load
        #: Called as `file_guard(path, real_path)` for every catalog entry before any is read;
        #: raises (AppError forbidden) to refuse the directory.
        self.file_guard = file_guard
        #: How many times a catalog directory was actually parsed (the cache's misses).
        self.parses = 0
        self._lock = threading.Lock()
        self._cache: dict[Path, _Parsed] = {}

    def _parsed(self, directory: Path) -> FeatureCatalog:
        """The catalog in `directory`, from the cache while its files are unchanged.

        Raises CatalogErrors (a fresh one each time) for an invalid catalog, and whatever
        `file_guard` raises for a file it refuses.
        """
        for _ in range(_ATTEMPTS):
            started = time.time_ns()
            signature = _snapshot(directory)
            if signature is None:
                with self._lock:
                    self.parses += 1
                return self._load(directory)  # raises the loader's located error
            self._guard(directory, signature)
            hit = self._cache.get(directory)
            if hit is None or hit.signature != signature:
                with self._lock:
                    hit = self._cache.get(directory)
                    if hit is None or hit.signature != signature:
                        hit = self._parse(directory, signature, started)
            if hit is not None:
                if hit.errors is not None:
                    raise CatalogErrors(hit.errors)
                assert hit.catalog is not None
                return hit.catalog
        raise AppError(
            "conflict",
            f"the catalog in {directory} kept changing while it was read; try again",
            {"catalog_dir": str(directory)},
        )

    def _parse(
        self, directory: Path, signature: tuple[_FileState, ...], started: int
    ) -> _Parsed | None:
        """Parse `directory` (under the lock); None if its files changed while it was read."""
        self.parses += 1
        catalog: FeatureCatalog | None = None
        errors: list[CatalogError] | None = None
        try:
            catalog = self._load(directory)
        except CatalogErrors as exc:
            errors = exc.errors
        if _snapshot(directory) != signature:
            return None
        parsed = _Parsed(signature, catalog, errors)
        if all(
            s.mtime_ns < started - _RACY_NS and s.ctime_ns < started - _RACY_NS for s in signature
        ):
            self._cache.pop(directory, None)
            self._cache[directory] = parsed
            while len(self._cache) > _CACHED_DIRS:
                del self._cache[next(iter(self._cache))]
        return parsed

    def _guard(self, directory: Path, signature: tuple[_FileState, ...]) -> None:
        if self.file_guard is None:
            return
        for state in signature:
            if state.kind in ("file", "dir"):  # what the loader opens (or reports)
                self.file_guard(directory / state.name, Path(state.real))

    def catalog(self) -> FeatureCatalog:
        """The loaded catalog; raises AppError(invalid_catalog) carrying every located error."""
        try:
            return self._parsed(self._catalog_dir)
        except CatalogErrors as exc:
            raise AppError(
                "invalid_catalog",
                f"the catalog in {self._catalog_dir} has {len(exc.errors)} error(s)",
                [e.to_dict() for e in exc.errors],
            ) from exc

    def list_catalog(self) -> dict[str, Any]:
        """Every entity, view, service and embedding store, one line of facts each."""
        cat = self.catalog()
        return {
            "catalog_dir": str(self._catalog_dir),
            "entities": [
                {"name": e.name, "join_keys": list(e.join_keys), "type": e.value_type}
                for e in cat.entities.values()
            ],
            "views": [
                {
                    "name": v.name,
                    "entities": list(v.entities),
                    "source": v.source.path,
                    "features": len(v.features),
                    "aggregations": len(v.aggregations),
                    "description": v.description,
                }
                for v in sorted(cat.views.values(), key=lambda v: v.name)
            ],
            "services": [
                {
                    "name": s.name,
                    "features": len(cat.resolve_features(s)),
                    "embeddings": len(s.embeddings),
                    "spine": s.spine.path,
                    "description": s.description,
                }
                for s in sorted(cat.services.values(), key=lambda s: s.name)
            ],
            "stores": [
                {"name": s.name, "path": s.path, "dim": s.dim}
                for s in sorted(cat.stores.values(), key=lambda s: s.name)
            ],
        }

    def describe(self, name: str) -> dict[str, Any]:
        """A view, service, embedding store or entity by name, as its definition plus types."""
        cat = self.catalog()
        if name in cat.views:
            view = cat.views[name]
            return {
                "kind": "feature_view",
                "location": str(view.location) if view.location else None,
                "definition": CONVERTER.unstructure(view),
                "outputs": [
                    {"name": f, "type": format_dtype(cat.feature_type(view, d))}
                    for f, d in ((d.name, d) for d in (*view.features, *view.aggregations))
                ],
            }
        if name in cat.services:
            svc = cat.services[name]
            return {
                "kind": "feature_service",
                "location": str(svc.location) if svc.location else None,
                "definition": CONVERTER.unstructure(svc),
                "schema": cat.describe_schema(svc),
                "contract_hash": cat.contract_hash(svc),
                "definition_hash": cat.definition_hash(svc),
            }
        if name in cat.stores:
            store = cat.stores[name]
            return {
                "kind": "embedding_store",
                "location": str(store.location) if store.location else None,
                "definition": CONVERTER.unstructure(store),
            }
        if name in cat.entities:
            e = cat.entities[name]
            return {
                "kind": "entity",
                "definition": {
                    "name": e.name,
                    "join_keys": list(e.join_keys),
                    "type": e.value_type,
                    "description": e.description,
                },
            }
        known = [*cat.views, *cat.services, *cat.stores, *cat.entities]
        raise _not_found("view, service, store or entity", name, known)

    def validate(self, directory: Path | None = None) -> dict[str, Any]:
        """Check a catalog directory; never raises for bad definitions, reports them all."""
        target = directory or self._catalog_dir
        try:
            cat = self._parsed(target)
        except CatalogErrors as exc:
            return {
                "ok": False,
                "catalog_dir": str(target),
                "errors": [e.to_dict() for e in exc.errors],
            }
        return {
            "ok": True,
            "catalog_dir": str(target),
            "errors": [],
            "views": len(cat.views),
            "services": len(cat.services),
            "stores": len(cat.stores),
        }

    def service_schema(self, name: str) -> dict[str, Any]:
        """The resolved schema (the column-level contract) of a service."""
        cat = self.catalog()
        try:
            svc = cat.service(name)
        except UnknownName as exc:
            raise AppError("not_found", str(exc), {"name": name}) from exc
        return {
            "service": svc.name,
            "columns": cat.describe_schema(svc),
            "contract_hash": cat.contract_hash(svc),
        }

    def validate_data(self, workspace: Path) -> dict[str, Any]:
        """The catalog checked against the data under `workspace`, without training: every file
        of every source and spine against its declared schema (types, time zones), and every
        filter value against the values that occur (`pipeline.data_checks.check_data`). `ok` is
        False when anything was found; each problem names the file and column (a filter value
        also its YAML file:line:column and the closest values that occur)."""
        from daedalus.pipeline.data_checks import check_data

        cat = self.catalog()
        try:
            result = check_data(cat, workspace)
        except OSError as exc:
            where = f" {exc.filename}" if exc.filename else ""
            raise AppError("storage", f"cannot read{where}: {exc.strerror or exc}") from exc
        return {"catalog_dir": str(self._catalog_dir), **result}


def _not_found(what: str, name: str, known: list[str]) -> AppError:
    import difflib

    close = difflib.get_close_matches(name, known, n=1)
    hint = f" — did you mean {close[0]}?" if close else ""
    return AppError(
        "not_found", f"unknown {what} {name!r}{hint}", {"name": name, "known": sorted(known)}
    )
