"""The Python API's entry point: `open_workspace`, the composition of a `Workspace` from the
container (as the CLI builds its use cases), for notebooks and scripts.

It lives outside the core because it builds the container; `import daedalus` stays light and
exports it lazily (`daedalus.open_workspace`).
"""

from __future__ import annotations

import os
from pathlib import Path

from daedalus.app.errors import AppError
from daedalus.app.settings import Settings
from daedalus.app.workspace import Workspace
from daedalus.container import build_container

__all__ = ["Workspace", "open_workspace"]


def open_workspace(
    path: str | os.PathLike[str] = ".", catalog: str | os.PathLike[str] | None = None
) -> Workspace:
    """Open the workspace at `path` (where the definitions' source paths are relative to) with
    the catalog in `catalog` (default: `<path>/feature_views` if it exists, else
    `./feature_views`; env `DAEDA_CATALOG`), built from the same container as the CLI.

    Raises AppError(not_found) when `path` is not a directory, CatalogErrors (every error,
    located) when the catalog does not load.
    """
    settings = Settings.from_env(workspace=Path(path), catalog_dir=catalog)
    if not settings.workspace.is_dir():
        raise AppError(
            "not_found", f"workspace {str(path)!r} is not a directory", {"field": "path"}
        )
    container = build_container(settings)
    load = container.catalog_loader()
    return Workspace(
        settings=settings,
        load_catalog=lambda: load(settings.catalog_dir),
        aggregator_for=container.aggregator_for(),
        enricher=container.enricher,
        source_reader=container.source_reader,
    )
