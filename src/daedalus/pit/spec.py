"""Point-in-time feature specs: what to compute for each spine row, built from catalog views."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from pathlib import Path

import attrs
import pyarrow as pa

from daedalus.catalog.functions import aggregation_output_type
from daedalus.catalog.model import (
    AggFunction,
    AggregationDef,
    FeatureDef,
    FeatureViewDef,
    FilterDef,
)
from daedalus.catalog.registry import ENTITIES

__all__ = ["AggregationSpec", "AsOfSpec", "Engine", "PitSpec", "SourceSpec", "specs_for_view"]


class Engine(enum.StrEnum):
    """The compute engines; both give bit-for-bit the same answer."""

    DUCKDB = "duckdb"
    POLARS = "polars"


@attrs.frozen(eq=False)
class SourceSpec:
    """Where a spec's source rows come from: an in-memory Arrow table or parquet files.

    Compared by identity: specs that share one SourceSpec object are computed from one read.
    `schema` gives the declared type of each column the features may read.
    """

    name: str
    timestamp: str
    schema: pa.Schema
    table: pa.Table | None = None
    paths: tuple[str, ...] = ()
    created_timestamp: str | None = None
    naive_timestamps_are_utc: bool = False

    @classmethod
    def from_view(
        cls, view: FeatureViewDef, *, root: str | Path | None = None, table: pa.Table | None = None
    ) -> SourceSpec:
        """A source for `view`: `table` if given, else the view's parquet path under `root`."""
        schema = pa.schema([pa.field(c.name, c.arrow_type) for c in view.schema])
        paths: tuple[str, ...] = ()
        if table is None:
            base = Path(root) if root is not None else Path.cwd()
            paths = (str(base / view.source.path),)
        return cls(
            name=view.name,
            timestamp=view.source.timestamp,
            schema=schema,
            table=table,
            paths=paths,
            created_timestamp=view.source.created_timestamp,
            naive_timestamps_are_utc=view.source.naive_timestamps_are_utc,
        )


@attrs.frozen
class AggregationSpec:
    """A rolling aggregate: `function(column)` over rows with `t - delay - window <= ts < t - delay`.

    `window_us=None` is a lifetime window. Filters keep rows whose column is one of the values.
    """

    name: str
    function: AggFunction
    keys: tuple[str, ...]
    source: SourceSpec
    window_us: int | None
    column: str | None = None
    filters: tuple[FilterDef, ...] = ()
    n: int | None = None
    delay_us: int = 0

    @property
    def input_type(self) -> pa.DataType | None:
        return self.source.schema.field(self.column).type if self.column else None

    @property
    def output_type(self) -> pa.DataType:
        return aggregation_output_type(self.function, self.input_type)

    @classmethod
    def from_def(
        cls,
        view: FeatureViewDef,
        agg: AggregationDef,
        source: SourceSpec,
        *,
        name: str | None = None,
    ) -> AggregationSpec:
        return cls(
            name=name or agg.name,
            function=agg.function,
            keys=_keys(view),
            source=source,
            window_us=agg.window.micros,
            column=agg.column,
            filters=agg.filters,
            n=agg.n,
            delay_us=view.source.delay.micros or 0,
        )


@attrs.frozen
class AsOfSpec:
    """An as-of feature: `column` of the latest visible row before `t - delay`.

    Visible: `ts < t - delay`, `ts >= t - delay - ttl` when a TTL is set, and `created < t` when
    the source has a created timestamp. Ties on `ts` go to the greatest created timestamp, then
    to the row read last (files in path order, rows in file order).
    """

    name: str
    column: str
    keys: tuple[str, ...]
    source: SourceSpec
    ttl_us: int | None = None
    delay_us: int = 0

    @property
    def output_type(self) -> pa.DataType:
        return self.source.schema.field(self.column).type

    @classmethod
    def from_def(
        cls,
        view: FeatureViewDef,
        feature: FeatureDef,
        source: SourceSpec,
        *,
        name: str | None = None,
    ) -> AsOfSpec:
        return cls(
            name=name or feature.name,
            column=feature.column,
            keys=_keys(view),
            source=source,
            ttl_us=view.ttl.micros if view.ttl else None,
            delay_us=view.source.delay.micros or 0,
        )


PitSpec = AggregationSpec | AsOfSpec


def _keys(view: FeatureViewDef) -> tuple[str, ...]:
    return tuple(k for e in view.entities for k in ENTITIES[e].join_keys)


def specs_for_view(
    view: FeatureViewDef,
    source: SourceSpec,
    names: Sequence[str] | None = None,
    aliases: dict[str, str] | None = None,
) -> list[PitSpec]:
    """Specs for the view's features (all, or those in `names`), output names from `aliases`."""
    aliases = aliases or {}
    wanted = set(names) if names is not None else None
    out: list[PitSpec] = []
    for feature in view.features:
        if wanted is None or feature.name in wanted:
            out.append(AsOfSpec.from_def(view, feature, source, name=aliases.get(feature.name)))
    for agg in view.aggregations:
        if wanted is None or agg.name in wanted:
            out.append(AggregationSpec.from_def(view, agg, source, name=aliases.get(agg.name)))
    return out
