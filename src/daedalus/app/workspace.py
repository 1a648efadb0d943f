"""The Python API (design.md §7): a workspace opened in a notebook or a script.

`Workspace.historical_features(spine, features)` is Feast's `get_historical_features` for
Daedalus: your own spine (an Arrow table, a pandas or a Polars DataFrame) with the features a
feature service would list, point-in-time correct. `Workspace.service_frame(service, ...)` is a
service's own dataset for some days (or for your spine), computed on demand.

Both go through the pipeline's own path: the request is checked as a feature service by the
catalog's loader (`load_service_text`: the same located errors, with did-you-mean hints),
compiled by `compile_service`, bound to the workspace (`executor.Plan`) and computed by
`executor.compute_rows`, the function a training batch runs. So for the spine rows of a trained
day the answer is the bits the pipeline wrote. Nothing is written; no Ray is started for work
the enricher pools in process (up to 2M rows).

`daedalus.open_workspace(path)` (in `daedalus.api`, outside the core) builds this class from the
container, as every surface gets its services.

Errors:
- `CatalogErrors` (daedalus.catalog.errors): the catalog directory does not load (when the
  workspace is opened or reloaded), or the features / embeddings you pass are not what a
  service may list (unknown view or feature, with a did-you-mean hint; a bad alias; an unknown
  store; an embedding source that is neither a spine key nor a feature). Each error is located
  in the request written as a service document (file `<historical_features>`), which is
  attached to the exception as a note.
- `AppError` (daedalus.app.errors), `kind` `invalid_argument` (`data["field"]` names the
  argument) or `not_found` (an unknown service, with a suggestion): arguments that are wrong
  before any data is read (a spine that is not a table, a missing key or timestamp column, an
  output that clashes with a spine column, an unknown engine, bad dates).
- `PitError` (daedalus.pit): the data is wrong (null keys or timestamps in the spine, tz-naive
  spine timestamps without `naive_timestamps_are_utc=True`, a source file missing or of the
  wrong type), exactly as the compute API raises it.
- `EnrichError` (daedalus.ports): an embedding store that cannot serve (missing, wrong dim).
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import pyarrow as pa

from daedalus.app.errors import AppError
from daedalus.app.pipeline_cases import engine_argument, parse_day
from daedalus.app.settings import Settings
from daedalus.catalog.errors import CatalogErrors
from daedalus.catalog.loader import load_service_text
from daedalus.catalog.model import FeatureRef, FeatureServiceDef
from daedalus.catalog.registry import TIMESTAMP_TYPE, FeatureCatalog
from daedalus.pipeline.compiler import compile_service
from daedalus.pipeline.executor import ComputedRows, Plan, compute_rows, read_spine_days
from daedalus.pit.sources import timestamps_to_micros
from daedalus.ports import AggregatorPort, EnricherPort, SourceReaderPort

__all__ = ["REQUEST_LABEL", "Workspace", "as_arrow_table"]

#: The file name the catalog's located errors give a `historical_features` request.
REQUEST_LABEL = "<historical_features>"
#: The name of the in-memory feature service a `historical_features` request becomes.
REQUEST_SERVICE = "historical_features"


def as_arrow_table(spine: Any, what: str = "spine") -> pa.Table:
    """`spine` as a pyarrow Table: a Table as is, a RecordBatch, a pandas DataFrame
    (`pa.Table.from_pandas`: a named index becomes a column), a Polars DataFrame (`to_arrow`,
    without copying), or anything with the Arrow C stream interface. pandas and Polars are never
    imported here: a frame is recognised by its type's module."""
    if isinstance(spine, pa.Table):
        table = spine
    elif isinstance(spine, pa.RecordBatch):
        table = pa.Table.from_batches([spine])
    else:
        module = type(spine).__module__.partition(".")[0]
        kind = type(spine).__name__
        if module == "pandas" and kind == "DataFrame":
            table = pa.Table.from_pandas(spine)
        elif module == "polars" and kind == "DataFrame":
            table = spine.to_arrow()
        elif module == "polars" and kind == "LazyFrame":
            raise AppError(
                "invalid_argument",
                f"the {what} is a Polars LazyFrame: collect() it first",
                {"field": what},
            )
        elif hasattr(spine, "__arrow_c_stream__"):
            table = pa.table(spine)
        else:
            raise AppError(
                "invalid_argument",
                f"the {what} must be a pyarrow Table, a pandas or a Polars DataFrame, got {kind}",
                {"field": what},
            )
    names = table.column_names
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise AppError(
            "invalid_argument",
            f"the {what} has more than one column named {', '.join(map(repr, repeated))}",
            {"field": what},
        )
    return table


class Workspace:
    """A workspace (its sources, its catalog) opened for point-in-time training frames in Python.

    Build it with `daedalus.open_workspace(path, catalog=None)`. The catalog is loaded when the
    workspace opens (CatalogErrors if it does not load) and again by `reload()`.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        load_catalog: Callable[[], FeatureCatalog],
        aggregator_for: Callable[[str], AggregatorPort],
        enricher: Callable[[], EnricherPort],
        source_reader: Callable[[], SourceReaderPort] | None = None,
    ) -> None:
        self.settings = settings
        self._load_catalog = load_catalog
        self._aggregator_for = aggregator_for
        self._enricher = enricher
        self._source_reader = source_reader
        self._catalog = load_catalog()

    # -- the workspace ------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The workspace directory (source paths in the definitions are relative to it)."""
        return self.settings.workspace

    @property
    def catalog(self) -> FeatureCatalog:
        """The loaded catalog: `.views`, `.services`, `.stores`, `.resolved_schema(service)`."""
        return self._catalog

    def reload(self) -> FeatureCatalog:
        """Read the catalog directory again (after editing a definition); CatalogErrors if it no
        longer loads, in which case the catalog loaded before stays."""
        self._catalog = self._load_catalog()
        return self._catalog

    def __repr__(self) -> str:
        cat = self._catalog
        return (
            f"Workspace({str(self.path)!r}, catalog={str(self.settings.catalog_dir)!r}: "
            f"{len(cat.views)} views, {len(cat.services)} services, {len(cat.stores)} stores)"
        )

    # -- point-in-time frames -----------------------------------------------------------------

    def historical_features(
        self,
        spine: Any,
        features: str | Sequence[str | Mapping[str, str]],
        *,
        timestamp: str = "ts",
        engine: str = "duckdb",
        embeddings: Sequence[Mapping[str, str]] = (),
        naive_timestamps_are_utc: bool = False,
    ) -> pa.Table:
        """Your spine, row for row in its order and with its columns unchanged, plus the
        requested features and pooled embeddings, point-in-time correct at each row's
        `timestamp`.

        `features` lists what a feature service would list: `"view:feature"`, `"view:*"` or
        `{"feature": "view:feature", "alias": "name"}` (one string is one reference);
        `embeddings` lists `{"name", "store", "source"}` mappings, where `source` is a spine key
        or a requested feature holding ids. The spine needs the join keys of every view used
        (and of an embedding sourced from a key) and the timestamp column (tz-aware, or naive
        UTC with `naive_timestamps_are_utc=True`); any other column (labels…) passes through.
        The new columns are typed exactly as the resolved schema of a service with these
        features types them. `engine` is "duckdb" or "polars" (the same bits). Raises
        CatalogErrors, AppError, PitError or EnrichError (see the module's docstring).
        """
        table = as_arrow_table(spine)
        eng = engine_argument(engine)
        if not isinstance(timestamp, str) or not timestamp:
            raise AppError(
                "invalid_argument",
                f"timestamp must name a spine column, got {timestamp!r}",
                {"field": "timestamp"},
            )
        _check_bool(naive_timestamps_are_utc, "naive_timestamps_are_utc")
        catalog = self._catalog
        if timestamp not in table.column_names:
            raise AppError(
                "invalid_argument",
                f"the spine has no timestamp column {timestamp!r} (it has "
                f"{_names(table.column_names)}); name yours with timestamp=...",
                {"field": "timestamp"},
            )
        service = self._request(catalog, table, features, embeddings, timestamp)
        service = attrs.evolve(
            service,
            spine=attrs.evolve(service.spine, naive_timestamps_are_utc=naive_timestamps_are_utc),
        )
        probe = pa.table(
            {
                **{k: table[k] for k in catalog.join_keys(service.spine.entities)},
                timestamp: _utc_micros(table[timestamp], timestamp, naive_timestamps_are_utc),
            }
        )
        rows = self._compute(catalog, service, eng, probe)
        out = table
        for field in rows.table.schema:
            if field.name not in probe.column_names:
                out = out.append_column(field, rows.table[field.name])
        return out

    def service_frame(
        self,
        service: str,
        spine: Any = None,
        start: str | dt.date | None = None,
        end: str | dt.date | None = None,
        *,
        engine: str = "duckdb",
    ) -> pa.Table:
        """A feature service's dataset, computed now and written nowhere.

        Without `spine`: the service's own spine rows with timestamps in the days `start` to
        `end` (both included; `end` defaults to `start`), in the order a training run reads
        them, with exactly the service's resolved schema — for trained days, the rows the
        pipeline wrote, bit for bit (read `dt=*/part-*.parquet` instead when they are current).
        With `spine` (an Arrow table, a pandas or a Polars DataFrame; no `start`/`end`): your
        rows, in their order, with the resolved schema (the spine's keys and timestamp cast to
        it; a label your spine lacks is null) followed by your spine's other columns. Raises
        AppError, PitError or EnrichError (see the module's docstring).
        """
        eng = engine_argument(engine)
        catalog = self._catalog
        svc = _service(catalog, service)
        if spine is None:
            if start is None:
                raise AppError(
                    "invalid_argument",
                    "give the days (start=, and end= for more than one) or your own spine",
                    {"field": "start"},
                )
            first = parse_day(start, "start")
            last = parse_day(end, "end") if end is not None else first
            if first > last:
                raise AppError(
                    "invalid_argument", f"start {first} is after end {last}", {"field": "end"}
                )
            return self._compute(catalog, svc, eng, None, (first, last)).table
        if start is not None or end is not None:
            raise AppError(
                "invalid_argument",
                "give either your own spine or the days (start, end) of the service's spine",
                {"field": "spine"},
            )
        table = as_arrow_table(spine)
        schema = catalog.resolved_schema(svc)
        keys = catalog.join_keys(svc.spine.entities)
        ts = svc.spine.timestamp
        _require(table, keys, f"service {svc.name!r}'s spine keys")
        _require(table, [ts], f"service {svc.name!r}'s spine timestamp")
        outputs = [f.name for f in schema if f.name not in {*keys, ts, *_labels(svc)}]
        _no_clash(table, outputs)
        columns: dict[str, Any] = {k: table[k] for k in keys}
        columns[ts] = _utc_micros(table[ts], ts, svc.spine.naive_timestamps_are_utc)
        for label in svc.spine.labels:
            columns[label.name] = _label(table, label.name, label.arrow_type)
        rows = self._compute(catalog, svc, eng, pa.table(columns))
        out = rows.table
        for name in table.column_names:
            if name not in schema.names:
                out = out.append_column(table.schema.field(name), table[name])
        return out

    # -- the shared path ----------------------------------------------------------------------

    def _request(
        self,
        catalog: FeatureCatalog,
        table: pa.Table,
        features: Any,
        embeddings: Any,
        timestamp: str,
    ) -> FeatureServiceDef:
        """The request as an in-memory feature service, checked by the catalog's loader; its
        spine holds the entities the requested views (and key-sourced embeddings) need."""
        refs = _items(features, "features")
        pools = _items(embeddings, "embeddings")
        every = list(catalog.entities)
        text = _service_text(timestamp, every, refs, pools)
        try:
            service = load_service_text(
                text, REQUEST_LABEL, catalog.views, catalog.stores, catalog.entities
            )
        except CatalogErrors as exc:
            numbered = "\n".join(f"{i:4} | {line}" for i, line in enumerate(text.splitlines(), 1))
            exc.add_note(f"the request, checked as this feature service ({REQUEST_LABEL}):")
            exc.add_note(numbered)
            raise
        resolved = catalog.resolve_features(service)
        needs: dict[str, str] = {}  # entity -> what needs it
        for rf in resolved:
            for entity in rf.view.entities:
                needs.setdefault(entity, f"view {rf.view.name!r}")
        for emb in service.embeddings:
            for entity in every:
                if emb.source in catalog.entities[entity].join_keys:
                    needs.setdefault(entity, f"embedding {emb.name!r}")
        entities = tuple(e for e in every if e in needs)
        for entity in entities:
            missing = [k for k in catalog.entities[entity].join_keys if k not in table.column_names]
            if missing:
                raise AppError(
                    "invalid_argument",
                    f"the spine lacks {_names(missing)}, the key of entity {entity!r} that "
                    f"{needs[entity]} needs (the spine has {_names(table.column_names)})",
                    {"field": "spine"},
                )
        _no_clash(table, [rf.output for rf in resolved] + [e.name for e in service.embeddings])
        return attrs.evolve(service, spine=attrs.evolve(service.spine, entities=entities))

    def _compute(
        self,
        catalog: FeatureCatalog,
        service: FeatureServiceDef,
        engine: str,
        spine: pa.Table | None,
        days: tuple[dt.date, dt.date] | None = None,
    ) -> ComputedRows:
        """Compile the service, bind it to the workspace and compute its rows for `spine` (or
        its own spine's rows of `days`) with `compute_rows`, as a training batch does."""
        reader = None if self._source_reader is None else self._source_reader()
        plan = Plan(compile_service(service, catalog, engine), self.settings.workspace, reader)
        if spine is None:
            assert days is not None
            spine = read_spine_days(plan, *days)
        enricher = self._enricher() if plan.pool_requests else None
        return compute_rows(plan, spine, self._aggregator_for(engine), enricher)


# -- helpers ---------------------------------------------------------------------------------


def _check_bool(value: Any, field: str) -> None:
    if not isinstance(value, bool):
        raise AppError(
            "invalid_argument", f"{field} must be True or False, got {value!r}", {"field": field}
        )


def _names(names: Sequence[str]) -> str:
    return ", ".join(map(repr, names)) or "no columns"


def _service(catalog: FeatureCatalog, name: Any) -> FeatureServiceDef:
    if isinstance(name, FeatureServiceDef):
        return name
    if not isinstance(name, str) or name not in catalog.services:
        close = difflib.get_close_matches(str(name), list(catalog.services), n=1)
        hint = f" — did you mean {close[0]}?" if close else ""
        raise AppError(
            "not_found",
            f"unknown feature service {name!r}{hint} (known: {_names(sorted(catalog.services))})",
            {"field": "service", "name": str(name)},
        )
    return catalog.services[name]


def _labels(service: FeatureServiceDef) -> list[str]:
    return [c.name for c in service.spine.labels]


def _require(table: pa.Table, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise AppError(
            "invalid_argument",
            f"the spine lacks {_names(missing)} ({what}; it has {_names(table.column_names)})",
            {"field": "spine"},
        )


def _no_clash(table: pa.Table, outputs: Sequence[str]) -> None:
    clash = [name for name in outputs if name in table.column_names]
    if clash:
        raise AppError(
            "invalid_argument",
            f"the spine already has column(s) {_names(clash)}, which the request outputs: drop "
            "them from the spine, or give the feature an alias "
            "({'feature': 'view:feature', 'alias': 'new_name'})",
            {"field": "spine"},
        )


def _utc_micros(column: pa.ChunkedArray, name: str, naive_is_utc: bool) -> pa.ChunkedArray:
    """A spine time column as `timestamp[us, UTC]`, the microseconds every time is computed in
    (finer units truncated, as the compute core reads them). PitError for nulls, tz-naive
    times (unless `naive_is_utc`) and a column that is not a time."""
    if column.type.equals(TIMESTAMP_TYPE) and not column.null_count:
        return column
    micros = timestamps_to_micros(column, name, naive_is_utc=naive_is_utc, where="spine")
    return pa.chunked_array([pa.array(micros, TIMESTAMP_TYPE)])


def _label(table: pa.Table, name: str, arrow_type: pa.DataType) -> pa.ChunkedArray:
    """A label column of the spine cast to its declared type; nulls when the spine lacks it."""
    if name not in table.column_names:
        return pa.chunked_array([pa.nulls(table.num_rows, arrow_type)])
    column = table[name]
    if column.type.equals(arrow_type):
        return column
    try:
        return column.cast(arrow_type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise AppError(
            "invalid_argument",
            f"the spine's label {name!r} is {column.type}, which cannot be read as the "
            f"service's {arrow_type}: {exc}",
            {"field": "spine"},
        ) from None


def _items(value: Any, field: str) -> list[Any]:
    """A list argument's items as JSON-ready values (one string is one item)."""
    if isinstance(value, str | Mapping | FeatureRef):
        value = [value]
    if not isinstance(value, Sequence | tuple):
        raise AppError(
            "invalid_argument",
            f"{field} must be a list, got {type(value).__name__}",
            {"field": field},
        )
    items = []
    for item in value:
        if isinstance(item, FeatureRef):
            text = f"{item.view}:{item.feature}"
            item = {"feature": text, "alias": item.alias} if item.alias else text
        elif isinstance(item, Mapping):
            item = dict(item)
        try:
            json.dumps(item)
        except (TypeError, ValueError):
            raise AppError(
                "invalid_argument",
                f"{field} holds {type(item).__name__} {item!r}, which is not text or a mapping",
                {"field": field},
            ) from None
        items.append(item)
    return items


def _service_text(
    timestamp: str, entities: Sequence[str], features: list[Any], embeddings: list[Any]
) -> str:
    """The request as a `feature_service` document, one feature or embedding per line."""
    spine = {"path": "<spine>", "timestamp": timestamp, "entity": list(entities)}
    lines = [
        "kind: feature_service",
        f"name: {REQUEST_SERVICE}",
        f"spine: {json.dumps(spine)}",
        "features:" if features else "features: []",
        *(f"  - {json.dumps(item)}" for item in features),
    ]
    if embeddings:
        lines += ["embeddings:", *(f"  - {json.dumps(item)}" for item in embeddings)]
    return "\n".join(lines) + "\n"
