"""The registry: canonical ENTITIES and the FeatureCatalog (views, services, stores, schemas)."""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path
from typing import TypeVar

import attrs
import pyarrow as pa

from daedalus.catalog.converter import CONVERTER
from daedalus.catalog.dtypes import format_dtype
from daedalus.catalog.errors import UnknownName
from daedalus.catalog.functions import aggregation_output_type
from daedalus.catalog.loader import load_definitions
from daedalus.catalog.model import (
    AggregationDef,
    EmbeddingStoreDef,
    Entity,
    FeatureDef,
    FeatureServiceDef,
    FeatureViewDef,
)

__all__ = ["ENTITIES", "TIMESTAMP_TYPE", "FeatureCatalog", "ResolvedFeature"]

T = TypeVar("T")

ENTITIES: dict[str, Entity] = {
    "user": Entity("user", ["user_id"], "BIGINT", "A member of the community."),
    "artwork": Entity("artwork", ["artwork_id"], "BIGINT", "A generated or uploaded artwork."),
}

#: Every timestamp the platform produces is microseconds in UTC (design.md §4).
TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")


@attrs.frozen
class ResolvedFeature:
    """One feature of a service: where it comes from and the column it becomes."""

    output: str
    view: FeatureViewDef
    feature: FeatureDef | AggregationDef
    arrow_type: pa.DataType

    @property
    def is_aggregation(self) -> bool:
        return isinstance(self.feature, AggregationDef)


@attrs.frozen
class FeatureCatalog:
    """A loaded, fully valid catalog. Build it with `from_yaml_dir`; it is never half-loaded."""

    views: dict[str, FeatureViewDef]
    services: dict[str, FeatureServiceDef]
    stores: dict[str, EmbeddingStoreDef]
    entities: dict[str, Entity] = attrs.field(factory=lambda: dict(ENTITIES))
    root: Path | None = None

    @classmethod
    def from_yaml_dir(cls, path: str | Path) -> FeatureCatalog:
        """Load every `*.yaml` in `path`; raises CatalogErrors listing every error found."""
        loaded = load_definitions(path, ENTITIES)
        return cls(loaded.views, loaded.services, loaded.stores, dict(ENTITIES), Path(path))

    # -- lookups -----------------------------------------------------------------------------

    def view(self, name: str) -> FeatureViewDef:
        """The view called `name`; raises UnknownName with a suggestion."""
        return _lookup(self.views, name, "feature view")

    def service(self, name: str) -> FeatureServiceDef:
        """The service called `name`; raises UnknownName with a suggestion."""
        return _lookup(self.services, name, "feature service")

    def store(self, name: str) -> EmbeddingStoreDef:
        return _lookup(self.stores, name, "embedding store")

    def join_keys(self, entities: tuple[str, ...]) -> list[str]:
        return [k for e in entities for k in self.entities[e].join_keys]

    # -- types -------------------------------------------------------------------------------

    def feature_type(
        self, view: FeatureViewDef, feature: FeatureDef | AggregationDef
    ) -> pa.DataType:
        """The Arrow type of a feature's output column."""
        if isinstance(feature, FeatureDef):
            col = view.column(feature.column)
            assert col is not None
            return col.arrow_type
        col_type = view.column(feature.column).arrow_type if feature.column else None  # type: ignore[union-attr]
        return aggregation_output_type(feature.function, col_type)

    def resolve_features(self, service: FeatureServiceDef) -> list[ResolvedFeature]:
        """Expand `view:*`, apply aliases, and type every feature of `service`, in order."""
        out: list[ResolvedFeature] = []
        for ref in service.features:
            view = self.views[ref.view]
            items: list[FeatureDef | AggregationDef] = [*view.features, *view.aggregations]
            chosen = items if ref.feature == "*" else [f for f in items if f.name == ref.feature]
            for feature in chosen:
                out.append(
                    ResolvedFeature(
                        ref.alias or feature.name, view, feature, self.feature_type(view, feature)
                    )
                )
        return out

    def resolved_schema(self, service: FeatureServiceDef | str) -> pa.Schema:
        """The exact Arrow schema every dataset of `service` must match, in column order:
        spine join keys, the spine timestamp (timestamp[us, UTC]), labels, features, embeddings
        (fixed-size lists of float32 of the store's dimension)."""
        svc = self.service(service) if isinstance(service, str) else service
        fields = [
            pa.field(k, pa.int64(), nullable=False) for k in self.join_keys(svc.spine.entities)
        ]
        fields.append(pa.field(svc.spine.timestamp, TIMESTAMP_TYPE, nullable=False))
        fields += [pa.field(label.name, label.arrow_type) for label in svc.spine.labels]
        for feature in self.resolve_features(svc):
            fields.append(pa.field(feature.output, feature.arrow_type))
        for emb in svc.embeddings:
            dim = self.stores[emb.store].dim
            fields.append(pa.field(emb.name, pa.list_(pa.float32(), dim)))
        return pa.schema(fields)

    # -- identity ----------------------------------------------------------------------------

    def definition_hash(self, service: FeatureServiceDef | str) -> str:
        """A hash of everything that defines a service's data: the service, its views and stores."""
        svc = self.service(service) if isinstance(service, str) else service
        views = sorted({ref.view for ref in svc.features})
        stores = sorted({emb.store for emb in svc.embeddings})
        payload = {
            "service": CONVERTER.unstructure(svc),
            "views": {v: CONVERTER.unstructure(self.views[v]) for v in views},
            "stores": {s: CONVERTER.unstructure(self.stores[s]) for s in stores},
        }
        return _sha256(payload)

    def contract_hash(self, service: FeatureServiceDef | str) -> str:
        """A hash of the resolved schema (column names, types, order)."""
        schema = self.resolved_schema(service)
        return _sha256([[f.name, format_dtype(f.type), f.nullable] for f in schema])

    def describe_schema(self, service: FeatureServiceDef | str) -> list[dict[str, object]]:
        """The resolved schema as rows of name / DuckDB-like type / nullable."""
        return [
            {"name": f.name, "type": format_dtype(f.type), "nullable": f.nullable}
            for f in self.resolved_schema(service)
        ]


def _sha256(payload: object) -> str:
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _lookup(table: dict[str, T], name: str, what: str) -> T:
    if name in table:
        return table[name]
    close = difflib.get_close_matches(name, list(table), n=1)
    hint = (
        f"did you mean {close[0]}?"
        if close
        else (f"known: {', '.join(sorted(table))}" if table else None)
    )
    raise UnknownName(what, name, hint)
