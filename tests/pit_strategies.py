"""Hypothesis strategies for point-in-time property tests, and a bit-exact table comparison."""

from __future__ import annotations

import math
import struct
from typing import Any

import pyarrow as pa
from hypothesis import strategies as st

from daedalus.catalog.model import AggFunction, FilterDef
from daedalus.pit.spec import AggregationSpec, AsOfSpec, PitSpec, SourceSpec

MINUTE = 60_000_000
BASE = 1_790_000_000_000_000  # 2026-09-21, in microseconds
TS = pa.timestamp("us", tz="UTC")

SOURCE_SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()),
        ("event_ts", TS),
        ("created_ts", TS),
        ("action", pa.string()),
        ("x", pa.float64()),
        ("f32", pa.float32()),
        ("n", pa.int64()),
        ("flag", pa.bool_()),
    ]
)

SPECIAL_FLOATS = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.1,
    1e308,
    -1e308,
    1e-300,
    5e-324,
    -5e-324,
    2.0**53,
    1e16,
    -1e16,
    3.5,
    math.nan,
]

floats = st.one_of(
    st.sampled_from(SPECIAL_FLOATS),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    st.none(),
)

MAX_FLOAT = float.fromhex("0x1.fffffffffffffp+1023")
MIN_NORMAL = 2.2250738585072014e-308

# Outlier-heavy values: a bulk of decimal-like values (one narrow exponent band, like measured
# data) mixed with values far from it, so the exact sums split into a dense band and sparse
# bands (`exact.encode_float_bands`) and windows hold sparse rows, several, or only them.
bulk_floats = st.one_of(
    st.floats(min_value=100.0, max_value=1e5).map(lambda v: round(v, 3)),
    st.floats(min_value=-1e5, max_value=-100.0).map(lambda v: round(v, 3)),
)
EXTREME_FLOATS = [
    5e-324,
    -5e-324,
    3 * 5e-324,
    MIN_NORMAL,
    -MIN_NORMAL,
    MIN_NORMAL - 5e-324,
    1e-310,
    1e-300,
    -1e-300,
    2.0**-1000 * (1 + 2.0**-52),
    1e300,
    -1e300,
    1e308,
    MAX_FLOAT,
    -MAX_FLOAT,
    2.0**1023,
    2.0**600 + 2.0**548,
    0.0,
    -0.0,
]
extreme_floats = st.one_of(
    st.sampled_from(EXTREME_FLOATS),
    st.floats(allow_nan=False, allow_infinity=False),  # the whole double range
    st.floats(min_value=-MIN_NORMAL, max_value=MIN_NORMAL),  # subnormals and zeros
    st.floats(min_value=1e250, allow_infinity=False),
    st.floats(max_value=-1e250, allow_infinity=False),
)
#: Share (in %) of extreme values among the drawn ones: a few outliers, many, or only them.
OUTLIER_SHARES = [5, 20, 50, 100]


@st.composite
def outlier_values(draw: st.DrawFn, n: int, *, with_inf: bool = False) -> list[float | None]:
    """`n` values of which a drawn share is extreme, plus specials: nulls, NaN, and ±inf."""
    share = draw(st.sampled_from(OUTLIER_SHARES))
    special = [None, math.nan, *([math.inf, -math.inf] if with_inf else [])]
    values: list[float | None] = []
    for _ in range(n):
        roll = draw(st.integers(0, 99))
        if roll < 4:
            values.append(draw(st.sampled_from(special)))
        elif roll < 4 + share:
            values.append(draw(extreme_floats))
        else:
            values.append(draw(bulk_floats))
    return values


def times(max_offset: int = 12) -> st.SearchStrategy[int]:
    """Timestamps on a coarse grid so that equal times (ties, spine == event) are common."""
    return st.integers(0, max_offset).map(lambda k: BASE + k * 10 * MINUTE)


@st.composite
def source_tables(
    draw: st.DrawFn, *, with_inf: bool = False, outliers: bool = False, max_rows: int = 25
) -> pa.Table:
    """A source table; with `outliers`, column x holds `outlier_values`."""
    n = draw(st.integers(0, max_rows))
    value = st.one_of(floats, st.sampled_from([math.inf, -math.inf])) if with_inf else floats
    rows = {
        "user_id": draw(
            st.lists(st.one_of(st.integers(0, 3), st.just(None)), min_size=n, max_size=n)
        ),
        "event_ts": draw(st.lists(times(), min_size=n, max_size=n)),
        "action": draw(
            st.lists(st.sampled_from(["view", "like", "bookmark", None]), min_size=n, max_size=n)
        ),
        "x": (
            draw(outlier_values(n, with_inf=with_inf))
            if outliers
            else draw(st.lists(value, min_size=n, max_size=n))
        ),
        "f32": draw(
            st.lists(
                st.one_of(st.none(), st.floats(width=32, allow_nan=False, allow_infinity=False)),
                min_size=n,
                max_size=n,
            )
        ),
        "n": draw(
            st.lists(
                st.one_of(
                    st.none(), st.integers(-(2**40), 2**40), st.sampled_from([0, 2**58, -(2**58)])
                ),
                min_size=n,
                max_size=n,
            )
        ),
        "flag": draw(st.lists(st.one_of(st.none(), st.booleans()), min_size=n, max_size=n)),
    }
    lags = draw(
        st.lists(
            st.sampled_from([0, 0, 5 * MINUTE, 10 * MINUTE, 60 * MINUTE]), min_size=n, max_size=n
        )
    )
    rows["created_ts"] = [t + lag for t, lag in zip(rows["event_ts"], lags, strict=True)]
    # the same user/timestamp more than once is the interesting case: make some exact duplicates
    if n and draw(st.booleans()):
        for col in rows:
            rows[col].append(rows[col][0])
    return pa.table(
        {f.name: pa.array(rows[f.name], f.type) for f in SOURCE_SCHEMA}, schema=SOURCE_SCHEMA
    )


@st.composite
def spines(draw: st.DrawFn) -> pa.Table:
    m = draw(st.integers(0, 10))
    return pa.table(
        {
            "user_id": pa.array(
                draw(st.lists(st.integers(0, 5), min_size=m, max_size=m)), pa.int64()
            ),
            "ts": pa.array(draw(st.lists(times(14), min_size=m, max_size=m)), TS),
            "label": pa.array(draw(st.lists(st.booleans(), min_size=m, max_size=m))),
        }
    )


COLUMNS_FOR = {
    AggFunction.COUNT: [None, "x", "action", "n"],
    AggFunction.SUM: ["x", "n", "f32"],
    AggFunction.MEAN: ["x", "n", "f32"],
    AggFunction.STDDEV: ["x", "f32"],
    AggFunction.MIN: ["x", "n", "action", "f32", "flag", "event_ts"],
    AggFunction.MAX: ["x", "n", "action", "f32", "flag"],
    AggFunction.FIRST: ["x", "n", "action", "flag"],
    AggFunction.LAST: ["x", "n", "action", "f32"],
    AggFunction.LAST_N: ["x", "n", "action"],
    AggFunction.COUNT_DISTINCT: ["x", "n", "action", "f32"],
}

windows = st.sampled_from(
    [None, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE, 60 * MINUTE, 24 * 60 * MINUTE]
)
delays = st.sampled_from([0, 0, 10 * MINUTE, 5 * MINUTE])
filters = st.one_of(
    st.just(()),
    st.sampled_from([(FilterDef("action", ("like",)),), (FilterDef("action", ("view", "like")),)]),
)


@st.composite
def aggregation_specs(
    draw: st.DrawFn,
    source: SourceSpec,
    index: int,
    functions: tuple[AggFunction, ...] | None = None,
    columns: tuple[str, ...] | None = None,
) -> AggregationSpec:
    """A spec of one of `functions` (default: any) over one of `columns` it takes (default:
    any column that function takes)."""
    fn = draw(st.sampled_from(list(functions or AggFunction)))
    choices = [c for c in COLUMNS_FOR[fn] if columns is None or c in columns]
    return AggregationSpec(
        name=f"f{index}_{fn.value}",
        function=fn,
        keys=("user_id",),
        source=source,
        window_us=draw(windows),
        column=draw(st.sampled_from(choices or COLUMNS_FOR[fn])),
        filters=draw(filters),
        n=draw(st.integers(1, 4)) if fn is AggFunction.LAST_N else None,
        delay_us=draw(delays),
    )


@st.composite
def asof_specs(draw: st.DrawFn, source: SourceSpec, index: int) -> AsOfSpec:
    return AsOfSpec(
        name=f"a{index}",
        column=draw(st.sampled_from(["x", "action", "n", "flag"])),
        keys=("user_id",),
        source=source,
        ttl_us=draw(st.sampled_from([None, 20 * MINUTE, 60 * MINUTE])),
        delay_us=draw(delays),
    )


#: The functions whose float results are exact sums (limbs, dense and sparse bands).
SUM_FUNCTIONS = (AggFunction.SUM, AggFunction.MEAN, AggFunction.STDDEV)


@st.composite
def problems(
    draw: st.DrawFn, *, with_inf: bool = False, outliers: bool = False
) -> tuple[pa.Table, list[PitSpec]]:
    """A spine and a list of specs over one in-memory source (with or without created_ts).

    With `outliers`, column x is outlier-heavy (`outlier_values`), tables are up to 40 rows,
    and most specs are sums, means and standard deviations of x (the rest any spec)."""
    table = draw(
        source_tables(with_inf=with_inf, outliers=outliers, max_rows=40 if outliers else 25)
    )
    created = draw(st.booleans())
    source = SourceSpec(
        name="events",
        timestamp="event_ts",
        schema=SOURCE_SCHEMA,
        table=table,
        created_timestamp="created_ts" if created else None,
    )
    count = draw(st.integers(1, 4))
    specs: list[PitSpec] = []
    for i in range(count):
        kind = draw(st.integers(0, 3))
        if kind == 0:
            specs.append(draw(asof_specs(source, i)))
        elif outliers and kind > 1:
            specs.append(draw(aggregation_specs(source, i, SUM_FUNCTIONS, ("x",))))
        else:
            specs.append(draw(aggregation_specs(source, i)))
    return draw(spines()), specs


def _bits(v: Any) -> Any:
    if isinstance(v, float):
        return ("f", struct.pack("<d", v))
    if isinstance(v, list):
        return [_bits(x) for x in v]
    return v


def assert_bit_equal(
    actual: pa.Table, expected: pa.Table, *, labels: tuple[str, str] = ("actual", "expected")
) -> None:
    """Equal schemas and equal values, floats compared by their bits (NaN == NaN, -0.0 != 0.0)."""
    assert actual.schema.equals(expected.schema), (
        f"schemas differ:\n{actual.schema}\n!=\n{expected.schema}"
    )
    for name in actual.column_names:
        a = [_bits(v) for v in actual[name].to_pylist()]
        e = [_bits(v) for v in expected[name].to_pylist()]
        for i, (x, y) in enumerate(zip(a, e, strict=True)):
            assert x == y, (
                f"column {name!r} row {i}: {labels[0]}={actual[name][i]!r} {labels[1]}={expected[name][i]!r}"
            )
