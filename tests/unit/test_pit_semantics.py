"""Point-in-time semantics of design.md §4, checked on the core with the in-memory kernel."""

from __future__ import annotations

import math
import os
from typing import ClassVar

import pyarrow as pa
import pytest
from hypothesis import given, settings

from daedalus.catalog.model import AggFunction, FilterDef
from daedalus.pit.compute import PitReport
from daedalus.pit.errors import PitError
from daedalus.pit.reference import reference_pit_table
from daedalus.pit.spec import AggregationSpec, AsOfSpec, SourceSpec
from tests.fakes import InMemoryAggregator
from tests.pit_strategies import BASE, MINUTE, SOURCE_SCHEMA, TS, assert_bit_equal, problems

HOUR = 60 * MINUTE


def events(rows: list[dict]) -> SourceSpec:
    cols = {f.name: [r.get(f.name) for r in rows] for f in SOURCE_SCHEMA}
    cols["created_ts"] = [r.get("created_ts", r["event_ts"]) for r in rows]
    table = pa.table(
        {f.name: pa.array(cols[f.name], f.type) for f in SOURCE_SCHEMA}, schema=SOURCE_SCHEMA
    )
    return SourceSpec(
        "events", "event_ts", SOURCE_SCHEMA, table=table, created_timestamp="created_ts"
    )


def spine(*rows: tuple[int, int]) -> pa.Table:
    return pa.table(
        {
            "user_id": pa.array([r[0] for r in rows], pa.int64()),
            "ts": pa.array([r[1] for r in rows], TS),
        }
    )


def agg(
    source: SourceSpec, fn: AggFunction, column: str | None = None, window: int | None = HOUR, **kw
) -> AggregationSpec:
    return AggregationSpec(
        name="f",
        function=fn,
        keys=("user_id",),
        source=source,
        window_us=window,
        column=column,
        **kw,
    )


def compute(spine_table: pa.Table, *specs) -> list:
    out = InMemoryAggregator().aggregate_pit_table(spine_table, list(specs))
    ref = reference_pit_table(spine_table, list(specs))
    assert_bit_equal(out, ref, labels=("core", "reference"))
    return out[specs[0].name].to_pylist()


T = BASE + 10 * HOUR


class TestWindowBoundaries:
    def test_event_at_spine_time_is_not_visible(self) -> None:
        src = events([{"user_id": 1, "event_ts": T, "x": 1.0}])
        assert compute(spine((1, T)), agg(src, AggFunction.COUNT)) == [0]

    def test_event_one_microsecond_before_spine_time_is_visible(self) -> None:
        src = events([{"user_id": 1, "event_ts": T - 1, "x": 1.0}])
        assert compute(spine((1, T)), agg(src, AggFunction.COUNT)) == [1]

    def test_event_at_window_start_is_visible(self) -> None:
        src = events([{"user_id": 1, "event_ts": T - HOUR, "x": 1.0}])
        assert compute(spine((1, T)), agg(src, AggFunction.COUNT)) == [1]

    def test_event_just_before_window_start_is_not_visible(self) -> None:
        src = events([{"user_id": 1, "event_ts": T - HOUR - 1, "x": 1.0}])
        assert compute(spine((1, T)), agg(src, AggFunction.COUNT)) == [0]

    def test_event_at_t_minus_delay_is_not_visible(self) -> None:
        src = events([{"user_id": 1, "event_ts": T - 5 * MINUTE, "x": 1.0}])
        assert compute(spine((1, T)), agg(src, AggFunction.COUNT, delay_us=5 * MINUTE)) == [0]

    def test_delay_shifts_the_whole_window(self) -> None:
        src = events([{"user_id": 1, "event_ts": T - HOUR - 5 * MINUTE, "x": 1.0}])
        assert compute(spine((1, T)), agg(src, AggFunction.COUNT, delay_us=5 * MINUTE)) == [1]

    def test_lifetime_window_has_no_lower_bound(self) -> None:
        src = events([{"user_id": 1, "event_ts": BASE, "x": 1.0}])
        assert compute(spine((1, T)), agg(src, AggFunction.COUNT, window=None)) == [1]


class TestAsOf:
    def test_row_created_after_spine_time_is_not_visible(self) -> None:
        src = events([{"user_id": 1, "event_ts": T - HOUR, "created_ts": T + 1, "x": 5.0}])
        spec = AsOfSpec("x_asof", "x", ("user_id",), src)
        assert compute(spine((1, T)), spec) == [None]

    def test_row_created_just_before_spine_time_is_visible(self) -> None:
        src = events([{"user_id": 1, "event_ts": T - HOUR, "created_ts": T - 1, "x": 5.0}])
        spec = AsOfSpec("x_asof", "x", ("user_id",), src)
        assert compute(spine((1, T)), spec) == [5.0]

    def test_late_write_falls_back_to_the_previous_version(self) -> None:
        src = events(
            [
                {"user_id": 1, "event_ts": T - 2 * HOUR, "created_ts": T - 2 * HOUR, "x": 1.0},
                {"user_id": 1, "event_ts": T - HOUR, "created_ts": T + HOUR, "x": 2.0},
            ]
        )
        spec = AsOfSpec("x_asof", "x", ("user_id",), src)
        assert compute(spine((1, T), (1, T + 2 * HOUR)), spec) == [1.0, 2.0]

    def test_ttl_hides_stale_rows(self) -> None:
        src = events([{"user_id": 1, "event_ts": T - 2 * HOUR, "x": 1.0}])
        spec = AsOfSpec("x_asof", "x", ("user_id",), src, ttl_us=HOUR)
        assert compute(spine((1, T), (1, T - HOUR)), spec) == [None, 1.0]

    def test_ties_on_event_time_go_to_the_latest_created(self) -> None:
        src = events(
            [
                {"user_id": 1, "event_ts": T - HOUR, "created_ts": T - 10, "x": 2.0},
                {"user_id": 1, "event_ts": T - HOUR, "created_ts": T - 20, "x": 1.0},
            ]
        )
        spec = AsOfSpec("x_asof", "x", ("user_id",), src)
        assert compute(spine((1, T)), spec) == [2.0]

    def test_full_ties_go_to_the_row_read_last_and_are_counted(self) -> None:
        src = events(
            [
                {"user_id": 1, "event_ts": T - HOUR, "x": 1.0},
                {"user_id": 1, "event_ts": T - HOUR, "x": 2.0},
            ]
        )
        spec = AsOfSpec("x_asof", "x", ("user_id",), src)
        report = PitReport()
        out = InMemoryAggregator().aggregate_pit_table(spine((1, T)), [spec], report=report)
        assert out["x_asof"].to_pylist() == [2.0]
        assert report.asof_ties == {"events": 1}

    def test_only_rows_equal_in_key_time_and_created_count_as_ties(self) -> None:
        def row(user: int, created: int, x: float) -> dict:
            return {"user_id": user, "event_ts": T - HOUR, "created_ts": created, "x": x}

        src = events(
            [
                row(1, T - 20, 1.0),
                row(2, T - 20, 2.0),  # same times, other key: not a tie
                row(1, T - 10, 3.0),  # same key and event time, other created: not a tie
                row(1, T - 20, 4.0),  # ties with the first row
                row(3, T - 30, 5.0),
                row(3, T - 30, 6.0),
                row(3, T - 30, 7.0),  # three equal rows: two ties
            ]
        )
        spec = AsOfSpec("x_asof", "x", ("user_id",), src)
        report = PitReport()
        out = InMemoryAggregator().aggregate_pit_table(
            spine((1, T), (2, T), (3, T)), [spec], report=report
        )
        assert out["x_asof"].to_pylist() == [3.0, 2.0, 7.0]
        assert report.asof_ties == {"events": 3}


class TestFunctions:
    rows: ClassVar[list[dict]] = [
        {"user_id": 1, "event_ts": T - 40 * MINUTE, "x": 3.0, "action": "view", "n": 3},
        {"user_id": 1, "event_ts": T - 30 * MINUTE, "x": None, "action": "like", "n": None},
        {"user_id": 1, "event_ts": T - 20 * MINUTE, "x": math.nan, "action": "like", "n": 5},
        {"user_id": 1, "event_ts": T - 10 * MINUTE, "x": 1.0, "action": "view", "n": 1},
    ]

    @pytest.mark.parametrize(
        ("fn", "column", "expected"),
        [
            (AggFunction.COUNT, None, 4),
            (AggFunction.COUNT, "x", 2),
            (AggFunction.SUM, "x", 4.0),
            (AggFunction.SUM, "n", 9),
            (AggFunction.MEAN, "x", 2.0),
            (AggFunction.MIN, "x", 1.0),
            (AggFunction.MAX, "action", "view"),
            (AggFunction.FIRST, "x", 3.0),
            (AggFunction.LAST, "action", "view"),
            (AggFunction.COUNT_DISTINCT, "action", 2),
            (AggFunction.STDDEV, "x", math.sqrt(2.0)),
        ],
    )
    def test_nulls_and_nan_are_skipped(
        self, fn: AggFunction, column: str | None, expected: object
    ) -> None:
        assert compute(spine((1, T)), agg(events(self.rows), fn, column)) == [expected]

    def test_last_n_is_newest_first(self) -> None:
        spec = agg(events(self.rows), AggFunction.LAST_N, "n", n=2)
        assert compute(spine((1, T)), spec) == [[1, 5]]

    def test_filters_apply_before_the_window(self) -> None:
        spec = agg(events(self.rows), AggFunction.COUNT, filters=(FilterDef("action", ("like",)),))
        assert compute(spine((1, T)), spec) == [2]

    @pytest.mark.parametrize(
        ("fn", "expected"),
        [
            (AggFunction.COUNT, 0),
            (AggFunction.COUNT_DISTINCT, 0),
            (AggFunction.LAST_N, []),
            (AggFunction.SUM, None),
            (AggFunction.MEAN, None),
            (AggFunction.MIN, None),
            (AggFunction.LAST, None),
        ],
    )
    def test_empty_windows(self, fn: AggFunction, expected: object) -> None:
        spec = agg(events(self.rows), fn, "x", n=3 if fn is AggFunction.LAST_N else None)
        assert compute(spine((2, T)), spec) == [expected]

    def test_sum_is_correctly_rounded(self) -> None:
        rows = [
            {"user_id": 1, "event_ts": T - k, "x": v}
            for k, v in enumerate([1e16, 1.0, -1e16, 1.0], 1)
        ]
        assert compute(spine((1, T)), agg(events(rows), AggFunction.SUM, "x")) == [
            math.fsum([1e16, 1.0, -1e16, 1.0])
        ]

    def test_min_prefers_negative_zero(self) -> None:
        rows = [
            {"user_id": 1, "event_ts": T - 2, "x": 0.0},
            {"user_id": 1, "event_ts": T - 1, "x": -0.0},
        ]
        out = compute(spine((1, T)), agg(events(rows), AggFunction.MIN, "x"))
        assert math.copysign(1.0, out[0]) == -1.0


class TestOutputShape:
    def test_output_keeps_spine_order_and_extra_columns(self) -> None:
        src = events([{"user_id": 1, "event_ts": T - 1, "x": 1.0}])
        sp = spine((2, T), (1, T), (1, T - 10)).append_column(
            "label", pa.array([True, False, True])
        )
        out = InMemoryAggregator().aggregate_pit_table(sp, [agg(src, AggFunction.COUNT)])
        assert out.column_names == ["user_id", "ts", "label", "f"]
        assert out["f"].to_pylist() == [0, 1, 0]

    def test_empty_spine_gives_empty_typed_output(self) -> None:
        src = events([{"user_id": 1, "event_ts": T - 1, "x": 1.0}])
        out = InMemoryAggregator().aggregate_pit_table(spine(), [agg(src, AggFunction.MEAN, "x")])
        assert out.num_rows == 0 and out.schema.field("f").type == pa.float64()


class TestErrors:
    src = events([{"user_id": 1, "event_ts": T - 1, "x": 1.0}])

    def test_spine_missing_a_key_is_named(self) -> None:
        sp = pa.table({"ts": pa.array([T], TS)})
        with pytest.raises(PitError, match="'user_id'"):
            InMemoryAggregator().aggregate_pit_table(sp, [agg(self.src, AggFunction.COUNT)])

    def test_spine_missing_the_timestamp_is_named(self) -> None:
        sp = pa.table({"user_id": pa.array([1], pa.int64())})
        with pytest.raises(PitError, match="'ts'"):
            InMemoryAggregator().aggregate_pit_table(sp, [agg(self.src, AggFunction.COUNT)])

    def test_null_keys_in_the_spine_are_counted(self) -> None:
        sp = pa.table(
            {"user_id": pa.array([1, None, None], pa.int64()), "ts": pa.array([T] * 3, TS)}
        )
        with pytest.raises(PitError, match="2 row"):
            InMemoryAggregator().aggregate_pit_table(sp, [agg(self.src, AggFunction.COUNT)])

    def test_naive_spine_timestamps_are_refused_unless_allowed(self) -> None:
        sp = pa.table(
            {"user_id": pa.array([1], pa.int64()), "ts": pa.array([T], pa.timestamp("us"))}
        )
        with pytest.raises(PitError, match="tz-naive"):
            InMemoryAggregator().aggregate_pit_table(sp, [agg(self.src, AggFunction.COUNT)])
        out = InMemoryAggregator().aggregate_pit_table(
            sp, [agg(self.src, AggFunction.COUNT)], naive_timestamps_are_utc=True
        )
        assert out["f"].to_pylist() == [1]

    def test_value_column_of_the_wrong_type_is_refused(self) -> None:
        with pytest.raises(PitError, match="sum needs an integer or floating-point column"):
            InMemoryAggregator().aggregate_pit_table(
                spine((1, T)), [agg(self.src, AggFunction.SUM, "action")]
            )

    def test_errors_come_before_any_work(self) -> None:
        aggregator = InMemoryAggregator()
        sp = pa.table({"user_id": pa.array([None], pa.int64()), "ts": pa.array([T], TS)})
        with pytest.raises(PitError):
            aggregator.aggregate_pit_table(sp, [agg(self.src, AggFunction.COUNT)])
        assert aggregator.kernel.calls == []


@settings(max_examples=int(os.environ.get("DAEDA_PIT_EXAMPLES", "200")))
@given(problems(with_inf=True))
def test_core_with_the_contract_kernel_matches_the_reference(problem) -> None:
    sp, specs = problem
    out = InMemoryAggregator().aggregate_pit_table(sp, specs)
    assert_bit_equal(out, reference_pit_table(sp, specs), labels=("core", "reference"))


class TestMultiColumnKeys:
    """Features keyed by two columns: key combinations, not single columns, select the rows."""

    @pytest.mark.parametrize("scale", [1, 2**40], ids=["packed", "too-wide-to-pack"])
    def test_two_column_keys_match_the_reference(self, scale: int) -> None:
        schema = pa.schema(
            [
                ("user_id", pa.int64()),
                ("artwork_id", pa.int64()),
                ("event_ts", TS),
                ("x", pa.float64()),
            ]
        )
        rows = [
            (u * scale, a * scale, T - m * MINUTE, float(m))
            for m, (u, a) in enumerate([(1, 1), (1, 2), (2, 1), (1, 1), (2, 2), (-3, 1)] * 3)
        ]
        table = pa.table(
            {
                name: pa.array([r[i] for r in rows], schema.field(name).type)
                for i, name in enumerate(schema.names)
            },
            schema=schema,
        )
        src = SourceSpec("pairs", "event_ts", schema, table=table)
        probe = pa.table(
            {
                "user_id": pa.array([1 * scale, 1 * scale, 2 * scale, -3 * scale, 9], pa.int64()),
                "artwork_id": pa.array([1 * scale, 2 * scale, 1 * scale, 1 * scale, 9], pa.int64()),
                "ts": pa.array([T + 1, T + 1, T - 30 * MINUTE, T, T], TS),
            }
        )
        specs = [
            AggregationSpec(f"{fn.value}_pair", fn, ("user_id", "artwork_id"), src, HOUR, col)
            for fn, col in [
                (AggFunction.COUNT, None),
                (AggFunction.SUM, "x"),
                (AggFunction.LAST, "x"),
            ]
        ]
        out = InMemoryAggregator().aggregate_pit_table(probe, specs)
        assert_bit_equal(out, reference_pit_table(probe, specs), labels=("core", "reference"))
        # (2, 1) at T - 30 min: its events (T - 2, 8, 14 min) are all later, so none is visible.
        assert out["count_pair"].to_pylist() == [6, 3, 0, 3, 0]
