"""The catalog's domain model: frozen attrs classes for entities, sources, views and services."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import pyarrow as pa

from daedalus.catalog.dtypes import format_dtype, parse_dtype
from daedalus.catalog.errors import quoted

__all__ = [
    "AggFunction",
    "AggregationDef",
    "Column",
    "DataSourceDef",
    "Duration",
    "EmbeddingDef",
    "EmbeddingStoreDef",
    "Entity",
    "FeatureDef",
    "FeatureRef",
    "FeatureServiceDef",
    "FeatureViewDef",
    "FilterDef",
    "Location",
    "SpineDef",
]

_UNIT_MICROS = {
    "us": 1,
    "ms": 1_000,
    "s": 1_000_000,
    "m": 60_000_000,
    "h": 3_600_000_000,
    "d": 86_400_000_000,
    "w": 7 * 86_400_000_000,
}
_DURATION_RE = re.compile(r"^\s*(\d+)\s*(us|ms|s|m|h|d|w)\s*$")
LIFETIME = "lifetime"


@attrs.frozen(order=True)
class Duration:
    """A length of time written as `<n><unit>` (`30m`, `1h`, `7d`) or `lifetime` (unbounded).

    `micros` is None only for `lifetime`. Units: us, ms, s, m (minutes), h, d, w.
    """

    micros: int | None
    text: str = attrs.field(eq=False, order=False)

    @classmethod
    def parse(cls, text: str, *, allow_lifetime: bool = True, allow_zero: bool = False) -> Duration:
        """Parse a duration; raises ValueError with a message a person can act on."""
        if not isinstance(text, str):
            raise ValueError(f"expected a duration such as '7d', got {quoted(text)}")
        if text.strip().lower() == LIFETIME:
            if not allow_lifetime:
                raise ValueError(
                    "'lifetime' is not allowed here; give a finite duration such as '7d'"
                )
            return cls(None, LIFETIME)
        match = _DURATION_RE.match(text)
        if match is None:
            raise ValueError(
                f"bad duration {quoted(text)}: expected <number><unit> with unit one of "
                f"{', '.join(_UNIT_MICROS)} (e.g. '30m', '1h', '7d')"
                + (" or 'lifetime'" if allow_lifetime else "")
            )
        amount, unit = int(match.group(1)), match.group(2)
        if amount == 0 and not allow_zero:
            raise ValueError(f"bad duration {quoted(text)}: must be longer than zero")
        return cls(amount * _UNIT_MICROS[unit], f"{amount}{unit}")

    @classmethod
    def zero(cls) -> Duration:
        return cls(0, "0s")

    @property
    def is_lifetime(self) -> bool:
        return self.micros is None

    def __str__(self) -> str:
        return self.text


@attrs.frozen
class Location:
    """Where a definition was written: file, 1-based line and column."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@attrs.frozen
class Entity:
    """A business entity with its canonical join keys (defined once, in code)."""

    name: str
    join_keys: list[str]
    value_type: str = "BIGINT"
    description: str = ""

    @property
    def arrow_type(self) -> pa.DataType:
        return parse_dtype(self.value_type)


@attrs.frozen
class Column:
    """A named column with a DuckDB-like type name (stored canonical)."""

    name: str
    dtype: str

    @property
    def arrow_type(self) -> pa.DataType:
        return parse_dtype(self.dtype)

    @classmethod
    def of(cls, name: str, dtype: str) -> Column:
        """Build a column, canonicalising the type name (raises DTypeError)."""
        return cls(name, format_dtype(parse_dtype(dtype)))


@attrs.frozen
class DataSourceDef:
    """Where a view's rows live and how time is read from them.

    `path` is a parquet file, directory or glob, relative to the workspace. `timestamp` is the
    event-time column; `created_timestamp`, when set, is when a row became known (guards
    as-of joins against values written later). `delay` is the availability delay: a row stamped
    `e` is visible at `t` only when `e < t - delay`. `naive_timestamps_are_utc` allows tz-naive
    timestamp columns (read as UTC); otherwise they are an error. `max_invalid_fraction` (0 to 1)
    is the largest fraction of the source's rows that may be unusable (null event time or null
    entity key) before a training run refuses the input; None means the run's default.
    """

    path: str
    timestamp: str
    created_timestamp: str | None = None
    delay: Duration = attrs.field(factory=Duration.zero)
    naive_timestamps_are_utc: bool = False
    max_invalid_fraction: float | None = None


class AggFunction(enum.StrEnum):
    """The rolling aggregation functions of design.md §4."""

    COUNT = "count"
    SUM = "sum"
    MEAN = "mean"
    MIN = "min"
    MAX = "max"
    FIRST = "first"
    LAST = "last"
    LAST_N = "last_n"
    COUNT_DISTINCT = "count_distinct"
    STDDEV = "stddev"

    @property
    def needs_column(self) -> bool:
        return self is not AggFunction.COUNT


def _filter_values(values: Any) -> tuple[Any, ...]:
    """A filter's values as a tuple: a list, tuple or other iterable item by item, a set in a
    fixed order, and one bare value (a string above all: never its characters) as one item."""
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        return (values,)
    if isinstance(values, Mapping):
        raise ValueError(f"filter values must be a value or a list of values, got {quoted(values)}")
    if isinstance(values, set | frozenset):
        return tuple(sorted(values, key=lambda v: (type(v).__name__, repr(v))))
    return tuple(values)


def _check_filter_values(instance: FilterDef, _attribute: Any, values: tuple[Any, ...]) -> None:
    where = f"filter on {quoted(instance.column)}"
    if not values:
        raise ValueError(f"{where} lists no values")
    for value in values:
        if isinstance(value, Iterable) and not isinstance(value, str | bytes):
            raise ValueError(f"{where}: filter values must be scalars, got {quoted(value)}")
        try:
            hash(value)
        except TypeError:
            raise ValueError(
                f"{where}: filter value {quoted(value)} cannot be compared (unhashable "
                f"{type(value).__name__})"
            ) from None


def _check_column_name(_instance: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{attribute.name} must be a column name, got {quoted(value)}")


@attrs.frozen
class FilterDef:
    """Keep only source rows whose `column` is one of `values` (applied before the window).

    `values` is normalised to a tuple: a list (or any iterable but a mapping) item by item, a
    set in a fixed order, and a single value, a string above all, as a one-element tuple
    (`FilterDef("action", "like")` keeps the rows whose action is "like"). Values must be
    scalars; none at all, a nested list or a mapping is a ValueError.
    """

    column: str = attrs.field(validator=_check_column_name)
    values: tuple[Any, ...] = attrs.field(converter=_filter_values, validator=_check_filter_values)


@attrs.frozen
class AggregationDef:
    """One rolling aggregate: `function` of `column` over `window`, after `filters`."""

    name: str
    function: AggFunction
    window: Duration
    column: str | None = None
    filters: tuple[FilterDef, ...] = ()
    n: int | None = None
    description: str = ""


@attrs.frozen
class FeatureDef:
    """A plain (as-of) feature: the latest visible value of `column`."""

    name: str
    column: str
    description: str = ""


@attrs.frozen
class FeatureViewDef:
    """A feature view: a source, its schema, its entities, as-of features and aggregations."""

    name: str
    entities: tuple[str, ...]
    source: DataSourceDef
    schema: tuple[Column, ...]
    features: tuple[FeatureDef, ...] = ()
    aggregations: tuple[AggregationDef, ...] = ()
    ttl: Duration | None = None
    description: str = ""
    location: Location | None = attrs.field(default=None, eq=False, repr=False)

    def column(self, name: str) -> Column | None:
        return next((c for c in self.schema if c.name == name), None)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features) + tuple(a.name for a in self.aggregations)


@attrs.frozen
class FeatureRef:
    """A service's reference to a view's feature (`view:feature`, `view:*`) with an alias."""

    view: str
    feature: str
    alias: str | None = None

    def __str__(self) -> str:
        return f"{self.view}:{self.feature}" + (f" as {self.alias}" if self.alias else "")


@attrs.frozen
class SpineDef:
    """The labelled rows a service's datasets are built for (entity keys + timestamp + labels).

    `max_invalid_fraction` (0 to 1) is the largest fraction of spine rows that may be unusable
    (null timestamp or null entity key) before a training run refuses them; None means the
    run's default.
    """

    path: str
    timestamp: str
    entities: tuple[str, ...]
    labels: tuple[Column, ...] = ()
    naive_timestamps_are_utc: bool = False
    max_invalid_fraction: float | None = None


@attrs.frozen
class EmbeddingStoreDef:
    """A vector store (a Lance dataset on disk) keyed by an entity id."""

    name: str
    path: str
    entity: str
    id_column: str
    vector_column: str
    dim: int
    description: str = ""
    location: Location | None = attrs.field(default=None, eq=False, repr=False)


@attrs.frozen
class EmbeddingDef:
    """A pooled embedding column: the mean of the store vectors for the ids in `source`.

    `source` names a column of the dataset: a spine key (one id) or a feature output that holds
    a list of ids (its vectors are average-pooled; ids not found are skipped; none → null).
    """

    name: str
    store: str
    source: str


@attrs.frozen
class FeatureServiceDef:
    """The features one model consumes, its spine and labels, and the embeddings to pool."""

    name: str
    spine: SpineDef
    features: tuple[FeatureRef, ...]
    embeddings: tuple[EmbeddingDef, ...] = ()
    description: str = ""
    location: Location | None = attrs.field(default=None, eq=False, repr=False)
