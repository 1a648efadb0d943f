"""`load_service_text`: a feature service given as text (the Python API's requests) is checked
exactly as a service file is, against an already loaded catalog."""

from __future__ import annotations

from pathlib import Path

import pytest

from daedalus.catalog.errors import CatalogErrors
from daedalus.catalog.loader import load_service_text
from daedalus.catalog.registry import ENTITIES, FeatureCatalog

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def catalog() -> FeatureCatalog:
    return FeatureCatalog.from_yaml_dir(REPO / "feature_views")


def load(catalog: FeatureCatalog, text: str):
    return load_service_text(text, "<request>", catalog.views, catalog.stores, ENTITIES)


def test_a_services_own_document_gives_the_same_service(catalog: FeatureCatalog) -> None:
    text = (REPO / "feature_views" / "ranking.yaml").read_text().split("\n---\n")[1]
    assert load(catalog, text) == catalog.services["feed_ranking"]


def test_every_error_is_located_with_its_hint(catalog: FeatureCatalog) -> None:
    text = (
        "kind: feature_service\n"
        "name: probe\n"
        'spine: {"path": "x", "timestamp": "ts", "entity": ["user"]}\n'
        "features:\n"
        '  - "user_activity:user_likes_7dd"\n'
        '  - {"feature": "artwork_popularity:*"}\n'
        '  - {"feature": "user_activity:user_views_1d", "alias": "user_id"}\n'
    )
    with pytest.raises(CatalogErrors) as e:
        load(catalog, text)
    found = [(err.line, err.column, err.message, err.hint) for err in e.value.errors]
    assert found[0][:2] == (5, 5) and found[0][3] == "did you mean user_likes_7d?"
    assert found[1][:2] == (6, 5) and "keyed on artwork_id, which the spine lacks" in found[1][2]
    assert found[2][:2] == (7, 5) and "clashes with the spine key" in found[2][2]
    assert all(err.file == "<request>" for err in e.value.errors)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: feature_view\nname: v\n", "expected kind feature_service"),
        ("[1, 2]\n", "must be a mapping"),
        ("kind: feature_service\nname: [\n", "YAML syntax error"),
        ("kind: feature_service\nname: s\n---\nkind: feature_service\nname: t\n", "expected one"),
    ],
)
def test_what_is_not_one_service_document(catalog: FeatureCatalog, text: str, message: str) -> None:
    with pytest.raises(CatalogErrors, match=message):
        load(catalog, text)
