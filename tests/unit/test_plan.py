"""The typed plan: compile_service's operators hold what they run; text, Mermaid and JSON are
renderings of that one object, and the JSON reads back into a plan that runs the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from daedalus.catalog.registry import FeatureCatalog
from daedalus.pipeline.compiler import compile_service
from daedalus.pipeline.executor import Plan, run_pipeline
from daedalus.pipeline.operators import FeatureJoin, OperatorPipeline, OpKind
from daedalus.pit.spec import AggregationSpec, AsOfSpec
from tests.fakes import InMemoryAggregator, InMemorySink
from tests.unit.test_day_runners import DAYS, enricher, make_workspace

REPO = Path(__file__).resolve().parents[2]
DAY_US = 86_400_000_000
MINUTE_US = 60_000_000


@pytest.fixture(scope="module")
def catalog() -> FeatureCatalog:
    return FeatureCatalog.from_yaml_dir(REPO / "feature_views")


class TestCompiledPlan:
    def test_feature_operators_hold_their_specs_and_visible_range(
        self, catalog: FeatureCatalog
    ) -> None:
        plan = compile_service("feed_ranking", catalog, "polars")
        joins = {op.id: join for op, join in plan.feature_ops}
        activity = joins["rolling_user_activity"]
        assert isinstance(activity, FeatureJoin) and activity.keys == ("user_id",)
        assert all(isinstance(s, AggregationSpec) for s in activity.specs)
        assert activity.lookback_us is None  # user_last_action has a lifetime window
        popularity = joins["rolling_artwork_popularity"]
        assert popularity.lookback_us == 5 * MINUTE_US + 7 * DAY_US  # delay + longest window
        profile = joins["asof_user_profile"]
        assert all(isinstance(s, AsOfSpec) for s in profile.specs)
        assert profile.lookback_us == 730 * DAY_US  # the TTL, no delay
        # one source object per view, shared by its specs (computed from one read)
        for join in joins.values():
            assert all(s.source is join.source for s in join.specs)
        assert plan.schema.names == catalog.resolved_schema("feed_ranking").names
        assert [r.name for r in plan.pool_requests] == [
            "artwork_embedding",
            "recent_artworks_embedding",
        ]

    def test_json_reads_back_into_the_same_plan(self, catalog: FeatureCatalog) -> None:
        plan = compile_service("feed_ranking", catalog, "duckdb")
        data = json.loads(plan.to_json())
        again = OperatorPipeline.from_dict(data)
        assert again.to_dict() == data
        assert again.to_text() == plan.to_text() and again.to_mermaid() == plan.to_mermaid()
        assert [o.kind for o in again.operators][:1] == [OpKind.READ_SPINE]
        assert again.schema.equals(plan.schema, check_metadata=False)

    def test_binding_resolves_paths_against_the_workspace(
        self, catalog: FeatureCatalog, tmp_path: Path
    ) -> None:
        bound = compile_service("feed_ranking", catalog).bind(tmp_path)
        for _name, source in bound.sources():
            assert all(p.startswith(str(tmp_path)) for p in source.paths)
        for _op, join in bound.feature_ops:
            assert all(s.source is join.source for s in join.specs)
        assert all(r.store.path.startswith(str(tmp_path)) for r in bound.pool_requests)


def test_a_plan_read_back_from_json_trains_the_same_days(tmp_path: Path) -> None:
    """The executor runs the plan alone: a plan read back from its JSON, with no catalog in
    reach, writes what the compiled one writes."""
    ws = make_workspace(tmp_path / "ws")
    compiled = compile_service("svc", FeatureCatalog.from_yaml_dir(ws / "feature_views"))
    again = OperatorPipeline.from_dict(json.loads(compiled.to_json()))
    sinks = []
    for pipeline in (compiled, again):
        sink = InMemorySink()
        run_pipeline(
            pipeline,
            DAYS[0],
            DAYS[-1],
            workspace=ws,
            aggregator=InMemoryAggregator(),
            enricher=enricher(),
            sink=sink,
        )
        sinks.append(sink)
    for day in DAYS:
        assert sinks[0].days[("svc", day)][0].equals(sinks[1].days[("svc", day)][0])
    assert Plan(again, ws).keys == ["user_id", "artwork_id"]
