"""Data fuzz: one source file among several gets a random schema or value mutation; the run
either succeeds with the rows an independent oracle computes from the mutated files, or fails
before any write with an error naming what is wrong. Never exit 0 with other data.

The oracle reads every file with plain `pyarrow.parquet`, casts to the declared types, leaves
out the rows that cannot take part (null event time) and computes every feature by brute force
(`daedalus.pit.reference`), independently of the pipeline's dataset reads.
"""

from __future__ import annotations

import datetime as dt
import glob
import json
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import attrs
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from daedalus.adapters.cli.app import EXIT_CODES, app

from daedalus.catalog.registry import FeatureCatalog
from daedalus.pipeline.audit import _same
from daedalus.pipeline.compiler import compile_service
from daedalus.pipeline.executor import Plan
from daedalus.pit.reference import reference_pit_table
from daedalus.pit.spec import SourceSpec
from tests.e2e.conftest import copy_workspace

REPO = Path(__file__).resolve().parents[2]
START, END = "2026-10-02", "2026-10-03"
CASES = 200 if os.environ.get("DAEDA_HYPOTHESIS") == "thorough" else 36
SERVICE = """
kind: feature_service
name: fuzz_ranking
spine:
  path: data/impressions/*.parquet
  timestamp: ts
  entity: [user, artwork]
  labels: {clicked: BOOLEAN}
features:
  - user_activity:*
  - user_profile:*
  - artwork_popularity:*
"""
#: (source directory, a view reading it)
TARGETS = {
    "data/events": ("user_activity", "artwork_popularity"),
    "data/user_profiles": ("user_profile",),
    "data/impressions": ("spine",),
}


def daeda(*tokens: str) -> int:
    return app(list(tokens), result_action="return_value")


@pytest.fixture(scope="module")
def base(tiny_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = copy_workspace(tiny_demo, tmp_path_factory.mktemp("fuzz") / "demo")
    (root / "feature_views" / "fuzz.yaml").write_text(SERVICE)
    # The profiles as two files, so that a mutation hits one file among several.
    profiles = root / "data" / "user_profiles" / "part-0.parquet"
    table = pq.read_table(profiles)
    half = table.num_rows // 2
    pq.write_table(table.slice(0, half), profiles)
    pq.write_table(table.slice(half), profiles.with_name("part-1.parquet"))
    return root


# -- mutations: each returns the new table, or None when it does not apply to the table --------

Mutation = Callable[[random.Random, pa.Table], pa.Table | None]


def _column(rng: random.Random, table: pa.Table, pred: Callable[[pa.DataType], bool]) -> str | None:
    names = [f.name for f in table.schema if pred(f.type)]
    return rng.choice(names) if names else None


def _set(table: pa.Table, name: str, values: pa.Array | pa.ChunkedArray) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, values)


def drop_column(rng: random.Random, t: pa.Table) -> pa.Table:
    return t.drop_columns([rng.choice(t.column_names)])


def rename_column(rng: random.Random, t: pa.Table) -> pa.Table:
    name = rng.choice(t.column_names)
    return t.rename_columns([n + "_x" if n == name else n for n in t.column_names])


def as_strings(rng: random.Random, t: pa.Table) -> pa.Table:
    name = rng.choice(t.column_names)
    return _set(t, name, pc.cast(t[name], pa.string()))


def float_to_int(rng: random.Random, t: pa.Table) -> pa.Table | None:
    name = _column(rng, t, pa.types.is_floating)
    if name is None:
        return None
    return _set(t, name, pc.cast(pc.floor(t[name]), pa.int64(), safe=False))


def int_to_float(rng: random.Random, t: pa.Table) -> pa.Table | None:
    name = _column(rng, t, pa.types.is_integer)
    return None if name is None else _set(t, name, pc.cast(t[name], pa.float64()))


def naive_times(rng: random.Random, t: pa.Table) -> pa.Table | None:
    name = _column(rng, t, pa.types.is_timestamp)
    return None if name is None else _set(t, name, pc.cast(t[name], pa.timestamp("us")))


def times_as_int(rng: random.Random, t: pa.Table) -> pa.Table | None:
    name = _column(rng, t, pa.types.is_timestamp)
    return None if name is None else _set(t, name, pc.cast(t[name], pa.int64()))


def nulls(rng: random.Random, t: pa.Table) -> pa.Table:
    name = rng.choice(t.column_names)
    share = rng.choice([0.001, 0.005, 0.02, 0.2])
    col = t[name].combine_chunks()
    mask = pa.array([rng.random() < share for _ in range(len(col))], pa.bool_())
    return _set(t, name, pc.if_else(mask, pa.scalar(None, col.type), col))


def extreme_floats(rng: random.Random, t: pa.Table) -> pa.Table | None:
    name = _column(rng, t, pa.types.is_floating)
    if name is None:
        return None
    values = t[name].to_pylist()
    for _ in range(rng.randint(1, 5)):
        values[rng.randrange(len(values))] = rng.choice(
            [float("nan"), float("inf"), -float("inf"), -0.0, 5e-324, 1e300, -1e300]
        )
    return _set(t, name, pa.array(values, pa.float64()))


def shuffle(rng: random.Random, t: pa.Table) -> pa.Table:
    order = list(range(t.num_rows))
    rng.shuffle(order)
    return t.take(pa.array(order))


def duplicate_rows(rng: random.Random, t: pa.Table) -> pa.Table:
    picks = [rng.randrange(t.num_rows) for _ in range(rng.randint(1, 20))]
    return pa.concat_tables([t, t.take(pa.array(picks))])


def narrow_ints(rng: random.Random, t: pa.Table) -> pa.Table | None:
    name = _column(rng, t, lambda ty: ty == pa.int64())
    return None if name is None else _set(t, name, pc.cast(t[name], pa.int32()))


def ns_times(rng: random.Random, t: pa.Table) -> pa.Table | None:
    name = _column(rng, t, pa.types.is_timestamp)
    if name is None:
        return None
    return _set(t, name, pc.cast(t[name], pa.timestamp("ns", tz="Europe/Paris")))


def large_strings(rng: random.Random, t: pa.Table) -> pa.Table | None:
    name = _column(rng, t, pa.types.is_string)
    return None if name is None else _set(t, name, pc.cast(t[name], pa.large_string()))


MUTATIONS: list[Mutation] = [
    drop_column,
    rename_column,
    as_strings,
    float_to_int,
    int_to_float,
    naive_times,
    times_as_int,
    nulls,
    nulls,
    extreme_floats,
    shuffle,
    duplicate_rows,
    narrow_ints,
    ns_times,
    large_strings,
]


# -- the oracle ------------------------------------------------------------------------------------


def _read_as_declared(files: list[Path], schema: pa.Schema) -> pa.Table:
    """Every file read with plain pyarrow and cast to the declared types, in path order."""
    tables = []
    for path in files:
        table = pq.read_table(path, columns=schema.names)
        columns = []
        for field in schema:
            col = table[field.name]
            if pa.types.is_timestamp(col.type):  # the instant, in UTC microseconds
                col = pc.cast(pc.cast(col, pa.timestamp(col.type.unit, tz="UTC")), field.type)
            columns.append(pc.cast(col, field.type, safe=False))
        tables.append(pa.Table.from_arrays(columns, schema=schema))
    return pa.concat_tables(tables)


def oracle_days(ws: Path) -> dict[str, list[dict]]:
    """What each day must hold, computed independently from the files as they are now."""
    catalog = FeatureCatalog.from_yaml_dir(ws / "feature_views")
    plan = Plan(compile_service("fuzz_ranking", catalog, "duckdb"), ws)
    memory: dict[str, SourceSpec] = {}
    for name, source in plan.sources.items():
        files = sorted(Path(p) for p in glob.glob(source.paths[0]))
        table = _read_as_declared(files, source.schema)
        table = table.filter(pc.is_valid(table[source.timestamp]))
        memory[name] = attrs.evolve(source, table=table, paths=())
    spine_files = sorted((ws / "data" / "impressions").glob("*.parquet"))
    spine = _read_as_declared(spine_files, plan.spine_source.schema)
    out: dict[str, list[dict]] = {}
    first = dt.date.fromisoformat(START)
    for i in range((dt.date.fromisoformat(END) - first).days + 1):
        day = first + dt.timedelta(days=i)
        lo = dt.datetime.combine(day, dt.time(), dt.UTC)
        hi = lo + dt.timedelta(days=1)
        rows = spine.filter(
            pc.and_(
                pc.greater_equal(spine["ts"], pa.scalar(lo, spine["ts"].type)),
                pc.less(spine["ts"], pa.scalar(hi, spine["ts"].type)),
            )
        )
        probe = rows.select([*plan.keys, plan.timestamp])
        table = rows
        for _op, specs in plan.feature_ops:
            specs = [attrs.evolve(s, source=memory[s.source.name]) for s in specs]
            features = reference_pit_table(probe, specs, timestamp=plan.timestamp)
            for spec in specs:
                table = table.append_column(spec.name, features[spec.name])
        out[day.isoformat()] = _rows(table.select(plan.schema.names))
    return out


def _rows(table: pa.Table) -> list[dict]:
    rows = table.to_pylist()
    return sorted(rows, key=lambda r: (r["user_id"], r["artwork_id"], r["ts"]))


def written_days(ws: Path) -> dict[str, list[dict]]:
    out = ws / "out" / "fuzz_ranking"
    return {
        d.name[3:]: _rows(pa.concat_tables(pq.read_table(p) for p in sorted(d.glob("part-*"))))
        for d in sorted(out.glob("dt=*"))
    }


def _same_rows(a: list[dict], b: list[dict]) -> bool:
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(_same(x[k], y[k]) for k in x)
        for x, y in zip(a, b, strict=True)
    )


@pytest.mark.parametrize("seed", range(CASES))
def test_a_mutated_file_is_either_read_exactly_or_refused_before_any_write(
    base: Path, tmp_path: Path, seed: int, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(seed)
    ws = tmp_path / "demo"
    shutil.copytree(base, ws)
    directory = rng.choice(sorted(TARGETS))
    target = rng.choice(sorted((ws / directory).glob("*.parquet")))
    table = pq.read_table(target)
    mutated = None
    while mutated is None:
        mutation = rng.choice(MUTATIONS)
        mutated = mutation(rng, table)
    pq.write_table(mutated, target, row_group_size=rng.choice([64, 1 << 20]))
    capsys.readouterr()
    code = daeda(
        "pipeline", "train", "fuzz_ranking", "--workspace", str(ws),
        "--start", START, "--end", END, "--json",
    )  # fmt: skip
    captured = capsys.readouterr()
    what = f"seed {seed}: {mutation.__name__} of {target.name} in {directory}"
    if code == 0:
        assert _same_rows_all(written_days(ws), oracle_days(ws)), what
    else:
        assert code == EXIT_CODES["invalid_input"], (what, captured.err[-2000:])
        error = json.loads(captured.out)["error"]
        named = (target.name, *TARGETS[directory])
        assert any(name in error["message"] for name in named), (what, error)
        assert not list((ws / "out").glob("*/dt=*")), what


def _same_rows_all(got: dict[str, list[dict]], want: dict[str, list[dict]]) -> bool:
    return got.keys() == want.keys() and all(_same_rows(got[k], want[k]) for k in got)
