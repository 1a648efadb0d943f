"""Point-in-time feature specs: what to compute for each spine row, built from catalog views."""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import pyarrow as pa

from daedalus.catalog.dtypes import DTypeError, format_dtype, parse_dtype
from daedalus.catalog.errors import quoted
from daedalus.catalog.functions import (
    MAX_LAST_N,
    aggregation_output_type,
    is_value_type_supported,
)
from daedalus.catalog.model import (
    AggFunction,
    AggregationDef,
    Duration,
    FeatureDef,
    FeatureViewDef,
    FilterDef,
)
from daedalus.catalog.registry import ENTITIES
from daedalus.pit.engine import Engine
from daedalus.pit.errors import PitError

__all__ = ["AggregationSpec", "AsOfSpec", "Engine", "PitSpec", "SourceSpec", "specs_for_view"]


# -- argument checks: a spec built by hand is checked and normalised as it is built --------------


def _src(source: Any) -> str:
    return f"source {getattr(source, 'name', '?')!r}"


def _where(spec: Any) -> str:
    return f"feature {getattr(spec, 'name', '?')!r}"


def _check_text(value: Any, what: str) -> None:
    if not isinstance(value, str) or not value:
        raise PitError(f"{what} must be a non-empty string, got {quoted(value)}", code="bad_spec")


def _check_bool(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, bool):
        raise PitError(
            f"{attribute.name} must be True or False, got {quoted(value)}", code="bad_spec"
        )


def _check_table(instance: Any, _attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not isinstance(value, pa.Table):
        raise PitError(
            f"{_src(instance)}: table must be a pyarrow.Table, got {type(value).__name__}",
            code="bad_spec",
        )


def _check_source(instance: Any, _attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, SourceSpec):
        raise PitError(
            f"{_where(instance)}: source must be a SourceSpec, got {type(value).__name__}",
            code="bad_spec",
        )


def _as_schema(value: Any) -> pa.Schema:
    """A pyarrow.Schema, or a mapping of column name to an Arrow type or a DuckDB-like name."""
    if isinstance(value, pa.Schema):
        return value
    if isinstance(value, Mapping):
        fields = []
        for name, dtype in value.items():
            try:
                arrow = dtype if isinstance(dtype, pa.DataType) else parse_dtype(str(dtype))
            except DTypeError as exc:
                raise PitError(f"column {name!r}: {exc}", code="bad_spec") from None
            fields.append(pa.field(str(name), arrow))
        return pa.schema(fields)
    raise PitError(
        f"a source's schema must be a pyarrow.Schema or a mapping of column to type, "
        f"got {type(value).__name__}",
        code="bad_spec",
    )


def _as_paths(value: Any) -> tuple[str, ...]:
    """Paths as a tuple of strings; one path (a string or a Path) is a one-element tuple."""
    if isinstance(value, str | Path):
        return (str(value),)
    if not isinstance(value, Iterable) or isinstance(value, bytes | Mapping):
        raise PitError(
            f"paths must be a path or a list of paths, got {quoted(value)}", code="bad_spec"
        )
    out = tuple(str(p) if isinstance(p, Path) else p for p in value)
    for p in out:
        _check_text(p, "a source path")
    return out


def _self_converter(fn: Any) -> Any:
    """An attrs converter that also sees the instance (its earlier fields: the spec's name)."""
    return attrs.Converter(lambda value, instance: fn(instance, value), takes_self=True)


def _as_function(spec: Any, value: Any) -> AggFunction:
    if isinstance(value, AggFunction):
        return value
    known = [f.value for f in AggFunction]
    if isinstance(value, str) and value.strip().lower() in known:
        return AggFunction(value.strip().lower())
    close = difflib.get_close_matches(str(value), known, n=1) if isinstance(value, str) else []
    hint = f"did you mean {close[0]}?" if close else f"functions: {', '.join(known)}"
    raise PitError(f"{_where(spec)}: unknown function {quoted(value)} — {hint}", code="bad_spec")


def _as_keys(spec: Any, value: Any) -> tuple[str, ...]:
    """Key columns as a tuple; one key column given as a string is a one-element tuple."""
    if isinstance(value, str):
        value = (value,)
    elif not isinstance(value, Iterable) or isinstance(value, bytes | Mapping):
        raise PitError(
            f"{_where(spec)}: keys must be a column name or a list of them, got {quoted(value)}",
            code="bad_spec",
        )
    keys = tuple(value)
    if not keys:
        raise PitError(f"{_where(spec)}: needs at least one key column", code="bad_spec")
    for key in keys:
        _check_text(key, f"{_where(spec)}: a key column")
    if len(set(keys)) != len(keys):
        raise PitError(f"{_where(spec)}: a key column is listed twice: {keys}", code="bad_spec")
    return keys


def _as_micros(
    spec: Any, value: Any, what: str, *, lifetime: bool = False, zero: bool = False
) -> int | None:
    """A length of time in microseconds: an int, a `datetime.timedelta`, a catalog Duration or
    its text (`"90s"`, `"1h"`, `"7d"`; `"lifetime"` or None where a lifetime is allowed: None)."""
    where = f"{_where(spec)}: {what}"
    if value is None and lifetime:
        return None
    if isinstance(value, str):
        try:
            value = Duration.parse(value, allow_lifetime=lifetime, allow_zero=zero)
        except ValueError as exc:
            raise PitError(f"{where}: {exc}", code="bad_spec") from None
    if isinstance(value, Duration):
        if value.micros is None:
            if not lifetime:
                raise PitError(f"{where} cannot be 'lifetime'", code="bad_spec")
            return None
        value = value.micros
    elif isinstance(value, dt.timedelta):
        value = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    if isinstance(value, bool) or not isinstance(value, int):
        allowed = "microseconds (int), a timedelta or a duration such as '1h'"
        raise PitError(
            f"{where} must be {allowed}{' or None' if lifetime else ''}, got {quoted(value)}",
            code="bad_spec",
        )
    if value < 0 or (value == 0 and not zero):
        bound = "at least 0" if zero else "longer than zero"
        raise PitError(f"{where} must be {bound}, got {value} µs", code="bad_spec")
    return int(value)


def _as_filters(spec: Any, value: Any) -> tuple[FilterDef, ...]:
    """Filters as a tuple of FilterDef: one FilterDef, a list of them, or a mapping of column to
    value(s) as in YAML (`{"action": "like"}`, `{"action": ["view", "like"]}`)."""
    if value is None:
        return ()
    if isinstance(value, FilterDef):
        return (value,)
    try:
        if isinstance(value, Mapping):
            return tuple(FilterDef(column, values) for column, values in value.items())
    except ValueError as exc:
        raise PitError(f"{_where(spec)}: {exc}", code="bad_spec") from None
    items = tuple(value) if isinstance(value, Iterable) and not isinstance(value, str) else None
    if items is None or not all(isinstance(f, FilterDef) for f in items):
        raise PitError(
            f"{_where(spec)}: filters must be FilterDef(column, values) items or a mapping of "
            f"column to values, got {quoted(value)}",
            code="bad_spec",
        )
    return items


def _check_aggregation(spec: AggregationSpec) -> None:
    """What can be checked before any data is read: the column a function needs, the type it
    can take (when the source's schema declares the column), `n`, and filter values."""
    where, fn, schema = _where(spec), spec.function, spec.source.schema
    if spec.column is not None:
        _check_text(spec.column, f"{where}: column")
    if fn.needs_column and spec.column is None:
        raise PitError(f"{where}: function {fn} needs a column", code="bad_spec")
    if spec.column is not None and spec.column in schema.names:
        column_type = schema.field(spec.column).type
        reason = is_value_type_supported(fn, column_type)
        if reason:
            raise PitError(
                f"{where}: {reason}; column {spec.column!r} of source {spec.source.name!r} is "
                f"{format_dtype(column_type)}",
                code="bad_type",
            )
    if fn is AggFunction.LAST_N:
        n = spec.n
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_LAST_N:
            raise PitError(
                f"{where}: last_n needs n, a whole number from 1 to {MAX_LAST_N}, got {n!r}",
                code="bad_spec",
            )
    elif spec.n is not None:
        raise PitError(f"{where}: n applies only to last_n, not {fn}", code="bad_spec")
    for f in spec.filters:
        if f.column in schema.names:
            column_type = schema.field(f.column).type
            try:
                pa.array(list(f.values), type=column_type)
            except (pa.ArrowException, TypeError, ValueError, OverflowError):
                raise PitError(
                    f"{where}: filter value(s) {quoted(f.values)} do not fit column "
                    f"{f.column!r} of type {format_dtype(column_type)}",
                    code="bad_type",
                ) from None


@attrs.frozen(eq=False)
class SourceSpec:
    """Where a spec's source rows come from: an in-memory Arrow table or parquet files.

    Compared by identity: specs that share one SourceSpec object are computed from one read.
    `schema` gives the declared type of each column the features may read (a pyarrow.Schema,
    or a mapping of column to an Arrow type or a DuckDB-like type name); it must hold the
    timestamp columns. `paths` is one path or a list of them.
    """

    name: str = attrs.field(validator=lambda _i, _a, v: _check_text(v, "a source's name"))
    timestamp: str = attrs.field(validator=lambda i, _a, v: _check_text(v, f"{_src(i)} timestamp"))
    schema: pa.Schema = attrs.field(converter=_as_schema)
    table: pa.Table | None = attrs.field(default=None, validator=_check_table)
    paths: tuple[str, ...] = attrs.field(default=(), converter=_as_paths)
    created_timestamp: str | None = attrs.field(default=None)
    naive_timestamps_are_utc: bool = attrs.field(default=False, validator=_check_bool)

    def __attrs_post_init__(self) -> None:
        for column in (self.timestamp, self.created_timestamp):
            if column is not None and column not in self.schema.names:
                raise PitError(
                    f"{_src(self)}: its schema has no time column {column!r} "
                    f"(has: {', '.join(self.schema.names) or 'nothing'})",
                    code="missing_column",
                )

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

    Built by hand, the arguments are checked and normalised as the spec is built (PitError,
    code `bad_spec` or `bad_type`, naming the feature): `function` may be its name
    (`"count"`); `keys` one column name (`"user_id"` → `("user_id",)`) or a list; `window_us`
    and `delay_us` microseconds, a `datetime.timedelta` or a duration text as in YAML (`"1h"`,
    `"7d"`; `"lifetime"` or None: no lower bound); `filters` one FilterDef, a list of them, or
    a mapping `{"action": "like"}` / `{"action": ["view", "like"]}` (a bare value is one value,
    never its characters). A function without the column it needs, a column type it cannot
    take (when the source's schema declares the column), a filter value that does not fit its
    column, or `n` missing (last_n) or given (any other function) is refused. A column the
    source's schema lacks is reported when the spec is computed.
    """

    name: str = attrs.field(validator=lambda _i, _a, v: _check_text(v, "a feature's name"))
    function: AggFunction = attrs.field(converter=_self_converter(_as_function))
    keys: tuple[str, ...] = attrs.field(converter=_self_converter(_as_keys))
    source: SourceSpec = attrs.field(validator=_check_source)
    window_us: int | None = attrs.field(
        converter=_self_converter(lambda s, v: _as_micros(s, v, "window", lifetime=True))
    )
    column: str | None = None
    filters: tuple[FilterDef, ...] = attrs.field(default=(), converter=_self_converter(_as_filters))
    n: int | None = None
    delay_us: int = attrs.field(
        default=0, converter=_self_converter(lambda s, v: _as_micros(s, v, "delay", zero=True))
    )

    def __attrs_post_init__(self) -> None:
        _check_aggregation(self)

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

    Checked and normalised as it is built, as AggregationSpec: `keys` one name or a list;
    `ttl_us` and `delay_us` microseconds, a timedelta or a duration text (`"2d"`; a `ttl_us` of
    None or `"lifetime"`: no TTL).
    """

    name: str = attrs.field(validator=lambda _i, _a, v: _check_text(v, "a feature's name"))
    column: str = attrs.field(validator=lambda i, _a, v: _check_text(v, f"{_where(i)}: column"))
    keys: tuple[str, ...] = attrs.field(converter=_self_converter(_as_keys))
    source: SourceSpec = attrs.field(validator=_check_source)
    ttl_us: int | None = attrs.field(
        default=None,
        converter=_self_converter(lambda s, v: _as_micros(s, v, "ttl", lifetime=True)),
    )
    delay_us: int = attrs.field(
        default=0, converter=_self_converter(lambda s, v: _as_micros(s, v, "delay", zero=True))
    )

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
