"""The YAML catalog loader: every error kind is reported with its file, 1-based line and column.

Each test writes a few small YAML files into `tmp_path` and checks the `CatalogErrors` raised by
`FeatureCatalog.from_yaml_dir`. The base documents below are written so that line numbers are
easy to read off: the view's `aggregations:` key is on line 13, its first item on line 14.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from ruamel.yaml import YAML

from daedalus.catalog.converter import CONVERTER
from daedalus.catalog.errors import CatalogError, CatalogErrors
from daedalus.catalog.loader import MAX_SUGGESTION_WORK
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


# --------------------------------------------------------------------------- hostile YAML
#
# The loader is bounded: aliases may reach at most MAX_ALIAS_NODES nodes per file, documents
# nest at most MAX_DEPTH levels, and every message quotes at most CLIP_WIDTH characters of what
# the file says. Anything the YAML library raises becomes a located CatalogError.


def laughs(levels: int, fanout: int = 9, where: str = "name") -> str:
    """A 'billion laughs' view: `fanout ** levels` strings reached through aliases of aliases.

    The bomb is the value of `where` in an otherwise plausible view, after the anchors (which
    sit under unknown keys, one per line, so the alias lines are easy to count).
    """
    lines = ["kind: feature_view", "a0: &a0 [" + ", ".join(['"lol"'] * fanout) + "]"]
    for level in range(1, levels):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * fanout) + "]")
    lines += [
        f"{where}: *a{levels - 1}",
        "entity: user",
        "source: {path: data/x.parquet, timestamp: ts}",
        "schema: {user_id: BIGINT, ts: TIMESTAMPTZ, action: VARCHAR}",
        "features: [action]",
    ]
    if where != "name":
        lines.append("name: bomb")
    return "\n".join(lines) + "\n"


def assert_bounded(errors: list[CatalogError], limit: int = 400) -> None:
    """No message or hint echoes a long run of the file's text."""
    for error in errors:
        for text in (error.message, error.hint or ""):
            assert len(text) <= limit, f"{len(text)} characters: {text[:200]}…"
            assert "x" * 81 not in text, text[:200]


class TestAliasExpansion:
    def test_a_billion_laughs_file_is_refused_at_the_alias_that_crosses_the_limit(
        self, tmp_path: Path
    ) -> None:
        # a0..a3 (lines 2-5) reach 90 + 819 + 7,380 = 8,289 nodes through their aliases; a3
        # names 7,381 nodes, so the first alias of a4 (line 6, column 10) passes 10,000.
        write(tmp_path, a=laughs(levels=6))
        errors = load_errors(tmp_path)
        error = the_error(errors, "too many alias expansions")
        assert "10,000 nodes reached through aliases" in error.message
        assert_located(error, tmp_path / "a.yaml", 6, 10)
        assert_bounded(errors)

    @pytest.mark.parametrize("where", ["name", "description", "schema", "entity"])
    def test_the_bomb_is_refused_wherever_the_alias_is_used(
        self, tmp_path: Path, where: str
    ) -> None:
        write(tmp_path, a=laughs(levels=9, where=where))
        errors = load_errors(tmp_path)
        the_error(errors, "too many alias expansions")
        assert_bounded(errors)

    def test_a_few_aliases_are_still_allowed(self, tmp_path: Path) -> None:
        text = view(body="features: [action]\n", **{"path: data/events/*.parquet": "path: &p x"})
        text += "description: *p\n"
        write(tmp_path, a=text)
        catalog = FeatureCatalog.from_yaml_dir(tmp_path)
        assert catalog.views["clicks"].description == "x"

    def test_a_recursive_alias_is_a_located_error(self, tmp_path: Path) -> None:
        write(tmp_path, a=view() + "loop: &loop [1, *loop]\n")
        errors = load_errors(tmp_path)
        error = the_error(errors, "recursive")
        assert_located(error, tmp_path / "a.yaml", 17, 17)


class TestControlCharacters:
    @pytest.mark.parametrize(
        ("char", "name"), [("\x00", "NUL"), ("\x07", "BEL"), ("\x1b", "ESC"), ("\x7f", "DEL")]
    )
    def test_a_control_character_is_located_at_the_character(
        self, tmp_path: Path, char: str, name: str
    ) -> None:
        write(tmp_path, a=view(**{"name: clicks": f"name: cl{char}icks"}))
        [error] = load_errors(tmp_path)
        assert f"U+{ord(char):04X}" in error.message, error.message
        assert_located(error, tmp_path / "a.yaml", 2, 9)

    def test_the_location_counts_lines_like_the_yaml_parser(self, tmp_path: Path) -> None:
        # \r\n is one line break, a lone \r is one too.
        (tmp_path / "a.yaml").write_bytes(b"kind: feature_view\r\nname: a\rentity: \x00\n")
        [error] = load_errors(tmp_path)
        assert_located(error, tmp_path / "a.yaml", 3, 9)

    def test_a_file_that_is_not_utf8_is_located_at_the_bad_byte(self, tmp_path: Path) -> None:
        (tmp_path / "a.yaml").write_bytes(b"kind: feature_view\nname: caf\xe9s\n")
        [error] = load_errors(tmp_path)
        assert "not UTF-8" in error.message
        assert "0xe9" in error.message
        assert_located(error, tmp_path / "a.yaml", 2, 10)


class TestNestingDepth:
    @pytest.mark.parametrize(
        "value",
        [
            "[" * 10_000 + "]" * 10_000,
            "{a: " * 5_000 + "1" + "}" * 5_000,
        ],
        ids=["flow-sequence", "flow-mapping"],
    )
    def test_deep_flow_nesting_is_a_located_error_naming_the_limit(
        self, tmp_path: Path, value: str
    ) -> None:
        write(tmp_path, a=view() + f"description: {value}\n")
        errors = load_errors(tmp_path)
        error = the_error(errors, "nested more than 64 levels")
        # The document is level 1, the first bracket (column 14 of line 17) level 2: the 64th
        # bracket opens level 65.
        step = 1 if value.startswith("[") else 4
        assert_located(error, tmp_path / "a.yaml", 17, 14 + 63 * step)

    def test_deep_block_nesting_is_a_located_error(self, tmp_path: Path) -> None:
        # Line 17 is `description:`; level L (the document is level 1) starts on line 16 + L,
        # indented L - 1 spaces.
        block = "".join(f"{' ' * i}k:\n" for i in range(1, 3_000))
        write(tmp_path, a=view() + "description:\n" + block)
        errors = load_errors(tmp_path)
        error = the_error(errors, "nested more than 64 levels")
        assert_located(error, tmp_path / "a.yaml", 16 + 65, 65)

    def test_64_levels_are_allowed(self, tmp_path: Path) -> None:
        # The document is level 1, the first bracket level 2: 63 brackets reach level 64.
        write(tmp_path, a=view() + "description: " + "[" * 63 + "]" * 63 + "\n")
        [error] = load_errors(tmp_path)  # a description must be text: a checker error
        assert "description must be text, got a list" in error.message
        assert_located(error, tmp_path / "a.yaml", 17, 14)

    def test_aliases_count_towards_the_depth(self, tmp_path: Path) -> None:
        deep = "[" * 40 + "]" * 40
        text = view() + f"d1: &d1 {deep}\nd2: &d2 {'[' * 30}*d1{']' * 30}\n"
        write(tmp_path, a=text)
        errors = load_errors(tmp_path)
        error = the_error(errors, "nested more than 64 levels")
        assert_located(error, tmp_path / "a.yaml", 18, 9 + 30)

    def test_a_deeply_nested_dtype_is_a_located_error(self, tmp_path: Path) -> None:
        dtype = "STRUCT(a " * 2_000 + "INT" + ")" * 2_000
        write(tmp_path, a=view(**{"dwell_ms: DOUBLE": f"dwell_ms: {dtype}"}))
        [error] = load_errors(tmp_path)
        assert "nested more than 64 levels" in error.message
        assert_located(error, tmp_path / "a.yaml", 11, 13)
        assert_bounded([error])


LONG = "x" * 100_000


class TestClippedQuotes:
    @pytest.mark.parametrize(
        ("replace", "what"),
        [
            ({"name: clicks": f"name: '{LONG} y'"}, "not a valid name"),
            ({"dwell_ms: DOUBLE": f"dwell_ms: {LONG}"}, "unknown dtype"),
            ({"dwell_ms: DOUBLE": f"dwell_ms: DECIMAL({'9' * 100_000}, 2)"}, "precision"),
            (
                {
                    "dwell_ms: DOUBLE": f"? {LONG}\n  : DOUBLE",  # a key of > 1024 is explicit
                    "timestamp: event_ts": f"timestamp: {LONG}y",
                },
                "is not a column of the schema",
            ),
            ({"entity: user": f"entity: {LONG}"}, "unknown entity"),
            ({"timestamp: event_ts": f"timestamp: {LONG}"}, "timestamp column"),
            ({"window: 1d": f"window: {LONG}"}, "bad duration"),
            ({"function: count": f"function: {LONG}"}, "unknown function"),
            ({"    window: 1d\n": f"    window: 1d\n    ? {LONG}\n    : 1\n"}, "unknown key"),
            ({"    window: 1d\n": f"    window: 1d\n    filter: {{action: {LONG}}}\n"}, None),
            ({"    window: 1d\n": f"    window: 1d\n    filter: {{dwell_ms: {LONG}}}\n"}, "fit"),
            ({"    window: 1d\n": f"    window: 1d\n    filter: {{? {LONG} : 1}}\n"}, "filter on"),
            (
                {"function: count": f"function: last_n\n    column: artwork_id\n    n: {LONG}"},
                "last_n needs 'n'",
            ),
            ({"kind: feature_view": f"kind: {LONG}"}, "kind"),
        ],
        ids=lambda v: v if isinstance(v, str) else None,
    )
    def test_a_long_value_is_clipped_in_every_message(
        self, tmp_path: Path, replace: dict[str, str], what: str | None
    ) -> None:
        text = view()
        for old, new in replace.items():
            assert old in text, old
            text = text.replace(old, new, 1)
        write(tmp_path, a=text)
        if what is None:  # a long string is a fine filter value for a VARCHAR column
            FeatureCatalog.from_yaml_dir(tmp_path)
            return
        errors = load_errors(tmp_path)
        assert any(what in e.message for e in errors), errors
        assert_bounded(errors)
        assert any("…" in e.message for e in errors), errors

    def test_a_clipped_quote_is_at_most_80_characters_with_an_ellipsis(
        self, tmp_path: Path
    ) -> None:
        write(tmp_path, a=view(**{"entity: user": f"entity: {LONG}"}))
        [error] = load_errors(tmp_path)
        quoted = error.message.removeprefix("unknown entity ")
        assert quoted == repr(LONG)[:79] + "…"
        assert len(quoted) == 80

    def test_service_references_and_did_you_mean_hints_are_clipped(self, tmp_path: Path) -> None:
        long_view = "v" + "x" * 5_000
        write(
            tmp_path,
            a=view(long_view),
            s=SERVICE.replace("clicks:clicks_1d", f"{long_view}y:clicks_1d")
            + f"  - {long_view}:{LONG}\n",
            t=SERVICE.replace("name: ranking", "name: other") + f"  - bad{LONG}\n",
        )
        errors = load_errors(tmp_path)
        assert len(errors) == 3, errors
        assert_bounded(errors)
        the_error(errors, "unknown feature view")
        the_error(errors, "has no feature")
        the_error(errors, "bad feature reference")

    def test_a_yaml_error_quoting_the_file_is_clipped(self, tmp_path: Path) -> None:
        write(tmp_path, a=view() + f"description: *{LONG}\n")
        [error] = load_errors(tmp_path)
        assert "undefined alias" in error.message
        assert_bounded([error])


class TestEveryParserFailureIsLocated:
    @pytest.mark.parametrize(
        ("text", "line", "column", "message"),
        [
            ("kind: feature_view\nname:\tx\n", 2, 6, "YAML syntax error"),
            ("%YAML 9.9\n---\nkind: feature_view\n", 1, 1, "YAML syntax error"),
            ("kind: feature_view\nname: *nowhere\n", 2, 7, "undefined alias"),
            ("kind: feature_view\nname: a\nname: b\n", 3, 1, "duplicate key"),
            ("kind: feature_view\nname: !!omap [1]\n", 2, 15, "YAML"),
            ("kind: feature_view\nname: !!int abc\n", 2, 7, "abc"),
            ("kind: feature_view\nname: !!float abc\n", 2, 7, "abc"),
            ("kind: feature_view\nname: " + "1" * 5_000 + "\n", 2, 7, "digits"),
            ("kind: feature_view\nname: 2024-02-30\n", 2, 7, "out of range"),
            ("kind: feature_view\nname: {<<: 1}\n", 2, 12, "YAML"),
        ],
        ids=[
            "scanner",
            "parser",
            "composer",
            "duplicate-key",
            "constructor",
            "bad-int-tag",
            "bad-float-tag",
            "huge-int",
            "bad-date",
            "bad-merge",
        ],
    )
    def test_a_parser_failure_is_one_located_error(
        self, tmp_path: Path, text: str, line: int, column: int, message: str
    ) -> None:
        write(tmp_path, a=text)
        [error] = load_errors(tmp_path)
        assert message in error.message, error.message
        assert_located(error, tmp_path / "a.yaml", line, column)
        assert_bounded([error])

    def test_a_directory_named_like_a_yaml_file_is_an_error(self, tmp_path: Path) -> None:
        write(tmp_path, a=view())
        (tmp_path / "b.yaml").mkdir()
        [error] = load_errors(tmp_path)
        assert "is a directory" in error.message
        assert_located(error, tmp_path / "b.yaml", 1, 1)

    def test_an_unreadable_file_is_an_error(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        write(tmp_path, a=view(), b=STORE)
        real = Path.read_bytes

        def read_bytes(self: Path) -> bytes:
            if self.name == "b.yaml":
                raise PermissionError(13, "Permission denied", str(self))
            return real(self)

        monkeypatch.setattr(Path, "read_bytes", read_bytes)
        [error] = load_errors(tmp_path)
        assert "cannot read" in error.message and "Permission denied" in error.message
        assert_located(error, tmp_path / "b.yaml", 1, 1)

    def test_a_non_mapping_second_document_is_located_at_its_start(self, tmp_path: Path) -> None:
        write(tmp_path, a=view() + "---\njust text\n")
        [error] = load_errors(tmp_path)
        assert "must be a mapping" in error.message
        assert_located(error, tmp_path / "a.yaml", 18, 1)

    def test_empty_documents_are_skipped(self, tmp_path: Path) -> None:
        write(tmp_path, a="---\n" + view() + "---\n---\n# nothing\n...\n")
        assert set(FeatureCatalog.from_yaml_dir(tmp_path).views) == {"clicks"}

    def test_every_hostile_file_of_a_directory_is_reported_at_once(self, tmp_path: Path) -> None:
        write(
            tmp_path,
            a=laughs(levels=9),
            b=view(**{"name: clicks": "name: cl\x00icks"}),
            c=view() + "description: " + "[" * 10_000 + "]" * 10_000 + "\n",
            d=view("other", **{"entity: user": "entity: usr"}),
            e="kind: feature_view\nname: !!int abc\n",
        )
        (tmp_path / "f.yaml").write_bytes(b"kind: \xff\n")
        errors = load_errors(tmp_path)
        files = sorted({Path(e.file).name for e in errors})
        assert files == ["a.yaml", "b.yaml", "c.yaml", "d.yaml", "e.yaml", "f.yaml"]
        assert_bounded(errors)


class TestBoundedWork:
    def test_did_you_mean_hints_stop_after_a_budget_of_comparisons(self, tmp_path: Path) -> None:
        # 600 typos against 600 columns would be 360,000 comparisons (minutes for a few
        # thousand of each); the hints stop after MAX_SUGGESTION_WORK, the errors do not.
        n = 600
        columns = "".join(f"  column_{i:04d}: BIGINT\n" for i in range(n))
        features = "".join(f"  - {{name: f{i}, column: colunm_{i:04d}}}\n" for i in range(n))
        write(
            tmp_path,
            a=view(
                body="features:\n" + features,
                **{"  event_ts: TIMESTAMPTZ\n": "  event_ts: TIMESTAMPTZ\n" + columns},
            ),
        )
        errors = load_errors(tmp_path)
        assert len(errors) == n
        hinted = [e for e in errors if e.hint]
        assert errors[0].hint == "did you mean column_0000?"
        assert 0 < len(hinted) <= MAX_SUGGESTION_WORK // n + 1


# --------------------------------------------------------------------------- max_invalid_fraction


class TestMaxInvalidFraction:
    def test_a_view_source_and_a_spine_may_set_it(self, tmp_path: Path) -> None:
        source = "  timestamp: event_ts\n  max_invalid_fraction: 0.01\n"
        spine = "  timestamp: ts\n  max_invalid_fraction: 0\n"
        write(
            tmp_path,
            a=view(**{"  timestamp: event_ts\n": source}),
            s=SERVICE.replace("  timestamp: ts\n", spine),
        )
        catalog = FeatureCatalog.from_yaml_dir(tmp_path)
        assert catalog.views["clicks"].source.max_invalid_fraction == 0.01
        assert catalog.services["ranking"].spine.max_invalid_fraction == 0.0
        assert isinstance(catalog.services["ranking"].spine.max_invalid_fraction, float)

    def test_it_defaults_to_none(self, tmp_path: Path) -> None:
        write(tmp_path, a=view(), s=SERVICE)
        catalog = FeatureCatalog.from_yaml_dir(tmp_path)
        assert catalog.views["clicks"].source.max_invalid_fraction is None
        assert catalog.services["ranking"].spine.max_invalid_fraction is None

    @pytest.mark.parametrize("fraction", [0.0, 1e-05, 0.25, 1.0])
    def test_it_survives_a_yaml_redump(self, tmp_path: Path, fraction: float) -> None:
        source = f"  timestamp: event_ts\n  max_invalid_fraction: {fraction}\n"
        spine = f"  timestamp: ts\n  max_invalid_fraction: {fraction}\n"
        write(
            tmp_path / "a",
            a=view(**{"  timestamp: event_ts\n": source}),
            s=SERVICE.replace("  timestamp: ts\n", spine),
        )
        original = FeatureCatalog.from_yaml_dir(tmp_path / "a")
        yaml = YAML()
        for kind, obj in (
            ("feature_view", original.views["clicks"]),
            ("feature_service", original.services["ranking"]),
        ):
            buffer = io.StringIO()
            yaml.dump({"kind": kind, **CONVERTER.unstructure(obj)}, buffer)
            write(tmp_path / "b", **{kind: buffer.getvalue()})
        reloaded = FeatureCatalog.from_yaml_dir(tmp_path / "b")
        assert reloaded.views == original.views
        assert reloaded.services == original.services
        assert reloaded.views["clicks"].source.max_invalid_fraction == fraction
        assert reloaded.services["ranking"].spine.max_invalid_fraction == fraction

    @pytest.mark.parametrize("value", ["1.5", "-0.1", ".nan", "true", "lots", "[0.1]", ".inf"])
    @pytest.mark.parametrize("where", ["source", "spine"])
    def test_a_value_outside_0_to_1_is_a_located_error(
        self, tmp_path: Path, value: str, where: str
    ) -> None:
        if where == "source":
            files = {
                "a": view(
                    **{
                        "  timestamp: event_ts\n": f"  timestamp: event_ts\n  max_invalid_fraction: {value}\n"
                    }
                )
            }
            at = (tmp_path / "a.yaml", 7, 25)
        else:
            spine = f"  timestamp: ts\n  max_invalid_fraction: {value}\n"
            files = {"a": view(), "s": SERVICE.replace("  timestamp: ts\n", spine)}
            at = (tmp_path / "s.yaml", 6, 25)
        write(tmp_path, **files)
        [error] = load_errors(tmp_path)
        assert "max_invalid_fraction must be a number from 0 to 1" in error.message
        assert_located(error, *at)


# --------------------------------------------------------------------------- through the CLI

HOSTILE = {
    "billion-laughs": (laughs(levels=9), "too many alias expansions"),
    "nul-byte": (view(**{"name: clicks": "name: cl\x00icks"}), "U+0000"),
    "deep-nesting": (view() + "description: " + "[" * 10_000 + "]" * 10_000 + "\n", "64"),
    "long-value": (view(**{"entity: user": f"entity: {LONG}"}), "unknown entity"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_the_cli_reports_a_hostile_file_as_json_with_exit_code_3(tmp_path: Path, case: str) -> None:
    text, message = HOSTILE[case]
    write(tmp_path, a=text)
    daeda = Path(sys.executable).with_name("daeda")
    # The timeout turns a hang (the billion laughs grew ~60 MB/s until killed) into a failure.
    result = subprocess.run(
        [str(daeda), "catalog", "validate", str(tmp_path), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 3, result.stderr[:2000]
    data = json.loads(result.stdout)
    assert data["ok"] is False
    [error] = [e for e in data["errors"] if message in e["message"]]
    assert error["file"] == str(tmp_path / "a.yaml")
    assert error["line"] >= 1 and error["column"] >= 1
    assert f"{tmp_path / 'a.yaml'}:{error['line']}:{error['column']}: " in result.stderr
    assert len(result.stdout) < 10_000
    assert len(result.stderr) < 10_000
