"""`pipeline.stats`: per-column statistics as plain JSON, the warnings they support over days,
and the HTML report; `pipeline.plan_diff`: the contract diff of two schemas."""

from __future__ import annotations

import datetime as dt
import json
import re

import pyarrow as pa

from daedalus.pipeline.plan_diff import contract_diff, redefined, stale_summary
from daedalus.pipeline.stats import (
    TEXT_CLIP,
    column_stats,
    dataset_report,
    render_html,
    stats_warnings,
)

# ------------------------------------------------------------------------------ column_stats


def test_integers_have_nulls_min_max_mean_and_distinct() -> None:
    s = column_stats(pa.chunked_array([[3, None, 1], [3, 7]], pa.int64()))
    assert s == {"nulls": 1, "min": 1, "max": 7, "mean": 3.5, "distinct": 3}


def test_floats_count_nan_and_write_infinities_as_json_strings() -> None:
    s = column_stats(pa.array([1.5, float("nan"), None, float("inf")]))
    assert s["nulls"] == 1 and s["nan"] == 1
    assert s["min"] == 1.5 and s["max"] == "Infinity"
    assert "distinct" not in s
    json.loads(json.dumps(s, allow_nan=False))  # strict JSON


def test_all_null_and_empty_columns_have_only_their_null_count() -> None:
    assert column_stats(pa.array([None, None], pa.float64())) == {"nulls": 2}
    assert column_stats(pa.array([], pa.int64())) == {"nulls": 0}


def test_text_timestamps_and_booleans() -> None:
    long = "x" * (TEXT_CLIP + 10)
    s = column_stats(pa.array(["b", long, None, "b"]))
    assert s["min"] == "b" and len(s["max"]) == TEXT_CLIP and s["max"].endswith("…")
    assert s["distinct"] == 2
    t = dt.datetime(2026, 10, 1, 12, tzinfo=dt.UTC)
    s = column_stats(pa.array([t, t + dt.timedelta(hours=1)], pa.timestamp("us", tz="UTC")))
    assert s["min"] == "2026-10-01T12:00:00+00:00" and s["max"] == "2026-10-01T13:00:00+00:00"
    assert column_stats(pa.array([True, True])) == {
        "nulls": 0,
        "min": True,
        "max": True,
        "distinct": 1,
    }


def test_lists_report_their_lengths_and_embeddings_their_nulls() -> None:
    s = column_stats(pa.array([[1, 2], [], None, [5]], pa.list_(pa.int64())))
    assert s == {
        "nulls": 1,
        "length_min": 0,
        "length_max": 2,
        "length_mean": 1.0,
        "empty": 1,
    }
    vectors = pa.array([[0.1, 0.2], None], pa.list_(pa.float32(), 2))
    assert column_stats(vectors) == {"nulls": 1}


# ---------------------------------------------------------------------------- stats_warnings


def _day(rows: int, **columns: dict) -> dict:
    return {"rows": rows, "columns": columns}


def test_warnings_name_all_null_constant_and_filters_that_matched_nothing() -> None:
    flt = {"action": ["likes"]}
    days = [
        (
            "2026-10-01",
            "written",
            _day(
                10,
                typo={"function": "count", "filter": flt, "nulls": 0, "min": 0, "max": 0},
                mean_typo={"function": "mean", "filter": flt, "nulls": 10},
                gone={"function": "as_of", "nulls": 10},
                flat={"function": "as_of", "nulls": 0, "min": "US", "max": "US", "distinct": 1},
                fine={"function": "count", "nulls": 0, "min": 0, "max": 3, "distinct": 4},
                lists={"function": "last_n", "filter": flt, "nulls": 0, "length_max": 0},
            ),
        ),
        (
            "2026-10-02",
            "written",
            _day(
                5,
                typo={"function": "count", "filter": flt, "nulls": 0, "min": 0, "max": 0},
                mean_typo={"function": "mean", "filter": flt, "nulls": 5},
                gone={"function": "as_of", "nulls": 5},
                flat={"function": "as_of", "nulls": 0, "min": "US", "max": "US", "distinct": 1},
                fine={"function": "count", "nulls": 0, "min": 1, "max": 1, "distinct": 1},
                lists={"function": "last_n", "filter": flt, "nulls": 0, "length_max": 0},
            ),
        ),
        ("2026-10-03", "empty", _day(0)),
    ]
    warnings = stats_warnings(days)
    by_name = {w.split(":")[0]: w for w in warnings}
    assert "matched no row: the feature is 0 on all 15 rows" in by_name["typo"]
    assert "{action: likes}" in by_name["typo"]
    assert "the feature is null on all 15 rows" in by_name["mean_typo"]
    assert "the feature is an empty list on all 15 rows" in by_name["lists"]
    assert by_name["gone"] == "gone: null on all 15 rows"
    assert by_name["flat"] == "flat: constant ('US') on all 15 rows"
    assert "fine" not in by_name  # 0..3 on one day, 1 on the other: not constant
    assert warnings[0] == "1 day(s) had no spine rows and were written empty: 2026-10-03"


def test_a_column_constant_within_each_day_but_not_across_days_is_not_constant() -> None:
    days = [
        ("d1", "written", _day(3, x={"function": "as_of", "nulls": 0, "min": 1, "max": 1})),
        ("d2", "written", _day(3, x={"function": "as_of", "nulls": 0, "min": 2, "max": 2})),
    ]
    assert stats_warnings(days) == []


def test_text_clipped_alike_is_not_taken_for_a_constant() -> None:
    same = "y" * (TEXT_CLIP - 1) + "…"
    col = {"function": "as_of", "nulls": 0, "min": same, "max": same, "distinct": 2}
    assert stats_warnings([("d1", "written", _day(4, x=col))]) == []


# ------------------------------------------------------------------ dataset_report and HTML


def test_the_report_totals_a_range_and_draws_one_svg_per_feature() -> None:
    days = [
        (
            "2026-10-01",
            {
                "rows": 4,
                "stats": _day(
                    4,
                    a={"type": "BIGINT", "function": "count", "nulls": 0, "min": 0, "max": 5},
                    b={"type": "DOUBLE", "function": "mean", "nulls": 2, "min": 1.5, "max": 2.5},
                ),
            },
        ),
        ("2026-10-02", {"rows": 6}),  # written before statistics were recorded
        (
            "2026-10-03",
            {
                "rows": 6,
                "stats": _day(
                    6,
                    a={"type": "BIGINT", "function": "count", "nulls": 0, "min": 2, "max": 9},
                    b={"type": "DOUBLE", "function": "mean", "nulls": 0, "min": -1.0, "max": 2.0},
                ),
            },
        ),
    ]
    report = dataset_report("svc", days)
    a, b = report["columns"]
    assert (a["name"], a["min"], a["max"], a["rows"]) == ("a", 0, 9, 10)
    assert (b["min"], b["max"], b["nulls"], b["null_share"]) == (-1.0, 2.5, 2, 0.2)
    assert report["days_without_stats"] == ["2026-10-02"]
    page = render_html(report)
    assert re.findall(r'data-feature="([^"]+)"', page) == ["a", "b"]
    assert page.count("<svg") == 2 and "<script" not in page


def test_html_escapes_names_and_values() -> None:
    col = {"type": "VARCHAR", "function": "as_of", "nulls": 0, "min": "<b>", "max": "&"}
    report = dataset_report("s<x>", [("2026-10-01", {"rows": 1, "stats": _day(1, c=col)})])
    page = render_html(report)
    assert "<b>" not in page and "&lt;b&gt;" in page and "s&lt;x&gt;" in page


# ------------------------------------------------------------------------------ contract_diff


def _schema(*fields: tuple[str, pa.DataType]) -> pa.Schema:
    return pa.schema([pa.field(n, t) for n, t in fields])


def test_contract_diff_of_equal_schemas_is_empty() -> None:
    s = _schema(("a", pa.int64()), ("b", pa.float64()))
    diff = contract_diff(s, s)
    assert diff["changed"] is False and diff["breaking"] is False


def test_contract_diff_finds_removed_added_retyped_and_moved_columns() -> None:
    old = _schema(("k", pa.int64()), ("a", pa.int64()), ("b", pa.float64()), ("c", pa.string()))
    new = _schema(("k", pa.int64()), ("c", pa.string()), ("b", pa.int64()), ("d", pa.bool_()))
    diff = contract_diff(old, new)
    assert [x["name"] for x in diff["removed"]] == ["a"]
    assert [x["name"] for x in diff["added"]] == ["d"]
    assert diff["retyped"] == [{"name": "b", "from": "DOUBLE", "to": "BIGINT"}]
    assert diff["reordered"] == ["b", "c"]
    assert diff["renamed"] == []  # a BIGINT removed, a BOOLEAN added: no rename
    assert diff["breaking"] is True


def test_adding_or_moving_columns_is_a_change_but_not_a_break() -> None:
    old = _schema(("a", pa.int64()), ("b", pa.int64()))
    new = _schema(("b", pa.int64()), ("a", pa.int64()), ("c", pa.int64()))
    diff = contract_diff(old, new)
    assert diff["changed"] is True and diff["breaking"] is False
    assert diff["reordered"] == ["a", "b"]
    nullable = contract_diff(
        pa.schema([pa.field("a", pa.int64(), nullable=False)]), _schema(("a", pa.int64()))
    )
    assert nullable["nullability"] == [{"name": "a", "from": False, "to": True}]
    assert nullable["breaking"] is False


def test_redefined_and_stale_summary() -> None:
    recorded = {
        "x": {"function": "count", "window": "7d", "definition": "1"},
        "y": {"function": "max", "definition": "2"},
        "z": {"function": "count"},  # no fingerprint recorded: left out
    }
    now = {
        "x": {"function": "count", "window": "14d", "definition": "3"},
        "y": {"function": "max", "definition": "2"},
        "z": {"function": "count", "definition": "4"},
    }
    assert redefined(recorded, now) == [{"name": "x", "changes": ["window 7d → 14d"]}]
    summary = stale_summary([("d1", ["r1", "r2"]), ("d2", []), ("d3", ["r1"])])
    assert summary == {
        "stale": 2,
        "current": 1,
        "reasons": [{"reason": "r1", "days": ["d1", "d3"]}, {"reason": "r2", "days": ["d1"]}],
    }
