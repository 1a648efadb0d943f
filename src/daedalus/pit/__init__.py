"""Compute layer: point-in-time rolling aggregates and as-of joins (engine-independent core).

Everything a caller of the compute API needs is here::

    from daedalus.pit import AggregationSpec, FilterDef, SourceSpec, get_aggregate_pit_table

    events = SourceSpec("events", "event_ts", {"user_id": "BIGINT", "action": "VARCHAR",
                        "event_ts": "TIMESTAMPTZ"}, paths="data/events/*.parquet")
    likes = AggregationSpec("likes_7d", "count", "user_id", events, "7d",
                            filters=FilterDef("action", "like"))
    table = get_aggregate_pit_table("duckdb")(spine, [likes])

Specs check and normalise their arguments as they are built (PitError naming the feature);
`aggregate_pit_table` raises PitError for bad data (spine, sources).
"""

from daedalus.catalog.model import AggFunction, Duration, FilterDef
from daedalus.pit.compute import PitReport
from daedalus.pit.engine import Engine, get_aggregate_pit_table
from daedalus.pit.errors import PitError
from daedalus.pit.spec import AggregationSpec, AsOfSpec, PitSpec, SourceSpec, specs_for_view

__all__ = [
    # choosing an engine
    "Engine",
    "get_aggregate_pit_table",
    # describing the work
    "AggFunction",
    "AggregationSpec",
    "AsOfSpec",
    "Duration",
    "FilterDef",
    "PitSpec",
    "SourceSpec",
    "specs_for_view",
    # what a call reports, and its errors
    "PitError",
    "PitReport",
]
