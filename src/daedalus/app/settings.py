"""Where things are: the workspace, the catalog directory, the output directory, the engine,
and the Ray cluster (if any) that runs the training days."""

from __future__ import annotations

import os
from pathlib import Path

import attrs

from daedalus.app.errors import AppError
from daedalus.pipeline import DEFAULT_BATCH_ROWS

__all__ = ["Settings"]


@attrs.frozen
class Settings:
    """Runtime settings shared by every surface (built from flags, environment, defaults).

    `workspace` is where sources live: source paths in the YAML are relative to it. `out_dir`
    defaults to `<workspace>/out`. Every path a request names must stay inside `workspace`.
    `ray_address`: a Ray cluster that runs the training days and their enrich batches (None:
    days run one after another in this process, enrich on a local Ray). `ray_days_in_flight`:
    how many batches of days may run on that cluster at once (None: half its CPUs, at least
    1). `batch_rows`: the most spine rows computed together (consecutive days are batched up
    to it).
    """

    workspace: Path = attrs.field(converter=lambda p: Path(p).resolve())
    catalog_dir: Path = attrs.field(converter=lambda p: Path(p).resolve())
    out_dir: Path = attrs.field(converter=lambda p: Path(p).resolve())
    engine: str = "duckdb"
    ray_address: str | None = None
    ray_days_in_flight: int | None = attrs.field(default=None)
    batch_rows: int = attrs.field(default=DEFAULT_BATCH_ROWS)
    #: Batches of at most this many rows pool their embeddings in the process, larger ones on
    #: Ray Data (None: the enricher's default, 2,000,000; 0: always on Ray).
    enrich_in_process_rows: int | None = None

    @batch_rows.validator
    def _check_batch_rows(self, _attribute: attrs.Attribute[int], value: int) -> None:
        if value < 1:
            raise AppError(
                "invalid_argument",
                f"the batch size must be at least 1 spine row, got {value}",
                {"field": "batch_rows"},
            )

    @ray_days_in_flight.validator
    def _check_in_flight(self, _attribute: attrs.Attribute[int | None], value: int | None) -> None:
        if value is not None and value < 1:
            raise AppError(
                "invalid_argument",
                f"days in flight on Ray must be at least 1, got {value}",
                {"field": "ray_days_in_flight"},
            )

    @classmethod
    def from_env(
        cls,
        *,
        workspace: str | Path | None = None,
        catalog_dir: str | Path | None = None,
        out_dir: str | Path | None = None,
        engine: str | None = None,
        ray_address: str | None = None,
        ray_days_in_flight: int | None = None,
        batch_rows: int | None = None,
    ) -> Settings:
        """Flags first, then DAEDA_* environment variables (and RAY_ADDRESS), then defaults."""
        ws = Path(workspace or os.environ.get("DAEDA_WORKSPACE") or ".")
        cat = catalog_dir or os.environ.get("DAEDA_CATALOG")
        if cat is None:
            cat = ws / "feature_views" if (ws / "feature_views").is_dir() else Path("feature_views")
        out = out_dir or os.environ.get("DAEDA_OUT") or ws / "out"
        return cls(
            workspace=ws,
            catalog_dir=Path(cat),
            out_dir=Path(out),
            engine=engine or os.environ.get("DAEDA_ENGINE") or "duckdb",
            ray_address=ray_address or os.environ.get("RAY_ADDRESS") or None,
            ray_days_in_flight=(
                ray_days_in_flight
                if ray_days_in_flight is not None
                else _int_env("DAEDA_RAY_DAYS_IN_FLIGHT")
            ),
            batch_rows=(
                batch_rows
                if batch_rows is not None
                else (_int_env("DAEDA_BATCH_ROWS") or DEFAULT_BATCH_ROWS)
            ),
            enrich_in_process_rows=_int_env("DAEDA_ENRICH_IN_PROCESS_ROWS"),
        )

    def to_dict(self) -> dict[str, str | int | None]:
        return {
            "workspace": str(self.workspace),
            "catalog_dir": str(self.catalog_dir),
            "out_dir": str(self.out_dir),
            "engine": self.engine,
            "ray_address": self.ray_address,
            "ray_days_in_flight": self.ray_days_in_flight,
            "batch_rows": self.batch_rows,
            "enrich_in_process_rows": self.enrich_in_process_rows,
        }


def _int_env(name: str) -> int | None:
    """An integer environment variable, None when unset or empty; AppError naming it if bad."""
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise AppError(
            "invalid_argument", f"{name} must be an integer, got {text!r}", {"field": name}
        ) from None
