"""End to end: the demo workspace trained by both engines, through Ray and Lance, to parquet days."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import lance
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from daedalus.adapters.demo.generator import write_demo_workspace

from daedalus.app.errors import AppError
from daedalus.app.settings import Settings
from daedalus.catalog.registry import FeatureCatalog
from daedalus.container import build_container
from tests.pit_strategies import assert_bit_equal

REPO = Path(__file__).resolve().parents[2]
START, END = dt.date(2026, 10, 2), dt.date(2026, 10, 4)
DAYS = [START + dt.timedelta(days=i) for i in range((END - START).days + 1)]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    write_demo_workspace(root, scale="tiny")
    shutil.copytree(REPO / "feature_views", root / "feature_views")
    return root


def cases(workspace: Path, out: str, engine: str = "duckdb", catalog: Path | None = None):
    settings = Settings.from_env(
        workspace=workspace,
        out_dir=workspace / out,
        engine=engine,
        catalog_dir=catalog or workspace / "feature_views",
    )
    return build_container(settings).pipeline_cases()


def read_days(out: Path) -> dict[str, pa.Table]:
    days = {}
    for day_dir in sorted((out / "feed_ranking").glob("dt=*")):
        parts = sorted(day_dir.glob("part-*.parquet"))
        days[day_dir.name] = pa.concat_tables([pq.read_table(p) for p in parts])
    return days


@pytest.fixture(scope="module")
def trained(workspace: Path) -> dict[str, dict]:
    return {
        engine: cases(workspace, f"out_{engine}", engine).train(
            "feed_ranking", START, END, engine=engine
        )
        for engine in ("duckdb", "polars")
    }


class TestTrainingBothEngines:
    def test_every_day_is_written_by_each_engine(self, trained: dict[str, dict]) -> None:
        for summary in trained.values():
            assert summary["days_written"] == len(DAYS) and summary["rows"] > 0

    def test_the_two_engines_write_the_same_bits(self, workspace: Path, trained: dict) -> None:
        duck, polars = read_days(workspace / "out_duckdb"), read_days(workspace / "out_polars")
        assert list(duck) == [f"dt={d}" for d in DAYS] == list(polars)
        for day in duck:
            assert_bit_equal(duck[day], polars[day], labels=("duckdb", "polars"))

    def test_schema_is_the_resolved_contract(self, workspace: Path, trained: dict) -> None:
        contract = FeatureCatalog.from_yaml_dir(workspace / "feature_views").resolved_schema(
            "feed_ranking"
        )
        for table in read_days(workspace / "out_duckdb").values():
            assert table.schema.remove_metadata().equals(contract)
        assert contract.field("artwork_embedding").type == pa.list_(pa.float32(), 64)
        assert contract.field("recent_artworks_embedding").type == pa.list_(pa.float32(), 64)

    def test_manifest_records_what_made_the_day(self, workspace: Path, trained: dict) -> None:
        manifest = json.loads(
            (
                workspace / "out_duckdb" / "feed_ranking" / f"dt={START}" / "_manifest.json"
            ).read_text()
        )
        for key in (
            "rows",
            "contract_hash",
            "definition_hash",
            "input_digests",
            "store_versions",
            "engine",
            "timings",
        ):
            assert key in manifest
        lance_version = lance.dataset(str(workspace / "data" / "artwork_embeddings.lance")).version
        assert manifest["store_versions"] == {"artwork_embeddings": str(lance_version)}
        assert manifest["engine"] == "duckdb"
        assert set(manifest["input_digests"]) == {
            "spine",
            "user_activity",
            "artwork_popularity",
            "user_artwork_engagement",
            "user_profile",
            "artwork_metadata",
        }

    def test_audit_finds_no_difference(self, workspace: Path, trained: dict) -> None:
        for engine in ("duckdb", "polars"):
            report = cases(workspace, f"out_{engine}", engine).audit("feed_ranking", END, sample=60)
            assert report["ok"], report["differences"][:5]
            assert report["rows_checked"] == min(60, report["rows_in_day"])

    def test_a_hand_computed_row_matches(self, workspace: Path, trained: dict) -> None:
        day = read_days(workspace / "out_duckdb")[f"dt={END}"]
        events = pq.read_table(workspace / "data" / "events").combine_chunks()
        row = day.slice(day.num_rows // 2, 1).to_pylist()[0]
        t = row["ts"]
        delay = dt.timedelta(minutes=5)
        mine = events.filter(pc.equal(events["user_id"], row["user_id"]))
        lo, hi = (
            pa.scalar(t - delay - dt.timedelta(days=7), events["event_ts"].type),
            pa.scalar(t - delay, events["event_ts"].type),
        )
        window = mine.filter(
            pc.and_(pc.greater_equal(mine["event_ts"], lo), pc.less(mine["event_ts"], hi))
        )
        views = window.filter(pc.equal(window["action"], "view"))
        assert row["user_views_7d"] == views.num_rows
        assert row["user_likes_7d"] == window.filter(pc.equal(window["action"], "like")).num_rows


class TestReruns:
    def test_rerun_with_nothing_changed_skips_every_day(
        self, workspace: Path, trained: dict
    ) -> None:
        summary = cases(workspace, "out_duckdb").train("feed_ranking", START, END)
        assert summary["days_skipped"] == len(DAYS) and summary["days_written"] == 0

    def test_status_reports_every_day_current(self, workspace: Path, trained: dict) -> None:
        status = cases(workspace, "out_duckdb").status("feed_ranking")
        assert [d["day"] for d in status["days"]] == [d.isoformat() for d in DAYS]
        assert all(d["current"] for d in status["days"])

    def test_changing_a_definition_recomputes_every_day(
        self, workspace: Path, trained: dict, tmp_path: Path
    ) -> None:
        out = tmp_path / "out"
        shutil.copytree(workspace / "out_duckdb", out)
        catalog = tmp_path / "feature_views"
        shutil.copytree(workspace / "feature_views", catalog)
        text = (
            (catalog / "user_activity.yaml")
            .read_text()
            .replace(
                "{name: user_likes_7d, function: count, window: 7d",
                "{name: user_likes_7d, function: count, window: 6d",
            )
        )
        (catalog / "user_activity.yaml").write_text(text)
        settings = Settings.from_env(workspace=workspace, out_dir=out, catalog_dir=catalog)
        pipeline = build_container(settings).pipeline_cases()
        assert [d["current"] for d in pipeline.status("feed_ranking")["days"]] == [False] * len(
            DAYS
        )
        summary = pipeline.train("feed_ranking", START, END)
        assert summary["days_written"] == len(DAYS) and summary["days_skipped"] == 0

    def test_force_recomputes_and_gives_the_same_bits(
        self, workspace: Path, trained: dict, tmp_path: Path
    ) -> None:
        out = tmp_path / "out"
        shutil.copytree(workspace / "out_polars", out)
        settings = Settings.from_env(
            workspace=workspace, out_dir=out, catalog_dir=workspace / "feature_views"
        )
        summary = (
            build_container(settings)
            .pipeline_cases()
            .train("feed_ranking", START, START, engine="duckdb", force=True)
        )
        assert summary["days_written"] == 1
        assert_bit_equal(
            read_days(out)[f"dt={START}"], read_days(workspace / "out_polars")[f"dt={START}"]
        )


class TestErrorsBeforeAnyWrite:
    def test_unknown_service(self, workspace: Path) -> None:
        with pytest.raises(AppError) as err:
            cases(workspace, "out_err").train("feed_rankin", START, END)
        assert err.value.kind == "not_found" and "feed_ranking" in err.value.message
        assert not (workspace / "out_err").exists()

    def test_start_after_end(self, workspace: Path) -> None:
        with pytest.raises(AppError, match="after"):
            cases(workspace, "out_err").train("feed_ranking", END, START)
        assert not (workspace / "out_err").exists()

    def test_bad_date(self, workspace: Path) -> None:
        with pytest.raises(AppError, match="YYYY-MM-DD") as err:
            cases(workspace, "out_err").train("feed_ranking", "2026-13-01", END)
        assert err.value.kind == "invalid_argument"

    def test_a_day_without_spine_rows_is_an_empty_valid_day(
        self, workspace: Path, tmp_path: Path
    ) -> None:
        settings = Settings.from_env(
            workspace=workspace, out_dir=tmp_path, catalog_dir=workspace / "feature_views"
        )
        summary = (
            build_container(settings)
            .pipeline_cases()
            .train("feed_ranking", "2027-01-01", "2027-01-01", engine="polars")
        )
        assert summary["days"][0]["status"] == "empty"
        table = pq.read_table(
            next((tmp_path / "feed_ranking" / "dt=2027-01-01").glob("part-*.parquet"))
        )
        assert table.num_rows == 0
        contract = FeatureCatalog.from_yaml_dir(workspace / "feature_views").resolved_schema(
            "feed_ranking"
        )
        assert table.schema.remove_metadata().equals(contract)

    def test_missing_source_path(self, workspace: Path, tmp_path: Path) -> None:
        ws = tmp_path / "ws"
        shutil.copytree(workspace, ws, ignore=shutil.ignore_patterns("out_*"))
        shutil.rmtree(ws / "data" / "user_profiles")
        with pytest.raises(AppError, match="user_profile") as err:
            cases(ws, "out").train("feed_ranking", START, END)
        assert err.value.kind == "invalid_input"
        assert not (ws / "out").exists()

    def test_lance_store_without_the_id_column(self, workspace: Path, tmp_path: Path) -> None:
        ws = tmp_path / "ws"
        shutil.copytree(workspace, ws, ignore=shutil.ignore_patterns("out_*"))
        store = ws / "data" / "artwork_embeddings.lance"
        table = lance.dataset(str(store)).to_table().rename_columns(["id", "vector"])
        shutil.rmtree(store)
        lance.write_dataset(table, str(store))
        with pytest.raises(AppError, match="artwork_id") as err:
            cases(ws, "out").train("feed_ranking", START, END)
        assert err.value.kind == "invalid_input"
        assert not (ws / "out").exists()

    def test_output_owned_by_another_service(self, workspace: Path, tmp_path: Path) -> None:
        (tmp_path / "feed_ranking").mkdir()
        (tmp_path / "feed_ranking" / "_service.json").write_text(json.dumps({"service": "other"}))
        settings = Settings.from_env(
            workspace=workspace, out_dir=tmp_path, catalog_dir=workspace / "feature_views"
        )
        with pytest.raises(AppError, match="belongs to service 'other'") as err:
            build_container(settings).pipeline_cases().train("feed_ranking", START, END)
        assert err.value.kind == "conflict"
        assert list((tmp_path / "feed_ranking").iterdir()) == [
            tmp_path / "feed_ranking" / "_service.json"
        ]


def _daeda(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("daeda")), *args]


def test_a_killed_run_leaves_only_complete_days_and_a_rerun_finishes_it(
    workspace: Path, trained: dict, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    cmd = _daeda(
        "pipeline",
        "train",
        "feed_ranking",
        "--workspace",
        str(workspace),
        "--out",
        str(out),
        "--catalog",
        str(workspace / "feature_views"),
        "--start",
        str(START),
        "--end",
        str(END),
        "--json",
    )
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    service_dir = out / "feed_ranking"
    deadline = time.monotonic() + 120
    killed = False
    # Kill it in the middle of the second day: while that day's staging directory exists.
    while time.monotonic() < deadline and proc.poll() is None:
        if (
            service_dir.exists()
            and any(p.name.startswith(".staging-") for p in service_dir.iterdir())
            and any(p.name.startswith("dt=") for p in service_dir.iterdir())
        ):
            os.kill(proc.pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.002)
    proc.wait(timeout=60)
    assert killed and proc.returncode == -signal.SIGKILL, (
        "the run finished before it could be killed"
    )
    for day_dir in service_dir.glob("dt=*"):
        manifest = json.loads((day_dir / "_manifest.json").read_text())
        parts = sorted(day_dir.glob("part-*.parquet"))
        assert [p.name for p in parts] == [f["name"] for f in manifest["files"]]
        assert sum(pq.read_metadata(p).num_rows for p in parts) == manifest["rows"]
    written_before = len(list(service_dir.glob("dt=*")))
    assert written_before < len(DAYS)
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["days_skipped"] == written_before
    assert not any(p.name.startswith((".staging-", ".trash-")) for p in service_dir.iterdir())
    finished, reference = read_days(out), read_days(workspace / "out_duckdb")
    assert list(finished) == list(reference)
    for day in finished:
        assert_bit_equal(finished[day], reference[day])
