"""DuckDB ≡ Polars ≡ the brute-force reference, bit for bit, over generated problems."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from daedalus.adapters.duckdb.aggregator import DuckDBAggregator
from daedalus.adapters.duckdb.kernel import DuckDBKernel
from daedalus.adapters.polars.kernel import PolarsKernel
from hypothesis import given, settings

from daedalus.catalog.model import AggFunction, FilterDef
from daedalus.pit import Engine, get_aggregate_pit_table
from daedalus.pit.compute import PitReport, compute_pit_table
from daedalus.pit.errors import PitError
from daedalus.pit.kernel import WindowKernel, WindowOp, WindowRequest
from daedalus.pit.reference import reference_pit_table
from daedalus.pit.spec import AggregationSpec, AsOfSpec, SourceSpec
from tests.pit_strategies import BASE, MINUTE, SOURCE_SCHEMA, TS, assert_bit_equal, problems

EXAMPLES = int(os.environ.get("DAEDA_PIT_EXAMPLES", "300"))


@settings(max_examples=EXAMPLES)
@given(problems(with_inf=True))
def test_duckdb_polars_and_the_reference_agree_bit_for_bit(problem) -> None:
    spine, specs = problem
    duck = get_aggregate_pit_table(Engine.DUCKDB)(spine, specs)
    polars = get_aggregate_pit_table(Engine.POLARS)(spine, specs)
    assert_bit_equal(duck, polars, labels=("duckdb", "polars"))
    assert_bit_equal(duck, reference_pit_table(spine, specs), labels=("duckdb", "reference"))


@settings(max_examples=EXAMPLES)
@given(problems(with_inf=True, outliers=True))
def test_duckdb_polars_and_the_reference_agree_on_outlier_heavy_sums(problem) -> None:
    """Values spanning the whole double range in one window, many outliers or only outliers,
    subnormals, ±0.0, ±inf and NaN: the dense band plus sparse bands sum exactly."""
    spine, specs = problem
    duck = get_aggregate_pit_table(Engine.DUCKDB)(spine, specs)
    polars = get_aggregate_pit_table(Engine.POLARS)(spine, specs)
    assert_bit_equal(duck, polars, labels=("duckdb", "polars"))
    assert_bit_equal(duck, reference_pit_table(spine, specs), labels=("duckdb", "reference"))


def test_engines_are_chosen_explicitly() -> None:
    from daedalus.adapters.duckdb import aggregator as duck_module
    from daedalus.adapters.polars import aggregator as polars_module

    assert get_aggregate_pit_table("duckdb") is duck_module.aggregate_pit_table
    assert get_aggregate_pit_table(Engine.POLARS) is polars_module.aggregate_pit_table
    with pytest.raises(ValueError, match="unknown engine 'spark'"):
        get_aggregate_pit_table("spark")


def _events(rng, *, users, minutes, lag_minutes, actions, x) -> pa.Table:
    """A source table of SOURCE_SCHEMA from the given columns (the rest drawn from `rng`)."""
    n = len(users)
    ts = BASE + minutes * MINUTE
    return pa.table(
        {
            "user_id": pa.array(users, pa.int64()),
            "event_ts": pa.array(ts, pa.int64()).cast(TS),
            "created_ts": pa.array(ts + lag_minutes * MINUTE, pa.int64()).cast(TS),
            "action": pa.array(actions, pa.string()),
            "x": pa.array(x),
            "f32": pa.array(rng.random(n).astype("float32")),
            "n": pa.array(rng.integers(-1000, 1000, n), pa.int64()),
            "flag": pa.array(rng.random(n) < 0.5),
        },
        schema=SOURCE_SCHEMA,
    )


def _big_problem(tmp_path) -> tuple[pa.Table, list]:
    import numpy as np

    rng = np.random.default_rng(3)
    n, m = 60_000, 6_000
    events = _events(
        rng,
        users=rng.integers(0, 300, n),
        minutes=rng.integers(0, 3 * 24 * 60, n),
        lag_minutes=rng.integers(0, 3, n),
        actions=rng.choice(["view", "like"], n),
        x=rng.lognormal(3, 2, n) * rng.choice([-1, 1], n),
    )
    path = tmp_path / "events.parquet"
    pq.write_table(events, path, row_group_size=5_000)
    source = SourceSpec(
        "events", "event_ts", SOURCE_SCHEMA, paths=(str(path),), created_timestamp="created_ts"
    )
    spine = pa.table(
        {
            "user_id": pa.array(rng.integers(0, 320, m), pa.int64()),
            "ts": pa.array(BASE + rng.integers(0, 4 * 24 * 60, m) * MINUTE, pa.int64()).cast(TS),
        }
    )
    specs = [
        AggregationSpec(
            f"{fn.value}_{w}",
            fn,
            ("user_id",),
            source,
            w * MINUTE if w else None,
            None if fn is AggFunction.COUNT else "x",
            n=5 if fn is AggFunction.LAST_N else None,
            delay_us=5 * MINUTE,
        )
        for fn in AggFunction
        for w in (60, 24 * 60, None)
    ]
    specs.append(AsOfSpec("x_asof", "x", ("user_id",), source, ttl_us=6 * 60 * MINUTE))
    return spine, specs


def test_same_job_twice_and_with_one_or_two_threads_gives_identical_bits(tmp_path) -> None:
    spine, specs = _big_problem(tmp_path)
    first = DuckDBAggregator(DuckDBKernel(threads=1)).aggregate_pit_table(spine, specs)
    second = DuckDBAggregator(DuckDBKernel(threads=2)).aggregate_pit_table(spine, specs)
    again = DuckDBAggregator(DuckDBKernel(threads=2)).aggregate_pit_table(spine, specs)
    polars = get_aggregate_pit_table("polars")(spine, specs)
    assert_bit_equal(first, second, labels=("1 thread", "2 threads"))
    assert_bit_equal(second, again, labels=("run 1", "run 2"))
    assert_bit_equal(second, polars, labels=("duckdb", "polars"))


class _Recording(WindowKernel):
    """A kernel that records the size of every call it passes on."""

    name = "recording"

    def __init__(self, inner: WindowKernel) -> None:
        self.inner = inner
        self.calls: list[tuple[int, int, list[WindowRequest]]] = []

    def window_aggregate(self, events, probes, requests):
        self.calls.append((events.num_rows, probes.num_rows, list(requests)))
        return self.inner.window_aggregate(events, probes, requests)


@pytest.mark.parametrize("engine", ["duckdb", "polars"])
def test_a_few_extreme_values_cost_a_small_second_call_not_wider_limbs(engine, tmp_path) -> None:
    """Three extreme values among 60k (5e-324, 1e300, -1e-300): the main call sums as many limb
    columns as without them, the extremes go to a second call of their rows only, and sums,
    means and standard deviations are those of the reference, bit for bit."""
    import numpy as np

    spine, specs = _big_problem(tmp_path)
    table = pq.read_table(specs[0].source.paths[0])
    rng = np.random.default_rng(5)
    x = np.round(rng.lognormal(8.5, 1.0, table.num_rows), 3)  # decimal-like, like dwell times
    column = table.schema.get_field_index("x")
    source = SourceSpec(
        "events",
        "event_ts",
        SOURCE_SCHEMA,
        table=table.set_column(column, "x", pa.array(x)),
        created_timestamp="created_ts",
    )
    users = table["user_id"].to_numpy()
    hot = int(np.bincount(users).argmax())
    rows = np.flatnonzero(users == hot)[[10, 100, 150]]  # windows that probes of `hot` see
    x = x.copy()  # the clean table shares x's memory
    x[rows] = [5e-324, 1e300, -1e-300]
    extreme = SourceSpec(
        "events",
        "event_ts",
        SOURCE_SCHEMA,
        table=table.set_column(column, "x", pa.array(x)),
        created_timestamp="created_ts",
    )
    summed = [
        AggregationSpec(
            s.name, s.function, s.keys, extreme, s.window_us, s.column, delay_us=5 * MINUTE
        )
        for s in specs
        if isinstance(s, AggregationSpec)
        and s.function in (AggFunction.SUM, AggFunction.MEAN, AggFunction.STDDEV)
    ]
    clean = [
        AggregationSpec(
            s.name, s.function, s.keys, source, s.window_us, s.column, delay_us=5 * MINUTE
        )
        for s in summed
    ]
    inner = DuckDBKernel() if engine == "duckdb" else PolarsKernel()
    with_extremes, without = _Recording(inner), _Recording(inner)
    got = compute_pit_table(spine, summed, with_extremes)
    compute_pit_table(spine, clean, without)
    (_, _, main), (sparse_events, sparse_probes, second) = with_extremes.calls
    ((_, _, clean_requests),) = without.calls
    assert len(main) <= len(clean_requests)  # no more limb sums than for the clean data
    assert 3 <= sparse_events < table.num_rows / 100  # the extremes (and a few tail squares)
    assert sparse_probes < spine.num_rows / 10
    assert second and all(r.op is WindowOp.SUM for r in second)  # the extremes' limb sums
    sample = spine.take(pa.array(np.flatnonzero(spine["user_id"].to_numpy() == hot)))
    want = reference_pit_table(sample, summed)
    mine = got.take(pa.array(np.flatnonzero(spine["user_id"].to_numpy() == hot)))
    assert_bit_equal(mine, want, labels=(engine, "reference"))
    assert any(v is not None and abs(v) > 1e299 for v in mine["sum_None"].to_pylist())


def test_parquet_sources_are_read_only_in_the_visible_range(tmp_path) -> None:
    spine, specs = _big_problem(tmp_path)
    late = spine.filter(pa.compute.greater(spine["ts"], pa.scalar(BASE + 3 * 24 * 60 * MINUTE, TS)))
    windowed = [s for s in specs if isinstance(s, AggregationSpec) and s.window_us == 60 * MINUTE]
    report = PitReport()
    get_aggregate_pit_table("duckdb")(late, windowed, report=report)
    # 1h window + 5m delay before the earliest spine time: only the last day's rows are read.
    assert 0 < report.source_rows["events"] < 60_000 / 2


def test_a_filter_column_read_from_parquet_gives_what_the_same_rows_in_memory_give(
    tmp_path,
) -> None:
    """Filter-only string columns are read dictionary-encoded from parquet (each row group has
    its own dictionary, nulls included): the matches must be those of the plain strings."""
    import numpy as np

    rng = np.random.default_rng(11)
    n = 20_000
    actions = rng.choice(np.array(["view", "like", "share", None], dtype=object), n)
    actions[: n // 4] = rng.choice(np.array(["view", None], dtype=object), n // 4)  # fewer values
    events = _events(
        rng,
        users=rng.integers(0, 50, n),
        minutes=rng.integers(0, 2 * 24 * 60, n),
        lag_minutes=np.zeros(n, np.int64),
        actions=actions,
        x=rng.normal(0, 10, n),
    )
    path = tmp_path / "events.parquet"
    pq.write_table(events, path, row_group_size=3_000)
    spine = pa.table(
        {
            "user_id": pa.array(rng.integers(0, 55, 2_000), pa.int64()),
            "ts": pa.array(BASE + rng.integers(0, 3 * 24 * 60, 2_000) * MINUTE, pa.int64()).cast(
                TS
            ),
        }
    )

    def specs(source: SourceSpec) -> list[AggregationSpec]:
        return [
            AggregationSpec(
                f"{fn.value}_{'_'.join(values)}",
                fn,
                ("user_id",),
                source,
                6 * 60 * MINUTE,
                None if fn is AggFunction.COUNT else "x",
                filters=(FilterDef("action", values),),
            )
            for fn in (AggFunction.COUNT, AggFunction.SUM, AggFunction.MAX)
            for values in (("like",), ("view", "share"), ("nothing",))
        ]

    on_disk = SourceSpec("events", "event_ts", SOURCE_SCHEMA, paths=(str(path),))
    in_memory = SourceSpec("events", "event_ts", SOURCE_SCHEMA, table=events)
    expected = reference_pit_table(spine, specs(in_memory))
    for engine in ("duckdb", "polars"):
        got = get_aggregate_pit_table(engine)(spine, specs(on_disk))
        assert_bit_equal(got, expected, labels=(f"{engine} from parquet", "reference"))
    assert pa.compute.sum(expected["count_like"]).as_py() > 0


@pytest.mark.parametrize("engine", ["duckdb", "polars"])
class TestErrorsBeforeAnyWork:
    source = SourceSpec("events", "event_ts", SOURCE_SCHEMA, table=SOURCE_SCHEMA.empty_table())

    def spec(
        self, fn: AggFunction = AggFunction.COUNT, column: str | None = None
    ) -> AggregationSpec:
        return AggregationSpec("f", fn, ("user_id",), self.source, 60 * MINUTE, column)

    def test_spine_without_the_key(self, engine: str) -> None:
        with pytest.raises(PitError, match="spine lacks column"):
            get_aggregate_pit_table(engine)(pa.table({"ts": pa.array([BASE], TS)}), [self.spec()])

    def test_spine_without_the_timestamp(self, engine: str) -> None:
        with pytest.raises(PitError, match="'ts'"):
            get_aggregate_pit_table(engine)(
                pa.table({"user_id": pa.array([1], pa.int64())}), [self.spec()]
            )

    def test_null_keys_are_counted(self, engine: str) -> None:
        spine = pa.table(
            {"user_id": pa.array([None, 1, None], pa.int64()), "ts": pa.array([BASE] * 3, TS)}
        )
        with pytest.raises(PitError, match="2 row"):
            get_aggregate_pit_table(engine)(spine, [self.spec()])

    def test_tz_naive_spine(self, engine: str) -> None:
        spine = pa.table(
            {"user_id": pa.array([1], pa.int64()), "ts": pa.array([BASE], pa.timestamp("us"))}
        )
        with pytest.raises(PitError, match="tz-naive"):
            get_aggregate_pit_table(engine)(spine, [self.spec()])

    def test_value_column_of_the_wrong_type(self, engine: str) -> None:
        spine = pa.table({"user_id": pa.array([1], pa.int64()), "ts": pa.array([BASE], TS)})
        with pytest.raises(PitError, match="mean needs an integer or floating-point column"):
            get_aggregate_pit_table(engine)(spine, [self.spec(AggFunction.MEAN, "action")])

    def test_missing_parquet_source(self, engine: str, tmp_path) -> None:
        source = SourceSpec(
            "events", "event_ts", SOURCE_SCHEMA, paths=(str(tmp_path / "nope" / "*.parquet"),)
        )
        spine = pa.table({"user_id": pa.array([1], pa.int64()), "ts": pa.array([BASE], TS)})
        spec = AggregationSpec("f", AggFunction.COUNT, ("user_id",), source, 60 * MINUTE)
        with pytest.raises(PitError, match="no parquet files match"):
            get_aggregate_pit_table(engine)(spine, [spec])
