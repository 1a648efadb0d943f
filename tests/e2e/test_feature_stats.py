"""Per-feature statistics in each day's manifest, end to end on the CLI: they equal the values
recomputed from the written parquet; `daeda dataset stats` reads them back over a range (and
writes an HTML report with one chart per feature); a filter typo and empty days make the run
summary warn."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from daedalus.adapters.cli.app import app

REPO = Path(__file__).resolve().parents[2]
START, END = "2026-10-01", "2026-10-03"
DAYS = ["2026-10-01", "2026-10-02", "2026-10-03"]


def daeda(*tokens: str) -> int:
    return app(list(tokens), result_action="return_value")


def train(ws: Path, capsys: pytest.CaptureFixture[str], *extra: str, end: str = END) -> dict:
    capsys.readouterr()
    code = daeda(
        "pipeline", "train", "feed_ranking", "--workspace", str(ws),
        "--start", START, "--end", end, "--json", *extra,
    )  # fmt: skip
    assert code == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stats") / "demo"
    assert daeda("demo", "init", str(root), "--scale", "tiny") == 0
    shutil.copytree(REPO / "feature_views", root / "feature_views")
    return root


@pytest.fixture(scope="module")
def trained(demo: Path) -> Path:
    """The tiny demo trained over three days."""
    args = ["pipeline", "train", "feed_ranking", "--workspace", str(demo)]
    assert app([*args, "--start", START, "--end", END], result_action="return_value") == 0
    return demo


def manifest(ws: Path, day: str) -> dict:
    return json.loads((ws / "out" / "feed_ranking" / f"dt={day}" / "_manifest.json").read_text())


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime | dt.date) else value


def recompute(values: list[Any], type_name: str) -> dict[str, Any]:
    """The statistics of one column, recomputed in plain Python from the parquet's values."""
    out: dict[str, Any] = {"nulls": sum(v is None for v in values)}
    present = [v for v in values if v is not None]
    if not present:
        return out
    if type_name.endswith("]") and type_name.rstrip("]").endswith("["):  # T[]: lengths
        lengths = [len(v) for v in present]
        out.update(
            length_min=min(lengths),
            length_max=max(lengths),
            length_mean=sum(lengths) / len(lengths),
            empty=sum(n == 0 for n in lengths),
        )
        return out
    if "[" in type_name:  # FLOAT[64]: embeddings, nulls only
        return out
    numbers = [v for v in present if not (isinstance(v, float) and math.isnan(v))]
    out["min"], out["max"] = _iso(min(numbers)), _iso(max(numbers))
    if type_name in ("BIGINT", "INTEGER", "DOUBLE", "FLOAT"):
        out["mean"] = math.fsum(present) / len(present)
    if type_name in ("DOUBLE", "FLOAT"):
        out["nan"] = sum(math.isnan(v) for v in present)
    if type_name in ("BIGINT", "INTEGER", "BOOLEAN", "VARCHAR", "TIMESTAMPTZ"):
        out["distinct"] = len(set(present))
    return out


def test_manifest_statistics_equal_values_recomputed_from_the_written_parquet(
    trained: Path,
) -> None:
    ws = trained
    for day in DAYS:
        m = manifest(ws, day)
        table = pq.read_table(ws / "out" / "feed_ranking" / f"dt={day}" / "part-00000.parquet")
        stats = m["stats"]
        assert stats["rows"] == table.num_rows == m["rows"] > 0
        # every feature and embedding column, none of the keys, timestamp or labels
        assert list(stats["columns"]) == table.column_names[4:]
        for name, col in stats["columns"].items():
            expected = recompute(table[name].to_pylist(), col["type"])
            found = {k: v for k, v in col.items() if k in expected or k in _MEASURES}
            assert set(found) == set(expected), (day, name)
            for key, value in expected.items():
                if isinstance(value, float):
                    assert found[key] == pytest.approx(value, rel=1e-12), (day, name, key)
                else:
                    assert found[key] == value, (day, name, key)
        likes = stats["columns"]["user_likes_7d"]
        assert likes["function"] == "count" and likes["filter"] == {"action": ["like"]}
        assert stats["columns"]["artwork_embedding"]["kind"] == "embedding"
        assert stats["columns"]["user_country"]["function"] == "as_of"


_MEASURES = {"nulls", "min", "max", "mean", "nan", "distinct"} | {
    "length_min",
    "length_max",
    "length_mean",
    "empty",
}


def test_dataset_stats_reads_the_manifests_over_a_range(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = trained
    capsys.readouterr()
    assert daeda(
        "dataset", "stats", "feed_ranking", "--workspace", str(ws),
        "--start", "2026-10-02", "--end", "2026-10-03", "--json",
    ) == 0  # fmt: skip
    data = json.loads(capsys.readouterr().out)
    assert [d["day"] for d in data["days"]] == ["2026-10-02", "2026-10-03"]
    manifests = [manifest(ws, d) for d in ("2026-10-02", "2026-10-03")]
    rows = sum(m["rows"] for m in manifests)
    by_name = {c["name"]: c for c in data["columns"]}
    assert list(by_name) == list(manifests[0]["stats"]["columns"])
    likes = by_name["user_likes_7d"]
    assert likes["rows"] == rows
    assert [d["day"] for d in likes["days"]] == ["2026-10-02", "2026-10-03"]
    per_day = [m["stats"]["columns"]["user_likes_7d"] for m in manifests]
    assert likes["max"] == max(d["max"] for d in per_day)
    assert likes["min"] == min(d["min"] for d in per_day)
    assert likes["distinct_max"] == max(d["distinct"] for d in per_day)
    dwell = by_name["pair_last_dwell"]
    assert dwell["nulls"] == sum(
        m["stats"]["columns"]["pair_last_dwell"]["nulls"] for m in manifests
    )
    assert dwell["null_share"] == pytest.approx(dwell["nulls"] / rows)
    # the human table, one line per feature
    assert daeda("dataset", "stats", "feed_ranking", "--workspace", str(ws)) == 0
    out = capsys.readouterr().out
    assert re.search(r"^user_likes_7d\s+BIGINT\s+count\s+0\.0%", out, re.M)
    assert "2026-10-01 … 2026-10-03: 3 day(s)" in out


def test_the_html_report_has_one_chart_per_feature_and_nothing_from_the_network(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = trained
    report = tmp_path / "report.html"
    capsys.readouterr()
    assert (
        daeda("dataset", "stats", "feed_ranking", "--workspace", str(ws), "--html", str(report))
        == 0
    )
    assert f"report: {report}" in capsys.readouterr().out
    text = report.read_text()
    features = list(manifest(ws, "2026-10-01")["stats"]["columns"])
    charts = re.findall(r'<svg [^>]*data-feature="([^"]+)"', text)
    assert charts == features
    assert text.count("<svg") == len(features)
    assert "<script" not in text.lower()
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in text
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")


def test_a_filter_typo_and_an_empty_day_make_the_summary_warn(
    demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "demo"
    shutil.copytree(demo, ws, ignore=shutil.ignore_patterns("out", ".daedalus"))
    views = ws / "feature_views" / "user_activity.yaml"
    text = views.read_text()
    typo = "{name: user_likes_7d, function: count, window: 7d, filter: {action: likes}}"
    fixed = text.replace(
        "{name: user_likes_7d, function: count, window: 7d, filter: {action: like}}", typo
    )
    assert fixed != text
    views.write_text(fixed)
    # the tiny demo's spine ends on 2026-10-05: the 6th is written empty
    summary = train(ws, capsys, end="2026-10-06")
    warnings = summary["warnings"]
    typo_warnings = [w for w in warnings if w.startswith("user_likes_7d:")]
    assert len(typo_warnings) == 1, warnings
    assert "its filter {action: likes} matched no row" in typo_warnings[0]
    assert "is 0 on all" in typo_warnings[0]
    assert any("had no spine rows" in w and "2026-10-06" in w for w in warnings)
    # the correct filter next to it does not warn
    assert not [w for w in warnings if w.startswith("user_likes_1d:")]
    assert manifest(ws, "2026-10-02")["stats"]["columns"]["user_likes_7d"]["max"] == 0
    # and `dataset stats` gives the same warnings from the manifests
    capsys.readouterr()
    assert daeda("dataset", "stats", "feed_ranking", "--workspace", str(ws)) == 0
    err = capsys.readouterr().err
    assert "warning: user_likes_7d: its filter {action: likes} matched no row" in err


def test_a_run_of_current_days_does_not_warn_about_what_it_did_not_write(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = trained
    summary = train(ws, capsys)
    assert summary["days_written"] == 0
    assert summary["warnings"] == []
