"""The one cattrs converter between YAML-shaped data and the catalog model (both directions)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from daedalus.catalog.model import (
    AggFunction,
    AggregationDef,
    Column,
    DataSourceDef,
    Duration,
    EmbeddingDef,
    EmbeddingStoreDef,
    FeatureDef,
    FeatureRef,
    FeatureServiceDef,
    FeatureViewDef,
    FilterDef,
    SpineDef,
)

__all__ = ["CONVERTER", "make_converter", "parse_feature_ref"]


def parse_feature_ref(text: str, alias: str | None = None) -> FeatureRef:
    """`view:feature` (or `view:*`) → FeatureRef; raises ValueError on another shape."""
    view, sep, feature = text.partition(":")
    if not sep or not view.strip() or not feature.strip():
        raise ValueError(f"bad feature reference {text!r}: expected 'view:feature' or 'view:*'")
    return FeatureRef(view.strip(), feature.strip(), alias)


def _as_tuple(value: Any) -> tuple[Any, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(value)


def _structure_columns(value: Mapping[str, str]) -> tuple[Column, ...]:
    return tuple(Column.of(str(name), str(dtype)) for name, dtype in value.items())


def _unstructure_columns(columns: tuple[Column, ...]) -> dict[str, str]:
    return {c.name: c.dtype for c in columns}


def _structure_filters(value: Mapping[str, Any]) -> tuple[FilterDef, ...]:
    return tuple(
        FilterDef(str(col), tuple(v) if isinstance(v, list | tuple) else (v,))
        for col, v in value.items()
    )


def _unstructure_filters(filters: tuple[FilterDef, ...]) -> dict[str, Any]:
    return {f.column: (f.values[0] if len(f.values) == 1 else list(f.values)) for f in filters}


def _structure_feature_ref(value: Any, _: type) -> FeatureRef:
    if isinstance(value, str):
        return parse_feature_ref(value)
    return parse_feature_ref(value["feature"], value.get("alias"))


def _unstructure_feature_ref(ref: FeatureRef) -> Any:
    text = f"{ref.view}:{ref.feature}"
    return {"feature": text, "alias": ref.alias} if ref.alias else text


def _structure_feature(value: Any, _: type) -> FeatureDef:
    if isinstance(value, str):
        return FeatureDef(value, value)
    return FeatureDef(
        value["name"], value.get("column", value["name"]), value.get("description", "")
    )


def _unstructure_feature(feature: FeatureDef) -> Any:
    if feature.column == feature.name and not feature.description:
        return feature.name
    out: dict[str, Any] = {"name": feature.name, "column": feature.column}
    if feature.description:
        out["description"] = feature.description
    return out


def _with_renamed_entities(
    structure: Callable[[Mapping[str, Any], Any], Any],
) -> Callable[[Mapping[str, Any], Any], Any]:
    """YAML says `entity: user` or `entity: [user, artwork]`; the model holds a tuple."""

    def hook(value: Mapping[str, Any], cls: Any) -> Any:
        data = dict(value)
        if "entity" in data:
            data["entities"] = _as_tuple(data.pop("entity"))
        return structure(data, cls)

    return hook


def _unstructure_entities(entities: tuple[str, ...]) -> Any:
    return entities[0] if len(entities) == 1 else list(entities)


def make_converter() -> cattrs.Converter:
    """Build the converter; every (un)structuring rule of the catalog lives here."""
    conv = cattrs.Converter(forbid_extra_keys=True)

    conv.register_structure_hook(
        Duration, lambda v, _: Duration.parse(str(v), allow_lifetime=True, allow_zero=True)
    )
    conv.register_unstructure_hook(Duration, lambda d: d.text)
    conv.register_unstructure_hook(AggFunction, lambda f: f.value)
    # Schemas and filters are mappings in YAML and tuples in the (hashable, frozen) model.
    is_columns = lambda t: t == tuple[Column, ...]  # noqa: E731
    is_filters = lambda t: t == tuple[FilterDef, ...]  # noqa: E731
    conv.register_structure_hook_func(is_columns, lambda v, _: _structure_columns(v))
    conv.register_unstructure_hook_func(is_columns, _unstructure_columns)
    conv.register_structure_hook_func(is_filters, lambda v, _: _structure_filters(v))
    conv.register_unstructure_hook_func(is_filters, _unstructure_filters)
    conv.register_structure_hook(FeatureRef, _structure_feature_ref)
    conv.register_unstructure_hook(FeatureRef, _unstructure_feature_ref)
    conv.register_structure_hook(FeatureDef, _structure_feature)
    conv.register_unstructure_hook(FeatureDef, _unstructure_feature)

    omit_location = override(omit=True)
    as_entity = override(rename="entity", unstruct_hook=_unstructure_entities)

    conv.register_structure_hook(
        AggregationDef,
        make_dict_structure_fn(
            AggregationDef, conv, filters=override(rename="filter"), _cattrs_forbid_extra_keys=True
        ),
    )
    conv.register_unstructure_hook(
        AggregationDef,
        make_dict_unstructure_fn(
            AggregationDef, conv, filters=override(rename="filter"), _cattrs_omit_if_default=True
        ),
    )
    for cls in (DataSourceDef, EmbeddingDef):
        conv.register_unstructure_hook(
            cls, make_dict_unstructure_fn(cls, conv, _cattrs_omit_if_default=True)
        )

    for cls in (FeatureViewDef, SpineDef):
        conv.register_structure_hook(
            cls,
            _with_renamed_entities(
                make_dict_structure_fn(
                    cls,
                    conv,
                    location=omit_location,
                    _cattrs_forbid_extra_keys=True,
                )
                if cls is FeatureViewDef
                else make_dict_structure_fn(cls, conv, _cattrs_forbid_extra_keys=True)
            ),
        )
    conv.register_unstructure_hook(
        FeatureViewDef,
        make_dict_unstructure_fn(
            FeatureViewDef,
            conv,
            entities=as_entity,
            location=omit_location,
            _cattrs_omit_if_default=True,
        ),
    )
    conv.register_unstructure_hook(
        SpineDef,
        make_dict_unstructure_fn(SpineDef, conv, entities=as_entity, _cattrs_omit_if_default=True),
    )
    for cls in (FeatureServiceDef, EmbeddingStoreDef):
        conv.register_structure_hook(
            cls,
            make_dict_structure_fn(
                cls, conv, location=omit_location, _cattrs_forbid_extra_keys=True
            ),
        )
        conv.register_unstructure_hook(
            cls,
            make_dict_unstructure_fn(
                cls, conv, location=omit_location, _cattrs_omit_if_default=True
            ),
        )
    return conv


CONVERTER = make_converter()
