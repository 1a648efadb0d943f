"""The compute API is safe to call by hand: specs check and normalise their arguments when they
are built, and every sharp edge a caller coming from Feast hit is an error or a documented
normalisation."""

from __future__ import annotations

import datetime as dt

import attrs
import pyarrow as pa
import pytest

import daedalus.pit
from daedalus.pit import (
    AggFunction,
    AggregationSpec,
    AsOfSpec,
    Duration,
    Engine,
    FilterDef,
    PitError,
    SourceSpec,
    get_aggregate_pit_table,
)
from daedalus.pit.reference import reference_pit_table
from tests.fakes import InMemoryAggregator
from tests.pit_strategies import TS, assert_bit_equal

HOUR = 3_600_000_000
T0 = 1_790_000_000_000_000  # a whole second in 2026
SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()),
        ("event_ts", TS),
        ("action", pa.string()),
        ("dwell", pa.float64()),
    ]
)


def source() -> SourceSpec:
    rows = [
        (1, T0 - 50 * 60_000_000, "like", 1.5),
        (1, T0 - 40 * 60_000_000, "view", 2.0),
        (1, T0 - 30 * 60_000_000, "like", 4.25),
        (2, T0 - 20 * 60_000_000, "bookmark", 3.0),
    ]
    table = pa.table(
        {
            name: pa.array([r[i] for r in rows], SCHEMA.field(name).type)
            for i, name in enumerate(SCHEMA.names)
        }
    )
    return SourceSpec("events", "event_ts", SCHEMA, table=table)


def spine() -> pa.Table:
    return pa.table({"user_id": pa.array([1, 2], pa.int64()), "ts": pa.array([T0, T0], TS)})


class TestFilterValues:
    def test_a_bare_string_is_one_value_never_its_characters(self) -> None:
        assert FilterDef("action", "like").values == ("like",)

    def test_a_list_is_a_tuple_and_the_filter_is_hashable(self) -> None:
        f = FilterDef("action", ["view", "like"])
        assert f.values == ("view", "like") and f == FilterDef("action", ("view", "like"))
        assert hash(f) == hash(FilterDef("action", ("view", "like")))

    def test_other_single_values_and_sets(self) -> None:
        assert FilterDef("n", 3).values == (3,)
        assert FilterDef("flag", None).values == (None,)
        assert FilterDef("action", {"view", "like"}).values == ("like", "view")

    @pytest.mark.parametrize(
        ("values", "message"),
        [
            ([], "lists no values"),
            ([["like"]], "filter values must be scalars"),
            ({"like": 1}, "a value or a list of values"),
        ],
    )
    def test_values_it_cannot_filter_on_are_refused(self, values: object, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            FilterDef("action", values)

    def test_a_column_must_be_named(self) -> None:
        with pytest.raises(ValueError, match="column must be a column name"):
            FilterDef("", "like")

    @pytest.mark.parametrize("engine", list(Engine))
    @pytest.mark.parametrize("values", ["like", ["like"], ("like",)])
    def test_every_form_counts_the_same_likes_in_both_engines(
        self, engine: Engine, values: object
    ) -> None:
        src = source()
        spec = AggregationSpec(
            "likes", "count", "user_id", src, "1h", filters=FilterDef("action", values)
        )
        out = get_aggregate_pit_table(engine)(spine(), [spec])
        assert out["likes"].to_pylist() == [2, 0]
        assert_bit_equal(out, reference_pit_table(spine(), [spec]))


class TestNormalisedArguments:
    def test_a_string_key_is_one_key(self) -> None:
        spec = AggregationSpec("n", AggFunction.COUNT, "user_id", source(), HOUR)
        assert spec.keys == ("user_id",)
        assert InMemoryAggregator().aggregate_pit_table(spine(), [spec])["n"].to_pylist() == [3, 1]

    @pytest.mark.parametrize(
        ("window", "micros"),
        [
            ("1h", HOUR),
            ("7d", 7 * 24 * HOUR),
            ("90s", 90_000_000),
            ("lifetime", None),
            (None, None),
            (dt.timedelta(minutes=30), HOUR // 2),
            (Duration.parse("2h"), 2 * HOUR),
            (HOUR, HOUR),
        ],
    )
    def test_windows_in_any_form_are_microseconds(self, window: object, micros: int | None) -> None:
        spec = AggregationSpec("n", "count", "user_id", source(), window)
        assert spec.window_us == micros

    def test_delays_and_ttls(self) -> None:
        spec = AggregationSpec("n", "count", "user_id", source(), "1h", delay_us="5m")
        assert spec.delay_us == 5 * 60_000_000
        asof = AsOfSpec("a", "action", "user_id", source(), ttl_us="2d", delay_us=dt.timedelta(0))
        assert (asof.keys, asof.ttl_us, asof.delay_us) == (("user_id",), 48 * HOUR, 0)
        assert AsOfSpec("a", "action", "user_id", source(), ttl_us="lifetime").ttl_us is None

    def test_function_names_and_filter_mappings(self) -> None:
        src = source()
        by_hand = AggregationSpec(
            "likes", "Count", ["user_id"], src, "1h", filters={"action": ["like"]}
        )
        explicit = AggregationSpec(
            "likes",
            AggFunction.COUNT,
            ("user_id",),
            src,
            HOUR,
            None,
            (FilterDef("action", ("like",)),),
        )
        assert by_hand == explicit

    def test_the_same_bits_as_the_explicit_spec(self) -> None:
        src = source()
        by_hand = AggregationSpec("m", "mean", "user_id", src, "1h", "dwell", {"action": "like"})
        explicit = AggregationSpec(
            "m",
            AggFunction.MEAN,
            ("user_id",),
            src,
            HOUR,
            "dwell",
            (FilterDef("action", ("like",)),),
        )
        agg = InMemoryAggregator()
        assert_bit_equal(
            agg.aggregate_pit_table(spine(), [by_hand]),
            agg.aggregate_pit_table(spine(), [explicit]),
        )

    def test_a_source_from_a_type_mapping_and_one_path(self) -> None:
        src = SourceSpec(
            "events",
            "event_ts",
            {"user_id": "BIGINT", "event_ts": "TIMESTAMPTZ", "dwell": pa.float32()},
            paths="data/events/*.parquet",
        )
        assert src.paths == ("data/events/*.parquet",)
        assert src.schema.field("event_ts").type == TS
        assert src.schema.field("dwell").type == pa.float32()

    def test_specs_stay_frozen_and_evolve_keeps_them_normalised(self) -> None:
        spec = AggregationSpec("n", "count", "user_id", source(), "1h")
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            spec.window_us = 1  # type: ignore[misc]
        assert attrs.evolve(spec, window_us="2h").window_us == 2 * HOUR
        assert attrs.evolve(spec) == spec


class TestErrorsAtConstruction:
    def test_a_type_the_function_cannot_take_names_the_spec_the_function_and_the_type(
        self,
    ) -> None:
        with pytest.raises(PitError) as e:
            AggregationSpec("total", "sum", "user_id", source(), "1h", "action")
        assert e.value.code == "bad_type"
        message = str(e.value)
        assert "feature 'total'" in message and "sum needs" in message and "VARCHAR" in message

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"function": "summ", "column": "dwell"}, "unknown function 'summ' — did you mean sum"),
            ({"window_us": "1x"}, "window: bad duration '1x'"),
            ({"window_us": 0}, "window must be longer than zero"),
            ({"window_us": -5}, "window must be longer than zero"),
            ({"window_us": [1]}, "window must be microseconds"),
            ({"window_us": True}, "window must be microseconds"),
            ({"delay_us": "lifetime"}, "delay: 'lifetime' is not allowed"),
            ({"function": "sum"}, "function sum needs a column"),
            ({"function": "last_n", "column": "action"}, "last_n needs n"),
            ({"function": "last_n", "column": "action", "n": 0}, "last_n needs n"),
            ({"n": 3}, "n applies only to last_n, not count"),
            ({"keys": ()}, "needs at least one key column"),
            ({"keys": ("user_id", "user_id")}, "listed twice"),
            ({"keys": 7}, "keys must be a column name or a list"),
            (
                {"filters": {"action": 3}},
                "filter value.*do not fit column 'action' of type VARCHAR",
            ),
            ({"filters": ["action"]}, "filters must be FilterDef"),
            ({"filters": {"action": []}}, "lists no values"),
            ({"source": "events"}, "source must be a SourceSpec"),
            ({"name": ""}, "name must be a non-empty string"),
        ],
    )
    def test_bad_arguments(self, kwargs: dict[str, object], message: str) -> None:
        args: dict[str, object] = {
            "name": "f",
            "function": "count",
            "keys": "user_id",
            "source": source(),
            "window_us": "1h",
            **kwargs,
        }
        with pytest.raises(PitError, match=message) as e:
            AggregationSpec(**args)  # type: ignore[arg-type]
        assert e.value.code in ("bad_spec", "bad_type")

    def test_a_column_the_schema_lacks_is_reported_when_computed(self) -> None:
        spec = AggregationSpec("m", "max", "user_id", source(), "1h", "nope")
        with pytest.raises(PitError, match="source 'events' has no column 'nope'") as e:
            InMemoryAggregator().aggregate_pit_table(spine(), [spec])
        assert e.value.code == "missing_column"

    def test_bad_sources(self) -> None:
        with pytest.raises(PitError, match="no time column 'ts'") as e:
            SourceSpec("events", "ts", SCHEMA)
        assert e.value.code == "missing_column"
        with pytest.raises(PitError, match="column 'x': unknown dtype 'BIGNIT'"):
            SourceSpec("events", "event_ts", {"event_ts": "TIMESTAMPTZ", "x": "BIGNIT"})
        with pytest.raises(PitError, match=r"table must be a pyarrow\.Table"):
            SourceSpec("events", "event_ts", SCHEMA, table=[1, 2])  # type: ignore[arg-type]
        with pytest.raises(PitError, match="ttl: bad duration '0d'"):
            AsOfSpec("a", "action", "user_id", source(), ttl_us="0d")


def test_everything_a_caller_needs_is_exported_from_daedalus_pit() -> None:
    for name in (
        "AggregationSpec",
        "AsOfSpec",
        "SourceSpec",
        "AggFunction",
        "FilterDef",
        "Duration",
        "Engine",
        "get_aggregate_pit_table",
        "PitError",
        "PitReport",
    ):
        assert name in daedalus.pit.__all__ and hasattr(daedalus.pit, name)
