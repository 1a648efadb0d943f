"""Checks of a catalog against the data it names, without training: every file of every source
against its declared schema, and every filter value against the values that occur.

`check_data(catalog, workspace)` reads the footer of every file of every view's source and of
every service's spine through the source reader (`SourceReaderPort`; `pit.sources.file_problems`: a declared column missing, a type that
cannot be read losslessly — `pit.sources.compatible` —, a time column that is not a time,
tz-naive timestamps where the definition does not allow them, a file that is not parquet), then,
for every filter of every aggregation, reads only the filter's column of the source's files and
checks that each filter value occurs at least once (a typo such as `{action: likes}` otherwise
trains a column of zeros without a word). Each problem is located: the file and the column; for
a filter value, the YAML file, line and column of the value, and the closest values that do
occur (difflib).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from daedalus.catalog.dtypes import format_dtype
from daedalus.catalog.model import FeatureViewDef, Location
from daedalus.catalog.registry import FeatureCatalog
from daedalus.pipeline.compiler import compile_service
from daedalus.pit.errors import PitError
from daedalus.pit.sources import file_problems, source_reader
from daedalus.pit.spec import SourceSpec
from daedalus.ports import SourceReaderPort, SourceReadError

__all__ = ["check_data", "filter_locations"]

#: Distinct values kept per filter column to suggest from (the check itself sees them all).
_SUGGEST_FROM = 20_000
#: Distinct values listed in a problem when the column has this many or fewer.
_LIST_VALUES = 20


def _clip(value: Any, width: int = 60) -> str:
    text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _schema_problems(
    reader: SourceReaderPort,
    source: SourceSpec,
    label: str,
    files: list[str],
    problems: dict[str, dict[str, Any]],
) -> tuple[int, set[str]]:
    """Check every file's footer; (rows of the files that could be read, files at fault)."""
    rows = 0
    bad: set[str] = set()
    times = {source.timestamp, source.created_timestamp} - {None}
    for path in files:
        try:
            footer = reader.footer(path)
        except SourceReadError as exc:
            _add(
                problems,
                {
                    "kind": "unreadable",
                    "file": path,
                    "column": None,
                    "message": f"{path}: not a readable parquet file ({_clip(exc.reason, 120)})",
                },
                label,
            )
            bad.add(path)
            continue
        rows += footer.rows
        schema = footer.schema
        for message in file_problems(source, path, schema):
            column = next((f.name for f in source.schema if f"column {f.name!r}" in message), None)
            declared = source.schema.field(column).type if column else None
            found = schema.field(column).type if column and column in schema.names else None
            if found is None:
                kind = "missing_column"
            elif "tz-naive" in message:
                kind = "time_zone"
            elif column in times and "not a timestamp" in message:
                kind = "time_type"
            else:
                kind = "type"
            _add(
                problems,
                {
                    "kind": kind,
                    "file": path,
                    "column": column,
                    "declared": format_dtype(declared) if declared is not None else None,
                    "found": str(found) if found is not None else None,
                    "message": message,
                },
                label,
            )
            bad.add(path)
    return rows, bad


def _add(problems: dict[str, dict[str, Any]], problem: dict[str, Any], source: str) -> None:
    """One problem per message (a file read by several views is reported once, naming them)."""
    found = problems.setdefault(problem["message"], {**problem, "sources": []})
    if source not in found["sources"]:
        found["sources"].append(source)


def _distinct(reader: SourceReaderPort, path: str, column: str, string: bool) -> pa.Array:
    """The distinct values of one column of one file (strings read dictionary-encoded: only
    the dictionary's used entries are materialised)."""
    table = reader.read_file(path, [column], dictionary=[column] if string else ())
    if column not in table.column_names:
        raise SourceReadError(path, f"no column {column!r}")
    chunks = []
    for chunk in table[column].chunks:
        if pa.types.is_dictionary(chunk.type):
            used = pc.unique(chunk.indices.drop_null())
            chunks.append(chunk.dictionary.take(used))
        else:
            chunks.append(pc.unique(chunk.drop_null()))
    if not chunks:
        return pa.array([], type=table.schema.field(column).type)
    types = {c.type for c in chunks}
    if len(types) > 1:
        chunks = [c.cast(pa.large_string()) if pa.types.is_string(c.type) else c for c in chunks]
    return pc.unique(pa.concat_arrays(chunks))


def filter_locations(view: FeatureViewDef) -> dict[tuple[str, str, int], Location]:
    """Where each filter value of `view` is written: `(aggregation, column, i)` → the YAML
    file, line and column of the i-th value (read again from the view's file; empty when the
    view has no file location or the file changed so that the view is no longer found)."""
    out: dict[tuple[str, str, int], Location] = {}
    where = view.location
    if where is None:
        return out
    try:
        from ruamel.yaml import YAML
        from ruamel.yaml.comments import CommentedMap, CommentedSeq

        yaml = YAML(typ="rt")
        with open(where.file, encoding="utf-8") as fh:
            documents = list(yaml.load_all(fh))
        doc = next(
            d
            for d in documents
            if isinstance(d, CommentedMap)
            and (d.lc.line + 1, d.lc.col + 1) == (where.line, where.column)
        )
        for agg in doc.get("aggregations") or []:
            flt = agg.get("filter") if isinstance(agg, CommentedMap) else None
            if not isinstance(flt, CommentedMap):
                continue
            for col, values in flt.items():
                if isinstance(values, CommentedSeq):
                    for i in range(len(values)):
                        line, c = values.lc.item(i)
                        out[(str(agg.get("name")), str(col), i)] = Location(
                            where.file, line + 1, c + 1
                        )
                else:
                    line, c = flt.lc.value(col)
                    out[(str(agg.get("name")), str(col), 0)] = Location(where.file, line + 1, c + 1)
    except Exception:  # the locations are a help: a file that cannot be read again has none
        return out
    return out


def _check_filters(
    reader: SourceReaderPort,
    view: FeatureViewDef,
    source: SourceSpec,
    files: Iterable[str],
    problems: list[dict[str, Any]],
    cache: dict[tuple[str, str], pa.Array],
) -> int:
    """Every filter value of `view` that occurs in none of `files`; the values checked."""
    filters = [(agg, flt) for agg in view.aggregations for flt in agg.filters]
    if not filters:
        return 0
    files = list(files)
    distinct: dict[str, pa.Array] = {}
    for column in dict.fromkeys(flt.column for _agg, flt in filters):
        declared = source.schema.field(column).type
        string = pa.types.is_string(declared) or pa.types.is_large_string(declared)
        parts = []
        for path in files:
            key = (path, column)
            if key not in cache:
                try:
                    cache[key] = _distinct(reader, path, column, string)
                except SourceReadError as exc:
                    problems.append(
                        {
                            "kind": "unreadable",
                            "file": path,
                            "column": column,
                            "message": f"{path}: cannot read column {column!r} ({_clip(exc.reason, 120)})",
                            "sources": [view.name],
                        }
                    )
                    cache[key] = pa.array([], type=declared)
            parts.append(cache[key].cast(declared) if not string else cache[key])
        if string:
            parts = [p.cast(pa.large_string()) for p in parts]
        distinct[column] = (
            pc.unique(pa.concat_arrays(parts)) if parts else pa.array([], type=declared)
        )
    located = filter_locations(view)
    checked = 0
    for agg, flt in filters:
        declared = source.schema.field(flt.column).type
        seen = distinct[flt.column]
        for i, value in enumerate(flt.values):
            checked += 1
            try:
                probe = pa.array([value], type=declared)
            except (pa.ArrowException, TypeError, ValueError):
                probe = None
            if probe is not None and len(seen):
                cast = seen.cast(probe.type) if not seen.type.equals(probe.type) else seen
                if pc.any(pc.is_in(probe, value_set=cast)).as_py():
                    continue
            values = seen.slice(0, _SUGGEST_FROM).to_pylist()
            close = difflib.get_close_matches(str(value), [str(v) for v in values], n=3, cutoff=0.6)
            where = located.get((agg.name, flt.column, i)) or view.location
            hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else None
            shown = (
                ", ".join(sorted(_clip(v, 30) for v in map(str, values)))
                if len(seen) <= _LIST_VALUES
                else f"{len(seen):,} distinct values"
            )
            message = (
                f"filter value {value!r} of {flt.column!r} (aggregation {agg.name!r} of view "
                f"{view.name!r}) never occurs in {view.source.path} ({len(files)} file(s); "
                f"{flt.column!r} holds {shown or 'no values'})"
            )
            problems.append(
                {
                    "kind": "filter_value",
                    "file": view.source.path,
                    "column": flt.column,
                    "location": str(where) if where else None,
                    "view": view.name,
                    "aggregation": agg.name,
                    "value": value,
                    "suggestions": close,
                    "message": message,
                    "hint": hint,
                    "sources": [view.name],
                }
            )
    return checked


def check_data(
    catalog: FeatureCatalog, workspace: str | Path, *, reader: SourceReaderPort | None = None
) -> dict[str, Any]:
    """Every source of `catalog` (each view's, each service's spine) checked against its files
    under `workspace`, and every filter value against the values in the data. Returns
    `{"ok", "sources": [...], "problems": [...], "filter_values_checked"}`; each problem has a
    `kind` (`no_files`, `unreadable`, `missing_column`, `type`, `time_type`, `time_zone`,
    `filter_value`), the file and column (for a filter value: the YAML file, line and column),
    the declared and found types where they apply, and a message. Files are read through
    `reader` (None: the registered default, the parquet reader)."""
    reader = source_reader(reader)
    root = Path(workspace)
    problems: dict[str, dict[str, Any]] = {}
    filter_problems: list[dict[str, Any]] = []
    sources = []
    cache: dict[tuple[str, str], pa.Array] = {}
    checked = 0
    todo: list[tuple[str, str, SourceSpec, FeatureViewDef | None]] = [
        ("view", name, SourceSpec.from_view(view, root=root), view)
        for name, view in sorted(catalog.views.items())
    ]
    for name in sorted(catalog.services):
        spine = compile_service(name, catalog).bind(root).spine.source
        todo.append(("spine", f"spine of {name}", spine, None))
    for kind, label, source, view in todo:
        try:
            files = reader.files(source)
        except PitError as exc:
            _add(
                problems,
                {"kind": "no_files", "file": None, "column": None, "message": str(exc)},
                label,
            )
            sources.append({"kind": kind, "name": label, "files": 0, "rows": 0})
            continue
        rows, bad = _schema_problems(reader, source, label, files, problems)
        sources.append({"kind": kind, "name": label, "files": len(files), "rows": rows})
        if view is not None:
            good = [f for f in files if f not in bad]
            checked += _check_filters(reader, view, source, good, filter_problems, cache)
    listed = [*problems.values(), *filter_problems]
    return {
        "ok": not listed,
        "workspace": str(root),
        "sources": sources,
        "files_checked": sum(s["files"] for s in sources),
        "filter_values_checked": checked,
        "problems": listed,
    }
