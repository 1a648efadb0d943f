"""The Python API (`daedalus.open_workspace`) on a tiny demo workspace with a day trained by
`daeda pipeline train`: the same bits as the pipeline, both engines, embeddings included; pandas
and Polars spines; clear errors; and the README's example, run as written."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from daedalus.adapters.demo.generator import write_demo_workspace

import daedalus
from daedalus.app.errors import AppError
from daedalus.app.workspace import Workspace
from daedalus.catalog.errors import CatalogErrors
from daedalus.pit.errors import PitError
from tests.pit_strategies import assert_bit_equal

REPO = Path(__file__).resolve().parents[2]
DAEDA = Path(sys.executable).with_name("daeda")
DAY = dt.date(2026, 10, 3)
SERVICE = "feed_ranking"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`<root>/demo` (a tiny demo workspace with DAY trained by the CLI) and
    `<root>/feature_views` (the repository's catalog): the layout of the README's example."""
    base = tmp_path_factory.mktemp("python_api")
    write_demo_workspace(base / "demo", scale="tiny")
    shutil.copytree(REPO / "feature_views", base / "feature_views")
    day = DAY.isoformat()
    subprocess.run(
        [str(DAEDA), "pipeline", "train", SERVICE, "--workspace", "demo", "--catalog",
         "feature_views", "--start", day, "--end", day, "--json"],
        cwd=base, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return base


@pytest.fixture(scope="module")
def ws(root: Path) -> Workspace:
    return daedalus.open_workspace(root / "demo", catalog=root / "feature_views")


@pytest.fixture(scope="module")
def written(root: Path) -> pa.Table:
    """The day the pipeline wrote."""
    parts = sorted((root / "demo" / "out" / SERVICE / f"dt={DAY}").glob("part-*.parquet"))
    assert parts
    table = pa.concat_tables(pq.read_table(p) for p in parts)
    assert table.num_rows > 0
    return table


def service_request(ws: Workspace) -> tuple[list, list]:
    """The service's features and embeddings exactly as its definition lists them."""
    svc = ws.catalog.services[SERVICE]
    features = [
        {"feature": f"{r.view}:{r.feature}", "alias": r.alias}
        if r.alias
        else f"{r.view}:{r.feature}"
        for r in svc.features
    ]
    embeddings = [{"name": e.name, "store": e.store, "source": e.source} for e in svc.embeddings]
    return features, embeddings


def spine_of(ws: Workspace, table: pa.Table) -> pa.Table:
    """The day's spine columns: keys, timestamp, labels."""
    svc = ws.catalog.services[SERVICE]
    keys = ws.catalog.join_keys(svc.spine.entities)
    return table.select([*keys, svc.spine.timestamp, *(c.name for c in svc.spine.labels)])


def assert_same_bits(actual: pa.Table, expected: pa.Table, what: str) -> None:
    assert actual.num_rows == expected.num_rows
    assert actual.schema.equals(expected.schema), f"{what}:\n{actual.schema}\n!=\n{expected.schema}"
    assert actual.equals(expected), what
    assert_bit_equal(actual, expected, labels=(what, "pipeline"))


class TestTheSameBitsAsThePipeline:
    @pytest.mark.parametrize("engine", ["duckdb", "polars"])
    def test_historical_features_of_a_trained_days_spine_is_the_written_day(
        self, ws: Workspace, written: pa.Table, engine: str
    ) -> None:
        features, embeddings = service_request(ws)
        assert embeddings, "the demo service pools embeddings: they are part of the check"
        frame = ws.historical_features(
            spine_of(ws, written), features, embeddings=embeddings, engine=engine
        )
        assert_same_bits(frame, written, f"historical_features[{engine}]")
        embedding = frame["recent_artworks_embedding"].drop_null()
        assert len(embedding) and pc.max(pc.list_value_length(embedding)).as_py() == 64

    @pytest.mark.parametrize("engine", ["duckdb", "polars"])
    def test_service_frame_of_the_day_is_the_written_day(
        self, ws: Workspace, written: pa.Table, engine: str
    ) -> None:
        frame = ws.service_frame(SERVICE, start=DAY.isoformat(), engine=engine)
        assert_same_bits(frame, written, f"service_frame[{engine}]")

    def test_service_frame_of_your_spine_is_the_written_day_plus_your_columns(
        self, ws: Workspace, written: pa.Table
    ) -> None:
        spine = spine_of(ws, written)
        spine = spine.append_column("row", pa.array(range(spine.num_rows), pa.int32()))
        frame = ws.service_frame(SERVICE, spine)
        assert_same_bits(frame.drop_columns(["row"]), written, "service_frame(spine)")
        assert frame["row"].to_pylist() == list(range(written.num_rows))

    def test_spine_rows_come_back_in_the_spines_order(
        self, ws: Workspace, written: pa.Table
    ) -> None:
        order = pa.array(list(range(written.num_rows))[::-1])
        reversed_day = written.take(order)
        features, embeddings = service_request(ws)
        frame = ws.historical_features(
            spine_of(ws, reversed_day), features, embeddings=embeddings, engine="polars"
        )
        assert_same_bits(frame, reversed_day, "reversed spine")

    def test_a_small_call_starts_no_ray(self, ws: Workspace, written: pa.Table) -> None:
        features, embeddings = service_request(ws)
        ws.historical_features(spine_of(ws, written).slice(0, 5), features, embeddings=embeddings)
        ray = sys.modules.get("ray")
        assert ray is None or not ray.is_initialized()


class TestSpines:
    def test_a_polars_spine(self, ws: Workspace, written: pa.Table) -> None:
        spine = pl.from_arrow(spine_of(ws, written))
        assert isinstance(spine, pl.DataFrame)
        frame = ws.historical_features(spine, ["user_activity:*", "user_profile:*"])
        expected = ws.historical_features(
            spine.to_arrow(), ["user_activity:*", "user_profile:*"], engine="polars"
        )
        assert_bit_equal(frame, expected, labels=("polars spine", "arrow spine"))
        features = [n for n in frame.column_names if n not in spine.columns]
        assert_bit_equal(frame.select(features), written.select(features))

    def test_a_pandas_spine(self, ws: Workspace, written: pa.Table) -> None:
        pd = pytest.importorskip("pandas")
        spine = spine_of(ws, written).to_pandas()
        assert isinstance(spine, pd.DataFrame)
        frame = ws.historical_features(spine, "artwork_popularity:*")
        features = [n for n in frame.column_names if n not in spine.columns]
        assert features and features[0] == "artwork_views_1h"
        assert_bit_equal(frame.select(features), written.select(features))
        assert frame.num_rows == len(spine)

    def test_a_naive_pandas_timestamp_is_utc_only_when_said(
        self, ws: Workspace, written: pa.Table
    ) -> None:
        pytest.importorskip("pandas")
        spine = spine_of(ws, written).to_pandas()
        spine["ts"] = spine["ts"].dt.tz_localize(None)
        with pytest.raises(PitError, match="'ts' holds tz-naive timestamps") as e:
            ws.historical_features(spine, "user_activity:user_views_1d")
        assert e.value.code == "naive_timestamps"
        frame = ws.historical_features(
            spine, "user_activity:user_views_1d", naive_timestamps_are_utc=True
        )
        assert frame["user_views_1d"].equals(written["user_views_1d"])

    def test_another_timestamp_column_name_and_extra_columns_pass_through(
        self, ws: Workspace, written: pa.Table
    ) -> None:
        spine = pa.table(
            {
                "label": written["clicked"],
                "when": written["ts"].cast(pa.timestamp("ns", "Europe/Paris")),
                "user_id": written["user_id"].cast(pa.int32()),
            }
        )
        frame = ws.historical_features(
            spine,
            [{"feature": "user_activity:user_likes_7d", "alias": "likes"}],
            timestamp="when",
        )
        assert frame.column_names == ["label", "when", "user_id", "likes"]
        assert frame.schema.field("when").type == pa.timestamp("ns", "Europe/Paris")
        assert frame["likes"].equals(written["user_likes_7d"])

    def test_an_empty_spine(self, ws: Workspace, written: pa.Table) -> None:
        features, embeddings = service_request(ws)
        frame = ws.historical_features(
            spine_of(ws, written).slice(0, 0), features, embeddings=embeddings
        )
        assert frame.num_rows == 0 and frame.schema.equals(written.schema)


class TestErrors:
    def test_a_misspelt_feature_is_a_located_catalog_error_with_a_suggestion(
        self, ws: Workspace, written: pa.Table
    ) -> None:
        with pytest.raises(CatalogErrors) as e:
            ws.historical_features(
                spine_of(ws, written),
                ["user_activity:user_likes_7d", "user_activity:user_likez_7d"],
            )
        (error,) = e.value.errors
        assert error.file == "<historical_features>" and (error.line, error.column) == (6, 5)
        assert "view 'user_activity' has no feature 'user_likez_7d'" in error.message
        assert error.hint == "did you mean user_likes_7d?"
        notes = "\n".join(e.value.__notes__)
        assert '   6 |   - "user_activity:user_likez_7d"' in notes

    def test_an_unknown_view_and_a_bad_embedding_are_reported_together(
        self, ws: Workspace, written: pa.Table
    ) -> None:
        with pytest.raises(CatalogErrors) as e:
            ws.historical_features(
                spine_of(ws, written),
                ["user_activty:*"],
                embeddings=[{"name": "e", "store": "artwork_embedding", "source": "artwork_id"}],
            )
        text = str(e.value)
        assert "unknown feature view 'user_activty' — did you mean user_activity?" in text
        assert (
            "unknown embedding store 'artwork_embedding' — did you mean artwork_embeddings?" in text
        )

    def test_a_spine_without_the_keys_a_view_needs(self, ws: Workspace, written: pa.Table) -> None:
        with pytest.raises(AppError, match="lacks 'artwork_id', the key of entity 'artwork'") as e:
            ws.historical_features(written.select(["user_id", "ts"]), "artwork_metadata:*")
        assert e.value.kind == "invalid_argument" and e.value.data == {"field": "spine"}

    def test_a_spine_without_its_timestamp(self, ws: Workspace, written: pa.Table) -> None:
        with pytest.raises(AppError, match=r"no timestamp column 'ts'.*timestamp=") as e:
            ws.historical_features(written.select(["user_id"]), "user_activity:*")
        assert e.value.data == {"field": "timestamp"}

    def test_an_output_that_clashes_with_a_spine_column(
        self, ws: Workspace, written: pa.Table
    ) -> None:
        with pytest.raises(AppError, match=r"already has column.*'user_likes_7d'.*alias"):
            ws.historical_features(
                written.select(["user_id", "ts", "user_likes_7d"]), "user_activity:user_likes_7d"
            )

    def test_null_spine_keys_are_the_compute_apis_error(
        self, ws: Workspace, written: pa.Table
    ) -> None:
        spine = pa.table({"user_id": pa.array([1, None], pa.int64()), "ts": written["ts"][:2]})
        with pytest.raises(PitError, match=r"1 row.*null 'user_id'") as e:
            ws.historical_features(spine, "user_activity:user_likes_7d")
        assert e.value.code == "null_key"

    def test_bad_arguments(self, ws: Workspace, written: pa.Table) -> None:
        spine = spine_of(ws, written)
        with pytest.raises(AppError, match="unknown engine 'spark'"):
            ws.historical_features(spine, "user_activity:*", engine="spark")
        with pytest.raises(AppError, match="must be a pyarrow Table, a pandas or a Polars"):
            ws.historical_features([{"user_id": 1}], "user_activity:*")
        with pytest.raises(AppError, match="LazyFrame: collect"):
            ws.historical_features(pl.from_arrow(spine).lazy(), "user_activity:*")
        with pytest.raises(AppError, match="unknown feature service 'feed_rankin' — did you mean"):
            ws.service_frame("feed_rankin", start=DAY)
        with pytest.raises(AppError, match="give the days"):
            ws.service_frame(SERVICE)
        with pytest.raises(AppError, match="start must be a date"):
            ws.service_frame(SERVICE, start="03/10/2026")
        with pytest.raises(AppError, match="either your own spine or the days"):
            ws.service_frame(SERVICE, spine, start=DAY)

    def test_open_workspace_errors(self, root: Path, tmp_path: Path) -> None:
        with pytest.raises(AppError, match="is not a directory") as e:
            daedalus.open_workspace(tmp_path / "nope")
        assert e.value.kind == "not_found"
        bad = tmp_path / "catalog"
        bad.mkdir()
        (bad / "v.yaml").write_text("kind: feature_view\nname: v\nentity: usr\n")
        with pytest.raises(
            CatalogErrors, match=r"v\.yaml:1:1: feature_view is missing required key 'schema'"
        ):
            daedalus.open_workspace(root / "demo", catalog=bad)


def test_importing_daedalus_stays_light() -> None:
    code = (
        "import sys, daedalus\n"
        "heavy = [m for m in ('pyarrow', 'duckdb', 'polars', 'ray', 'pandas', 'lance', "
        "'dependency_injector') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert callable(daedalus.open_workspace) and 'pyarrow' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def readme_python_api_example() -> str:
    """The first ```python block of the README's "## Python API" section."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README's Python API section has no python block"
    return match.group(1)


def test_the_readme_example_runs(
    root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(root)  # the README runs from the repository: demo/ and feature_views/
    namespace: dict[str, object] = {"__name__": "readme_example"}
    exec(compile(readme_python_api_example(), "README.md (Python API)", "exec"), namespace)
    frame, day = namespace["frame"], namespace["day"]
    assert isinstance(frame, pa.Table) and isinstance(day, pa.Table)
    assert day.num_rows > 0 and "artwork_embedding" in day.column_names
    assert frame.num_rows == 3 and frame["artwork_embedding"].null_count < 3
    assert capsys.readouterr().out
