"""Where things are: the workspace, the catalog directory, the output directory, the engine."""

from __future__ import annotations

import os
from pathlib import Path

import attrs

__all__ = ["Settings"]


@attrs.frozen
class Settings:
    """Runtime settings shared by every surface (built from flags, environment, defaults).

    `workspace` is where sources live: source paths in the YAML are relative to it. `out_dir`
    defaults to `<workspace>/out`. Every path a request names must stay inside `workspace`.
    """

    workspace: Path = attrs.field(converter=lambda p: Path(p).resolve())
    catalog_dir: Path = attrs.field(converter=lambda p: Path(p).resolve())
    out_dir: Path = attrs.field(converter=lambda p: Path(p).resolve())
    engine: str = "duckdb"
    ray_address: str | None = None

    @classmethod
    def from_env(
        cls,
        *,
        workspace: str | Path | None = None,
        catalog_dir: str | Path | None = None,
        out_dir: str | Path | None = None,
        engine: str | None = None,
        ray_address: str | None = None,
    ) -> Settings:
        """Flags first, then DAEDA_* environment variables, then defaults."""
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
        )

    def to_dict(self) -> dict[str, str | None]:
        return {
            "workspace": str(self.workspace),
            "catalog_dir": str(self.catalog_dir),
            "out_dir": str(self.out_dir),
            "engine": self.engine,
            "ray_address": self.ray_address,
        }
