"""Read `feature_views/*.yaml`, check every definition, and report every error with its location.

Reading is bounded, whatever a file holds. Per file, aliases may reach at most
`MAX_ALIAS_NODES` (10,000) nodes, counted without expanding anything, so a "billion laughs" of
aliases of aliases is refused at the alias that passes the limit; a document, and a column
type, may nest at most `MAX_DEPTH` (64) levels; control characters (NUL…), bytes that are not
UTF-8, and anything the YAML library raises become errors located at file:line:column; and a
message quotes at most `errors.CLIP_WIDTH` (80) characters of the file in any one place.
"""

from __future__ import annotations

import difflib
import re
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs
import pyarrow as pa
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.composer import ComposerError
from ruamel.yaml.constructor import ConstructorError, RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLWarning
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    DocumentStartEvent,
    ScalarEvent,
)
from ruamel.yaml.parser import ParserError, RoundTripParser
from ruamel.yaml.reader import Reader, ReaderError
from ruamel.yaml.scanner import ScannerError

from daedalus.catalog.converter import CONVERTER, parse_feature_ref
from daedalus.catalog.dtypes import DTypeError, format_dtype, parse_dtype
from daedalus.catalog.errors import CLIP_WIDTH, CatalogError, CatalogErrors, clip, quoted
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

__all__ = [
    "MAX_ALIAS_NODES",
    "MAX_DEPTH",
    "LoadedDefinitions",
    "load_definitions",
    "load_service_text",
]

#: Nodes that aliases may reach in one file, all documents together. An alias stands for every
#: node of what its anchor names, aliases inside it included, so aliases of aliases multiply
#: ("billion laughs"); the count is kept without expanding anything, and the alias that passes
#: the limit is an error at that alias.
MAX_ALIAS_NODES = 10_000
#: Levels of nesting in a definition document (the document itself is level 1; an alias counts
#: as deep as what it stands for) and in a column type (`BIGINT[]` is 2 levels).
MAX_DEPTH = 64
#: Word-to-choice comparisons that did-you-mean hints may make in one load (see _Suggestions).
MAX_SUGGESTION_WORK = 200_000

#: Characters the YAML reader refuses (control characters other than tab and line breaks…).
_NON_PRINTABLE = Reader.NON_PRINTABLE
#: Line breaks as the YAML reader counts them (after `\r\n` and `\r` became `\n`).
_LINE_BREAK = re.compile(r"[\n\x85\u2028\u2029]")
_SYNTAX_ERRORS = (ScannerError, ParserError, ComposerError)
#: Quoted text (or a word) longer than CLIP_WIDTH in another component's message.
_QUOTED = re.compile(rf"'[^']{{{CLIP_WIDTH - 1},}}'|\"[^\"]{{{CLIP_WIDTH - 1},}}\"")
_LONG_WORD = re.compile(rf"[^\s'\"…]{{{CLIP_WIDTH + 1},}}")

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
    "max_invalid_fraction": False,
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
    "max_invalid_fraction": False,
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


class _Suggestions:
    """Did-you-mean hints, with a budget of comparisons for one load.

    Each hint compares a word with every choice, so a file of thousands of typos against
    thousands of columns would take minutes; after MAX_SUGGESTION_WORK comparisons in one load,
    errors carry no did-you-mean hint (their other hint, if any, still applies).
    """

    def __init__(self) -> None:
        self.left = MAX_SUGGESTION_WORK

    def __call__(self, word: str, choices: Iterable[str]) -> str | None:
        """A near miss among `choices`; none for a word (or choice) too long to be a typo of."""
        if len(word) > CLIP_WIDTH or self.left <= 0:
            return None
        candidates = [c for c in choices if len(c) <= CLIP_WIDTH]
        self.left -= len(candidates)
        match = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
        return f"did you mean {match[0]}?" if match else None


def _dtype_text(dtype: pa.DataType) -> str:
    """A type's name for a message, clipped (a schema may spell out a very wide STRUCT)."""
    return clip(format_dtype(dtype))


class _Doc:
    """One YAML document being checked: collects errors located by its nodes' marks."""

    def __init__(
        self,
        file: str,
        errors: list[CatalogError],
        lines: list[str] | None = None,
        suggestions: _Suggestions | None = None,
    ) -> None:
        self.file = file
        self.errors = errors
        self.lines = lines or []
        self.did_you_mean = suggestions or _Suggestions()

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
                    f"unknown key {quoted(key)} in {what}",
                    (self.did_you_mean(key, allowed) if isinstance(key, str) else None)
                    or f"allowed keys: {', '.join(allowed)}",
                )
        for key, required in allowed.items():
            if required and key not in node:
                self.error(self.pos(node), f"{what} is missing required key {quoted(key)}")
                ok = False
        return ok

    def string(self, node: CommentedMap, key: str, what: str) -> str | None:
        value = node.get(key)
        if isinstance(value, str) and value.strip():
            return value
        self.error(
            self.value_pos(node, key), f"{what} must be a non-empty string, got {quoted(value)}"
        )
        return None

    def name(self, node: CommentedMap, key: str, what: str) -> str | None:
        value = self.string(node, key, what)
        if value is not None and not _NAME_RE.match(value):
            self.error(
                self.value_pos(node, key),
                f"{what} {quoted(value)} is not a valid name (letters, digits and _, not starting with a digit)",
            )
            return None
        return value

    def duration(self, node: CommentedMap, key: str, what: str, **kw: bool) -> Duration | None:
        try:
            return Duration.parse(node[key], **kw)
        except ValueError as exc:
            self.error(self.value_pos(node, key), f"{what}: {_clip_message(str(exc))}")
            return None


def _kind_of(node: Any) -> str:
    if isinstance(node, CommentedMap):
        return "a mapping"
    if isinstance(node, CommentedSeq):
        return "a list"
    return f"{type(node).__name__} {quoted(node)}"


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
            f"entity must be an entity name or a non-empty list of them, got {quoted(value)}",
        )
        return []
    good: list[str] = []
    for i, name in enumerate(names):
        if name in entities:
            if name in good:
                doc.error(doc.value_pos(node, "entity"), f"entity {quoted(name)} is listed twice")
            good.append(name)
            continue
        pos = (
            doc.value_pos(value, i)
            if isinstance(value, CommentedSeq)
            else doc.value_pos(node, "entity")
        )
        doc.error(
            pos,
            f"unknown entity {quoted(name)}",
            doc.did_you_mean(name, entities) or f"known entities: {', '.join(entities)}",
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
                pos,
                f"type of column {quoted(col)} must be a type name such as BIGINT, got {quoted(dtype)}",
            )
            continue
        try:
            arrow_type = parse_dtype(dtype)
        except DTypeError as exc:
            offset = doc.quote_width(pos) + exc.column
            doc.error(
                (pos[0], pos[1] + offset),
                f"column {quoted(col)}: {_clip_message(exc.message)}",
                exc.hint,
            )
            continue
        except RecursionError:  # the type parser recurses once per level
            arrow_type = None
        if arrow_type is None or _type_depth(arrow_type) > MAX_DEPTH:
            doc.error(
                pos,
                f"type of column {quoted(col)} is nested more than {MAX_DEPTH} levels deep "
                "(the limit for a type)",
            )
            continue
        types[str(col)] = arrow_type
    return types


def _type_depth(dtype: pa.DataType) -> int:
    """Levels of a type: 1 for BIGINT, 2 for BIGINT[] or STRUCT(a BIGINT), … (no recursion)."""
    deepest, stack = 0, [(dtype, 1)]
    while stack:
        current, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth <= MAX_DEPTH:
            stack.extend((current.field(i).type, depth + 1) for i in range(current.num_fields))
    return deepest


def _check_fraction(doc: _Doc, node: CommentedMap, key: str) -> None:
    """An optional fraction from 0 to 1 inclusive (null means the default)."""
    value = node.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        doc.error(
            doc.value_pos(node, key),
            f"{key} must be a number from 0 to 1, got {quoted(value)}",
        )


def _check_description(doc: _Doc, node: CommentedMap) -> None:
    if "description" in node and not isinstance(node["description"], str):
        doc.error(
            doc.value_pos(node, "description"),
            f"description must be text, got {_kind_of(node['description'])}",
        )


def _check_time_column(
    doc: _Doc, node: CommentedMap, key: str, types: dict[str, pa.DataType], what: str
) -> None:
    col = node.get(key)
    if not isinstance(col, str):
        doc.error(doc.value_pos(node, key), f"{what} must name a column, got {quoted(col)}")
        return
    if col not in types:
        doc.error(
            doc.value_pos(node, key),
            f"{what} {quoted(col)} is not a column of the schema",
            doc.did_you_mean(col, types),
        )
    elif not (pa.types.is_timestamp(types[col]) or pa.types.is_date32(types[col])):
        doc.error(
            doc.value_pos(node, key),
            f"{what} {quoted(col)} has type {_dtype_text(types[col])}, not a time type (TIMESTAMP, TIMESTAMPTZ, DATE)",
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
    _check_fraction(doc, source, "max_invalid_fraction")


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
            _check_description(doc, item)
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
                col_pos,
                f"column of feature {quoted(name)} must be a column name, got {_kind_of(column)}",
            )
        elif column not in types:
            doc.error(
                col_pos,
                f"feature {quoted(name)} reads column {quoted(column)}, which the schema lacks",
                doc.did_you_mean(str(column), types),
            )


def _register_name(
    doc: _Doc, names: dict[str, tuple[int, int]], name: str, pos: tuple[int, int]
) -> None:
    if name in names:
        first = names[name]
        doc.error(
            pos, f"duplicate feature name {quoted(name)} (first defined at line {first[0] + 1})"
        )
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
                f"filter on column {quoted(col)}, which the schema lacks",
                doc.did_you_mean(str(col), types),
            )
            continue
        values = list(value) if isinstance(value, CommentedSeq) else [value]
        if not values:
            doc.error(doc.value_pos(flt, col), f"filter on {quoted(col)} lists no values")
        for v in values:
            if isinstance(v, CommentedMap | CommentedSeq):
                doc.error(
                    doc.value_pos(flt, col), f"filter values must be scalars, got {_kind_of(v)}"
                )
                continue
            try:
                pa.array([v], type=types[col])
            except Exception:  # any value Arrow cannot hold in this type (a struct, a date…)
                doc.error(
                    doc.value_pos(flt, col),
                    f"filter value {quoted(v)} does not fit column {quoted(col)} of type {_dtype_text(types[col])}",
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
        _check_description(doc, agg)
        if name is not None:
            _register_name(doc, names, name, doc.value_pos(agg, "name"))
        doc.duration(agg, "window", f"window of {quoted(name)}", allow_lifetime=True)
        fn_text = agg["function"]
        if fn_text not in functions:
            doc.error(
                doc.value_pos(agg, "function"),
                f"unknown function {quoted(fn_text)}",
                doc.did_you_mean(str(fn_text), functions) or f"functions: {', '.join(functions)}",
            )
            continue
        function = AggFunction(fn_text)
        column = agg.get("column")
        if column is not None and not isinstance(column, str):
            doc.error(
                doc.value_pos(agg, "column"),
                f"column of {quoted(name)} must be a column name, got {_kind_of(column)}",
            )
        elif column is not None and column not in types:
            doc.error(
                doc.value_pos(agg, "column"),
                f"aggregation {quoted(name)} reads column {quoted(column)}, which the schema lacks",
                doc.did_you_mean(str(column), types),
            )
        elif function.needs_column and column is None:
            doc.error(
                doc.pos(agg),
                f"function {function} needs a column; add 'column: <name>' to {quoted(name)}",
            )
        else:
            reason = is_value_type_supported(function, types.get(column) if column else None)
            if reason:
                doc.error(
                    doc.value_pos(agg, "column"),
                    f"{reason}; column {quoted(column)} is {_dtype_text(types[column])}",
                )
        if function is AggFunction.LAST_N:
            n = agg.get("n")
            if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_LAST_N:
                doc.error(
                    doc.value_pos(agg, "n") if "n" in agg else doc.pos(agg),
                    f"last_n needs 'n', a whole number from 1 to {MAX_LAST_N}, got {quoted(n)}",
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
    _check_description(doc, node)
    entity_names = _check_entities(doc, node, entities)
    types = _check_schema(doc, node, "schema", "schema")
    for entity in entity_names:
        for key in entities[entity].join_keys:
            if key not in types:
                doc.error(
                    doc.value_pos(node, "entity"),
                    f"view is keyed on entity {quoted(entity)}, but its schema lacks the join key {quoted(key)}",
                    f"add '{key}: {entities[entity].value_type}' to the schema",
                )
            elif not pa.types.is_integer(types[key]):
                doc.error(
                    doc.value_pos(node["schema"], key),
                    f"join key {quoted(key)} must be an integer column, got {_dtype_text(types[key])}",
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
    _check_description(doc, node)
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
            doc.value_pos(node, "dim"),
            f"dim must be a whole number from 1 to 65536, got {quoted(dim)}",
        )
    return len(doc.errors) == start


def _check_service_shape(doc: _Doc, node: CommentedMap, entities: dict[str, Entity]) -> bool:
    """Per-document checks of a service; cross-references are checked once all files are read."""
    start = len(doc.errors)  # before the key check: an unknown key makes the document invalid
    if not doc.keys(node, _SERVICE_KEYS, "feature_service"):
        return False
    doc.name(node, "name", "service name")
    _check_description(doc, node)
    spine = node.get("spine")
    if doc.mapping(spine, doc.value_pos(node, "spine"), "spine") and doc.keys(
        spine, _SPINE_KEYS, "spine"
    ):
        doc.string(spine, "path", "spine path")
        doc.string(spine, "timestamp", "spine timestamp")
        _check_entities(doc, spine, entities)
        if "labels" in spine:
            _check_schema(doc, spine, "labels", "labels")
        _check_fraction(doc, spine, "max_invalid_fraction")
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
                    doc.error(
                        doc.value_pos(item, "alias"), f"alias {quoted(alias)} is not a valid name"
                    )
            else:
                text = item
            if not isinstance(text, str):
                doc.error(pos, f"a feature reference must be 'view:feature', got {_kind_of(text)}")
                continue
            try:
                parse_feature_ref(text)
            except ValueError as exc:
                doc.error(pos, _clip_message(str(exc)))
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
                    f"unknown feature view {quoted(ref.view)}",
                    doc.did_you_mean(ref.view, [*views, *broken["feature_view"]]),
                )
            continue
        missing = [k for e in view.entities for k in entities[e].join_keys if k not in spine_keys]
        if missing:
            doc.error(
                pos,
                f"view {quoted(view.name)} is keyed on {', '.join(missing)}, which the spine lacks",
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
                f"view {quoted(view.name)} has no feature {quoted(ref.feature)}",
                doc.did_you_mean(ref.feature, view.feature_names),
            )
            continue
        else:
            names = [ref.feature]
        for name in names:
            out = ref.alias or name
            if out in outputs:
                doc.error(
                    pos,
                    f"output column {quoted(out)} ({clip(f'{ref.view}:{name}')}) clashes with "
                    f"the {outputs[out]} of the same name",
                    "give one of them an alias: {feature: 'view:feature', alias: new_name}",
                )
            outputs[out] = f"feature {clip(f'{ref.view}:{name}')}"
            feature_types[out] = _feature_type(view, name)
    embeddings = node.get("embeddings", [])
    for i, emb in enumerate(service.embeddings):
        pos = doc.value_pos(embeddings, i)
        if emb.name in outputs:
            doc.error(
                pos,
                f"embedding {quoted(emb.name)} clashes with the {outputs[emb.name]} of the same name",
            )
        outputs[emb.name] = "embedding"
        store = stores.get(emb.store)
        if store is None:
            doc.error(
                pos,
                f"unknown embedding store {quoted(emb.store)}",
                doc.did_you_mean(emb.store, stores),
            )
        src_type = pa.int64() if emb.source in spine_keys else feature_types.get(emb.source)
        if src_type is None:
            doc.error(
                pos,
                f"embedding source {quoted(emb.source)} is neither a spine key nor a feature of this service",
                doc.did_you_mean(emb.source, [*spine_keys, *feature_types]),
            )
        elif not (
            pa.types.is_integer(src_type)
            or (pa.types.is_list(src_type) and pa.types.is_integer(src_type.value_type))
        ):
            doc.error(
                pos,
                f"embedding source {quoted(emb.source)} must hold ids (an integer or a list of integers), "
                f"got {_dtype_text(src_type)}",
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
    """The `*.yaml`/`*.yml` entries to read: regular files, and directories (reported as errors).

    Anything else (a dangling symlink such as an editor's lock file) is not a definition.
    """
    return sorted(
        p
        for p in directory.iterdir()
        if p.suffix in (".yaml", ".yml") and (p.is_file() or p.is_dir())
    )


class _ReadError(Exception):
    """A file that cannot be read as YAML: where (0-based line and column) and why."""

    def __init__(self, line: int, column: int, message: str) -> None:
        super().__init__(message)
        self.line, self.column, self.message = line, column, message


class _Constructor(RoundTripConstructor):
    """ruamel's round-trip constructor, with Python errors raised for a node located at it.

    Building a scalar can raise a bare ValueError (`!!int abc`, `2024-02-30`, an integer of
    more than 4300 digits); this re-raises it as a ConstructorError marked at the node.
    """

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (MarkedYAMLError, RecursionError):
            raise
        except Exception as exc:
            raise ConstructorError(
                None, None, f"cannot read this value: {exc}", node.start_mark
            ) from exc


def _position(text: str, index: int) -> tuple[int, int]:
    """The 0-based (line, column) of `text[index]`, counted as the YAML reader counts marks."""
    line, start = 0, 0
    for match in _LINE_BREAK.finditer(text, 0, index):
        line, start = line + 1, match.end()
    return line, index - start - text.count("\ufeff", start, index)  # a BOM takes no column


def _clip_message(text: str) -> str:
    """Another component's message (YAML parser, type parser…) with its quotes clipped."""
    text = _QUOTED.sub(lambda m: clip(m.group()), text)
    return clip(_LONG_WORD.sub(lambda m: clip(m.group()), text), 3 * CLIP_WIDTH)


def _read_documents(
    path: Path, label: str, errors: list[CatalogError]
) -> tuple[list[tuple[Any, tuple[int, int]]], list[str]]:
    """The documents of one file with their root positions, and its lines; or a located error."""
    try:
        if path.is_dir():
            raise IsADirectoryError(21, "Is a directory")
        data = path.read_bytes()
    except IsADirectoryError:
        errors.append(CatalogError(label, 1, 1, "is a directory, not a YAML file"))
        return [], []
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        errors.append(CatalogError(label, 1, 1, f"cannot read the file: {reason}"))
        return [], []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        prefix = _universal_newlines(data[: exc.start].decode("utf-8", errors="replace"))
        line, col = _position(prefix, len(prefix))
        errors.append(
            CatalogError(
                label,
                line + 1,
                col + 1,
                f"file is not UTF-8 text: byte 0x{data[exc.start]:02x} at byte offset "
                f"{exc.start} ({exc.reason})",
            )
        )
        return [], []
    text = _universal_newlines(text)  # as Path.read_text would: the parser's marks agree
    try:
        documents = _parse(text)
    except _ReadError as exc:
        errors.append(CatalogError(label, exc.line + 1, exc.column + 1, exc.message))
        return [], []
    return documents, text.splitlines()


def _universal_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


class _EventBudget:
    """Bounds what composing a file could build, one parser event at a time.

    Raises _ReadError at the first collection nested deeper than MAX_DEPTH levels (an alias
    counts as deep as what it stands for), at the alias that brings the file past
    MAX_ALIAS_NODES nodes reached through aliases, at an alias inside its own anchor (a
    recursive structure) and at an alias to no anchor. Nothing is expanded: each anchor's size
    and height are counted once, when it closes. `roots` collects each document's root position.
    """

    def __init__(self) -> None:
        self.roots: list[tuple[int, int]] = []
        self.through_aliases = 0
        self.anchors: dict[str, tuple[int, int]] = {}  # anchor → (nodes, height) it names
        self.open_anchors: set[str] = set()
        # One frame per open collection: [nodes so far, height so far, anchor]; [0] is the
        # document itself.
        self.stack: list[list[Any]] = []

    def feed(self, event: Any) -> None:
        mark, stack = event.start_mark, self.stack
        if isinstance(event, DocumentStartEvent):
            self.anchors.clear()  # anchors are per document
            self.stack = [[0, 0, None]]
            self.roots.append((-1, -1))
        elif isinstance(event, CollectionStartEvent):
            if len(stack) > MAX_DEPTH:
                raise _ReadError(
                    mark.line,
                    mark.column,
                    f"nested more than {MAX_DEPTH} levels deep (the limit for a definition)",
                )
            self._root(mark)
            stack.append([0, 0, event.anchor])
            if event.anchor is not None:
                self.open_anchors.add(event.anchor)
        elif isinstance(event, CollectionEndEvent):
            nodes, height, anchor = stack.pop()
            if anchor is not None:
                self.anchors[anchor] = (nodes + 1, height + 1)
                self.open_anchors.discard(anchor)
            self._add(nodes + 1, height + 1)
        elif isinstance(event, ScalarEvent):
            self._root(mark)
            if event.anchor is not None:
                self.anchors[event.anchor] = (1, 0)
            self._add(1, 0)
        elif isinstance(event, AliasEvent):
            self._root(mark)
            nodes, height = self._alias(event.anchor, mark)
            self._add(nodes, height)

    def _alias(self, name: str, mark: Any) -> tuple[int, int]:
        shown = clip(str(name))
        if name in self.open_anchors:
            raise _ReadError(
                mark.line,
                mark.column,
                f"alias *{shown} is inside its own anchor &{shown}: a recursive structure "
                "cannot be a definition",
            )
        if name not in self.anchors:
            raise _ReadError(
                mark.line, mark.column, f"YAML syntax error: found undefined alias {quoted(name)}"
            )
        nodes, height = self.anchors[name]
        self.through_aliases += nodes
        if self.through_aliases > MAX_ALIAS_NODES:
            raise _ReadError(
                mark.line,
                mark.column,
                f"too many alias expansions: alias *{shown} brings this file past "
                f"{MAX_ALIAS_NODES:,} nodes reached through aliases (the limit per file)",
            )
        if len(self.stack) - 1 + height > MAX_DEPTH:
            raise _ReadError(
                mark.line,
                mark.column,
                f"alias *{shown} makes the document nested more than {MAX_DEPTH} levels deep "
                "(the limit for a definition)",
            )
        return nodes, height

    def _add(self, nodes: int, height: int) -> None:
        top = self.stack[-1]
        top[0] += nodes
        top[1] = max(top[1], height)

    def _root(self, mark: Any) -> None:
        if len(self.stack) == 1 and self.roots and self.roots[-1][0] < 0:
            self.roots[-1] = (mark.line, mark.column)


class _BoundedParser(RoundTripParser):
    """ruamel's round-trip parser, with every event the composer takes checked by a budget."""

    def __init__(self, loader: Any) -> None:
        super().__init__(loader)
        self.budget = _EventBudget()

    def get_event(self) -> Any:
        event = super().get_event()
        if event is not None:
            self.budget.feed(event)
        return event


def _parse(text: str) -> list[tuple[Any, tuple[int, int]]]:
    """Every non-empty document of `text` with the 0-based position of its root.

    Raises _ReadError, located, for anything wrong with the file as YAML.
    """
    bad = _NON_PRINTABLE.search(text)
    if bad is not None:
        char = bad.group()
        raise _ReadError(
            *_position(text, bad.start()),
            f"character U+{ord(char):04X} ({quoted(char)}) is not allowed in YAML: a definition "
            "file holds printable characters, tabs and line breaks only",
        )
    yaml = YAML(typ="rt")
    yaml.Parser = _BoundedParser
    yaml.Constructor = _Constructor
    try:
        with warnings.catch_warnings():  # e.g. a reused anchor: legal YAML, not worth a warning
            warnings.simplefilter("ignore", YAMLWarning)
            documents = list(yaml.load_all(text))
        roots = yaml.parser.budget.roots
    except _ReadError:
        raise
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line, mark.column) if mark else (0, 0)
        what = "YAML syntax error" if isinstance(exc, _SYNTAX_ERRORS) else "YAML error"
        raise _ReadError(
            line, col, f"{what}: {_clip_message(str(exc.problem or exc.context))}"
        ) from exc
    except ReaderError as exc:  # the check above should catch these first
        line, col = _position(text, exc.position) if isinstance(exc.position, int) else (0, 0)
        raise _ReadError(line, col, f"YAML error: {_clip_message(exc.reason)}") from exc
    except RecursionError as exc:  # the event budget should make this unreachable
        raise _ReadError(0, 0, "nested too deeply to read") from exc
    except Exception as exc:  # whatever else the YAML library raises: located, not a crash
        raise _ReadError(
            0, 0, f"cannot read the file as YAML: {type(exc).__name__}: {_clip_message(str(exc))}"
        ) from exc
    return [(d, root) for d, root in zip(documents, roots, strict=False) if d is not None]


def load_definitions(directory: str | Path, entities: dict[str, Entity]) -> LoadedDefinitions:
    """Load and check every YAML file of `directory`.

    Returns only a fully valid set of definitions; otherwise raises CatalogErrors holding every
    error of every file (file, line, column, message, hint). Nothing half-loaded escapes.
    """
    root = Path(directory)
    errors: list[CatalogError] = []
    if not root.is_dir():
        raise CatalogErrors([CatalogError(str(root), 1, 1, "catalog directory does not exist")])
    try:
        files = _yaml_files(root)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise CatalogErrors(
            [CatalogError(str(root), 1, 1, f"cannot list the catalog directory: {reason}")]
        ) from exc
    if not files:
        raise CatalogErrors(
            [CatalogError(str(root), 1, 1, "no feature definitions found (expected *.yaml files)")]
        )
    suggestions = _Suggestions()
    parsed: dict[str, list[tuple[_Doc, CommentedMap, Any]]] = {k: [] for k in _KINDS}
    seen: dict[str, dict[str, Location]] = {k: {} for k in _KINDS}
    for path in files:
        label = str(path)
        documents, lines = _read_documents(path, label, errors)
        for node, root in documents:
            doc = _Doc(label, errors, lines, suggestions)
            if not doc.mapping(node, root if root[0] >= 0 else (0, 0), "a definition document"):
                continue
            kind = node.get("kind")
            if kind not in _KINDS:
                doc.error(
                    doc.value_pos(node, "kind") if "kind" in node else doc.pos(node),
                    f"unknown or missing kind {quoted(kind)}",
                    doc.did_you_mean(str(kind), _KINDS) or f"kind is one of: {', '.join(_KINDS)}",
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
                        f"duplicate {kind.replace('_', ' ')} name {quoted(name)} (first defined at {first})",
                    )
                else:
                    line, col = doc.pos(node)
                    seen[kind][name] = Location(label, line + 1, col + 1)
            checker = {
                "feature_view": _check_view,
                "feature_service": _check_service_shape,
                "embedding_store": _check_store,
            }[kind]
            try:
                if checker(doc, node, entities) and not duplicate:
                    data = _plain(node)
                    data.pop("kind")
                    parsed[kind].append((doc, node, data))
            except Exception as exc:  # a checker bug must not crash a load: report it, located
                _internal_error(doc, node, exc)

    views = _unique(parsed["feature_view"], FeatureViewDef, "feature view")
    stores = _unique(parsed["embedding_store"], EmbeddingStoreDef, "embedding store")
    services = _unique(parsed["feature_service"], FeatureServiceDef, "feature service")
    # Names defined in a document that had errors: already reported, not "unknown" again.
    broken = {
        k: set(seen[k]) - set(d) for k, d in (("feature_view", views), ("embedding_store", stores))
    }
    for doc, node, service in services.values():
        try:
            _check_service_refs(
                doc,
                node,
                service,
                {k: v[2] for k, v in views.items()},
                {k: v[2] for k, v in stores.items()},
                entities,
                broken,
            )
        except Exception as exc:  # as above
            _internal_error(doc, node, exc)
    if errors:
        raise CatalogErrors(errors)
    return LoadedDefinitions(
        views={k: v[2] for k, v in views.items()},
        services={k: v[2] for k, v in services.items()},
        stores={k: v[2] for k, v in stores.items()},
    )


def load_service_text(
    text: str,
    label: str,
    views: dict[str, FeatureViewDef],
    stores: dict[str, EmbeddingStoreDef],
    entities: dict[str, Entity],
) -> FeatureServiceDef:
    """Check one `feature_service` document written in `text` (a service built in memory, e.g.
    by the Python API from a list of features) against loaded `views` and `stores`, with every
    check `load_definitions` makes on a service file (shapes, unknown views, features and stores
    with did-you-mean hints, clashing outputs, embedding sources). Returns the service, or
    raises CatalogErrors located in `text`, whose file is named `label`."""
    errors: list[CatalogError] = []
    text = _universal_newlines(text)
    try:
        documents = _parse(text)
    except _ReadError as exc:
        raise CatalogErrors(
            [CatalogError(label, exc.line + 1, exc.column + 1, exc.message)]
        ) from None
    doc = _Doc(label, errors, text.splitlines())
    if len(documents) != 1:
        doc.error((0, 0), f"expected one feature_service document, got {len(documents)}")
        raise CatalogErrors(errors)
    node, root = documents[0]
    if not doc.mapping(node, root if root[0] >= 0 else (0, 0), "a definition document"):
        raise CatalogErrors(errors)
    if node.get("kind") != "feature_service":
        doc.error(doc.pos(node), f"expected kind feature_service, got {quoted(node.get('kind'))}")
        raise CatalogErrors(errors)
    if _check_service_shape(doc, node, entities):
        data = _plain(node)
        data.pop("kind")
        structured = _unique([(doc, node, data)], FeatureServiceDef, "feature service")
        for _doc, _node, service in structured.values():
            broken: dict[str, set[str]] = {"feature_view": set(), "embedding_store": set()}
            try:
                _check_service_refs(doc, node, service, views, stores, entities, broken)
            except Exception as exc:  # as in load_definitions: reported, located
                _internal_error(doc, node, exc)
            if not errors:
                return service  # type: ignore[no-any-return]
    raise CatalogErrors(errors)


def _internal_error(doc: _Doc, node: CommentedMap, exc: Exception) -> None:
    doc.error(
        doc.pos(node),
        f"internal error while checking this definition: {type(exc).__name__}: "
        f"{_clip_message(str(exc))}",
        "please report this; the definition may still be wrong",
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
            doc.error(doc.pos(node), f"could not read {what}: {_clip_message(str(exc))}")
            continue
        obj = _with_location(obj, location)
        if obj.name in out:
            first = out[obj.name][2].location
            doc.error(
                doc.value_pos(node, "name"),
                f"duplicate {what} name {quoted(obj.name)} (first defined at {first})",
            )
            continue
        out[obj.name] = (doc, node, obj)
    return out


def _with_location(obj: Any, location: Location) -> Any:
    return attrs.evolve(obj, location=location) if hasattr(obj, "location") else obj
