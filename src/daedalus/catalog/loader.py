"""Read `feature_views/*.yaml`, check every definition, and report every error with its location."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs
import pyarrow as pa
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from daedalus.catalog.converter import CONVERTER, parse_feature_ref
from daedalus.catalog.dtypes import DTypeError, format_dtype, parse_dtype
from daedalus.catalog.errors import CatalogError, CatalogErrors
from daedalus.catalog.functions import MAX_LAST_N, aggregation_output_type, is_value_type_supported
from daedalus.catalog.model import (
    AggFunction,
    Duration,
    EmbeddingStoreDef,
    Entity,
    FeatureServiceDef,
    FeatureViewDef,
    Location,
)

__all__ = ["LoadedDefinitions", "load_definitions"]

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

_VIEW_KEYS = {
    "kind": True,
    "name": True,
    "description": False,
    "entity": True,
    "source": True,
    "ttl": False,
    "schema": True,
    "features": False,
    "aggregations": False,
}
_SOURCE_KEYS = {
    "path": True,
    "timestamp": True,
    "created_timestamp": False,
    "delay": False,
    "naive_timestamps_are_utc": False,
}
_FEATURE_KEYS = {"name": True, "column": False, "description": False}
_AGG_KEYS = {
    "name": True,
    "function": True,
    "window": True,
    "column": False,
    "filter": False,
    "n": False,
    "description": False,
}
_SERVICE_KEYS = {
    "kind": True,
    "name": True,
    "description": False,
    "spine": True,
    "features": True,
    "embeddings": False,
}
_SPINE_KEYS = {
    "path": True,
    "timestamp": True,
    "entity": True,
    "labels": False,
    "naive_timestamps_are_utc": False,
}
_REF_KEYS = {"feature": True, "alias": False}
_EMBEDDING_KEYS = {"name": True, "store": True, "source": True}
_STORE_KEYS = {
    "kind": True,
    "name": True,
    "description": False,
    "entity": True,
    "path": True,
    "id_column": True,
    "vector_column": True,
    "dim": True,
}
_KINDS = ("feature_view", "feature_service", "embedding_store")


def _did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean {match[0]}?" if match else None


class _Doc:
    """One YAML document being checked: collects errors located by its nodes' marks."""

    def __init__(
        self, file: str, errors: list[CatalogError], lines: list[str] | None = None
    ) -> None:
        self.file = file
        self.errors = errors
        self.lines = lines or []

    def quote_width(self, pos: tuple[int, int]) -> int:
        """1 when the scalar at `pos` starts with a quote (its text begins one column later)."""
        line = self.lines[pos[0]] if 0 <= pos[0] < len(self.lines) else ""
        return 1 if pos[1] < len(line) and line[pos[1]] in "'\"" else 0

    def error(self, pos: tuple[int, int], message: str, hint: str | None = None) -> None:
        self.errors.append(CatalogError(self.file, pos[0] + 1, pos[1] + 1, message, hint))

    @staticmethod
    def key_pos(node: Any, key: Any) -> tuple[int, int]:
        try:
            line, col = node.lc.key(key)
            return line, col
        except (AttributeError, KeyError, TypeError):
            return node.lc.line, node.lc.col

    @staticmethod
    def value_pos(node: Any, key: Any) -> tuple[int, int]:
        try:
            if isinstance(node, CommentedSeq):
                line, col = node.lc.item(key)
            else:
                line, col = node.lc.value(key)
            return line, col
        except (AttributeError, KeyError, TypeError, IndexError):
            return _Doc.key_pos(node, key)

    @staticmethod
    def pos(node: Any) -> tuple[int, int]:
        return (node.lc.line, node.lc.col) if hasattr(node, "lc") else (0, 0)

    def mapping(self, node: Any, where: tuple[int, int], what: str) -> bool:
        if isinstance(node, CommentedMap):
            return True
        self.error(where, f"{what} must be a mapping (key: value), got {_kind_of(node)}")
        return False

    def keys(self, node: CommentedMap, allowed: dict[str, bool], what: str) -> bool:
        """Check unknown and missing keys; returns False if a required key is missing."""
        ok = True
        for key in node:
            if key not in allowed:
                self.error(
                    self.key_pos(node, key),
                    f"unknown key {key!r} in {what}",
                    _did_you_mean(str(key), allowed) or f"allowed keys: {', '.join(allowed)}",
                )
        for key, required in allowed.items():
            if required and key not in node:
                self.error(self.pos(node), f"{what} is missing required key {key!r}")
                ok = False
        return ok

    def string(self, node: CommentedMap, key: str, what: str) -> str | None:
        value = node.get(key)
        if isinstance(value, str) and value.strip():
            return value
        self.error(self.value_pos(node, key), f"{what} must be a non-empty string, got {value!r}")
        return None

    def name(self, node: CommentedMap, key: str, what: str) -> str | None:
        value = self.string(node, key, what)
        if value is not None and not _NAME_RE.match(value):
            self.error(
                self.value_pos(node, key),
                f"{what} {value!r} is not a valid name (letters, digits and _, not starting with a digit)",
            )
            return None
        return value

    def duration(self, node: CommentedMap, key: str, what: str, **kw: bool) -> Duration | None:
        try:
            return Duration.parse(node[key], **kw)
        except ValueError as exc:
            self.error(self.value_pos(node, key), f"{what}: {exc}")
            return None


def _kind_of(node: Any) -> str:
    if isinstance(node, CommentedMap):
        return "a mapping"
    if isinstance(node, CommentedSeq):
        return "a list"
    return f"{type(node).__name__} {node!r}"


class LoadedDefinitions:
    """The checked, structured contents of a catalog directory."""

    def __init__(
        self,
        views: dict[str, FeatureViewDef],
        services: dict[str, FeatureServiceDef],
        stores: dict[str, EmbeddingStoreDef],
    ) -> None:
        self.views = views
        self.services = services
        self.stores = stores


def _plain(node: Any) -> Any:
    """CommentedMap/Seq → dict/list (recursively), for the converter."""
    if isinstance(node, CommentedMap):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, CommentedSeq):
        return [_plain(v) for v in node]
    return node


def _check_entities(doc: _Doc, node: CommentedMap, entities: dict[str, Entity]) -> list[str]:
    value = node.get("entity")
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        doc.error(
            doc.value_pos(node, "entity"),
            f"entity must be an entity name or a non-empty list of them, got {value!r}",
        )
        return []
    good: list[str] = []
    for i, name in enumerate(names):
        if name in entities:
            if name in good:
                doc.error(doc.value_pos(node, "entity"), f"entity {name!r} is listed twice")
            good.append(name)
            continue
        pos = (
            doc.value_pos(value, i)
            if isinstance(value, CommentedSeq)
            else doc.value_pos(node, "entity")
        )
        doc.error(
            pos,
            f"unknown entity {name!r}",
            _did_you_mean(name, entities) or f"known entities: {', '.join(entities)}",
        )
    return good if len(good) == len(names) else []


def _check_schema(doc: _Doc, node: CommentedMap, key: str, what: str) -> dict[str, pa.DataType]:
    schema = node.get(key)
    types: dict[str, pa.DataType] = {}
    if not doc.mapping(schema, doc.value_pos(node, key), what):
        return types
    if not schema:
        doc.error(doc.value_pos(node, key), f"{what} is empty")
    for col, dtype in schema.items():
        pos = doc.value_pos(schema, col)
        if not isinstance(dtype, str):
            doc.error(
                pos, f"type of column {col!r} must be a type name such as BIGINT, got {dtype!r}"
            )
            continue
        try:
            types[str(col)] = parse_dtype(dtype)
        except DTypeError as exc:
            offset = doc.quote_width(pos) + exc.column
            doc.error((pos[0], pos[1] + offset), f"column {col!r}: {exc.message}", exc.hint)
    return types


def _check_time_column(
    doc: _Doc, node: CommentedMap, key: str, types: dict[str, pa.DataType], what: str
) -> None:
    col = node.get(key)
    if not isinstance(col, str):
        doc.error(doc.value_pos(node, key), f"{what} must name a column, got {col!r}")
        return
    if col not in types:
        doc.error(
            doc.value_pos(node, key),
            f"{what} {col!r} is not a column of the schema",
            _did_you_mean(col, types),
        )
    elif not (pa.types.is_timestamp(types[col]) or pa.types.is_date32(types[col])):
        doc.error(
            doc.value_pos(node, key),
            f"{what} {col!r} has type {format_dtype(types[col])}, not a time type (TIMESTAMP, TIMESTAMPTZ, DATE)",
        )


def _check_source(doc: _Doc, view: CommentedMap, types: dict[str, pa.DataType]) -> None:
    source = view.get("source")
    if not doc.mapping(source, doc.value_pos(view, "source"), "source"):
        return
    if not doc.keys(source, _SOURCE_KEYS, "source"):
        return
    doc.string(source, "path", "source path")
    _check_time_column(doc, source, "timestamp", types, "timestamp column")
    if "created_timestamp" in source:
        _check_time_column(doc, source, "created_timestamp", types, "created_timestamp column")
    if "delay" in source:
        doc.duration(source, "delay", "delay", allow_lifetime=False, allow_zero=True)
    if "naive_timestamps_are_utc" in source and not isinstance(
        source["naive_timestamps_are_utc"], bool
    ):
        doc.error(
            doc.value_pos(source, "naive_timestamps_are_utc"),
            "naive_timestamps_are_utc must be true or false",
        )


def _check_features(
    doc: _Doc, view: CommentedMap, types: dict[str, pa.DataType], names: dict[str, tuple[int, int]]
) -> None:
    features = view.get("features")
    if not isinstance(features, CommentedSeq):
        doc.error(
            doc.value_pos(view, "features"), f"features must be a list, got {_kind_of(features)}"
        )
        return
    for i, item in enumerate(features):
        pos = doc.value_pos(features, i)
        if isinstance(item, str):
            name, column, col_pos = item, item, pos
        elif isinstance(item, CommentedMap):
            if not doc.keys(item, _FEATURE_KEYS, "feature"):
                continue
            name = doc.name(item, "name", "feature name")
            column = item.get("column", name)
            col_pos = doc.value_pos(item, "column" if "column" in item else "name")
            if name is None:
                continue
        else:
            doc.error(pos, f"a feature must be a column name or a mapping, got {_kind_of(item)}")
            continue
        _register_name(doc, names, name, pos)
        if not isinstance(column, str):
            doc.error(
                col_pos, f"column of feature {name!r} must be a column name, got {_kind_of(column)}"
            )
        elif column not in types:
            doc.error(
                col_pos,
                f"feature {name!r} reads column {column!r}, which the schema lacks",
                _did_you_mean(str(column), types),
            )


def _register_name(
    doc: _Doc, names: dict[str, tuple[int, int]], name: str, pos: tuple[int, int]
) -> None:
    if name in names:
        first = names[name]
        doc.error(pos, f"duplicate feature name {name!r} (first defined at line {first[0] + 1})")
    else:
        names[name] = pos


def _check_filter(doc: _Doc, agg: CommentedMap, types: dict[str, pa.DataType]) -> None:
    flt = agg["filter"]
    if not doc.mapping(flt, doc.value_pos(agg, "filter"), "filter"):
        return
    if not flt:
        doc.error(doc.value_pos(agg, "filter"), "filter is empty")
    for col, value in flt.items():
        if col not in types:
            doc.error(
                doc.key_pos(flt, col),
                f"filter on column {col!r}, which the schema lacks",
                _did_you_mean(str(col), types),
            )
            continue
        values = list(value) if isinstance(value, CommentedSeq) else [value]
        if not values:
            doc.error(doc.value_pos(flt, col), f"filter on {col!r} lists no values")
        for v in values:
            if isinstance(v, CommentedMap | CommentedSeq):
                doc.error(
                    doc.value_pos(flt, col), f"filter values must be scalars, got {_kind_of(v)}"
                )
                continue
            try:
                pa.array([v], type=types[col])
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
                doc.error(
                    doc.value_pos(flt, col),
                    f"filter value {v!r} does not fit column {col!r} of type {format_dtype(types[col])}",
                )


def _check_aggregations(
    doc: _Doc, view: CommentedMap, types: dict[str, pa.DataType], names: dict[str, tuple[int, int]]
) -> None:
    aggs = view.get("aggregations")
    if not isinstance(aggs, CommentedSeq):
        doc.error(
            doc.value_pos(view, "aggregations"),
            f"aggregations must be a list, got {_kind_of(aggs)}",
        )
        return
    functions = [f.value for f in AggFunction]
    for i, agg in enumerate(aggs):
        if not doc.mapping(agg, doc.value_pos(aggs, i), "an aggregation"):
            continue
        if not doc.keys(agg, _AGG_KEYS, "aggregation"):
            continue
        name = doc.name(agg, "name", "aggregation name")
        if name is not None:
            _register_name(doc, names, name, doc.value_pos(agg, "name"))
        doc.duration(agg, "window", f"window of {name!r}", allow_lifetime=True)
        fn_text = agg["function"]
        if fn_text not in functions:
            doc.error(
                doc.value_pos(agg, "function"),
                f"unknown function {fn_text!r}",
                _did_you_mean(str(fn_text), functions) or f"functions: {', '.join(functions)}",
            )
            continue
        function = AggFunction(fn_text)
        column = agg.get("column")
        if column is not None and not isinstance(column, str):
            doc.error(
                doc.value_pos(agg, "column"),
                f"column of {name!r} must be a column name, got {_kind_of(column)}",
            )
        elif column is not None and column not in types:
            doc.error(
                doc.value_pos(agg, "column"),
                f"aggregation {name!r} reads column {column!r}, which the schema lacks",
                _did_you_mean(str(column), types),
            )
        elif function.needs_column and column is None:
            doc.error(
                doc.pos(agg),
                f"function {function} needs a column; add 'column: <name>' to {name!r}",
            )
        else:
            reason = is_value_type_supported(function, types.get(column) if column else None)
            if reason:
                doc.error(
                    doc.value_pos(agg, "column"),
                    f"{reason}; column {column!r} is {format_dtype(types[column])}",
                )
        if function is AggFunction.LAST_N:
            n = agg.get("n")
            if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_LAST_N:
                doc.error(
                    doc.value_pos(agg, "n") if "n" in agg else doc.pos(agg),
                    f"last_n needs 'n', a whole number from 1 to {MAX_LAST_N}, got {n!r}",
                )
        elif "n" in agg:
            doc.error(doc.key_pos(agg, "n"), f"'n' applies only to last_n, not {function}")
        if "filter" in agg:
            _check_filter(doc, agg, types)


def _check_view(doc: _Doc, node: CommentedMap, entities: dict[str, Entity]) -> bool:
    start = len(doc.errors)  # before the key check: an unknown key makes the document invalid
    if not doc.keys(node, _VIEW_KEYS, "feature_view"):
        return False
    doc.name(node, "name", "view name")
    entity_names = _check_entities(doc, node, entities)
    types = _check_schema(doc, node, "schema", "schema")
    for entity in entity_names:
        for key in entities[entity].join_keys:
            if key not in types:
                doc.error(
                    doc.value_pos(node, "entity"),
                    f"view is keyed on entity {entity!r}, but its schema lacks the join key {key!r}",
                    f"add '{key}: {entities[entity].value_type}' to the schema",
                )
            elif not pa.types.is_integer(types[key]):
                doc.error(
                    doc.value_pos(node["schema"], key),
                    f"join key {key!r} must be an integer column, got {format_dtype(types[key])}",
                )
    _check_source(doc, node, types)
    if "ttl" in node:
        doc.duration(node, "ttl", "ttl", allow_lifetime=False)
    names: dict[str, tuple[int, int]] = {}
    if "features" in node:
        _check_features(doc, node, types, names)
    if "aggregations" in node:
        _check_aggregations(doc, node, types, names)
    if "features" not in node and "aggregations" not in node:
        doc.error(doc.pos(node), "a feature view needs 'features', 'aggregations' or both")
    return len(doc.errors) == start


def _check_store(doc: _Doc, node: CommentedMap, entities: dict[str, Entity]) -> bool:
    start = len(doc.errors)  # before the key check: an unknown key makes the document invalid
    if not doc.keys(node, _STORE_KEYS, "embedding_store"):
        return False
    doc.name(node, "name", "embedding store name")
    if isinstance(node.get("entity"), str):
        _check_entities(doc, node, entities)
    else:
        doc.error(
            doc.value_pos(node, "entity"),
            f"an embedding store is keyed by one entity name, got {_kind_of(node.get('entity'))}",
        )
    for key in ("path", "id_column", "vector_column"):
        doc.string(node, key, key)
    dim = node.get("dim")
    if not isinstance(dim, int) or isinstance(dim, bool) or not 1 <= dim <= 65536:
        doc.error(
            doc.value_pos(node, "dim"), f"dim must be a whole number from 1 to 65536, got {dim!r}"
        )
    return len(doc.errors) == start


def _check_service_shape(doc: _Doc, node: CommentedMap, entities: dict[str, Entity]) -> bool:
    """Per-document checks of a service; cross-references are checked once all files are read."""
    start = len(doc.errors)  # before the key check: an unknown key makes the document invalid
    if not doc.keys(node, _SERVICE_KEYS, "feature_service"):
        return False
    doc.name(node, "name", "service name")
    spine = node.get("spine")
    if doc.mapping(spine, doc.value_pos(node, "spine"), "spine") and doc.keys(
        spine, _SPINE_KEYS, "spine"
    ):
        doc.string(spine, "path", "spine path")
        doc.string(spine, "timestamp", "spine timestamp")
        _check_entities(doc, spine, entities)
        if "labels" in spine:
            _check_schema(doc, spine, "labels", "labels")
    features = node.get("features")
    if not isinstance(features, CommentedSeq) or not features:
        doc.error(
            doc.value_pos(node, "features"), "features must be a non-empty list of 'view:feature'"
        )
    else:
        for i, item in enumerate(features):
            pos = doc.value_pos(features, i)
            if isinstance(item, CommentedMap):
                if not doc.keys(item, _REF_KEYS, "feature reference"):
                    continue
                text, alias = item.get("feature"), item.get("alias")
                if alias is not None and not (isinstance(alias, str) and _NAME_RE.match(alias)):
                    doc.error(doc.value_pos(item, "alias"), f"alias {alias!r} is not a valid name")
            else:
                text = item
            if not isinstance(text, str):
                doc.error(pos, f"a feature reference must be 'view:feature', got {_kind_of(text)}")
                continue
            try:
                parse_feature_ref(text)
            except ValueError as exc:
                doc.error(pos, str(exc))
    embeddings = node.get("embeddings", CommentedSeq())
    if not isinstance(embeddings, CommentedSeq):
        doc.error(doc.value_pos(node, "embeddings"), "embeddings must be a list")
    else:
        for i, item in enumerate(embeddings):
            if doc.mapping(item, doc.value_pos(embeddings, i), "an embedding") and doc.keys(
                item, _EMBEDDING_KEYS, "embedding"
            ):
                doc.name(item, "name", "embedding name")
                doc.string(item, "store", "embedding store")
                doc.string(item, "source", "embedding source")
    return len(doc.errors) == start


def _check_service_refs(
    doc: _Doc,
    node: CommentedMap,
    service: FeatureServiceDef,
    views: dict[str, FeatureViewDef],
    stores: dict[str, EmbeddingStoreDef],
    entities: dict[str, Entity],
    broken: dict[str, set[str]],
) -> None:
    spine_keys = [k for e in service.spine.entities for k in entities[e].join_keys]
    outputs: dict[str, str] = {k: "spine key" for k in spine_keys}
    outputs.setdefault(service.spine.timestamp, "spine timestamp")
    for label in service.spine.labels:
        outputs.setdefault(label.name, "label")
    feature_types: dict[str, pa.DataType] = {}
    features = node["features"]
    for i, ref in enumerate(service.features):
        pos = doc.value_pos(features, i)
        view = views.get(ref.view)
        if view is None:
            if ref.view not in broken["feature_view"]:
                doc.error(
                    pos,
                    f"unknown feature view {ref.view!r}",
                    _did_you_mean(ref.view, [*views, *broken["feature_view"]]),
                )
            continue
        missing = [k for e in view.entities for k in entities[e].join_keys if k not in spine_keys]
        if missing:
            doc.error(
                pos,
                f"view {view.name!r} is keyed on {', '.join(missing)}, which the spine lacks",
                "add the entity to the spine: entity: ["
                + ", ".join(
                    [
                        *service.spine.entities,
                        *(e for e in view.entities if e not in service.spine.entities),
                    ]
                )
                + "]",
            )
        if ref.feature == "*":
            if ref.alias:
                doc.error(pos, "an alias needs a single feature, not 'view:*'")
            names = list(view.feature_names)
        elif ref.feature not in view.feature_names:
            doc.error(
                pos,
                f"view {view.name!r} has no feature {ref.feature!r}",
                _did_you_mean(ref.feature, view.feature_names),
            )
            continue
        else:
            names = [ref.feature]
        for name in names:
            out = ref.alias or name
            if out in outputs:
                doc.error(
                    pos,
                    f"output column {out!r} ({ref.view}:{name}) clashes with the {outputs[out]} of the same name",
                    "give one of them an alias: {feature: 'view:feature', alias: new_name}",
                )
            outputs[out] = f"feature {ref.view}:{name}"
            feature_types[out] = _feature_type(view, name)
    embeddings = node.get("embeddings", [])
    for i, emb in enumerate(service.embeddings):
        pos = doc.value_pos(embeddings, i)
        if emb.name in outputs:
            doc.error(
                pos, f"embedding {emb.name!r} clashes with the {outputs[emb.name]} of the same name"
            )
        outputs[emb.name] = "embedding"
        store = stores.get(emb.store)
        if store is None:
            doc.error(
                pos, f"unknown embedding store {emb.store!r}", _did_you_mean(emb.store, stores)
            )
        src_type = pa.int64() if emb.source in spine_keys else feature_types.get(emb.source)
        if src_type is None:
            doc.error(
                pos,
                f"embedding source {emb.source!r} is neither a spine key nor a feature of this service",
                _did_you_mean(emb.source, [*spine_keys, *feature_types]),
            )
        elif not (
            pa.types.is_integer(src_type)
            or (pa.types.is_list(src_type) and pa.types.is_integer(src_type.value_type))
        ):
            doc.error(
                pos,
                f"embedding source {emb.source!r} must hold ids (an integer or a list of integers), "
                f"got {format_dtype(src_type)}",
            )


def _feature_type(view: FeatureViewDef, name: str) -> pa.DataType:
    for feature in view.features:
        if feature.name == name:
            col = view.column(feature.column)
            assert col is not None
            return col.arrow_type
    agg = next(a for a in view.aggregations if a.name == name)
    col_type = view.column(agg.column).arrow_type if agg.column else None  # type: ignore[union-attr]
    return aggregation_output_type(agg.function, col_type)


def _yaml_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def _read_documents(
    path: Path, label: str, errors: list[CatalogError]
) -> tuple[list[Any], list[str]]:
    yaml = YAML(typ="rt")
    try:
        text = path.read_text(encoding="utf-8")
        return [d for d in yaml.load_all(text) if d is not None], text.splitlines()
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        errors.append(
            CatalogError(label, line, col, f"YAML syntax error: {exc.problem or exc.context}")
        )
    except UnicodeDecodeError as exc:
        errors.append(CatalogError(label, 1, 1, f"file is not UTF-8 text: {exc.reason}"))
    return [], []


def load_definitions(directory: str | Path, entities: dict[str, Entity]) -> LoadedDefinitions:
    """Load and check every YAML file of `directory`.

    Returns only a fully valid set of definitions; otherwise raises CatalogErrors holding every
    error of every file (file, line, column, message, hint). Nothing half-loaded escapes.
    """
    root = Path(directory)
    errors: list[CatalogError] = []
    if not root.is_dir():
        raise CatalogErrors([CatalogError(str(root), 1, 1, "catalog directory does not exist")])
    files = _yaml_files(root)
    if not files:
        raise CatalogErrors(
            [CatalogError(str(root), 1, 1, "no feature definitions found (expected *.yaml files)")]
        )
    parsed: dict[str, list[tuple[_Doc, CommentedMap, Any]]] = {k: [] for k in _KINDS}
    seen: dict[str, dict[str, Location]] = {k: {} for k in _KINDS}
    for path in files:
        label = str(path)
        nodes, lines = _read_documents(path, label, errors)
        for node in nodes:
            doc = _Doc(label, errors, lines)
            if not doc.mapping(node, (0, 0), "a definition document"):
                continue
            kind = node.get("kind")
            if kind not in _KINDS:
                doc.error(
                    doc.value_pos(node, "kind") if "kind" in node else doc.pos(node),
                    f"unknown or missing kind {kind!r}",
                    _did_you_mean(str(kind), _KINDS) or f"kind is one of: {', '.join(_KINDS)}",
                )
                continue
            name = node.get("name")
            duplicate = False
            if isinstance(name, str):
                first = seen[kind].get(name)
                if first is not None:
                    duplicate = True
                    doc.error(
                        doc.value_pos(node, "name"),
                        f"duplicate {kind.replace('_', ' ')} name {name!r} (first defined at {first})",
                    )
                else:
                    line, col = doc.pos(node)
                    seen[kind][name] = Location(label, line + 1, col + 1)
            checker = {
                "feature_view": _check_view,
                "feature_service": _check_service_shape,
                "embedding_store": _check_store,
            }[kind]
            if checker(doc, node, entities) and not duplicate:
                data = _plain(node)
                data.pop("kind")
                parsed[kind].append((doc, node, data))

    views = _unique(parsed["feature_view"], FeatureViewDef, "feature view")
    stores = _unique(parsed["embedding_store"], EmbeddingStoreDef, "embedding store")
    services = _unique(parsed["feature_service"], FeatureServiceDef, "feature service")
    # Names defined in a document that had errors: already reported, not "unknown" again.
    broken = {
        k: set(seen[k]) - set(d) for k, d in (("feature_view", views), ("embedding_store", stores))
    }
    for doc, node, service in services.values():
        _check_service_refs(
            doc,
            node,
            service,
            {k: v[2] for k, v in views.items()},
            {k: v[2] for k, v in stores.items()},
            entities,
            broken,
        )
    if errors:
        raise CatalogErrors(errors)
    return LoadedDefinitions(
        views={k: v[2] for k, v in views.items()},
        services={k: v[2] for k, v in services.items()},
        stores={k: v[2] for k, v in stores.items()},
    )


def _unique(items: list[tuple[_Doc, CommentedMap, Any]], cls: type, what: str) -> dict[str, Any]:
    """Structure each document and reject duplicate names across files."""
    out: dict[str, Any] = {}
    for doc, node, data in items:
        line, col = doc.pos(node)
        location = Location(doc.file, line + 1, col + 1)
        try:
            obj = CONVERTER.structure(data, cls)
        except Exception as exc:  # the checks above should make this unreachable; never crash
            doc.error(doc.pos(node), f"could not read {what}: {exc}")
            continue
        obj = _with_location(obj, location)
        if obj.name in out:
            first = out[obj.name][2].location
            doc.error(
                doc.value_pos(node, "name"),
                f"duplicate {what} name {obj.name!r} (first defined at {first})",
            )
            continue
        out[obj.name] = (doc, node, obj)
    return out


def _with_location(obj: Any, location: Location) -> Any:
    return attrs.evolve(obj, location=location) if hasattr(obj, "location") else obj
