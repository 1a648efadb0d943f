"""Staleness: a trained day's input digest changes exactly when a row it can see changes.

Small real parquet files in tmp dirs: appending later data, touching or re-encoding a file
leaves every day current; a changed row makes stale exactly the days whose visible range holds
its hour; renaming a file or moving rows between files counts; null times never count; the
cache reads each file version once.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from daedalus.catalog.model import AggFunction
from daedalus.pipeline import staleness
from daedalus.pipeline.staleness import (
    DAY_US,
    HOUR_US,
    INPUTS_KEY,
    FileFingerprint,
    FingerprintCache,
    SourceFingerprint,
    VisibleRange,
    day_input_digest,
    day_input_digests,
    explain_input_changes,
    explain_stale,
    source_fingerprints,
)
from daedalus.pit.errors import PitError
from daedalus.pit.spec import AggregationSpec, AsOfSpec, SourceSpec

D0 = dt.date(2026, 10, 1)
MINUTE_US = 60_000_000
UTC_US = pa.timestamp("us", tz="UTC")
LOOKBACKS = {
    "same day": VisibleRange(0),
    "1 day": VisibleRange(DAY_US),
    "1 day + 5 min": VisibleRange(DAY_US + 5 * MINUTE_US),
    "7 days": VisibleRange(7 * DAY_US),
    "lifetime": VisibleRange.lifetime(),
}
DAYS = [D0 + dt.timedelta(days=i) for i in range(-3, 16)]


def at(day: dt.date, hour: int = 0, minute: int = 0) -> int:
    """Microseconds since the epoch of `day` at `hour:minute` UTC."""
    return (day - dt.date(1970, 1, 1)).days * DAY_US + hour * HOUR_US + minute * MINUTE_US


def d(offset: int) -> dt.date:
    return D0 + dt.timedelta(days=offset)


def events(times: Sequence[int | None], *, seed: int = 0) -> pa.Table:
    """An event log like the demo's: ids, an action string, a dwell with some nulls, a time."""
    n = len(times)
    rng = np.random.default_rng(seed)
    dwell = rng.random(n) * 1000
    return pa.table(
        {
            "user_id": pa.array(rng.integers(0, 50, n), pa.int64()),
            "artwork_id": pa.array(rng.integers(0, 50, n), pa.int64()),
            "action": pa.array(rng.choice(["view", "like", "bookmark"], n).tolist(), pa.string()),
            "dwell_ms": pa.array(dwell, mask=rng.random(n) < 0.2),
            "event_ts": pa.array(times, UTC_US),
        }
    )


def hourly(first: dt.date, days: int, per_hour: int = 2) -> list[int]:
    """`per_hour` event times in every hour of `days` days from `first`, in time order."""
    step = HOUR_US // per_hour
    return [at(first) + i * step + 7 for i in range(days * 24 * per_hour)]


def write(path: Path, table: pa.Table, **options: Any) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, **options)
    return str(path)


def digests(
    files: Sequence[str], visible: VisibleRange, days: Sequence[dt.date] = DAYS, **kw: Any
) -> dict[dt.date, str]:
    fp = source_fingerprints(files, "event_ts", threads=1, **kw)
    return {day: day_input_digest(fp, day, visible) for day in days}


def changed(before: dict[dt.date, str], after: dict[dt.date, str]) -> set[dt.date]:
    return {day for day in before if before[day] != after[day]}


def span(first: dt.date, last: dt.date) -> set[dt.date]:
    return {first + dt.timedelta(days=i) for i in range((last - first).days + 1)}


def with_value(table: pa.Table, rows: Sequence[int], column: str, value: Any) -> pa.Table:
    values = table[column].to_pylist()
    for r in rows:
        values[r] = value
    i = table.schema.get_field_index(column)
    return table.set_column(i, table.schema.field(i), pa.array(values, table[column].type))


def rows_in_hour(table: pa.Table, day: dt.date, hour: int) -> list[int]:
    ts = table["event_ts"].cast(pa.int64()).to_pylist()
    lo = at(day, hour)
    return [i for i, t in enumerate(ts) if t is not None and lo <= t < lo + HOUR_US]


# --------------------------------------------------------------------------- visible ranges


class TestVisibleRange:
    def test_hours_overlapping_the_range_include_the_partial_first_hour(self) -> None:
        first, end = VisibleRange(DAY_US + 5 * MINUTE_US).hours(d(2))
        assert first == at(d(0), 23) // HOUR_US  # 23:55 of two days before lies in hour 23
        assert end == at(d(3)) // HOUR_US

    def test_a_lifetime_range_has_no_first_hour(self) -> None:
        assert VisibleRange.lifetime().hours(d(0)) == (None, at(d(1)) // HOUR_US)

    def test_describe_names_the_exact_bounds(self) -> None:
        assert (
            VisibleRange(30 * DAY_US + 5 * MINUTE_US).describe(dt.date(2026, 10, 3))
            == "[2026-09-02 23:55, 2026-10-04)"
        )
        assert VisibleRange.spine().describe(d(2)) == "[2026-10-03, 2026-10-04)"
        assert VisibleRange.lifetime().describe(d(2)) == "everything before 2026-10-04"

    def test_of_specs_takes_the_longest_window_plus_delay(self) -> None:
        source = SourceSpec("events", "event_ts", pa.schema([("event_ts", UTC_US)]))
        short = AggregationSpec("a", AggFunction.COUNT, ("user_id",), source, HOUR_US)
        week = AggregationSpec(
            "b", AggFunction.COUNT, ("user_id",), source, 7 * DAY_US, delay_us=5 * MINUTE_US
        )
        assert VisibleRange.of_specs([short, week]).lookback_us == 7 * DAY_US + 5 * MINUTE_US

    def test_of_specs_is_lifetime_for_a_lifetime_window_or_an_asof_without_ttl(self) -> None:
        source = SourceSpec("events", "event_ts", pa.schema([("event_ts", UTC_US)]))
        week = AggregationSpec("b", AggFunction.COUNT, ("user_id",), source, 7 * DAY_US)
        lifetime = AggregationSpec("c", AggFunction.LAST, ("user_id",), source, None, "action")
        asof = AsOfSpec("d", "action", ("user_id",), source)
        asof_ttl = AsOfSpec("e", "action", ("user_id",), source, ttl_us=2 * DAY_US, delay_us=7)
        assert VisibleRange.of_specs([week, lifetime]).lookback_us is None
        assert VisibleRange.of_specs([asof]).lookback_us is None
        assert VisibleRange.of_specs([asof_ttl]).lookback_us == 2 * DAY_US + 7

    def test_of_specs_refuses_no_specs(self) -> None:
        with pytest.raises(ValueError, match="at least one"):
            VisibleRange.of_specs([])


# --------------------------------------------------------------------------- (a) appending


class TestAppendingLaterData:
    @pytest.mark.parametrize("visible", LOOKBACKS.values(), ids=LOOKBACKS.keys())
    def test_a_new_file_of_later_rows_leaves_every_trained_day_current(
        self, tmp_path: Path, visible: VisibleRange
    ) -> None:
        old = [
            write(tmp_path / f"part-{d(i)}.parquet", events(hourly(d(i), 1), seed=i + 3))
            for i in range(-3, 10)
        ]
        trained = [d(i) for i in range(-3, 10)]
        before = digests(old, visible, trained)
        new = write(tmp_path / f"part-{d(10)}.parquet", events(hourly(d(10), 1), seed=10))
        # a later file whose name sorts first changes nothing either: it holds no visible hour
        first = write(tmp_path / "aaa.parquet", events(hourly(d(11), 2), seed=11))
        after = digests(sorted([first, *old, new]), visible, trained)
        assert before == after

    def test_the_new_days_see_the_new_file(self, tmp_path: Path) -> None:
        old = [write(tmp_path / "a.parquet", events(hourly(d(0), 5)))]
        new = write(tmp_path / "b.parquet", events(hourly(d(5), 1), seed=1))
        before = digests(old, VisibleRange(DAY_US))
        after = digests([*old, new], VisibleRange(DAY_US))
        assert changed(before, after) == {d(5), d(6)}

    def test_a_day_with_no_rows_in_range_has_a_stable_digest(self, tmp_path: Path) -> None:
        file = write(tmp_path / "a.parquet", events(hourly(d(3), 1)))
        before = digests([file], VisibleRange(0))
        assert before[d(0)] == before[d(1)] == before[d(10)]  # nothing visible
        assert before[d(3)] != before[d(0)]


# --------------------------------------------------------------------------- (b) changed rows


EXPECTED_STALE = {
    "same day": span(d(3), d(3)),
    "1 day": span(d(3), d(4)),
    "1 day + 5 min": span(d(3), d(4)),
    "7 days": span(d(3), d(10)),
    "lifetime": span(d(3), DAYS[-1]),
}


class TestChangedRows:
    @pytest.mark.parametrize("name", LOOKBACKS)
    def test_a_changed_value_makes_stale_exactly_the_days_that_see_its_hour(
        self, tmp_path: Path, name: str
    ) -> None:
        visible = LOOKBACKS[name]
        table = events(hourly(d(-3), 18))
        path = tmp_path / "events.parquet"
        before = digests([write(path, table)], visible)
        rows = rows_in_hour(table, d(3), 13)
        after = digests([write(path, with_value(table, rows, "dwell_ms", -1.0))], visible)
        assert changed(before, after) == EXPECTED_STALE[name]

    @pytest.mark.parametrize(
        ("column", "value"),
        [("action", "zzz"), ("user_id", 999), ("dwell_ms", None), ("artwork_id", None)],
    )
    def test_any_column_counts_nulls_included(
        self, tmp_path: Path, column: str, value: Any
    ) -> None:
        table = events(hourly(d(-3), 18))
        path = tmp_path / "events.parquet"
        before = digests([write(path, table)], VisibleRange(DAY_US))
        rows = rows_in_hour(table, d(3), 13)[:1]
        after = digests([write(path, with_value(table, rows, column, value))], VisibleRange(DAY_US))
        assert changed(before, after) == {d(3), d(4)}

    def test_a_row_moved_to_another_hour_changes_both_hours(self, tmp_path: Path) -> None:
        table = events(hourly(d(0), 10))
        path = tmp_path / "events.parquet"
        before = digests([write(path, table)], VisibleRange(0))
        row = rows_in_hour(table, d(2), 5)[0]
        moved = with_value(table, [row], "event_ts", at(d(6), 5))
        after = digests([write(path, moved)], VisibleRange(0))
        assert changed(before, after) == {d(2), d(6)}

    def test_a_deleted_row_makes_its_days_stale(self, tmp_path: Path) -> None:
        table = events(hourly(d(0), 10))
        path = tmp_path / "events.parquet"
        before = digests([write(path, table)], VisibleRange(0))
        row = rows_in_hour(table, d(4), 0)[0]
        kept = table.filter(pa.array([i != row for i in range(table.num_rows)]))
        after = digests([write(path, kept)], VisibleRange(0))
        assert changed(before, after) == {d(4)}

    def test_the_lower_edge_is_conservative_by_less_than_an_hour(self, tmp_path: Path) -> None:
        # day d(6) with a 1 day + 5 min lookback sees [d(4) 23:55, d(7)): a row at d(4) 23:50
        # is not visible, but its hour overlaps the range, so the day counts it; a row at
        # 22:30 is in an hour wholly outside and does not count
        visible = VisibleRange(DAY_US + 5 * MINUTE_US)
        times = [at(d(4), 22, 30), at(d(4), 23, 50), at(d(6), 12)]
        path = tmp_path / "events.parquet"
        table = events(times)
        before = digests([write(path, table)], visible)
        after_edge = digests([write(path, with_value(table, [1], "user_id", 7))], visible)
        assert d(6) in changed(before, after_edge)
        after_outside = digests([write(path, with_value(table, [0], "user_id", 7))], visible)
        assert changed(before, after_outside) == {d(4), d(5)}


# --------------------------------------------------------------------------- (c) same content


class TestSameContent:
    def test_rewriting_the_same_rows_or_touching_the_file_changes_nothing(
        self, tmp_path: Path
    ) -> None:
        table = events(hourly(d(0), 5))
        path = tmp_path / "events.parquet"
        before = digests([write(path, table)], VisibleRange.lifetime())
        mtime = os.stat(path).st_mtime_ns
        write(path, table)
        os.utime(path, ns=(mtime + 10**9, mtime + 10**9))
        assert os.stat(path).st_mtime_ns != mtime
        assert digests([str(path)], VisibleRange.lifetime()) == before
        os.utime(path, ns=(mtime + 5 * 10**9, mtime + 5 * 10**9))
        assert digests([str(path)], VisibleRange.lifetime()) == before

    @pytest.mark.parametrize(
        "rewrite",
        [
            lambda t, p: pq.write_table(t, p, row_group_size=7, compression="gzip"),
            lambda t, p: pq.write_table(t, p, compression="zstd", use_dictionary=False),
            lambda t, p: pq.write_table(t, p, compression="none", data_page_size=64),
            lambda t, p: pq.write_table(t.select(list(reversed(t.column_names))), p),
            lambda t, p: pq.write_table(
                t.set_column(2, "action", t["action"].dictionary_encode()), p
            ),
            lambda t, p: pq.write_table(
                t.set_column(2, "action", t["action"].cast(pa.large_string())), p
            ),
        ],
        ids=["row groups+gzip", "plain", "uncompressed", "columns reordered", "dict", "large"],
    )
    def test_a_different_encoding_of_the_same_rows_changes_nothing(
        self, tmp_path: Path, rewrite: Callable[[pa.Table, Path], None]
    ) -> None:
        table = events(hourly(d(0), 5))
        path = tmp_path / "events.parquet"
        write(path, table)
        before = source_fingerprints([str(path)], "event_ts").files[0]
        rewrite(table, path)
        after = source_fingerprints([str(path)], "event_ts").files[0]
        assert after.records == before.records
        assert after.digests() == before.digests()

    def test_a_file_out_of_time_order_hashes_like_its_rows_grouped_by_hour(
        self, tmp_path: Path
    ) -> None:
        # only rows with the same time can tie, and they share an hour: the order between
        # hours never changes an answer, the order within an hour may
        table = events(hourly(d(0), 3, per_hour=5))
        shuffled = table.take(pa.array(np.random.default_rng(1).permutation(table.num_rows)))
        hours = np.asarray(shuffled["event_ts"].cast(pa.int64())) // HOUR_US
        grouped = shuffled.take(pa.array(np.argsort(hours, kind="stable")))
        path = tmp_path / "events.parquet"
        one = source_fingerprints([write(path, shuffled)], "event_ts").files[0]
        two = source_fingerprints([write(path, grouped)], "event_ts").files[0]
        three = source_fingerprints([write(path, table)], "event_ts").files[0]
        assert one.records == two.records
        assert one.records != three.records  # the order within hours differs

    def test_rows_reordered_only_between_hours_keep_their_digests(self, tmp_path: Path) -> None:
        times = [at(d(0), 1, 5), at(d(0), 2, 5), at(d(0), 1, 10), at(d(1), 3)]
        table = events(times)
        path = tmp_path / "events.parquet"
        before = source_fingerprints([write(path, table)], "event_ts").files[0]
        swapped = table.take(pa.array([1, 0, 2, 3]))  # hour 1 rows keep their order
        after = source_fingerprints([write(path, swapped)], "event_ts").files[0]
        assert after.records == before.records


# --------------------------------------------------------------------------- read order


class TestReadOrder:
    def test_row_order_within_an_hour_counts(self, tmp_path: Path) -> None:
        times = [at(d(2), 9, 0), at(d(2), 9, 0), at(d(5), 1)]  # a tie: read order decides
        table = events(times)
        path = tmp_path / "events.parquet"
        before = digests([write(path, table)], VisibleRange(DAY_US))
        after = digests([write(path, table.take(pa.array([1, 0, 2])))], VisibleRange(DAY_US))
        assert changed(before, after) == {d(2), d(3)}

    def test_the_spine_counts_its_rows_order_across_hours_a_source_does_not(
        self, tmp_path: Path
    ) -> None:
        # a day writes its spine rows in the order they are read: reordering them across
        # hours changes the day's file, so it counts for the spine (and only for that day)
        table = events([at(d(1), 3), at(d(1), 9), at(d(2), 4), at(d(2), 5)])
        path = tmp_path / "spine.parquet"
        write(path, table)
        spine_before = digests([str(path)], VisibleRange.spine())
        source_before = digests([str(path)], VisibleRange(0))
        write(path, table.take(pa.array([1, 0, 2, 3])))
        assert changed(spine_before, digests([str(path)], VisibleRange.spine())) == {d(1)}
        assert digests([str(path)], VisibleRange(0)) == source_before
        fp = source_fingerprints([str(path)], "event_ts").files[0]
        assert fp.days.tolist() == [at(d(1)) // DAY_US, at(d(2)) // DAY_US]

    def test_the_spine_order_of_an_unsorted_file_is_its_read_order(self, tmp_path: Path) -> None:
        table = events([at(d(1), 9), at(d(2), 5), at(d(1), 3), at(d(2), 4)])
        path = tmp_path / "spine.parquet"
        write(path, table)
        before = digests([str(path)], VisibleRange.spine())
        write(path, table.take(pa.array([0, 2, 1, 3])))  # same order within each day
        assert digests([str(path)], VisibleRange.spine()) == before
        write(path, table.take(pa.array([2, 0, 1, 3])))  # day 1 reordered
        assert changed(before, digests([str(path)], VisibleRange.spine())) == {d(1)}

    def test_renaming_a_file_makes_stale_the_days_that_see_its_rows(self, tmp_path: Path) -> None:
        a = write(tmp_path / "a.parquet", events(hourly(d(0), 5)))
        b = write(tmp_path / "b.parquet", events(hourly(d(5), 5), seed=1))
        before = digests([a, b], VisibleRange(0))
        c = str(tmp_path / "c.parquet")
        os.rename(b, c)
        after = digests([a, c], VisibleRange(0))
        assert changed(before, after) == span(d(5), d(9))

    def test_moving_rows_to_another_file_makes_their_days_stale(self, tmp_path: Path) -> None:
        first = events(hourly(d(0), 5))
        second = events(hourly(d(5), 5), seed=1)
        a = write(tmp_path / "a.parquet", first)
        b = write(tmp_path / "b.parquet", second)
        before = digests([a, b], VisibleRange(0))
        day4 = rows_in_hour(first, d(4), 0)[0]
        keep = pa.array([i < day4 for i in range(first.num_rows)])
        write(tmp_path / "a.parquet", first.filter(keep))
        write(tmp_path / "b.parquet", pa.concat_tables([first.filter(pc_not(keep)), second]))
        after = digests([a, b], VisibleRange(0))
        assert changed(before, after) == {d(4)}

    def test_files_are_hashed_in_the_order_given(self, tmp_path: Path) -> None:
        a = write(tmp_path / "a.parquet", events([at(d(1), 3)]))
        b = write(tmp_path / "b.parquet", events([at(d(1), 3)], seed=1))
        forward = digests([a, b], VisibleRange(0))
        backward = digests([b, a], VisibleRange(0))
        assert forward[d(1)] != backward[d(1)]

    def test_paths_relative_to_a_root_survive_moving_the_workspace(self, tmp_path: Path) -> None:
        one = tmp_path / "one"
        files = [write(one / "events" / "a.parquet", events(hourly(d(0), 3)))]
        shutil.copytree(one, tmp_path / "two")
        moved = [str(tmp_path / "two" / "events" / "a.parquet")]
        assert digests(files, VisibleRange(0), root=one) == digests(
            moved, VisibleRange(0), root=tmp_path / "two"
        )
        assert digests(files, VisibleRange(0))[d(1)] != digests(moved, VisibleRange(0))[d(1)]


def pc_not(mask: pa.Array) -> pa.Array:
    return pa.array([not v for v in mask.to_pylist()])


# --------------------------------------------------------------------------- null times


class TestNullTimes:
    def test_rows_without_a_time_are_never_visible(self, tmp_path: Path) -> None:
        table = events(hourly(d(0), 5))
        path = tmp_path / "events.parquet"
        before = digests([write(path, table)], VisibleRange.lifetime())
        extra = events([None, None, None], seed=3)
        mixed = pa.concat_tables([extra.slice(0, 2), table, extra.slice(2)])
        after = digests([write(path, mixed)], VisibleRange.lifetime())
        assert after == before
        changed_nulls = with_value(mixed, [0, 1], "user_id", 12345)
        assert digests([write(path, changed_nulls)], VisibleRange.lifetime()) == before
        fp = source_fingerprints([str(path)], "event_ts").files[0]
        assert (fp.rows, fp.null_timestamps) == (table.num_rows, 3)

    def test_a_file_of_null_times_only_has_no_hours(self, tmp_path: Path) -> None:
        path = write(tmp_path / "nulls.parquet", events([None, None]))
        fp = source_fingerprints([path], "event_ts").files[0]
        assert (fp.records, fp.rows, fp.null_timestamps) == (b"", 0, 2)
        assert len(fp.hours) == 0

    def test_a_null_value_in_one_hour_does_not_change_other_hours(self, tmp_path: Path) -> None:
        table = events(hourly(d(0), 3)).drop_columns(["dwell_ms"])
        table = table.append_column("score", pa.array(np.arange(table.num_rows), pa.int32()))
        path = tmp_path / "events.parquet"
        before = source_fingerprints([write(path, table)], "event_ts").files[0].digests()
        row = rows_in_hour(table, d(1), 4)[0]
        after = (
            source_fingerprints([write(path, with_value(table, [row], "score", None))], "event_ts")
            .files[0]
            .digests()
        )
        assert {h for h in before if before[h] != after[h]} == {at(d(1), 4) // HOUR_US}


# --------------------------------------------------------------------------- column types


class TestColumnTypes:
    def test_time_units_dates_and_naive_times_bucket_by_hour(self) -> None:
        micros = [at(d(0), 5, 30), at(d(2), 23, 59)]
        hours = [at(d(0), 5) // HOUR_US, at(d(2), 23) // HOUR_US]
        for t in (
            pa.timestamp("s", tz="UTC"),
            pa.timestamp("ms"),
            pa.timestamp("us", tz="UTC"),
            pa.timestamp("ns", tz="Europe/Paris"),
        ):
            per_unit = {"s": 10**-6, "ms": 10**-3, "us": 1, "ns": 1000}[t.unit]
            values = pa.array([int(m * per_unit) for m in micros], pa.int64()).cast(t)
            fp = FileFingerprint.of_table(pa.table({"ts": values}), "ts")
            assert fp.hours.tolist() == hours, t
        dates = pa.table({"ts": pa.array([d(0), d(2)], pa.date32())})
        assert FileFingerprint.of_table(dates, "ts").hours.tolist() == [
            at(d(0)) // HOUR_US,
            at(d(2)) // HOUR_US,
        ]

    def test_times_before_the_epoch_bucket_downwards(self) -> None:
        table = pa.table({"ts": pa.array([-1, -HOUR_US, -HOUR_US - 1], UTC_US)})
        assert FileFingerprint.of_table(table, "ts").hours.tolist() == [-2, -1]

    def test_list_and_struct_columns_change_only_their_hour(self) -> None:
        times = pa.array([at(d(0), 1), at(d(0), 2), at(d(0), 2)], UTC_US)
        tags = pa.array([["a", "b"], None, ["c"]], pa.list_(pa.string()))
        info = pa.array([{"x": 1, "y": "p"}, {"x": 2, "y": None}, None])
        base = FileFingerprint.of_table(pa.table({"ts": times, "tags": tags, "info": info}), "ts")
        tags2 = pa.array([["a", "b"], None, ["c", "d"]], pa.list_(pa.string()))
        info2 = pa.array([{"x": 1, "y": "q"}, {"x": 2, "y": None}, None])
        one = FileFingerprint.of_table(pa.table({"ts": times, "tags": tags2, "info": info}), "ts")
        two = FileFingerprint.of_table(pa.table({"ts": times, "tags": tags, "info": info2}), "ts")
        hour1, hour2 = at(d(0), 1) // HOUR_US, at(d(0), 2) // HOUR_US
        assert base.digests()[hour1] == one.digests()[hour1] != two.digests()[hour1]
        assert base.digests()[hour2] == two.digests()[hour2] != one.digests()[hour2]

    def test_encodings_of_the_same_values_agree(self) -> None:
        times = pa.array([at(d(0), 1), at(d(0), 2), at(d(0), 2)], UTC_US)
        words = ["a", None, "ccc"]
        lists = [[1], None, [2, 3]]
        base = FileFingerprint.of_table(
            pa.table(
                {"ts": times, "w": pa.array(words), "l": pa.array(lists, pa.list_(pa.int64()))}
            ),
            "ts",
        )
        for w, lst in [
            (pa.array(words, pa.large_string()), pa.array(lists, pa.large_list(pa.int64()))),
            (pa.array(words).dictionary_encode(), pa.array(lists, pa.list_(pa.int64()))),
            (pa.array(words, pa.string_view()), pa.array(lists, pa.list_(pa.int64()))),
        ]:
            other = FileFingerprint.of_table(pa.table({"ts": times, "w": w, "l": lst}), "ts")
            assert other.records == base.records, (w.type, lst.type)

    def test_null_slots_hash_alike_whatever_bytes_back_them(self) -> None:
        times = pa.array([at(d(0), 1), at(d(0), 1)], UTC_US)
        validity = pa.array([True, False]).buffers()[1]
        clean = pa.Array.from_buffers(
            pa.int64(), 2, [validity, pa.py_buffer(np.array([5, 0], np.int64).tobytes())], 1
        )
        dirty = pa.Array.from_buffers(
            pa.int64(), 2, [validity, pa.py_buffer(np.array([5, 99], np.int64).tobytes())], 1
        )
        offsets = pa.py_buffer(np.array([0, 1, 4], np.int32).tobytes())
        text = pa.Array.from_buffers(pa.string(), 2, [validity, offsets, pa.py_buffer(b"xgar")], 1)
        assert text.to_pylist() == ["x", None]
        a = FileFingerprint.of_table(pa.table({"ts": times, "v": clean, "s": ["x", None]}), "ts")
        b = FileFingerprint.of_table(pa.table({"ts": times, "v": dirty, "s": text}), "ts")
        assert a.records == b.records

    def test_a_table_hashes_like_a_file_of_the_same_rows(self, tmp_path: Path) -> None:
        table = events(hourly(d(0), 2))
        path = write(tmp_path / "events.parquet", table)
        from_file = source_fingerprints([path], "event_ts").files[0]
        assert FileFingerprint.of_table(table, "event_ts").records == from_file.records

    def test_columns_limit_what_is_hashed(self, tmp_path: Path) -> None:
        table = events(hourly(d(0), 2))
        path = tmp_path / "events.parquet"
        cols = ["user_id", "action"]
        before = source_fingerprints([write(path, table)], "event_ts", columns=cols).files[0]
        junk = with_value(table, [0, 5, 9], "dwell_ms", 1e9)
        after = source_fingerprints([write(path, junk)], "event_ts", columns=cols).files[0]
        assert after.records == before.records
        full = source_fingerprints([str(path)], "event_ts").files[0]
        assert full.records != after.records

    def test_a_declared_column_missing_from_a_file_is_hashed_as_absent(
        self, tmp_path: Path
    ) -> None:
        table = events(hourly(d(0), 1))
        path = write(tmp_path / "events.parquet", table)
        fp = source_fingerprints([path], "event_ts", columns=["user_id", "nope"]).files[0]
        assert fp.rows == table.num_rows


class TestErrors:
    def test_a_missing_time_column_names_the_file(self, tmp_path: Path) -> None:
        path = write(tmp_path / "a.parquet", pa.table({"x": [1]}))
        with pytest.raises(PitError, match=r"a\.parquet: time column .event_ts. is missing") as e:
            source_fingerprints([path], "event_ts")
        assert e.value.code == "missing_column"

    def test_a_time_column_that_is_not_a_time_is_refused(self, tmp_path: Path) -> None:
        path = write(tmp_path / "a.parquet", pa.table({"event_ts": ["2026-10-01"]}))
        with pytest.raises(PitError, match="not a timestamp or date") as e:
            source_fingerprints([path], "event_ts")
        assert e.value.code == "bad_type"

    def test_an_unreadable_or_missing_file_is_a_bad_source(self, tmp_path: Path) -> None:
        garbage = tmp_path / "a.parquet"
        garbage.write_bytes(b"not parquet at all")
        for path in (garbage, tmp_path / "missing.parquet"):
            with pytest.raises(PitError, match=path.name) as e:
                source_fingerprints([str(path)], "event_ts")
            assert e.value.code == "bad_source"


# --------------------------------------------------------------------------- the cache


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every file `source_fingerprints` reads, in order."""
    seen: list[str] = []
    real = staleness._read_file

    def counting(path: str, columns: Sequence[str] | None, reader: Any) -> pa.Table:
        seen.append(path)
        return real(path, columns, reader)

    monkeypatch.setattr(staleness, "_read_file", counting)
    return seen


class TestFingerprintCache:
    def files(self, root: Path) -> list[str]:
        return [
            write(root / "data" / f"part-{i}.parquet", events(hourly(d(i), 1), seed=i + 3))
            for i in range(3)
        ]

    def test_a_second_run_reads_no_file(self, tmp_path: Path, reads: list[str]) -> None:
        files = self.files(tmp_path)
        cache = FingerprintCache(tmp_path / "cache.json")
        first = source_fingerprints(files, "event_ts", cache=cache)
        cache.save()
        assert sorted(reads) == files
        reads.clear()
        again = FingerprintCache(tmp_path / "cache.json")
        assert again.discarded is None and len(again) == 3
        second = source_fingerprints(files, "event_ts", cache=again)
        assert reads == []
        assert second == first

    def test_a_touched_file_is_read_again_with_the_same_digests(
        self, tmp_path: Path, reads: list[str]
    ) -> None:
        files = self.files(tmp_path)
        cache = FingerprintCache(tmp_path / "cache.json")
        first = source_fingerprints(files, "event_ts", cache=cache)
        reads.clear()
        mtime = os.stat(files[1]).st_mtime_ns + 10**9
        os.utime(files[1], ns=(mtime, mtime))
        second = source_fingerprints(files, "event_ts", cache=cache)
        assert reads == [files[1]]
        assert [f.records for f in second.files] == [f.records for f in first.files]
        assert second.files[1].mtime_ns == mtime

    def test_a_changed_time_column_or_column_set_is_its_own_entry(
        self, tmp_path: Path, reads: list[str]
    ) -> None:
        files = self.files(tmp_path)[:1]
        cache = FingerprintCache(tmp_path / "cache.json")
        source_fingerprints(files, "event_ts", cache=cache)
        source_fingerprints(files, "event_ts", cache=cache, columns=["user_id"])
        source_fingerprints(files, "event_ts", cache=cache, columns=["user_id"])
        source_fingerprints(files, "event_ts", cache=cache)
        assert len(reads) == 2

    @pytest.mark.parametrize(
        "content",
        [
            b"{not json",
            b"[]",
            b'{"format": "daedalus.staleness/1", "files": {"x": 1}}',
            b'{"format": "daedalus.staleness/0", "files": {}}',
            b"\xff\xfe",
        ],
    )
    def test_a_corrupt_cache_is_ignored_and_rebuilt(
        self, tmp_path: Path, reads: list[str], content: bytes
    ) -> None:
        files = self.files(tmp_path)
        path = tmp_path / "cache.json"
        path.write_bytes(content)
        cache = FingerprintCache(path)
        assert cache.discarded is not None
        source_fingerprints(files, "event_ts", cache=cache)
        assert len(reads) == 3
        cache.save()
        rebuilt = FingerprintCache(path)
        assert rebuilt.discarded is None and len(rebuilt) == 3

    def test_a_damaged_entry_is_read_again(self, tmp_path: Path, reads: list[str]) -> None:
        files = self.files(tmp_path)
        path = tmp_path / "cache.json"
        cache = FingerprintCache(path)
        first = source_fingerprints(files, "event_ts", cache=cache)
        cache.save()
        data = json.loads(path.read_text())
        data["files"][files[0]]["fingerprints"]["event_ts"]["records"] = "!!!"
        data["files"][files[2]]["fingerprints"]["event_ts"]["records"] = "AAAA"  # 3 bytes
        path.write_text(json.dumps(data))
        reads.clear()
        second = source_fingerprints(files, "event_ts", cache=FingerprintCache(path))
        assert reads == [files[0], files[2]]
        assert second == first

    def test_save_is_atomic_and_forgets_deleted_files(self, tmp_path: Path) -> None:
        files = self.files(tmp_path)
        path = tmp_path / "state" / "cache.json"
        cache = FingerprintCache(path)
        source_fingerprints(files, "event_ts", cache=cache)
        cache.save()
        os.unlink(files[0])
        cache.save()
        assert len(FingerprintCache(path)) == 2
        assert sorted(p.name for p in path.parent.iterdir()) == ["cache.json"]


# --------------------------------------------------------------------------- explanations


class TestExplain:
    VISIBLE = {  # noqa: RUF012
        "user_activity": VisibleRange(30 * DAY_US + 5 * MINUTE_US),
        "user_profile": VisibleRange.lifetime(),
        "spine": VisibleRange.spine(),
    }
    DAY = dt.date(2026, 10, 3)

    def identity(self, **inputs: str) -> dict[str, Any]:
        digests = {"user_activity": "a", "user_profile": "p", "spine": "s"} | inputs
        return {
            "contract_hash": "c",
            "definition_hash": "d",
            "store_versions": {"artwork_embeddings": "3"},
            INPUTS_KEY: digests,
        }

    def test_a_current_day_has_no_reason(self) -> None:
        assert explain_stale(self.identity(), self.identity(), self.DAY, self.VISIBLE) == []

    def test_a_changed_source_is_named_with_the_rows_the_day_sees(self) -> None:
        reasons = explain_stale(
            self.identity(), self.identity(user_activity="b"), self.DAY, self.VISIBLE
        )
        assert reasons == [
            "inputs of user_activity changed (rows visible to 2026-10-03: "
            "[2026-09-02 23:55, 2026-10-04))"
        ]
        reasons = explain_stale(
            self.identity(), self.identity(user_profile="q", spine="t"), self.DAY, self.VISIBLE
        )
        assert reasons == [
            "inputs of spine changed (rows visible to 2026-10-03: [2026-10-03, 2026-10-04))",
            "inputs of user_profile changed (rows visible to 2026-10-03: "
            "everything before 2026-10-04)",
        ]

    def test_definitions_contract_and_stores_are_explained(self) -> None:
        new = self.identity() | {
            "contract_hash": "c2",
            "definition_hash": "d2",
            "store_versions": {"artwork_embeddings": "4"},
        }
        assert explain_stale(self.identity(), new, self.DAY, self.VISIBLE) == [
            "the contract (resolved schema) changed",
            "the definitions the service uses changed",
            "embedding store artwork_embeddings changed (version 3 → 4)",
        ]

    def test_an_old_manifest_or_a_missing_day_says_so(self) -> None:
        old = {k: v for k, v in self.identity().items() if k != INPUTS_KEY} | {"inputs_hash": "x"}
        assert explain_stale(old, self.identity(), self.DAY, self.VISIBLE) == [
            "the manifest records no per-source input digests (written by an older version)"
        ]
        assert explain_stale(None, self.identity(), self.DAY, self.VISIBLE) == ["not trained yet"]

    def test_sources_added_or_removed(self) -> None:
        assert explain_input_changes({"a": "1", "b": "2"}, {"a": "1", "c": "3"}, self.DAY, {}) == [
            "source b is no longer used",
            "source c is new to this day (not in its manifest)",
        ]

    def test_day_input_digests_maps_each_source(self, tmp_path: Path) -> None:
        path = write(tmp_path / "e.parquet", events(hourly(d(0), 2)))
        fp = source_fingerprints([path], "event_ts")
        visible = {"b": VisibleRange(0), "a": VisibleRange.lifetime()}
        out = day_input_digests({"a": fp, "b": fp}, visible, d(1))
        assert list(out) == ["a", "b"]
        assert out["b"] == day_input_digest(fp, d(1), VisibleRange(0))
        empty = SourceFingerprint("event_ts", ())
        assert day_input_digest(empty, d(1), VisibleRange(0)) == day_input_digest(
            fp, d(5), VisibleRange(0)
        )
