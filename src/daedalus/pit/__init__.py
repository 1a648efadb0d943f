"""Compute layer: point-in-time rolling aggregates and as-of joins (engine-independent core)."""

from daedalus.pit.engine import Engine, get_aggregate_pit_table
from daedalus.pit.errors import PitError
from daedalus.pit.spec import AggregationSpec, AsOfSpec, PitSpec, SourceSpec, specs_for_view

__all__ = [
    # choosing an engine
    "Engine",
    "get_aggregate_pit_table",
    # describing the work
    "AggregationSpec",
    "AsOfSpec",
    "PitSpec",
    "SourceSpec",
    "specs_for_view",
    # errors
    "PitError",
]
