"""Dagster: one daily-partitioned asset per service, materialised through the app on the demo."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from daedalus.adapters.dagster.assets import (
    FALLBACK_START,
    DefinitionsError,
    TrainDayConfig,
    build_definitions,
    partition_start_for,
)
from daedalus.adapters.demo.generator import write_demo_workspace

from daedalus.app.settings import Settings
from daedalus.catalog.registry import FeatureCatalog
from daedalus.container import build_container

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SERVICE = "feed_ranking"
KEY = dg.AssetKey(["daedalus", SERVICE])
DAY = "2026-10-03"

# Ray Data's own deprecations and its note about a one-block day are not ours to fix.
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context"),
    pytest.mark.filterwarnings("ignore:The minimum number of concurrent actors:UserWarning"),
]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dagster_demo")
    write_demo_workspace(root, scale="tiny")  # days 2026-10-01 .. 2026-10-05
    shutil.copytree(REPO / "feature_views", root / "feature_views")
    return root


@pytest.fixture
def fresh(workspace: Path, tmp_path: Path) -> Path:
    """A workspace of its own (the demo's data and catalog, no output, no run store)."""
    root = tmp_path / "ws"
    shutil.copytree(workspace, root, ignore=shutil.ignore_patterns("out", ".daedalus"))
    return root


def demo_settings(workspace: Path, catalog: Path | None = None) -> Settings:
    # Polars: the same bits as DuckDB, and not the engine under concurrent edit.
    return Settings.from_env(
        workspace=workspace,
        catalog_dir=catalog or workspace / "feature_views",
        out_dir=workspace / "out",
        engine="polars",
    )


@pytest.fixture(scope="module")
def defs(workspace: Path) -> dg.Definitions:
    return build_definitions(demo_settings(workspace))


def materialize(defs: dg.Definitions, **config: Any) -> dg.ExecuteInProcessResult:
    (assets_def,) = defs.assets or ()
    return dg.materialize(
        [assets_def],
        partition_key=DAY,
        resources=defs.resources,
        run_config=dg.RunConfig(ops={assets_def.node_def.name: TrainDayConfig(**config)}),
        raise_on_error=False,
    )


def metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    (event,) = result.get_asset_materialization_events()
    assert event.asset_key == KEY and event.partition == DAY
    return {k: v.value for k, v in event.materialization.metadata.items()}


@pytest.fixture(scope="module")
def runs(defs: dg.Definitions) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """The same partition materialised twice: written, then skipped as current."""
    first = metadata(materialize(defs))
    second = metadata(materialize(defs))
    yield first, second
    enricher = sys.modules.get("daedalus.adapters.lance_ray.enricher")
    if enricher is not None:  # stop the local Ray this module's runs started
        enricher.RayLanceEnricher().shutdown()


class TestDefinitions:
    def test_one_daily_asset_per_service(self, workspace: Path, defs: dg.Definitions) -> None:
        catalog = FeatureCatalog.from_yaml_dir(workspace / "feature_views")
        graph = defs.resolve_asset_graph()
        assert set(graph.get_all_asset_keys()) == {
            dg.AssetKey(["daedalus", name]) for name in catalog.services
        }
        partitions = defs.resolve_assets_def(KEY).partitions_def
        assert isinstance(partitions, dg.DailyPartitionsDefinition)
        # The start is the spine's first day, as the application says: the demo's first day.
        assert partitions.get_first_partition_key() == "2026-10-01"
        start = defs.resolve_assets_def(KEY).metadata_by_key[KEY]["partition_start"]
        assert start.value == "2026-10-01 (from the spine)"
        assert DAY in partitions.get_partition_keys()
        assert set(defs.resources or {}) == {"daedalus"}

    def test_a_new_service_in_yaml_is_a_new_asset(self, workspace: Path, tmp_path: Path) -> None:
        catalog = tmp_path / "catalog"
        shutil.copytree(workspace / "feature_views", catalog)
        (catalog / "lite.yaml").write_text(
            "kind: feature_service\n"
            "name: feed_lite\n"
            "spine:\n"
            "  path: data/impressions/*.parquet\n"
            "  timestamp: ts\n"
            "  entity: [user, artwork]\n"
            "features: [user_activity:*]\n"
        )
        defs = build_definitions(demo_settings(workspace, catalog))
        assert (
            dg.AssetKey(["daedalus", "feed_lite"])
            in defs.resolve_asset_graph().get_all_asset_keys()
        )

    def test_an_invalid_catalog_fails_loading_with_every_located_error(
        self, workspace: Path, tmp_path: Path
    ) -> None:
        catalog = tmp_path / "catalog"
        shutil.copytree(workspace / "feature_views", catalog)
        ranking = catalog / "ranking.yaml"
        ranking.write_text(ranking.read_text().replace("name: feed_ranking", "name: feed ranking"))
        with pytest.raises(DefinitionsError, match=r"ranking\.yaml:\d+:\d+: service name"):
            build_definitions(demo_settings(workspace, catalog))

    def test_the_partition_start_is_the_spine_first_day_the_application_gives(
        self, fresh: Path
    ) -> None:
        # A spine whose first day is 2026-10-02 (not the marker's), written without statistics:
        # parquet footers cannot tell, the application (which reads the rows) can.
        for path in sorted((fresh / "data" / "impressions").glob("*.parquet")):
            table = pq.read_table(path)
            days = pc.cast(table["ts"], pa.date32())
            kept = table.filter(pc.greater(days, pa.scalar(dt.date(2026, 10, 1))))
            pq.write_table(kept, path, write_statistics=False)
        defs = build_definitions(demo_settings(fresh))
        partitions = defs.resolve_assets_def(KEY).partitions_def
        assert partitions is not None
        assert partitions.get_first_partition_key() == "2026-10-02"

    def test_partition_start_falls_back_to_the_marker_then_a_default(
        self, workspace: Path, tmp_path: Path
    ) -> None:
        # No spine in tmp_path: the application cannot name a first day.
        app = build_container(demo_settings(tmp_path, workspace / "feature_views")).application()
        start, source = partition_start_for(app, SERVICE)
        assert start == FALLBACK_START and source.startswith("default; the spine's first day")
        assert "no parquet files match" in source  # why the application could not say
        (tmp_path / "workspace.json").write_text(json.dumps({"start": "2026-09-01"}))
        start, source = partition_start_for(app, SERVICE)
        assert start.isoformat() == "2026-09-01" and source.startswith("the demo marker")
        start, source = partition_start_for(app, SERVICE, "2026-07-15")
        assert (start.isoformat(), source) == ("2026-07-15", "configured")
        with pytest.raises(DefinitionsError, match="partition_start"):
            partition_start_for(app, SERVICE, "July")


class TestMaterialize:
    def test_the_partition_writes_that_day_only(self, workspace: Path, runs: tuple) -> None:
        first, _ = runs
        service_dir = workspace / "out" / SERVICE
        assert [p.name for p in service_dir.glob("dt=*")] == [f"dt={DAY}"]
        day_dir = service_dir / f"dt={DAY}"
        parts = sorted(day_dir.glob("part-*.parquet"))
        assert parts and (day_dir / "_manifest.json").exists()
        rows = sum(pq.read_metadata(p).num_rows for p in parts)
        assert first["dagster/row_count"] == rows > 0
        assert first["status"] == "written"
        assert (first["days_written"], first["days_skipped"]) == (1, 0)
        assert first["path"] == str(day_dir)

    def test_metadata_carries_the_manifest_and_a_preview(
        self, workspace: Path, runs: tuple
    ) -> None:
        first, _ = runs
        manifest = json.loads(
            (workspace / "out" / SERVICE / f"dt={DAY}" / "_manifest.json").read_text()
        )
        assert first["manifest"] == manifest
        for key in ("contract_hash", "definition_hash", "engine", "timings"):
            assert key in first["manifest"]
        assert first["engine"] == manifest["engine"] == "polars"
        lines = first["preview"].splitlines()
        assert lines[0].startswith("| user_id | artwork_id | ts | clicked |")
        assert len(lines) == 2 + 5  # header, rule, the first 5 rows
        assert "values]" in lines[2]  # a 64-float embedding is abbreviated

    def test_a_second_materialisation_skips_the_current_day(
        self, workspace: Path, runs: tuple
    ) -> None:
        first, second = runs
        assert second["status"] == "skipped"
        assert (second["days_written"], second["days_skipped"]) == (0, 1)
        assert second["dagster/row_count"] == first["dagster/row_count"]
        assert second["manifest"] == first["manifest"]  # not rewritten
        assert second["path"] == first["path"]

    def test_an_app_error_is_a_dagster_failure(self, defs: dg.Definitions) -> None:
        result = materialize(defs, engine="spark")  # rejected before any work starts
        assert not result.success
        (failure,) = [
            e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE
        ]
        user_failure = failure.step_failure_data.user_failure_data
        assert user_failure is not None
        assert "unknown engine 'spark'" in user_failure.description
        assert user_failure.metadata["kind"].value == "invalid_argument"


class TestCodeLocation:
    def env(self, workspace: Path, tmp_path: Path) -> dict[str, str]:
        home = tmp_path / "dagster_home"
        home.mkdir()
        return {
            **os.environ,
            "DAEDA_WORKSPACE": str(workspace),
            "DAEDA_CATALOG": str(workspace / "feature_views"),
            "DAEDA_OUT": str(tmp_path / "out"),
            "DAEDA_ENGINE": "polars",
            "DAGSTER_HOME": str(home),
        }

    def test_dagster_definitions_validate_passes(self, workspace: Path, tmp_path: Path) -> None:
        result = subprocess.run(
            [str(BIN / "dagster"), "definitions", "validate", "-m", "daedalus.definitions"],
            env=self.env(workspace, tmp_path),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Validation successful" in result.stderr + result.stdout

    def test_dagster_asset_materialize_trains_the_day_as_a_job(
        self, fresh: Path, tmp_path: Path
    ) -> None:
        env = {**self.env(fresh, tmp_path), "DAEDA_OUT": str(fresh / "out")}
        result = subprocess.run(
            [
                str(BIN / "dagster"),
                "asset",
                "materialize",
                "-m",
                "daedalus.definitions",
                "--select",
                f"daedalus/{SERVICE}",
                "--partition",
                DAY,
            ],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "RUN_SUCCESS" in result.stderr + result.stdout
        day_dir = fresh / "out" / SERVICE / f"dt={DAY}"
        assert (day_dir / "_manifest.json").exists()
        (job,) = job_list(fresh)
        assert job["state"] == "succeeded"
        assert (job["params"]["start"], job["params"]["end"]) == (DAY, DAY)
        assert job["result"]["days_written"] == 1

    def test_loading_the_definitions_does_not_import_ray(
        self, workspace: Path, tmp_path: Path
    ) -> None:
        # The load asks the application for the spine's first day: from the spine's files
        # alone, no embedding store opened.
        code = (
            "import sys\n"
            "import daedalus.definitions as d\n"
            "assert 'ray' not in sys.modules, 'ray was imported'\n"
            "print(len(d.defs.assets))\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code],
            env=self.env(workspace, tmp_path),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        services = FeatureCatalog.from_yaml_dir(workspace / "feature_views").services
        assert result.stdout.strip() == str(len(services))


# -- one writer, one job registry ----------------------------------------------------------------


def daeda(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "daeda"), *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def job_list(workspace: Path) -> list[dict[str, Any]]:
    result = daeda("job", "list", "--json", "--workspace", str(workspace))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["jobs"]


def step_failure(result: dg.ExecuteInProcessResult) -> Any:
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    user_failure = failure.step_failure_data.user_failure_data
    assert user_failure is not None, failure.step_failure_data.error
    return user_failure


def tree(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from daedalus.adapters.parquet.sink import ParquetSink

    out, service, day = sys.argv[1:4]
    with ParquetSink(out).claim(service, {"writer": "cli-like test holder"}):
        staging = Path(out) / service / f".staging-{day}-0000abcd"  # a write in progress
        staging.mkdir()
        (staging / "part-00000.parquet").write_bytes(b"the holder's bytes")
        print("locked", flush=True)
        sys.stdin.read()  # hold the lock until the test closes stdin
    """
)


class TestOneWriter:
    def test_a_materialisation_is_a_job_of_the_workspace(self, fresh: Path) -> None:
        defs = build_definitions(demo_settings(fresh))
        data = metadata(materialize(defs))
        (job,) = job_list(fresh)
        assert job["state"] == "succeeded"
        assert job["params"]["service"] == SERVICE
        assert job["params"]["start"] == job["params"]["end"] == DAY
        assert job["params"]["engine"] == "polars"
        assert job["result"]["rows"] == data["dagster/row_count"]
        assert data["job_id"] == job["id"]

    def test_another_writer_holding_the_output_fails_the_run_with_the_conflict(
        self, fresh: Path
    ) -> None:
        defs = build_definitions(demo_settings(fresh))
        metadata(materialize(defs))  # a day of the output, which the holder must keep
        service_dir = fresh / "out" / SERVICE
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(fresh / "out"), SERVICE, DAY],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
            before = tree(service_dir)
            failure = step_failure(materialize(defs, force=True))
            assert tree(service_dir) == before  # the holder's files, days and lock untouched
        finally:
            assert holder.stdin is not None
            holder.stdin.close()
            holder.wait(timeout=30)
        assert failure.metadata["kind"].value == "conflict"
        assert f"is being written by pid {holder.pid}" in failure.description
        assert "cli-like test holder" in failure.description
        assert failure.metadata["details"].value["holder"]["writer"] == "cli-like test holder"
        # The refused run is a failed job of the workspace, with the same error.
        refused, done = job_list(fresh)
        assert (refused["state"], done["state"]) == ("failed", "succeeded")
        assert refused["error"]["kind"] == "conflict"
        assert failure.metadata["job_id"].value == refused["id"]

    def test_a_cli_run_during_a_materialisation_exits_7(
        self, fresh: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from daedalus.adapters.parquet.sink import ParquetSink

        # Another workspace over the same output: no shared run store, only the output's lock.
        other = tmp_path / "other"
        shutil.copytree(fresh, other)
        train = ("pipeline", "train", SERVICE, "--start", DAY, "--end", DAY, "--engine", "polars")
        seen: list[subprocess.CompletedProcess[str]] = []
        commit = ParquetSink.commit_day

        def commit_during_cli_runs(self: ParquetSink, *args: Any, **kwargs: Any) -> str:
            if not seen:  # the Dagster run holds the lock now: try both CLI runs
                seen.append(daeda(*train, "--workspace", str(fresh)))
                seen.append(daeda(*train, "--workspace", str(other), "--out", str(fresh / "out")))
            return commit(self, *args, **kwargs)

        monkeypatch.setattr(ParquetSink, "commit_day", commit_during_cli_runs)
        data = metadata(materialize(build_definitions(demo_settings(fresh))))
        assert data["status"] == "written"
        same_workspace, other_workspace = seen
        # The same workspace: the job registry says a job (the Dagster run's) trains the service.
        assert same_workspace.returncode == 7, same_workspace.stderr
        assert f"job {data['job_id']} is already training" in same_workspace.stderr
        # Another workspace: the output's OS lock, naming the Dagster run's job and process.
        assert other_workspace.returncode == 7, other_workspace.stderr
        assert f"is being written by pid {os.getpid()}" in other_workspace.stderr
        assert f"job={data['job_id']}" in other_workspace.stderr
        (job,) = job_list(fresh)  # the CLI run there was refused before it was a job
        assert (job["id"], job["state"]) == (data["job_id"], "succeeded")
        (refused,) = job_list(other)  # there it was a job, which the lock refused
        assert (refused["state"], refused["error"]["kind"]) == ("failed", "conflict")
