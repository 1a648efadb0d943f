"""When to use each use case, and example arguments: what an agent (an MCP client) or a person
reads next to a use case's schema. Keyed by `UseCase.name`; the examples use the demo's names
and dates."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the application module is not needed to read the guide
    from daedalus.app.application import UseCase

__all__ = ["GUIDE", "guide"]

#: Use case name -> (when to use it, example arguments): the schema says what is allowed,
#: this says what is useful.
GUIDE: dict[str, tuple[str, dict[str, Any]]] = {
    "catalog_list": (
        "Use it first, to learn which services, views, entities and embedding stores exist "
        "before naming one in another tool.",
        {},
    ),
    "catalog_describe": (
        "Use it to read one definition (source, features, windows, types) once catalog_list "
        "gave you its name.",
        {"name": "user_activity"},
    ),
    "catalog_validate": (
        "Use it after the YAML files change, or when another tool fails with invalid_catalog, "
        "to get every error with its file, line and column. Without arguments it checks the "
        "configured catalog; `directory` (relative to the workspace) checks another one.",
        {},
    ),
    "catalog_validate_data": (
        "Use it after the YAML files or the data change, before training: it checks every "
        "source file against its declared schema and every filter value against the values "
        "that occur, without computing anything.",
        {},
    ),
    "catalog_plan": (
        "Use it after editing the catalog, before training, to see what the edit does to each "
        "service: its contract diff (a removed or retyped column is a break) and which written "
        "days become stale.",
        {},
    ),
    "service_schema": (
        "Use it to learn the exact columns and types a service's training days will have "
        "(its contract) before training or reading them.",
        {"service": "feed_ranking"},
    ),
    "pipeline_compile": (
        "Use it to explain how a service is computed (sources, point-in-time joins, windows, "
        "embedding lookups) without running anything.",
        {"service": "feed_ranking", "format": "mermaid"},
    ),
    "train_start": (
        "Use it to write a service's training days for a date range. It returns a job at once; "
        "poll job_status until the state is succeeded, failed or cancelled. Days that are "
        "already current are skipped unless force is true.",
        {"service": "feed_ranking", "start": "2026-10-02", "end": "2026-10-04", "engine": "duckdb"},
    ),
    "train_dry_run": (
        "Use it before train_start to see what a run would do: which days it would compute or "
        "skip and why (a changed input, definition, contract or store), and its batches. It "
        "checks the inputs as a run does and writes nothing.",
        {"service": "feed_ranking", "start": "2026-10-02", "end": "2026-10-04"},
    ),
    "dataset_stats": (
        "Use it after training to sanity-check a service's features: null counts, ranges and "
        "distinct values per feature, with warnings for features null or constant everywhere.",
        {"service": "feed_ranking", "start": "2026-10-02", "end": "2026-10-04"},
    ),
    "days_verify": (
        "Use it to check written days against their manifests (every part file's size, sha256 "
        "and rows); ok false lists each difference.",
        {"service": "feed_ranking", "day": "2026-10-02"},
    ),
    "job_status": (
        "Use it to follow a job from train_start: poll every few seconds until the state is "
        "succeeded (the result lists the days written), failed (the error says why) or cancelled.",
        {"job_id": "<the id train_start returned>"},
    ),
    "job_list": (
        "Use it to find a job id you no longer have, or to see what ran recently.",
        {"limit": 5},
    ),
    "job_cancel": (
        "Use it to stop a queued or running training job; days already published stay, no "
        "partial day is left.",
        {"job_id": "<the id train_start returned>"},
    ),
    "days_list": (
        "Use it to see which days of a service are written and whether each is still current "
        "(the definitions and inputs it was made from are unchanged).",
        {"service": "feed_ranking"},
    ),
    "day_manifest": (
        "Use it to see what made a written day: rows, files, hashes, engine, embedding store "
        "versions and timings.",
        {"service": "feed_ranking", "day": "2026-10-02"},
    ),
    "day_preview": (
        "Use it to look at actual rows of a written day.",
        {"service": "feed_ranking", "day": "2026-10-02", "limit": 5},
    ),
    "day_audit": (
        "Use it to check a written day is point-in-time correct: sampled rows are recomputed "
        "by brute force, and every row is checked against the spine (labels, missing, extra or "
        "duplicated rows); ok true means no difference was found.",
        {"service": "feed_ranking", "day": "2026-10-02", "sample": 50},
    ),
}


def guide(case: UseCase) -> tuple[str, dict[str, Any]]:
    """When to use `case` ("" if no guide is written) and example arguments (a placeholder per
    required parameter for a use case without a written guide)."""
    return GUIDE.get(case.name, ("", {p.name: f"<{p.name}>" for p in case.params if p.required}))
