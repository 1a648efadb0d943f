"""Catalog use cases: list, describe, validate, and resolve a service's schema (JSON-ready)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from daedalus.app.errors import AppError
from daedalus.catalog.converter import CONVERTER
from daedalus.catalog.dtypes import format_dtype
from daedalus.catalog.errors import CatalogErrors, UnknownName
from daedalus.catalog.registry import FeatureCatalog

__all__ = ["CatalogCases"]


class CatalogCases:
    """Read-only questions about the feature catalog. Every answer is plain JSON-ready data."""

    def __init__(self, catalog_dir: Path, load: Callable[[Path], FeatureCatalog]) -> None:
        self._catalog_dir = catalog_dir
        self._load = load

    def catalog(self) -> FeatureCatalog:
        """The loaded catalog; raises AppError(invalid_catalog) carrying every located error."""
        try:
            return self._load(self._catalog_dir)
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
            cat = self._load(target)
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


def _not_found(what: str, name: str, known: list[str]) -> AppError:
    import difflib

    close = difflib.get_close_matches(name, known, n=1)
    hint = f" — did you mean {close[0]}?" if close else ""
    return AppError(
        "not_found", f"unknown {what} {name!r}{hint}", {"name": name, "known": sorted(known)}
    )
