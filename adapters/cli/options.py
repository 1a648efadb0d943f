"""The CLI's own options (where things are, --json, --debug, how a run is spread), and the
Application they choose: every command gets its use cases from the container through here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from cyclopts import Parameter

from daedalus.app.application import Application
from daedalus.app.settings import Settings

__all__ = ["OPTIONS", "SETTINGS", "build_application"]
__all__ += ["Catalog", "Debug", "Engine", "Json", "Out", "Workspace"]


def _option(kind: Any, text: str) -> Any:
    return Annotated[kind, Parameter(help=text, negative="")]


Catalog = _option(
    Path | None,
    "Catalog directory (default: WORKSPACE/feature_views, else ./feature_views; env DAEDA_CATALOG).",
)
Workspace = _option(
    Path | None, "Workspace directory: source paths are relative to it (env DAEDA_WORKSPACE)."
)
Out = _option(
    Path | None, "Output root: days go to OUT/SERVICE/dt=YYYY-MM-DD/ (default WORKSPACE/out)."
)
Engine = _option(str | None, "Compute engine: duckdb or polars (default duckdb; env DAEDA_ENGINE).")
Json = _option(bool, "Print machine-readable JSON on stdout.")
Debug = _option(bool, "Show tracebacks for errors.")

#: Options a command may take besides its use case's parameters, by name; a flag's default is
#: False, the others' None. Those in SETTINGS choose where things are (Settings), the others
#: are the command's own.
OPTIONS: dict[str, Any] = {
    "workspace": Workspace,
    "out": Out,
    "catalog": Catalog,
    "batch_rows": _option(
        int | None,
        "The most spine rows computed together: consecutive days are batched up to this many "
        "rows, one engine call per feature view per batch (default 500,000; env "
        "DAEDA_BATCH_ROWS). Lower it to bound memory on a small machine; the output is the same.",
    ),
    "ray_address": _option(
        str | None,
        "Run the days, and their enrich batches, as tasks on this Ray cluster (host:port, auto "
        "or ray://host:port; env RAY_ADDRESS). The workspace and --out must be on storage every "
        "node sees at the same path. Without it, days run one after another in this process and "
        "enrich on a local Ray.",
    ),
    "ray_days_in_flight": _option(
        int | None,
        "With --ray-address: days run at once on the cluster (default: half its CPUs, at least "
        "1; env DAEDA_RAY_DAYS_IN_FLIGHT).",
    ),
    "dry_run": _option(
        bool,
        "Say what the run would do (each day to compute or skip, and why; the batches) after "
        "checking the inputs, and write nothing.",
    ),
    "html": _option(
        Path | None,
        "Also write a self-contained HTML report (inline SVG, no script) with a chart per "
        "feature over the days: null share, min, max and mean per day.",
    ),
}
SETTINGS = {"workspace", "out", "catalog", "batch_rows", "ray_address", "ray_days_in_flight"}


def build_application(
    workspace: Path | None = None,
    catalog: Path | None = None,
    out: Path | None = None,
    **settings: Any,
) -> Application:
    """The application (every use case) for these settings (flags, then DAEDA_* variables,
    then defaults), from the container."""
    from daedalus.container import build_container

    chosen = Settings.from_env(workspace=workspace, catalog_dir=catalog, out_dir=out, **settings)
    return build_container(chosen).application()
