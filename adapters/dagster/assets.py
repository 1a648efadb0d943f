"""Dagster definitions: one daily-partitioned asset per feature service in the catalog.

The assets hold no feature logic and construct no adapter. Materialising partition D of asset
`daedalus/<service>` is a training job of the workspace, like `daeda pipeline train --start D
--end D`: `JobCases.start_training(service, D, D, wait=True)` of the `Application` the
container builds (through `DaedalusResource`) records the job in the workspace's run store
(`daeda job list` shows it), runs it in the op's thread, and the executor holds the output's
OS lock `<out>/<service>/.lock` for the run. The day's row count, status, job id, manifest,
output path and a preview become materialisation metadata. A new service in the YAML is a new
asset, no code.

Decisions:

* Partition start: an explicit `partition_start` (DAEDA_PARTITION_START) wins and asks nothing;
  else the first day with spine rows, from the application (`JobCases.first_day`); else the
  first day a demo workspace's marker records (`Application.demo_start`); else `FALLBACK_START`. The
  partitions are open ended (up to the last complete UTC day), so a daily schedule picks up
  new days without a reload. Asking the application costs what `daeda pipeline status` costs
  (input files its fingerprint cache does not know are read; the embedding stores are opened)
  at each load of the code location: pin DAEDA_PARTITION_START to skip it.
* An invalid catalog raises `DefinitionsError` listing every located error: the code location
  then fails to load, which is what Dagster users watch for (the UI marks the location as
  errored, `dagster definitions validate` exits 1). Loading an empty set of assets instead would
  hide a broken catalog behind a green check.
* A job that ends in error becomes `dagster.Failure` with the message, the kind, the details
  and the job id. Application errors are deterministic (bad definitions, missing inputs, a
  conflict with another writer: the message names the holder): no retries. A job that failed
  with kind `internal` (a crash) may be retried under the run's retry policy.
"""

# No `from __future__ import annotations`: Dagster reads the asset function's annotations
# (its Config and resource parameters) at definition time and cannot resolve strings.
import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import dagster as dg
from pydantic import Field

from daedalus.app.application import Application
from daedalus.app.errors import AppError
from daedalus.app.pipeline_cases import parse_day
from daedalus.app.settings import Settings
from daedalus.container import build_container
from daedalus.pipeline import DEFAULT_BATCH_ROWS

__all__ = [
    "FALLBACK_START",
    "KEY_PREFIX",
    "PREVIEW_ROWS",
    "RESOURCE_KEY",
    "DaedalusResource",
    "DefinitionsError",
    "TrainDayConfig",
    "build_definitions",
    "partition_start_for",
    "service_asset",
]

KEY_PREFIX = "daedalus"
GROUP = "daedalus"
RESOURCE_KEY = "daedalus"
FALLBACK_START = dt.date(2026, 1, 1)
PREVIEW_ROWS = 5


class DefinitionsError(Exception):
    """The Dagster definitions cannot be built (invalid catalog, bad partition start)."""


class DaedalusResource(dg.ConfigurableResource):
    """Where Daedalus works; `application()` is what the container the CLI builds provides."""

    workspace: str
    catalog_dir: str
    out_dir: str
    engine: str = "duckdb"
    ray_address: str | None = None
    ray_days_in_flight: int | None = None
    batch_rows: int = DEFAULT_BATCH_ROWS

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(
            workspace=str(settings.workspace),
            catalog_dir=str(settings.catalog_dir),
            out_dir=str(settings.out_dir),
            engine=settings.engine,
            ray_address=settings.ray_address,
            ray_days_in_flight=settings.ray_days_in_flight,
            batch_rows=settings.batch_rows,
        )

    def to_settings(self) -> Settings:
        return Settings(
            workspace=self.workspace,
            catalog_dir=self.catalog_dir,
            out_dir=self.out_dir,
            engine=self.engine,
            ray_address=self.ray_address,
            ray_days_in_flight=self.ray_days_in_flight,
            batch_rows=self.batch_rows,
        )

    def application(self) -> Application:
        """The use cases, wired by a fresh container (adapters load lazily)."""
        return build_container(self.to_settings()).application()


class TrainDayConfig(dg.Config):
    """Run config of one partition's materialisation."""

    force: bool = Field(
        default=False, description="Recompute the day even if its manifest is current."
    )
    engine: str | None = Field(
        default=None, description="duckdb or polars; default: the resource's engine."
    )


# -- partition start ----------------------------------------------------------------------------


def partition_start_for(
    app: Application, service: str, explicit: str | None = None
) -> tuple[dt.date, str]:
    """The first partition of a service and where it came from (shown on the asset)."""
    if explicit:
        try:
            return parse_day(explicit, "partition_start"), "configured"
        except AppError as exc:
            raise DefinitionsError(exc.message) from exc
    unknown = ""
    try:
        first = app.jobs.first_day(service)
    except AppError as exc:  # e.g. an output that cannot be listed: shown, and a run says it too
        first, unknown = None, f"; the spine's first day is unknown: {exc.message}"
    if first is not None:
        return parse_day(first), "the spine"
    day = app.demo_start()
    if day is not None:
        return parse_day(day), "the demo marker" + unknown
    return FALLBACK_START, "default" + unknown


# -- materialisation ----------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        # Embeddings are 64 floats: a few, then the length, keep the table readable.
        head = ", ".join(_cell(v) for v in value[:3])
        return f"[{head}, … {len(value)} values]" if len(value) > 3 else f"[{head}]"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    """Rows as a GitHub-flavoured markdown table (what `MetadataValue.md` renders)."""
    lines = [
        "| " + " | ".join(columns) + " |",
        "| " + " | ".join("---" for _ in columns) + " |",
        *("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows),
    ]
    if not rows:
        lines.append("\n_(no rows)_")
    return "\n".join(lines)


def _failure(
    service: str, day: str, error: dict[str, Any], job_id: str | None = None
) -> dg.Failure:
    """A job's error (`AppError.to_dict()`, as the run store keeps it) as a Dagster failure."""
    kind = str(error.get("kind", "internal"))
    metadata: dict[str, Any] = {"kind": kind}
    if job_id is not None:
        metadata["job_id"] = dg.MetadataValue.text(job_id)
    if error.get("data") is not None:
        metadata["details"] = dg.MetadataValue.json(error["data"])
    return dg.Failure(
        description=f"{service} {day}: {error.get('message', 'the job did not finish')}",
        metadata=metadata,
        allow_retries=kind == "internal",
    )


def train_partition(
    context: dg.AssetExecutionContext,
    service: str,
    config: TrainDayConfig,
    daedalus: DaedalusResource,
) -> dg.MaterializeResult:
    """Train one day of `service` (the partition) as a job of the workspace, and describe it."""
    day = context.partition_key
    app = daedalus.application()

    def log_event(event: dict[str, Any]) -> None:
        context.log.info(json.dumps(event, default=str))

    try:
        # Refused before any job exists: a bad engine, another job training the service.
        job = app.jobs.start_training(
            service,
            day,
            day,
            engine=config.engine,
            force=config.force,
            wait=True,
            on_event=log_event,
        )
    except AppError as exc:
        raise _failure(service, day, exc.to_dict()) from exc
    context.log.info(f"daeda job {job['id']}: {job['state']}")
    if job["state"] != "succeeded":
        raise _failure(service, day, job.get("error") or {}, job["id"])
    summary = job["result"]
    try:
        manifest = app.day_manifest(service, day)
        preview = app.day_preview(service, day, PREVIEW_ROWS)
    except AppError as exc:
        raise _failure(service, day, exc.to_dict(), job["id"]) from exc
    (result,) = summary["days"]
    # A skipped day reports no path; it is where the sink keeps the day (hive layout `dt=D`).
    path = result["path"] or str(Path(summary["out_dir"]) / f"dt={day}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": dg.MetadataValue.int(int(result["rows"])),
            "status": dg.MetadataValue.text(result["status"]),
            "job_id": dg.MetadataValue.text(job["id"]),
            "days_written": dg.MetadataValue.int(summary["days_written"]),
            "days_skipped": dg.MetadataValue.int(summary["days_skipped"]),
            # The engine that wrote the data: a skipped day may have been written by the other.
            "engine": dg.MetadataValue.text(str(manifest.get("engine", summary["engine"]))),
            "seconds": dg.MetadataValue.float(float(summary["seconds"])),
            "path": dg.MetadataValue.path(path),
            "manifest": dg.MetadataValue.json(manifest),
            "preview": dg.MetadataValue.md(markdown_table(preview["columns"], preview["rows"])),
        }
    )


# -- definitions --------------------------------------------------------------------------------


def _column_schema(columns: list[dict[str, Any]]) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=str(c["name"]),
                type=str(c["type"]),
                constraints=dg.TableColumnConstraints(nullable=bool(c["nullable"])),
            )
            for c in columns
        ]
    )


def service_asset(
    name: str, described: dict[str, Any], start: dt.date, start_source: str
) -> dg.AssetsDefinition:
    """The daily-partitioned asset of service `name`, from its description
    (`Application.catalog_describe`); a factory, so each closes over its name."""
    definition = described["definition"]

    @dg.asset(
        name=name,
        key_prefix=KEY_PREFIX,
        group_name=GROUP,
        description=definition.get("description") or f"Training dataset of feature service {name}.",
        partitions_def=dg.DailyPartitionsDefinition(start_date=start.isoformat(), timezone="UTC"),
        # Dagster flags the asset when its definitions change, as the manifest check does.
        code_version=described["definition_hash"],
        kinds={"parquet"},
        metadata={
            "spine": dg.MetadataValue.text(definition["spine"]["path"]),
            "definition": dg.MetadataValue.text(described["location"] or ""),
            "contract_hash": dg.MetadataValue.text(described["contract_hash"]),
            "partition_start": dg.MetadataValue.text(f"{start} (from {start_source})"),
            "dagster/column_schema": _column_schema(described["schema"]),
        },
    )
    def _asset(
        context: dg.AssetExecutionContext, config: TrainDayConfig, daedalus: DaedalusResource
    ) -> dg.MaterializeResult:
        return train_partition(context, name, config, daedalus)

    return _asset


def _catalog_message(exc: AppError) -> str:
    lines = [f"cannot build the Daedalus Dagster definitions: {exc.message}"]
    if isinstance(exc.data, list):
        for err in exc.data:
            if isinstance(err, dict) and {"file", "line", "column", "message"} <= err.keys():
                hint = f" — {err['hint']}" if err.get("hint") else ""
                lines.append(
                    f"  {err['file']}:{err['line']}:{err['column']}: {err['message']}{hint}"
                )
    lines.append("Fix the YAML (`daeda catalog validate` lists the same errors), then reload.")
    return "\n".join(lines)


def build_definitions(settings: Settings, *, partition_start: str | None = None) -> dg.Definitions:
    """One asset per feature service of the catalog in `settings`, and the resource they use.

    Raises DefinitionsError naming every catalog error when the catalog does not load.
    """
    app = build_container(settings).application()
    try:
        described = {
            s["name"]: app.catalog_describe(s["name"]) for s in app.catalog_list()["services"]
        }
    except AppError as exc:
        # The message lists every located error; the chained AppError/CatalogErrors would only
        # repeat it in the code location's error report.
        raise DefinitionsError(_catalog_message(exc)) from None
    assets = []
    for name in sorted(described):
        start, source = partition_start_for(app, name, partition_start)
        assets.append(service_asset(name, described[name], start, source))
    return dg.Definitions(
        assets=assets, resources={RESOURCE_KEY: DaedalusResource.from_settings(settings)}
    )
