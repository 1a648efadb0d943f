"""The application checks a remote caller's arguments once (`Application.request`), and the
clipping every surface quotes values with."""

from __future__ import annotations

import pytest

from daedalus.app.application import USE_CASES
from daedalus.app.arguments import ArgumentsError, check_arguments, violations
from daedalus.app.clip import CLIP, clip, clip_reports, clip_text, clipped

CASES = {case.name: case for case in USE_CASES}


def test_every_violation_is_found_in_order_and_worded_both_ways() -> None:
    found = violations(
        CASES["day_preview"],
        {"zz": 1, "service": "a\x00", "day": "2026-1-1", "limit": 5000},
    )
    assert [(v.field, v.rule) for v in found] == [
        ("zz", "unknown"),
        ("day", "pattern"),
        ("day", "format"),
        ("limit", "maximum"),
        ("service", "text"),
    ]
    assert found[0].predicate() == "is not an argument (known: service, day, limit)"
    assert found[1].sentence() == "day must be a date YYYY-MM-DD"
    assert found[3].sentence() == "limit must be at most 1000"
    assert found[3].predicate() == "is more than the maximum of 1000"
    assert found[4].sentence() == "service must be text without NUL or lone surrogate characters"


def test_a_missing_argument_and_an_enum() -> None:
    found = violations(CASES["pipeline_compile"], {"engine": "spark"})
    assert [(v.field, v.rule) for v in found] == [("service", "missing"), ("engine", "enum")]
    assert found[1].sentence() == "engine must be one of duckdb, polars"
    assert found[1].predicate() == "is not one of ['duckdb', 'polars']"


def test_check_raises_listing_every_violation_and_converts_integers() -> None:
    with pytest.raises(ArgumentsError) as caught:
        check_arguments(CASES["job_list"], {"limit": 0, "x": 1})
    assert caught.value.kind == "invalid_argument"
    assert caught.value.data["field"] == "x"
    assert len(caught.value.data["errors"]) == 2
    arguments = check_arguments(CASES["job_list"], {"limit": 5.0})
    assert arguments == {"limit": 5} and isinstance(arguments["limit"], int)


def test_clipping() -> None:
    long = "x" * (CLIP + 50)
    assert clip(long) == "x" * CLIP + "..."
    assert clip(long, mark="…") == "x" * CLIP + "…"
    assert clip_text(f"unknown name '{long}'") == f"unknown name '{'x' * (CLIP - 1)}…"
    assert clipped(list(range(60)))[-1] == "… 10 more"
    report = clip_reports({"jobs": [{"error": {"message": long}, "rows": [long]}]})
    assert report["jobs"][0]["error"]["message"] == "x" * CLIP + "…"
    assert report["jobs"][0]["rows"] == [long]  # data is left whole
