"""The YAML catalog loader: every error kind is reported with its file, 1-based line and column.

Each test writes a few small YAML files into `tmp_path` and checks the `CatalogErrors` raised by
`FeatureCatalog.from_yaml_dir`. The base documents below are written so that line numbers are
easy to read off: the view's `aggregations:` key is on line 13, its first item on line 14.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from daedalus.catalog.errors import CatalogError, CatalogErrors
from daedalus.catalog.model import AggFunction, Location
from daedalus.catalog.registry import FeatureCatalog

REPO = Path(__file__).resolve().parents[2]

# Lines 1-12; `aggregations:` / `features:` follow on line 13.
VIEW_HEAD = """\
kind: feature_view
name: {name}
entity: user
source:
  path: data/events/*.parquet
  timestamp: event_ts
schema:
  user_id: BIGINT
  artwork_id: BIGINT
  action: VARCHAR
  dwell_ms: DOUBLE
  event_ts: TIMESTAMPTZ
"""

# Line 14: the item; line 15: function; line 16: window.
COUNT_AGG = """\
aggregations:
  - name: clicks_1d
    function: count
    window: 1d
"""

SERVICE = """\
kind: feature_service
name: ranking
spine:
  path: data/spine.parquet
  timestamp: ts
  entity: [user, artwork]
  labels: {clicked: BOOLEAN}
features:
  - clicks:clicks_1d
"""

STORE = """\
kind: embedding_store
name: artwork_embeddings
entity: artwork
path: data/artwork_embeddings.lance
id_column: artwork_id
vector_column: vector
dim: 8
"""


def view(name: str = "clicks", body: str = COUNT_AGG, **replace: str) -> str:
    """The base view named `name` with `body` after the schema; `replace` edits the head."""
    text = VIEW_HEAD.format(name=name) + body
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


def write(directory: Path, **files: str) -> Path:
    """Write `name_yaml="text"` as `name.yaml` files into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    for stem, text in files.items():
        (directory / f"{stem.removesuffix('_yaml')}.yaml").write_text(text, encoding="utf-8")
    return directory


def load_errors(directory: Path) -> list[CatalogError]:
    with pytest.raises(CatalogErrors) as info:
        FeatureCatalog.from_yaml_dir(directory)
    return info.value.errors


def the_error(errors: list[CatalogError], substring: str) -> CatalogError:
    """The one error whose message contains `substring`."""
    found = [e for e in errors if substring in e.message]
    assert len(found) == 1, f"expected one error with {substring!r}, got:\n" + "\n".join(
        map(str, errors)
    )
    return found[0]


def assert_located(
    error: CatalogError, file: Path, line: int, column: int, hint: str | None = None
) -> None:
    assert (error.file, error.line, error.column) == (str(file), line, column), str(error)
    if hint is not None:
        assert error.hint is not None and hint in error.hint, str(error)


# --------------------------------------------------------------------------- syntax and keys


class TestSyntaxAndKeys:
    def test_a_yaml_syntax_error_is_located_at_the_offending_character(
        self, tmp_path: Path
    ) -> None:
        write(tmp_path, a="kind: feature_view\nname: clicks\n  bad: indentation\n")
        [error] = load_errors(tmp_path)
        assert "YAML syntax error" in error.message
        assert "mapping values are not allowed" in error.message
        assert_located(error, tmp_path / "a.yaml", 3, 6)

    def test_an_unknown_key_is_located_with_a_suggestion(self, tmp_path: Path) -> None:
        write(tmp_path, a=view(body=COUNT_AGG.replace("aggregations:", "aggregationz:")))
        error = the_error(load_errors(tmp_path), "unknown key 'aggregationz'")
        assert_located(error, tmp_path / "a.yaml", 13, 1, hint="did you mean aggregations?")

    @pytest.mark.parametrize(
        ("stem", "kind", "allowed"),
        [
            ("a", "feature_view", "kind, name, description, entity, source"),
            ("s", "feature_service", "kind, name, description, spine, features"),
            ("e", "embedding_store", "kind, name, description, entity, path"),
        ],
    )
    def test_an_unknown_key_without_a_near_miss_is_the_only_error_and_lists_the_allowed_keys(
        self, tmp_path: Path, stem: str, kind: str, allowed: str
    ) -> None:
        files = {"a": view(), "s": SERVICE, "e": STORE}
        files[stem] += "colour: blue\n"
        write(tmp_path, **files)
        [error] = load_errors(tmp_path)
        assert f"unknown key 'colour' in {kind}" in error.message
        line = files[stem].count("\n")
        assert_located(error, tmp_path / f"{stem}.yaml", line, 1, hint=f"allowed keys: {allowed}")

    def test_an_unknown_kind_is_located_with_a_suggestion(self, tmp_path: Path) -> None:
        write(tmp_path, a=view().replace("kind: feature_view", "kind: featureview"))
        [error] = load_errors(tmp_path)
        assert "unknown or missing kind 'featureview'" in error.message
        assert_located(error, tmp_path / "a.yaml", 1, 7, hint="did you mean feature_view?")


# --------------------------------------------------------------------------- schema and entities


class TestSchemaAndEntities:
    @pytest.mark.parametrize(
        ("dtype", "column"),
        [
            ("BIGIN", 13),  # `  dwell_ms: ` is 12 characters: the type starts at column 13
            ("STRUCT(a INTEGER, b BIGIN)", 13 + len("STRUCT(a INTEGER, b ")),
            ('"STRUCT(a INTEGER, b BIGIN)"', 14 + len("STRUCT(a INTEGER, b ")),
        ],
        ids=["plain", "nested", "quoted"],
    )
    def test_an_unknown_dtype_is_located_with_a_suggestion(
        self, tmp_path: Path, dtype: str, column: int
    ) -> None:
        write(tmp_path, a=view(**{"dwell_ms: DOUBLE": f"dwell_ms: {dtype}"}))
        [error] = load_errors(tmp_path)
        assert "column 'dwell_ms': unknown dtype 'BIGIN'" in error.message
        assert error.hint == "did you mean BIGINT?"
        assert_located(error, tmp_path / "a.yaml", 11, column)

    def test_an_unknown_entity_is_located_with_a_suggestion(self, tmp_path: Path) -> None:
        write(tmp_path, a=view(**{"entity: user": "entity: usr"}))
        [error] = load_errors(tmp_path)
        assert "unknown entity 'usr'" in error.message
        assert_located(error, tmp_path / "a.yaml", 3, 9, hint="did you mean user?")

    def test_an_unknown_entity_in_a_list_points_at_the_list_item(self, tmp_path: Path) -> None:
        write(tmp_path, a=view(**{"entity: user": "entity: [user, artwrk]"}))
        [error] = load_errors(tmp_path)
        assert "unknown entity 'artwrk'" in error.message
        assert_located(error, tmp_path / "a.yaml", 3, 16, hint="did you mean artwork?")

    def test_a_view_whose_schema_lacks_its_entitys_join_key_is_rejected(
        self, tmp_path: Path
    ) -> None:
        write(tmp_path, a=view(**{"  user_id: BIGINT\n": ""}))
        [error] = load_errors(tmp_path)
        assert "schema lacks the join key 'user_id'" in error.message
        assert_located(error, tmp_path / "a.yaml", 3, 9, hint="add 'user_id: BIGINT' to the schema")

    def test_a_join_key_that_is_not_an_integer_is_rejected(self, tmp_path: Path) -> None:
        write(tmp_path, a=view(**{"user_id: BIGINT": "user_id: VARCHAR"}))
        [error] = load_errors(tmp_path)
        assert "join key 'user_id' must be an integer column, got VARCHAR" in error.message
        assert_located(error, tmp_path / "a.yaml", 8, 12)

    def test_a_timestamp_column_missing_from_the_schema_is_located_with_a_suggestion(
        self, tmp_path: Path
    ) -> None:
        write(tmp_path, a=view(**{"timestamp: event_ts": "timestamp: event_tss"}))
        [error] = load_errors(tmp_path)
        assert "timestamp column 'event_tss' is not a column of the schema" in error.message
        assert_located(error, tmp_path / "a.yaml", 6, 14, hint="did you mean event_ts?")

    def test_a_timestamp_column_of_a_non_time_type_is_rejected(self, tmp_path: Path) -> None:
        write(tmp_path, a=view(**{"timestamp: event_ts": "timestamp: dwell_ms"}))
        [error] = load_errors(tmp_path)
        assert "timestamp column 'dwell_ms' has type DOUBLE, not a time type" in error.message
        assert_located(error, tmp_path / "a.yaml", 6, 14)


# --------------------------------------------------------------------------- features and aggregations


class TestFeaturesAndAggregations:
    def test_a_duplicate_feature_name_within_a_view_points_at_the_second_one(
        self, tmp_path: Path
    ) -> None:
        body = COUNT_AGG + "  - {name: clicks_1d, function: count, window: 7d}\n"
        write(tmp_path, a=view(body=body))
        [error] = load_errors(tmp_path)
        assert "duplicate feature name 'clicks_1d' (first defined at line 14)" in error.message
        assert_located(error, tmp_path / "a.yaml", 17, 12)

    def test_a_feature_and_an_aggregation_may_not_share_a_name(self, tmp_path: Path) -> None:
        body = "features:\n  - {name: clicks_1d, column: action}\n" + COUNT_AGG
        write(tmp_path, a=view(body=body))
        [error] = load_errors(tmp_path)
        assert "duplicate feature name 'clicks_1d' (first defined at line 14)" in error.message
        assert_located(error, tmp_path / "a.yaml", 16, 11)

    def test_a_bad_window_is_located_at_its_value(self, tmp_path: Path) -> None:
        write(tmp_path, a=view(body=COUNT_AGG.replace("window: 1d", "window: 7x")))
        [error] = load_errors(tmp_path)
        assert "window of 'clicks_1d': bad duration '7x'" in error.message
        assert_located(error, tmp_path / "a.yaml", 16, 13)

    @pytest.mark.parametrize(
        "function", [f for f in AggFunction if f.needs_column], ids=lambda f: f.value
    )
    def test_a_function_that_needs_a_column_without_one_is_rejected(
        self, tmp_path: Path, function: AggFunction
    ) -> None:
        extra = "    n: 5\n" if function is AggFunction.LAST_N else ""
        body = COUNT_AGG.replace("function: count", f"function: {function.value}") + extra
        write(tmp_path, a=view(body=body))
        [error] = load_errors(tmp_path)
        assert f"function {function.value} needs a column" in error.message
        assert "add 'column: <name>' to 'clicks_1d'" in error.message
        assert_located(error, tmp_path / "a.yaml", 14, 5)

    @pytest.mark.parametrize(
        ("function", "column", "reason"),
        [
            (
                "sum",
                "action",
                "sum needs an integer or floating-point column; column 'action' is VARCHAR",
            ),
            ("mean", "event_ts", "mean needs an integer or floating-point column"),
            ("stddev", "action", "stddev needs an integer or floating-point column"),
        ],
    )
    def test_a_column_of_a_type_the_function_cannot_take_is_rejected(
        self, tmp_path: Path, function: str, column: str, reason: str
    ) -> None:
        body = COUNT_AGG.replace("function: count", f"function: {function}\n    column: {column}")
        write(tmp_path, a=view(body=body))
        [error] = load_errors(tmp_path)
        assert reason in error.message
        assert_located(error, tmp_path / "a.yaml", 16, 13)

    def test_an_aggregation_reading_a_missing_column_is_located_with_a_suggestion(
        self, tmp_path: Path
    ) -> None:
        body = COUNT_AGG.replace("function: count", "function: sum\n    column: dwel_ms")
        write(tmp_path, a=view(body=body))
        [error] = load_errors(tmp_path)
        assert "reads column 'dwel_ms', which the schema lacks" in error.message
        assert_located(error, tmp_path / "a.yaml", 16, 13, hint="did you mean dwell_ms?")

    def test_a_filter_on_a_missing_column_is_located_at_its_key(self, tmp_path: Path) -> None:
        write(tmp_path, a=view(body=COUNT_AGG + "    filter: {actoin: view}\n"))
        [error] = load_errors(tmp_path)
        assert "filter on column 'actoin', which the schema lacks" in error.message
        assert_located(error, tmp_path / "a.yaml", 17, 14, hint="did you mean action?")

    def test_a_filter_value_that_does_not_fit_its_column_is_rejected(self, tmp_path: Path) -> None:
        write(tmp_path, a=view(body=COUNT_AGG + "    filter: {dwell_ms: long}\n"))
        [error] = load_errors(tmp_path)
        assert "filter value 'long' does not fit column 'dwell_ms' of type DOUBLE" in error.message
        assert_located(error, tmp_path / "a.yaml", 17, 24)

    def test_last_n_without_n_is_rejected(self, tmp_path: Path) -> None:
        body = COUNT_AGG.replace("function: count", "function: last_n\n    column: artwork_id")
        write(tmp_path, a=view(body=body))
        [error] = load_errors(tmp_path)
        assert "last_n needs 'n', a whole number from 1 to 1000, got None" in error.message
        assert_located(error, tmp_path / "a.yaml", 14, 5)

    def test_n_on_a_function_other_than_last_n_is_rejected(self, tmp_path: Path) -> None:
        write(tmp_path, a=view(body=COUNT_AGG + "    n: 3\n"))
        [error] = load_errors(tmp_path)
        assert "'n' applies only to last_n, not count" in error.message
        assert_located(error, tmp_path / "a.yaml", 17, 5)

    @pytest.mark.parametrize(
        ("body", "line", "column"),
        [
            (COUNT_AGG.replace("function: count", "function: sum\n    column: [dwell_ms]"), 16, 13),
            ("features:\n  - {name: f, column: [dwell_ms]}\n", 14, 23),
        ],
        ids=["aggregation", "feature"],
    )
    def test_a_column_that_is_not_a_name_is_an_error_not_a_crash(
        self, tmp_path: Path, body: str, line: int, column: int
    ) -> None:
        write(tmp_path, a=view(body=body))
        [error] = load_errors(tmp_path)
        assert "must be a column name, got a list" in error.message
        assert_located(error, tmp_path / "a.yaml", line, column)


# --------------------------------------------------------------------------- names across files


class TestDuplicateNames:
    def test_duplicate_view_names_across_two_files_point_at_the_second(
        self, tmp_path: Path
    ) -> None:
        write(tmp_path, a=view(), b=view())
        [error] = load_errors(tmp_path)
        assert "duplicate feature view name 'clicks'" in error.message
        assert f"first defined at {tmp_path / 'a.yaml'}:1:1" in error.message
        assert_located(error, tmp_path / "b.yaml", 2, 7)

    def test_duplicate_view_names_within_one_file_point_at_the_second_document(
        self, tmp_path: Path
    ) -> None:
        first = view()
        write(tmp_path, a=first + "---\n" + view())
        [error] = load_errors(tmp_path)
        assert "duplicate feature view name 'clicks'" in error.message
        assert_located(error, tmp_path / "a.yaml", first.count("\n") + 3, 7)

    def test_duplicate_service_names_point_at_the_second(self, tmp_path: Path) -> None:
        write(tmp_path, a=view(), s=SERVICE, t=SERVICE)
        [error] = load_errors(tmp_path)
        assert "duplicate feature service name 'ranking'" in error.message
        assert f"first defined at {tmp_path / 's.yaml'}:1:1" in error.message
        assert_located(error, tmp_path / "t.yaml", 2, 7)


# --------------------------------------------------------------------------- services


class TestServices:
    def test_an_unknown_view_in_a_service_is_located_with_a_suggestion(
        self, tmp_path: Path
    ) -> None:
        write(tmp_path, a=view(), s=SERVICE.replace("clicks:clicks_1d", "clickz:clicks_1d"))
        [error] = load_errors(tmp_path)
        assert "unknown feature view 'clickz'" in error.message
        assert_located(error, tmp_path / "s.yaml", 9, 5, hint="did you mean clicks?")

    def test_an_unknown_feature_in_a_service_is_located_with_a_suggestion(
        self, tmp_path: Path
    ) -> None:
        write(tmp_path, a=view(), s=SERVICE.replace("clicks:clicks_1d", "clicks:click_1d"))
        [error] = load_errors(tmp_path)
        assert "view 'clicks' has no feature 'click_1d'" in error.message
        assert_located(error, tmp_path / "s.yaml", 9, 5, hint="did you mean clicks_1d?")

    def test_a_reference_to_a_broken_view_is_not_reported_twice(self, tmp_path: Path) -> None:
        write(tmp_path, a=view(**{"entity: user": "entity: usr"}), s=SERVICE)
        [error] = load_errors(tmp_path)
        assert "unknown entity 'usr'" in error.message
        assert error.file == str(tmp_path / "a.yaml")

    def test_a_service_whose_view_needs_a_key_the_spine_lacks_is_rejected(
        self, tmp_path: Path
    ) -> None:
        pair_view = view(**{"entity: user": "entity: [user, artwork]"})
        write(tmp_path, a=pair_view, s=SERVICE.replace("entity: [user, artwork]", "entity: user"))
        [error] = load_errors(tmp_path)
        assert "view 'clicks' is keyed on artwork_id, which the spine lacks" in error.message
        assert_located(error, tmp_path / "s.yaml", 9, 5)
        assert error.hint == "add the entity to the spine: entity: [user, artwork]"

    def test_an_output_column_clash_between_two_views_needs_an_alias(self, tmp_path: Path) -> None:
        write(
            tmp_path, a=view(), b=view("clicks_again"), s=SERVICE + "  - clicks_again:clicks_1d\n"
        )
        [error] = load_errors(tmp_path)
        assert (
            "output column 'clicks_1d' (clicks_again:clicks_1d) clashes with the feature "
            "clicks:clicks_1d" in error.message
        )
        assert_located(error, tmp_path / "s.yaml", 10, 5, hint="give one of them an alias")

    def test_an_alias_resolves_an_output_column_clash(self, tmp_path: Path) -> None:
        aliased = "  - {feature: 'clicks_again:clicks_1d', alias: clicks_again_1d}\n"
        write(tmp_path, a=view(), b=view("clicks_again"), s=SERVICE + aliased)
        catalog = FeatureCatalog.from_yaml_dir(tmp_path)
        schema = catalog.resolved_schema("ranking")
        assert schema.names == [
            "user_id",
            "artwork_id",
            "ts",
            "clicked",
            "clicks_1d",
            "clicks_again_1d",
        ]
        assert schema.field("clicks_again_1d").type == pa.int64()

    def test_a_feature_clashing_with_a_spine_key_is_rejected(self, tmp_path: Path) -> None:
        body = "features:\n  - {name: artwork_id, column: artwork_id}\n"
        write(
            tmp_path, a=view(body=body), s=SERVICE.replace("clicks:clicks_1d", "clicks:artwork_id")
        )
        [error] = load_errors(tmp_path)
        assert "output column 'artwork_id'" in error.message
        assert "clashes with the spine key" in error.message
        assert_located(error, tmp_path / "s.yaml", 9, 5)

    def test_an_embedding_whose_store_is_unknown_is_located_with_a_suggestion(
        self, tmp_path: Path
    ) -> None:
        embeddings = (
            "embeddings:\n  - {name: artwork_vec, store: artwork_embedings, source: artwork_id}\n"
        )
        write(tmp_path, a=view(), e=STORE, s=SERVICE + embeddings)
        [error] = load_errors(tmp_path)
        assert "unknown embedding store 'artwork_embedings'" in error.message
        assert_located(error, tmp_path / "s.yaml", 11, 5, hint="did you mean artwork_embeddings?")

    def test_an_embedding_source_that_holds_no_ids_is_rejected(self, tmp_path: Path) -> None:
        body = "features:\n  - {name: last_action, column: action}\n"
        service = SERVICE.replace("clicks:clicks_1d", "clicks:last_action") + (
            "embeddings:\n  - {name: artwork_vec, store: artwork_embeddings, source: last_action}\n"
        )
        write(tmp_path, a=view(body=body), e=STORE, s=service)
        [error] = load_errors(tmp_path)
        assert "embedding source 'last_action' must hold ids" in error.message
        assert_located(error, tmp_path / "s.yaml", 11, 5)

    def test_an_embedding_store_is_keyed_by_exactly_one_entity(self, tmp_path: Path) -> None:
        write(tmp_path, a=view(), e=STORE.replace("entity: artwork", "entity: [artwork, user]"))
        [error] = load_errors(tmp_path)
        assert "an embedding store is keyed by one entity name, got a list" in error.message
        assert_located(error, tmp_path / "e.yaml", 3, 9)


# --------------------------------------------------------------------------- directories


class TestDirectories:
    def test_an_empty_directory_is_an_error(self, tmp_path: Path) -> None:
        (tmp_path / "README.md").write_text("not a definition")
        [error] = load_errors(tmp_path)
        assert "no feature definitions found" in error.message
        assert_located(error, tmp_path, 1, 1)

    def test_a_missing_directory_is_an_error(self, tmp_path: Path) -> None:
        missing = tmp_path / "nowhere"
        [error] = load_errors(missing)
        assert "catalog directory does not exist" in error.message
        assert_located(error, missing, 1, 1)

    def test_a_valid_directory_loads_with_locations(self, tmp_path: Path) -> None:
        write(tmp_path, a=view(), e=STORE, s=SERVICE, empty="# nothing here\n")
        catalog = FeatureCatalog.from_yaml_dir(tmp_path)
        assert set(catalog.views) == {"clicks"}
        assert set(catalog.services) == {"ranking"}
        assert set(catalog.stores) == {"artwork_embeddings"}
        assert catalog.views["clicks"].location == Location(str(tmp_path / "a.yaml"), 1, 1)
        assert catalog.services["ranking"].location == Location(str(tmp_path / "s.yaml"), 1, 1)
        assert catalog.views["clicks"].aggregations[0].function is AggFunction.COUNT

    def test_the_shipped_demo_catalog_loads(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.chdir(REPO)
        catalog = FeatureCatalog.from_yaml_dir("feature_views")
        assert set(catalog.views) == {
            "user_activity",
            "artwork_popularity",
            "user_artwork_engagement",
            "user_profile",
            "artwork_metadata",
        }
        assert set(catalog.services) == {"feed_ranking"}
        assert set(catalog.stores) == {"artwork_embeddings"}


# --------------------------------------------------------------------------- all at once


class TestEveryErrorAtOnce:
    def test_several_broken_files_report_every_error_sorted_by_file_and_line(
        self, tmp_path: Path
    ) -> None:
        broken_view = view(
            body=COUNT_AGG.replace("window: 1d", "window: 7x"),
            **{"dwell_ms: DOUBLE": "dwell_ms: BIGIN"},
        )
        write(
            tmp_path,
            # Written out of order on purpose: the report is sorted, not in discovery order.
            s=SERVICE.replace("clicks:clicks_1d", "views:viewz_1d") + "  - clicks:clicks_1d\n",
            d=view("views", body=COUNT_AGG.replace("clicks_1d", "views_1d")),
            c=view("likes", **{"entity: user": "entity: usr"}),
            b=broken_view,
            a="kind: feature_view\nname: [broken\n",
        )
        errors = load_errors(tmp_path)
        located = [(Path(e.file).name, e.line, e.column) for e in errors]
        assert located == [
            ("a.yaml", 3, 1),  # YAML syntax error (unclosed flow sequence, at end of stream)
            ("b.yaml", 11, 13),  # unknown dtype BIGIN
            ("b.yaml", 16, 13),  # bad window 7x
            ("c.yaml", 3, 9),  # unknown entity usr
            ("s.yaml", 9, 5),  # views has no feature viewz_1d (clicks:… is broken: not repeated)
        ]
        assert located == sorted(located)
        assert [e.message.split(":")[0] for e in errors] == [
            "YAML syntax error",
            "column 'dwell_ms'",
            "window of 'clicks_1d'",
            "unknown entity 'usr'",
            "view 'views' has no feature 'viewz_1d'",
        ]

    def test_the_exception_text_counts_and_lists_every_error(self, tmp_path: Path) -> None:
        write(
            tmp_path,
            a=view(**{"entity: user": "entity: usr"}),
            b=view("b", **{"entity: user": "entity: usr"}),
        )
        with pytest.raises(CatalogErrors) as info:
            FeatureCatalog.from_yaml_dir(tmp_path)
        text = str(info.value)
        assert text.startswith("2 errors in the feature catalog:\n")
        assert f"  {tmp_path / 'a.yaml'}:3:9: unknown entity 'usr' — did you mean user?" in text
        assert f"  {tmp_path / 'b.yaml'}:3:9: unknown entity 'usr' — did you mean user?" in text

    def test_nothing_is_half_loaded_when_one_file_is_broken(self, tmp_path: Path) -> None:
        write(
            tmp_path,
            a=view(),
            e=STORE,
            s=SERVICE,
            z=view("other", **{"entity: user": "entity: usr"}),
        )
        result = None
        with pytest.raises(CatalogErrors) as info:
            result = FeatureCatalog.from_yaml_dir(tmp_path)
        assert result is None
        assert len(info.value.errors) == 1
        # Fixing the broken file makes the whole directory load.
        write(tmp_path, z=view("other"))
        assert set(FeatureCatalog.from_yaml_dir(tmp_path).views) == {"clicks", "other"}
