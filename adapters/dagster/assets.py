"""Dagster definitions: one daily-partitioned asset per feature service in the catalog.

The assets hold no feature logic. Materialising partition D of asset `daedalus/<service>` calls
`PipelineCases.train(service, D, D)` — the executor the CLI uses — through a `DaedalusResource`
that builds the usual container, and reports the day's row count, status, manifest, output path
and a preview as materialisation metadata. A new service in the YAML is a new asset, no code.

Decisions:

* Partition start: an explicit `partition_start` wins; else the first UTC day of the service's
  spine, read from parquet footer statistics (no data pages) when the spine has at most
  `MAX_SPINE_FOOTERS` files that all carry statistics; else the workspace marker's `start`
  (`workspace.json` of a demo workspace); else `FALLBACK_START`. The partitions are open ended
  (up to the last complete UTC day), so a daily schedule picks up new days without a reload.
* An invalid catalog raises `DefinitionsError` listing every located error: the code location
  then fails to load, which is what Dagster users watch for (the UI marks the location as
  errored, `dagster definitions validate` exits 1). Loading an empty set of assets instead would
  hide a broken catalog behind a green check.
* A use-case error during a run (AppError) becomes `dagster.Failure` with the message, the kind
  and the details, without retries: AppErrors are deterministic (bad definitions, missing
  inputs, conflicts). Anything else (a crash, an OS error) propagates and follows the retry policy.
"""

# No `from __future__ import annotations`: Dagster reads the asset function's annotations
# (its Config and resource parameters) at definition time and cannot resolve strings.
import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
from daedalus.adapters.demo.generator import MARKER_NAME
from pydantic import Field

from daedalus.app.errors import AppError
from daedalus.app.pipeline_cases import PipelineCases, parse_day
from daedalus.app.settings import Settings
from daedalus.catalog.model import FeatureServiceDef
from daedalus.catalog.registry import FeatureCatalog
from daedalus.container import build_container
from daedalus.pit.errors import PitError
from daedalus.pit.sources import expand_paths
from daedalus.pit.spec import SourceSpec

__all__ = [
    "FALLBACK_START",
    "KEY_PREFIX",
    "MAX_SPINE_FOOTERS",
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
#: Above this many spine files, reading every footer at each code-location load is not "cheap".
MAX_SPINE_FOOTERS = 200
PREVIEW_ROWS = 5


class DefinitionsError(Exception):
    """The Dagster definitions cannot be built (invalid catalog, bad partition start)."""


class DaedalusResource(dg.ConfigurableResource):
    """Where Daedalus works; `pipeline_cases()` builds the container the CLI builds."""

    workspace: str
    catalog_dir: str
    out_dir: str
    engine: str = "duckdb"
    ray_address: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(
            workspace=str(settings.workspace),
            catalog_dir=str(settings.catalog_dir),
            out_dir=str(settings.out_dir),
            engine=settings.engine,
            ray_address=settings.ray_address,
        )

    def to_settings(self) -> Settings:
        return Settings(
            workspace=self.workspace,
            catalog_dir=self.catalog_dir,
            out_dir=self.out_dir,
            engine=self.engine,
            ray_address=self.ray_address,
        )

    def pipeline_cases(self) -> PipelineCases:
        """The training use cases, wired from a fresh container (adapters load lazily)."""
        return build_container(self.to_settings()).pipeline_cases()


class TrainDayConfig(dg.Config):
    """Run config of one partition's materialisation."""

    force: bool = Field(
        default=False, description="Recompute the day even if its manifest is current."
    )
    engine: str | None = Field(
        default=None, description="duckdb or polars; default: the resource's engine."
    )


# -- partition start ----------------------------------------------------------------------------


def _utc_day(value: Any) -> dt.date | None:
    """The UTC day of a statistics minimum, or None for a type we can't place in time."""
    if isinstance(value, dt.datetime):
        # A naive spine timestamp is taken as UTC here; the run itself enforces the YAML's rule.
        return value.astimezone(dt.UTC).date() if value.tzinfo else value.date()
    if isinstance(value, dt.date):
        return value
    return None


def spine_first_day(workspace: Path, service: FeatureServiceDef) -> dt.date | None:
    """The first UTC day of the service's spine from parquet footers, or None if not cheap/known."""
    spine = service.spine
    source = SourceSpec(
        name=f"spine of {service.name}",
        timestamp=spine.timestamp,
        schema=pa.schema([]),
        paths=(str(workspace / spine.path),),
    )
    try:
        files = expand_paths(source)  # the same expansion the executor uses
    except PitError:
        return None  # no spine yet: fall back; a run will name what is missing
    if len(files) > MAX_SPINE_FOOTERS:
        return None
    first: dt.date | None = None
    for path in files:
        try:
            metadata = pq.read_metadata(path)
        except (OSError, ValueError):
            return None
        for i in range(metadata.num_row_groups):
            group = metadata.row_group(i)
            if group.num_rows == 0:
                continue
            column = next(
                (
                    group.column(j)
                    for j in range(group.num_columns)
                    if group.column(j).path_in_schema == spine.timestamp
                ),
                None,
            )
            stats = column.statistics if column is not None else None
            day = _utc_day(stats.min) if stats is not None and stats.has_min_max else None
            if day is None:
                return None  # one row group without usable statistics: the minimum is unknown
            first = day if first is None else min(first, day)
    return first


def _marker_start(workspace: Path) -> dt.date | None:
    try:
        marker = json.loads((workspace / MARKER_NAME).read_text(encoding="utf-8"))
        return dt.date.fromisoformat(marker["start"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def partition_start_for(
    workspace: Path, service: FeatureServiceDef, explicit: str | None = None
) -> tuple[dt.date, str]:
    """The first partition of a service and where it came from (shown on the asset)."""
    if explicit:
        try:
            return parse_day(explicit, "partition_start"), "configured"
        except AppError as exc:
            raise DefinitionsError(exc.message) from exc
    day = spine_first_day(workspace, service)
    if day is not None:
        return day, "spine statistics"
    day = _marker_start(workspace)
    if day is not None:
        return day, MARKER_NAME
    return FALLBACK_START, "default"


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


def _failure(service: str, day: str, exc: AppError) -> dg.Failure:
    metadata: dict[str, Any] = {"kind": exc.kind}
    if exc.data is not None:
        metadata["details"] = dg.MetadataValue.json(exc.data)
    return dg.Failure(
        description=f"{service} {day}: {exc.message}", metadata=metadata, allow_retries=False
    )


def train_partition(
    context: dg.AssetExecutionContext,
    service: str,
    config: TrainDayConfig,
    daedalus: DaedalusResource,
) -> dg.MaterializeResult:
    """Train one day of `service` (the partition) and describe it."""
    day = context.partition_key
    cases = daedalus.pipeline_cases()

    def log_event(event: dict[str, Any]) -> None:
        context.log.info(json.dumps(event, default=str))

    try:
        summary = cases.train(
            service,
            day,
            day,
            engine=config.engine,
            force=config.force,
            on_event=log_event,
            holder={"dagster_run": context.run_id, "partition": day},
        )
        manifest = cases.manifest(service, day)
        preview = cases.preview(service, day, PREVIEW_ROWS)
    except AppError as exc:
        raise _failure(service, day, exc) from exc
    (result,) = summary["days"]
    # A skipped day reports no path; it is where the sink keeps the day (hive layout `dt=D`).
    path = result["path"] or str(Path(summary["out_dir"]) / f"dt={day}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": dg.MetadataValue.int(int(result["rows"])),
            "status": dg.MetadataValue.text(result["status"]),
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


def _column_schema(catalog: FeatureCatalog, service: FeatureServiceDef) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=str(c["name"]),
                type=str(c["type"]),
                constraints=dg.TableColumnConstraints(nullable=bool(c["nullable"])),
            )
            for c in catalog.describe_schema(service)
        ]
    )


def service_asset(
    catalog: FeatureCatalog,
    service: FeatureServiceDef,
    start: dt.date,
    start_source: str,
) -> dg.AssetsDefinition:
    """The daily-partitioned asset of one service (a factory, so each closes over its name)."""
    name = service.name

    @dg.asset(
        name=name,
        key_prefix=KEY_PREFIX,
        group_name=GROUP,
        description=service.description or f"Training dataset of feature service {name}.",
        partitions_def=dg.DailyPartitionsDefinition(start_date=start.isoformat(), timezone="UTC"),
        # Dagster flags the asset when its definitions change, as the manifest check does.
        code_version=catalog.definition_hash(service),
        kinds={"parquet"},
        metadata={
            "spine": dg.MetadataValue.text(service.spine.path),
            "definition": dg.MetadataValue.text(str(service.location or "")),
            "contract_hash": dg.MetadataValue.text(catalog.contract_hash(service)),
            "partition_start": dg.MetadataValue.text(f"{start} (from {start_source})"),
            "dagster/column_schema": _column_schema(catalog, service),
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
    catalog_cases = build_container(settings).catalog_cases()
    try:
        catalog = catalog_cases.catalog()
    except AppError as exc:
        # The message lists every located error; the chained AppError/CatalogErrors would only
        # repeat it in the code location's error report.
        raise DefinitionsError(_catalog_message(exc)) from None
    assets = []
    for service in sorted(catalog.services.values(), key=lambda s: s.name):
        start, source = partition_start_for(settings.workspace, service, partition_start)
        assets.append(service_asset(catalog, service, start, source))
    return dg.Definitions(
        assets=assets, resources={RESOURCE_KEY: DaedalusResource.from_settings(settings)}
    )
