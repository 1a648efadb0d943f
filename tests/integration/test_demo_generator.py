"""The demo workspace generator writes what the feature definitions declare, deterministically."""

from __future__ import annotations

import datetime as dt
import glob
import json
import shutil
from pathlib import Path

import lance
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from daedalus.adapters.demo import (
    MARKER_KIND,
    MARKER_NAME,
    DemoSummary,
    WorkspaceNotEmptyError,
    is_demo_workspace,
    write_demo_workspace,
)
from daedalus.adapters.demo.generator import WorkspaceConflictError

from daedalus.catalog.registry import TIMESTAMP_TYPE, FeatureCatalog

FEATURE_VIEWS = Path(__file__).resolve().parents[2] / "feature_views"
START = dt.date(2026, 10, 1)


@pytest.fixture(scope="module")
def catalog() -> FeatureCatalog:
    return FeatureCatalog.from_yaml_dir(FEATURE_VIEWS)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> DemoSummary:
    return write_demo_workspace(tmp_path_factory.mktemp("tiny"), scale="tiny", seed=7, start=START)


def _files(root: Path, pattern: str) -> list[str]:
    return sorted(glob.glob(str(root / pattern)))


def _read(root: Path, pattern: str) -> pa.Table:
    return pa.concat_tables(pq.read_table(f) for f in _files(root, pattern))


def _bits(table: pa.Table) -> pa.Table:
    """Floats as their bit patterns: Arrow's `equals` says NaN != NaN, and the data has NaN."""
    columns = []
    for col in table.columns:
        col = col.combine_chunks()
        if pa.types.is_float64(col.type):
            col = col.view(pa.int64())
        elif pa.types.is_float32(col.type):
            col = col.view(pa.int32())
        columns.append(col)
    return pa.table(columns, names=table.column_names)


def _parquet_files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*.parquet") if ".lance" not in str(p))


def _snapshot(root: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file under `root` (the Lance store's too): bytes, mtime and inode.

    The inode catches a file replaced by a rename even when the clock has not ticked.
    """
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            st = path.stat()
            out[str(path.relative_to(root))] = (path.read_bytes(), st.st_mtime_ns, st.st_ino)
    return out


# --------------------------------------------------------------------------- schemas


class TestSchemasMatchTheCatalog:
    def test_every_view_source_has_files_with_the_declared_schema(
        self, tiny: DemoSummary, catalog: FeatureCatalog
    ) -> None:
        for name, view in catalog.views.items():
            expected = pa.schema([pa.field(c.name, c.arrow_type) for c in view.schema])
            files = _files(tiny.root, view.source.path)
            assert files, f"{name}: nothing matches {view.source.path}"
            for f in files:
                actual = pq.read_schema(f)
                assert actual.equals(expected, check_metadata=False), (name, f, actual)

    def test_spine_files_have_keys_timestamp_and_labels(
        self, tiny: DemoSummary, catalog: FeatureCatalog
    ) -> None:
        spine = catalog.service("feed_ranking").spine
        fields = [
            pa.field(key, catalog.entities[e].arrow_type)
            for e in spine.entities
            for key in catalog.entities[e].join_keys
        ]
        fields.append(pa.field(spine.timestamp, TIMESTAMP_TYPE))
        fields += [pa.field(label.name, label.arrow_type) for label in spine.labels]
        files = _files(tiny.root, spine.path)
        assert len(files) == tiny.days
        for f in files:
            assert pq.read_schema(f).equals(pa.schema(fields), check_metadata=False)

    def test_embedding_store_opens_with_lance_and_has_the_declared_dim(
        self, tiny: DemoSummary, catalog: FeatureCatalog
    ) -> None:
        store = catalog.store("artwork_embeddings")
        ds = lance.dataset(str(tiny.root / store.path))
        assert ds.schema.field(store.id_column).type == pa.int64()
        assert ds.schema.field(store.vector_column).type == pa.list_(pa.float32(), store.dim)
        assert ds.count_rows() == tiny.embedding_rows
        assert ds.version == tiny.lance_version == 1


# --------------------------------------------------------------------------- summary and layout


class TestSummaryAndLayout:
    def test_one_file_per_day_holding_only_that_days_rows(self, tiny: DemoSummary) -> None:
        days = [START + dt.timedelta(days=i) for i in range(tiny.days)]
        assert tiny.end == days[-1]
        assert [p.name for p in tiny.event_files] == [f"part-{d}.parquet" for d in days]
        assert [p.name for p in tiny.impression_files] == [f"part-{d}.parquet" for d in days]
        for day, ev, im in zip(days, tiny.event_files, tiny.impression_files, strict=True):
            lo = dt.datetime.combine(day, dt.time(), dt.UTC)
            hi = lo + dt.timedelta(days=1)
            for path, col in ((ev, "event_ts"), (im, "ts")):
                ts = pq.read_table(path, columns=[col])[col]
                assert lo <= pc.min(ts).as_py() and pc.max(ts).as_py() < hi, path

    def test_row_counts_in_the_summary_match_the_files(self, tiny: DemoSummary) -> None:
        root = tiny.root
        events = _read(root, "data/events/*.parquet")
        impressions = _read(root, "data/impressions/*.parquet")
        assert events.num_rows == tiny.event_rows
        assert impressions.num_rows == tiny.impression_rows
        assert pc.sum(impressions["clicked"]).as_py() == tiny.clicked_rows
        assert pq.read_metadata(tiny.user_profiles_path).num_rows == tiny.user_profile_rows
        assert pq.read_metadata(tiny.artworks_path).num_rows == tiny.artwork_rows
        # Roughly the advertised size of the tiny scale.
        assert 2_000 < tiny.event_rows < 8_000
        assert 500 < tiny.impression_rows < 2_000

    def test_marker_describes_the_workspace(self, tiny: DemoSummary) -> None:
        marker = json.loads((tiny.root / MARKER_NAME).read_text())
        assert marker["kind"] == MARKER_KIND
        assert marker["scale"] == "tiny"
        assert marker["seed"] == 7
        assert marker["start"] == "2026-10-01"
        assert marker["end"] == tiny.end.isoformat()
        assert marker["created_by"] == "daeda demo init"
        assert marker["complete"] is True
        assert is_demo_workspace(tiny.root)


# --------------------------------------------------------------------------- content


class TestPointInTimeEdgeCases:
    def test_events_mix_actions_with_dwell_only_on_views_and_some_nan(
        self, tiny: DemoSummary
    ) -> None:
        events = _read(tiny.root, "data/events/*.parquet")
        actions = events["action"].to_numpy(zero_copy_only=False)
        counts = {a: int((actions == a).sum()) for a in ("view", "like", "bookmark", "generate")}
        assert set(actions) == set(counts)
        assert counts["view"] > 0.7 * events.num_rows
        assert min(counts.values()) > 0
        dwell = events["dwell_ms"]
        non_view = pc.not_equal(events["action"], "view")
        assert pc.all(pc.is_null(dwell.filter(non_view))).as_py()
        view_dwell = dwell.filter(pc.invert(non_view))
        assert pc.sum(pc.is_nan(view_dwell)).as_py() > 0  # NaN, not null: exercises NaN-as-null
        assert view_dwell.null_count > 0

    def test_hot_user_has_by_far_the_largest_history(self, tiny: DemoSummary) -> None:
        users = _read(tiny.root, "data/events/*.parquet")["user_id"].to_numpy()
        ids, counts = np.unique(users, return_counts=True)
        top = np.argsort(counts)[::-1]
        assert ids[top[0]] == tiny.hot_user_id
        assert counts[top[0]] > 1.5 * counts[top[1]]

    def test_likes_usually_follow_a_view_of_the_same_artwork(self, tiny: DemoSummary) -> None:
        events = _read(tiny.root, "data/events/*.parquet").to_pylist()
        first_view: dict[tuple[int, int], dt.datetime] = {}
        for e in events:
            if e["action"] == "view":
                key = (e["user_id"], e["artwork_id"])
                first_view[key] = min(e["event_ts"], first_view.get(key, e["event_ts"]))
        likes = [e for e in events if e["action"] == "like"]
        followed = sum(
            1
            for e in likes
            if (e["user_id"], e["artwork_id"]) in first_view
            and first_view[(e["user_id"], e["artwork_id"])] <= e["event_ts"]
        )
        assert followed > 0.85 * len(likes)

    def test_impressions_tie_with_events_and_clicks_log_a_view_at_the_same_ts(
        self, tiny: DemoSummary
    ) -> None:
        events = _read(tiny.root, "data/events/*.parquet")
        impressions = _read(tiny.root, "data/impressions/*.parquet")
        views = events.filter(pc.equal(events["action"], "view"))
        view_keys = set(
            zip(
                views["user_id"].to_pylist(),
                views["artwork_id"].to_pylist(),
                views["event_ts"].to_pylist(),
                strict=True,
            )
        )
        user_ts = {(k[0], k[2]) for k in view_keys}
        imp = impressions.to_pylist()
        clicks = [i for i in imp if i["clicked"]]
        logged = sum((i["user_id"], i["artwork_id"], i["ts"]) in view_keys for i in clicks)
        assert logged > 0.8 * len(clicks)
        unclicked_ties = sum((i["user_id"], i["ts"]) in user_ts for i in imp if not i["clicked"])
        assert unclicked_ties > 0

    def test_clicks_depend_on_taste(self, tiny: DemoSummary) -> None:
        profiles = pq.read_table(tiny.user_profiles_path).to_pylist()
        first_style = {}
        for p in profiles:  # sorted by user, valid_from: the first row is the sign-up version
            first_style.setdefault(p["user_id"], p["preferred_style"])
        style = {a["artwork_id"]: a["style"] for a in pq.read_table(tiny.artworks_path).to_pylist()}
        hits = {True: [], False: []}
        for i in _read(tiny.root, "data/impressions/*.parquet").to_pylist():
            if first_style[i["user_id"]] is not None:
                match = first_style[i["user_id"]] == style[i["artwork_id"]]
                hits[match].append(i["clicked"])
        assert np.mean(hits[True]) > 1.5 * np.mean(hits[False])

    def test_profiles_are_versioned_with_late_writes_and_corrections(
        self, tiny: DemoSummary
    ) -> None:
        profiles = pq.read_table(tiny.user_profiles_path)
        vf = profiles["valid_from"].to_pylist()
        created = profiles["created_at"].to_pylist()
        users = profiles["user_id"].to_pylist()
        start = dt.datetime.combine(START, dt.time(), dt.UTC)
        first: dict[int, dt.datetime] = {}
        for u, v in zip(users, vf, strict=True):
            first.setdefault(u, v)
        assert len(first) == tiny.users
        assert all(v < start for v in first.values())
        assert all(c >= v for c, v in zip(created, vf, strict=True))
        assert any(c - v > dt.timedelta(hours=1) for c, v in zip(created, vf, strict=True))
        assert any(v >= start for v in vf)  # some versions change during the range
        assert len(set(zip(users, vf, strict=True))) < len(users)  # corrections share valid_from

    def test_artworks_have_second_versions_and_list_tags(self, tiny: DemoSummary) -> None:
        artworks = pq.read_table(tiny.artworks_path)
        ids = artworks["artwork_id"].to_numpy()
        assert len(np.unique(ids)) == tiny.artworks < len(ids)
        assert len(set(artworks["style"].to_pylist())) >= 10
        assert pc.all(pc.greater_equal(artworks["created_at"], artworks["updated_ts"])).as_py()
        assert pc.max(pc.list_value_length(artworks["tags"])).as_py() > 1

    def test_nothing_happens_to_an_artwork_before_it_exists(self, tiny: DemoSummary) -> None:
        artworks = pq.read_table(tiny.artworks_path).to_pylist()
        born: dict[int, dt.datetime] = {}
        for a in artworks:
            born[a["artwork_id"]] = min(a["updated_ts"], born.get(a["artwork_id"], a["updated_ts"]))
        signup: dict[int, dt.datetime] = {}
        for p in pq.read_table(tiny.user_profiles_path).to_pylist():
            signup.setdefault(p["user_id"], p["valid_from"])
        assert all(born[a["artwork_id"]] > signup[a["author_id"]] for a in artworks)
        events = _read(tiny.root, "data/events/*.parquet").to_pylist()
        assert all(e["event_ts"] >= born[e["artwork_id"]] for e in events)
        # Artworks made during the range arrive with their author's `generate` event.
        start = dt.datetime.combine(START, dt.time(), dt.UTC)
        made = {(a, t) for a, t in born.items() if t >= start}
        generated = {(e["artwork_id"], e["event_ts"]) for e in events if e["action"] == "generate"}
        assert made and made <= generated

    def test_rows_are_in_time_order(self, tiny: DemoSummary) -> None:
        for path, col in [(p, "event_ts") for p in tiny.event_files] + [
            (p, "ts") for p in tiny.impression_files
        ]:
            ts = pq.read_table(path, columns=[col])[col].cast(pa.int64()).to_numpy()
            assert (np.diff(ts) >= 0).all(), path

    def test_a_few_artworks_have_no_embedding(self, tiny: DemoSummary) -> None:
        ds = lance.dataset(str(tiny.embeddings_path))
        stored = set(ds.to_table(columns=["artwork_id"])["artwork_id"].to_pylist())
        all_ids = set(pq.read_table(tiny.artworks_path)["artwork_id"].to_pylist())
        missing = all_ids - stored
        assert missing == set(tiny.missing_embedding_ids)
        assert 0 < len(missing) <= 0.02 * len(all_ids)
        assert stored <= all_ids

    def test_vectors_of_one_style_are_closer_than_across_styles(self, tiny: DemoSummary) -> None:
        table = lance.dataset(str(tiny.embeddings_path)).to_table()
        style = {a["artwork_id"]: a["style"] for a in pq.read_table(tiny.artworks_path).to_pylist()}
        vectors = table["vector"].combine_chunks().flatten().to_numpy().reshape(-1, 64)
        styles = np.array([style[i] for i in table["artwork_id"].to_pylist()])
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
        cosine = vectors @ vectors.T
        same = styles[:, None] == styles[None, :]
        np.fill_diagonal(same, False)
        across = styles[:, None] != styles[None, :]
        assert cosine[same].mean() > 0.3 > 0.1 > abs(cosine[across].mean())


# --------------------------------------------------------------------------- determinism


class TestDeterminism:
    def test_same_seed_gives_byte_identical_parquet_and_equal_vectors(
        self, tmp_path: Path, tiny: DemoSummary
    ) -> None:
        again = write_demo_workspace(tmp_path / "again", scale="tiny", seed=7, start=START)
        files = _parquet_files(tiny.root)
        assert files == _parquet_files(again.root)
        for rel in files:
            assert (tiny.root / rel).read_bytes() == (again.root / rel).read_bytes(), rel
            assert _bits(pq.read_table(tiny.root / rel)).equals(
                _bits(pq.read_table(again.root / rel))
            )
        first = lance.dataset(str(tiny.embeddings_path)).to_table()
        second = lance.dataset(str(again.embeddings_path)).to_table()
        assert first.equals(second)

    def test_another_seed_gives_other_data(self, tmp_path: Path, tiny: DemoSummary) -> None:
        other = write_demo_workspace(tmp_path / "other", scale="tiny", seed=8, start=START)
        first = pq.read_table(tiny.event_files[0])
        assert not first.equals(pq.read_table(other.event_files[0]))


# --------------------------------------------------------------------------- the target directory


class TestTargetDirectory:
    def test_refuses_an_unrelated_non_empty_directory(self, tmp_path: Path) -> None:
        (tmp_path / "notes.txt").write_text("mine")
        with pytest.raises(WorkspaceNotEmptyError, match="overwrite=True"):
            write_demo_workspace(tmp_path, scale="tiny")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]

    def test_overwrite_writes_into_it_and_keeps_other_files(self, tmp_path: Path) -> None:
        (tmp_path / "notes.txt").write_text("mine")
        summary = write_demo_workspace(tmp_path, scale="tiny", days=2, overwrite=True)
        assert (tmp_path / "notes.txt").read_text() == "mine"
        assert len(summary.event_files) == 2 and is_demo_workspace(tmp_path)

    def test_rewriting_a_demo_workspace_replaces_its_days_and_keeps_the_rest(
        self, tmp_path: Path
    ) -> None:
        write_demo_workspace(tmp_path, scale="tiny", days=3)
        (tmp_path / "output").mkdir()
        (tmp_path / "output" / "keep.parquet").write_bytes(b"not ours")
        summary = write_demo_workspace(tmp_path, scale="tiny", days=2, overwrite=True)
        assert summary.status == "rewritten" and summary.written
        assert sorted(p.name for p in summary.events_dir.iterdir()) == [
            "part-2026-10-01.parquet",
            "part-2026-10-02.parquet",
        ]
        assert len(list(summary.impressions_dir.iterdir())) == 2
        assert (tmp_path / "output" / "keep.parquet").read_bytes() == b"not ours"
        # The store gets a new version instead of being deleted under a reader's feet.
        assert summary.lance_version == 2
        assert lance.dataset(str(summary.embeddings_path)).count_rows() == summary.embedding_rows

    def test_a_file_is_not_a_workspace(self, tmp_path: Path) -> None:
        target = tmp_path / "file"
        target.write_text("x")
        with pytest.raises(NotADirectoryError):
            write_demo_workspace(target, scale="tiny")

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"scale": "huge"}, "unknown demo scale 'huge'; known: tiny, small"),
            ({"days": 0}, "days must be a positive integer"),
            ({"seed": -1}, "seed must be a non-negative integer"),
        ],
    )
    def test_bad_arguments_are_refused_before_writing(
        self, tmp_path: Path, kwargs: dict[str, object], message: str
    ) -> None:
        with pytest.raises(ValueError, match=message):
            write_demo_workspace(tmp_path / "ws", **kwargs)  # type: ignore[arg-type]
        assert not (tmp_path / "ws").exists()


# --------------------------------------------------------------------------- running it again


class TestRunningItAgain:
    def test_a_complete_workspace_of_the_same_scale_and_seed_is_left_alone(
        self, tmp_path: Path
    ) -> None:
        first = write_demo_workspace(tmp_path, scale="tiny", seed=7, start=START)
        assert first.status == "created" and first.written
        before = _snapshot(tmp_path)
        again = write_demo_workspace(tmp_path, scale="tiny", seed=7, start=START)
        assert _snapshot(tmp_path) == before  # no file rewritten: same bytes, mtimes, inodes
        assert again.status == "unchanged" and not again.written
        # The summary still describes the workspace, as the first run's did.
        for field in (
            "scale", "seed", "start", "end", "days", "event_files", "impression_files",
            "users", "artworks", "hot_user_id", "event_rows", "impression_rows",
            "clicked_rows", "user_profile_rows", "artwork_rows", "embedding_rows",
            "missing_embedding_ids", "lance_version",
        ):  # fmt: skip
            assert getattr(again, field) == getattr(first, field), field

    @pytest.mark.parametrize(
        "kwargs", [{"seed": 8}, {"scale": "small"}, {"days": 2}, {"start": dt.date(2026, 9, 1)}]
    )
    def test_another_configuration_is_refused_without_overwrite(
        self, tmp_path: Path, kwargs: dict[str, object]
    ) -> None:
        write_demo_workspace(tmp_path, scale="tiny", seed=7, start=START)
        before = _snapshot(tmp_path)
        args: dict[str, object] = {"scale": "tiny", "seed": 7, "start": START} | kwargs
        with pytest.raises(WorkspaceConflictError, match="overwrite") as caught:
            write_demo_workspace(tmp_path, **args)  # type: ignore[arg-type]
        assert isinstance(caught.value, FileExistsError)  # what the app maps to `conflict`
        assert caught.value.existing["scale"] == "tiny" and caught.value.existing["seed"] == 7
        assert _snapshot(tmp_path) == before

    def test_overwrite_rewrites_it_in_the_new_configuration(self, tmp_path: Path) -> None:
        write_demo_workspace(tmp_path, scale="tiny", seed=7, start=START)
        summary = write_demo_workspace(tmp_path, scale="tiny", seed=8, days=2, overwrite=True)
        assert summary.status == "rewritten"
        marker = json.loads((tmp_path / MARKER_NAME).read_text())
        assert (marker["seed"], marker["end"], marker["complete"]) == (8, "2026-10-02", True)
        assert len(list(summary.events_dir.iterdir())) == 2  # the other days are gone
        assert summary.lance_version == 2

    def test_overwrite_rewrites_even_an_identical_workspace(self, tmp_path: Path) -> None:
        write_demo_workspace(tmp_path, scale="tiny", days=2)
        before = _snapshot(tmp_path)
        summary = write_demo_workspace(tmp_path, scale="tiny", days=2, overwrite=True)
        assert summary.status == "rewritten" and summary.lance_version == 2
        after = _snapshot(tmp_path)
        for rel in _parquet_files(tmp_path):
            assert after[str(rel)][0] == before[str(rel)][0]  # same bytes, written again
            assert after[str(rel)][2] != before[str(rel)][2]

    def test_an_interrupted_run_is_completed_whatever_its_configuration(
        self, tmp_path: Path
    ) -> None:
        write_demo_workspace(tmp_path, scale="tiny", seed=8, days=3)
        marker_path = tmp_path / MARKER_NAME
        marker = json.loads(marker_path.read_text())
        marker_path.write_text(json.dumps(marker | {"complete": False}))
        (tmp_path / "data/events/part-2026-10-03.parquet").unlink()
        summary = write_demo_workspace(tmp_path, scale="tiny", seed=7, days=2)
        assert summary.status == "completed" and summary.written
        assert json.loads(marker_path.read_text())["complete"] is True
        assert len(list(summary.events_dir.iterdir())) == 2
        assert len(list(summary.impressions_dir.iterdir())) == 2

    @pytest.mark.parametrize(
        "damage",
        [
            "data/events/part-2026-10-02.parquet",
            "data/user_profiles/part-0.parquet",
            "data/artwork_embeddings.lance",
        ],
    )
    def test_a_complete_marker_over_missing_files_is_rewritten(
        self, tmp_path: Path, damage: str
    ) -> None:
        write_demo_workspace(tmp_path, scale="tiny", days=2)
        target = tmp_path / damage
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()
        summary = write_demo_workspace(tmp_path, scale="tiny", days=2)
        assert summary.status == "completed"
        assert target.exists()

    def test_a_stray_day_file_makes_it_incomplete(self, tmp_path: Path) -> None:
        write_demo_workspace(tmp_path, scale="tiny", days=2)
        stray = tmp_path / "data/events/part-2026-10-09.parquet"
        stray.write_bytes((tmp_path / "data/events/part-2026-10-01.parquet").read_bytes())
        summary = write_demo_workspace(tmp_path, scale="tiny", days=2)
        assert summary.status == "completed" and not stray.exists()

    def test_a_directory_with_files_but_no_marker_still_needs_overwrite(
        self, tmp_path: Path
    ) -> None:
        write_demo_workspace(tmp_path, scale="tiny", days=2)
        (tmp_path / MARKER_NAME).unlink()
        with pytest.raises(WorkspaceNotEmptyError):
            write_demo_workspace(tmp_path, scale="tiny", days=2)
        summary = write_demo_workspace(tmp_path, scale="tiny", days=2, overwrite=True)
        assert summary.status == "created" and is_demo_workspace(tmp_path)
