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

from __future__ import annotations

import importlib as _importlib
from typing import TYPE_CHECKING

from daedalus.pit.engine import Engine, get_aggregate_pit_table

if TYPE_CHECKING:
    from daedalus.catalog.model import AggFunction, Duration, FilterDef
    from daedalus.pit.compute import PitReport
    from daedalus.pit.errors import PitError
    from daedalus.pit.spec import (
        AggregationSpec,
        AsOfSpec,
        PitSpec,
        SourceSpec,
        specs_for_view,
    )

#: Names exported lazily, imported from their module on first access: choosing an engine
#: (`daedalus.pit.engine`, standard library only) does not load Arrow or the compute core.
_LAZY = {
    "AggFunction": "daedalus.catalog.model",
    "Duration": "daedalus.catalog.model",
    "FilterDef": "daedalus.catalog.model",
    "PitReport": "daedalus.pit.compute",
    "PitError": "daedalus.pit.errors",
    "AggregationSpec": "daedalus.pit.spec",
    "AsOfSpec": "daedalus.pit.spec",
    "PitSpec": "daedalus.pit.spec",
    "SourceSpec": "daedalus.pit.spec",
    "specs_for_view": "daedalus.pit.spec",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        value = getattr(_importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'daedalus.pit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


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
