"""The composition root: the one place that chooses adapters (from config) and wires use cases.

Adapters are named by import path and imported only when first provided, so building the
container (and `daeda --help`) never loads DuckDB, Polars, Ray, Lance, Dagster or the MCP SDK.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from dependency_injector import containers, providers

from daedalus.app.catalog_cases import CatalogCases
from daedalus.app.settings import Settings
from daedalus.catalog.registry import FeatureCatalog

__all__ = ["Container", "build_container"]


def _build(path: str, *args: Any, **kwargs: Any) -> Any:
    """Import `module:attr` and call it: lazy construction of an adapter."""
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)(*args, **kwargs)


def _load_catalog(directory: Path) -> FeatureCatalog:
    return FeatureCatalog.from_yaml_dir(directory)


class Container(containers.DeclarativeContainer):
    """Every surface asks this container for its services; tests override providers."""

    config = providers.Configuration()
    settings = providers.Object(None)

    catalog_loader = providers.Object(_load_catalog)

    aggregators = providers.FactoryAggregate(
        duckdb=providers.Singleton(_build, "daedalus.adapters.duckdb.aggregator:DuckDBAggregator"),
        polars=providers.Singleton(_build, "daedalus.adapters.polars.aggregator:PolarsAggregator"),
    )
    aggregator = providers.Selector(
        config.engine,
        duckdb=providers.Singleton(_build, "daedalus.adapters.duckdb.aggregator:DuckDBAggregator"),
        polars=providers.Singleton(_build, "daedalus.adapters.polars.aggregator:PolarsAggregator"),
    )

    catalog_cases = providers.Singleton(
        CatalogCases, catalog_dir=config.catalog_dir, load=catalog_loader
    )


def build_container(settings: Settings) -> Container:
    """A container configured from `settings`."""
    container = Container()
    container.settings.override(providers.Object(settings))
    container.config.from_dict(
        {
            "workspace": settings.workspace,
            "catalog_dir": settings.catalog_dir,
            "out_dir": settings.out_dir,
            "engine": settings.engine,
            "ray_address": settings.ray_address,
        }
    )
    return container
