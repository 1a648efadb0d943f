"""The catalog converter round-trips, the shipped catalog survives a YAML re-dump, and the
registry's entities and resolved schemas are what the design says."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from daedalus.catalog.converter import CONVERTER
from daedalus.catalog.dtypes import format_dtype, parse_dtype
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
from daedalus.catalog.registry import ENTITIES, FeatureCatalog

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "feature_views"

#: The example count comes from the Hypothesis profile (tests/conftest.py: DAEDA_HYPOTHESIS).
PROPERTY = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------- strategies

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,11}", fullmatch=True)
texts = st.text(max_size=20)

UNITS = ("us", "ms", "s", "m", "h", "d", "w")
finite_durations = st.builds(
    lambda n, unit: Duration.parse(f"{n}{unit}"), st.integers(1, 10_000), st.sampled_from(UNITS)
)
durations = st.one_of(st.just(Duration.parse("lifetime")), finite_durations)
delays = st.builds(
    lambda n, unit: Duration.parse(f"{n}{unit}", allow_lifetime=False, allow_zero=True),
    st.integers(0, 600),
    st.sampled_from(UNITS),
)

DTYPES = [
    "BOOLEAN",
    "INTEGER",
    "BIGINT",
    "UBIGINT",
    "FLOAT",
    "DOUBLE",
    "VARCHAR",
    "BLOB",
    "DATE",
    "TIMESTAMP",
    "TIMESTAMPTZ",
    "DECIMAL(10,2)",
    "BIGINT[]",
    "VARCHAR[]",
    "DOUBLE[3]",
    "STRUCT(a INT, b VARCHAR)",
    "MAP(VARCHAR, BIGINT)",
    "STRUCT(x DOUBLE[], y STRUCT(z BOOLEAN))",
]
#: The model stores canonical names (e.g. INT → INTEGER), so generate those.
CANONICAL_DTYPES = sorted({format_dtype(parse_dtype(t)) for t in DTYPES})

columns = st.lists(
    st.builds(Column, names, st.sampled_from(CANONICAL_DTYPES)),
    max_size=5,
    unique_by=lambda c: c.name,
).map(tuple)

scalars = st.one_of(
    st.integers(-(2**40), 2**40),
    st.text(max_size=8),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
)
filter_values = st.one_of(
    scalars.map(lambda v: (v,)), st.lists(scalars, min_size=2, max_size=4).map(tuple)
)
filters = st.lists(
    st.builds(FilterDef, names, filter_values), max_size=3, unique_by=lambda f: f.column
).map(tuple)


@st.composite
def aggregations(draw: st.DrawFn) -> AggregationDef:
    function = draw(st.sampled_from(AggFunction))
    column = draw(names) if function.needs_column else draw(st.none() | names)
    return AggregationDef(
        name=draw(names),
        function=function,
        window=draw(durations),
        column=column,
        filters=draw(filters),
        n=draw(st.integers(1, 1000)) if function is AggFunction.LAST_N else None,
        description=draw(texts),
    )


features = st.one_of(
    names.map(lambda n: FeatureDef(n, n)), st.builds(FeatureDef, names, names, texts)
)

#: None (the run's default) or a fraction from 0 to 1 inclusive, ends included.
fractions = st.none() | st.just(0.0) | st.just(1.0) | st.floats(0, 1)

sources = st.builds(
    DataSourceDef,
    path=st.text(min_size=1, max_size=30),
    timestamp=names,
    created_timestamp=st.none() | names,
    delay=delays,
    naive_timestamps_are_utc=st.booleans(),
    max_invalid_fraction=fractions,
)

entity_lists = st.lists(names, min_size=1, max_size=3, unique=True).map(tuple)

views = st.builds(
    FeatureViewDef,
    name=names,
    entities=entity_lists,
    source=sources,
    schema=columns,
    features=st.lists(features, max_size=4).map(tuple),
    aggregations=st.lists(aggregations(), max_size=4).map(tuple),
    ttl=st.none() | finite_durations,
    description=texts,
)

feature_refs = st.builds(
    FeatureRef, view=names, feature=st.just("*") | names, alias=st.none() | names
)

services = st.builds(
    FeatureServiceDef,
    name=names,
    spine=st.builds(
        SpineDef,
        path=st.text(min_size=1, max_size=30),
        timestamp=names,
        entities=entity_lists,
        labels=columns,
        naive_timestamps_are_utc=st.booleans(),
        max_invalid_fraction=fractions,
    ),
    features=st.lists(feature_refs, min_size=1, max_size=5).map(tuple),
    embeddings=st.lists(st.builds(EmbeddingDef, names, names, names), max_size=3).map(tuple),
    description=texts,
)

stores = st.builds(
    EmbeddingStoreDef,
    name=names,
    path=st.text(min_size=1, max_size=30),
    entity=names,
    id_column=names,
    vector_column=names,
    dim=st.integers(1, 65536),
    description=texts,
)


# --------------------------------------------------------------------------- converter round-trips


def roundtrip(obj: object) -> object:
    return CONVERTER.structure(CONVERTER.unstructure(obj), type(obj))


class TestConverterRoundTrip:
    @PROPERTY
    @given(views)
    def test_a_feature_view_survives_unstructure_then_structure(self, v: FeatureViewDef) -> None:
        assert roundtrip(v) == v

    @PROPERTY
    @given(services)
    def test_a_feature_service_survives_unstructure_then_structure(
        self, s: FeatureServiceDef
    ) -> None:
        assert roundtrip(s) == s

    @PROPERTY
    @given(stores)
    def test_an_embedding_store_survives_unstructure_then_structure(
        self, s: EmbeddingStoreDef
    ) -> None:
        assert roundtrip(s) == s

    @PROPERTY
    @given(aggregations())
    def test_an_aggregation_survives_and_keeps_its_window_text(self, a: AggregationDef) -> None:
        back = roundtrip(a)
        assert back == a
        assert isinstance(back, AggregationDef)
        assert back.window.text == a.window.text

    def test_the_unstructured_form_uses_the_yaml_spelling(self) -> None:
        agg = AggregationDef(
            "recent",
            AggFunction.LAST_N,
            Duration.parse("30d"),
            "artwork_id",
            (FilterDef("action", ("view", "like")), FilterDef("kind", ("a",))),
            n=20,
        )
        assert CONVERTER.unstructure(agg) == {
            "name": "recent",
            "function": "last_n",
            "window": "30d",
            "column": "artwork_id",
            "filter": {"action": ["view", "like"], "kind": "a"},
            "n": 20,
        }


# --------------------------------------------------------------------------- the shipped catalog


def test_every_shipped_definition_survives_a_yaml_redump_and_reload(tmp_path: Path) -> None:
    original = FeatureCatalog.from_yaml_dir(SHIPPED)
    yaml = YAML()
    yaml.default_flow_style = False
    groups = [
        ("feature_view", original.views),
        ("feature_service", original.services),
        ("embedding_store", original.stores),
    ]
    for kind, table in groups:
        for name, obj in table.items():
            buffer = io.StringIO()
            yaml.dump({"kind": kind, **CONVERTER.unstructure(obj)}, buffer)
            (tmp_path / f"{kind}-{name}.yaml").write_text(buffer.getvalue(), encoding="utf-8")

    reloaded = FeatureCatalog.from_yaml_dir(tmp_path)

    assert reloaded.views == original.views
    assert reloaded.services == original.services
    assert reloaded.stores == original.stores
    assert reloaded.resolved_schema("feed_ranking") == original.resolved_schema("feed_ranking")
    assert reloaded.definition_hash("feed_ranking") == original.definition_hash("feed_ranking")


# --------------------------------------------------------------------------- entities


def test_the_user_entity_joins_on_user_id() -> None:
    assert ENTITIES["user"].join_keys == ["user_id"]
    assert ENTITIES["artwork"].join_keys == ["artwork_id"]


def test_the_entities_are_importable_from_a_fresh_interpreter() -> None:
    code = "from daedalus.catalog.registry import ENTITIES; print(ENTITIES['user'].join_keys)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['user_id']"


# --------------------------------------------------------------------------- resolved schema


@pytest.fixture(scope="module")
def shipped() -> FeatureCatalog:
    return FeatureCatalog.from_yaml_dir(SHIPPED)


class TestFeedRankingSchema:
    def test_it_starts_with_the_spine_keys_timestamp_and_label(
        self, shipped: FeatureCatalog
    ) -> None:
        schema = shipped.resolved_schema("feed_ranking")
        assert schema.names[:4] == ["user_id", "artwork_id", "ts", "clicked"]
        assert schema.field("user_id") == pa.field("user_id", pa.int64(), nullable=False)
        assert schema.field("artwork_id") == pa.field("artwork_id", pa.int64(), nullable=False)
        assert schema.field("ts") == pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False)
        assert schema.field("clicked").type == pa.bool_()

    def test_embeddings_are_fixed_size_float32_lists_of_the_store_dimension(
        self, shipped: FeatureCatalog
    ) -> None:
        schema = shipped.resolved_schema("feed_ranking")
        assert schema.names[-2:] == ["artwork_embedding", "recent_artworks_embedding"]
        for name in schema.names[-2:]:
            assert schema.field(name).type == pa.list_(pa.float32(), 64)
            assert str(schema.field(name).type) == "fixed_size_list<item: float>[64]"

    def test_counts_are_int64_and_last_n_is_a_list(self, shipped: FeatureCatalog) -> None:
        schema = shipped.resolved_schema("feed_ranking")
        counts = [
            agg.name
            for view in shipped.views.values()
            for agg in view.aggregations
            if agg.function in (AggFunction.COUNT, AggFunction.COUNT_DISTINCT)
        ]
        assert len(counts) > 10
        for name in counts:
            assert schema.field(name).type == pa.int64(), name
        assert schema.field("user_recent_artworks").type == pa.list_(pa.int64())
        assert pa.types.is_list(schema.field("user_recent_artworks").type)

    def test_every_feature_of_every_referenced_view_appears_once_in_order(
        self, shipped: FeatureCatalog
    ) -> None:
        schema = shipped.resolved_schema("feed_ranking")
        service = shipped.service("feed_ranking")
        expected = [n for ref in service.features for n in shipped.views[ref.view].feature_names]
        assert schema.names[4:-2] == expected
        assert len(set(schema.names)) == len(schema.names)
