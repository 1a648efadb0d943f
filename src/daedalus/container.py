"""The composition root: the one place that chooses adapters (from config) and wires use cases.

Adapters are imported only when first provided, so building the container (and `daeda --help`)
never loads DuckDB, Polars, Ray, Lance, Dagster or the MCP SDK. The engines come from the one
engine registry (`daedalus.pit.engine.ENGINES`, filled by this root's engine table
`daedalus.engines`): `aggregator_for(engine)` builds each engine's aggregator from it, reading
through the one `source_reader` (the parquet reader).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dependency_injector import containers, providers

from daedalus import engines as engine_table
from daedalus.app.application import Application
from daedalus.app.catalog_cases import CatalogCases
from daedalus.app.demo_cases import DemoCases
from daedalus.app.jobs import JobCases
from daedalus.app.pipeline_cases import PipelineCases
from daedalus.app.settings import Settings
from daedalus.catalog.registry import FeatureCatalog
from daedalus.pit.engine import ENGINES, EngineRegistry, parse_engine
from daedalus.ports import AggregatorPort, SourceReaderPort

__all__ = ["Container", "build_container"]


def _build(path: str, *args: Any, **kwargs: Any) -> Any:
    """Import `module:attr` and call it: lazy construction of an adapter."""
    module, _, attr = path.partition(":")
    target: Any = importlib.import_module(module)
    for part in attr.split("."):
        target = getattr(target, part)
    return target(*args, **kwargs)


def _lazy(path: str) -> Callable[..., Any]:
    """A callable that imports `module:attr` on first call and forwards to it."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return _build(path, *args, **kwargs)

    return call


def _load_catalog(directory: Path) -> FeatureCatalog:
    return FeatureCatalog.from_yaml_dir(directory)


def _day_runner(address: str | None, days_in_flight: int | None) -> Any:
    """Days on the Ray cluster at `address` when one is given, else one after another here."""
    if address is None:
        return _build("daedalus.pipeline.runner:LocalDayRunner")
    return _build(
        "daedalus.adapters.lance_ray.days:RayDayRunner", address, max_in_flight=days_in_flight
    )


def _aggregator_for(
    registry: EngineRegistry, reader: Callable[[], SourceReaderPort]
) -> Callable[[Any], AggregatorPort]:
    """`aggregator_for(engine)`: the engine's aggregator from the registry, built on first use
    (one per engine), reading through `reader()`. Raises UnknownEngine (a ValueError naming
    the field and the choices) for a name that is not an engine."""
    built: dict[Any, AggregatorPort] = {}

    def aggregator_for(engine: Any) -> AggregatorPort:
        chosen = parse_engine(engine)
        if chosen not in built:
            built[chosen] = registry.aggregator(chosen, reader())
        return built[chosen]

    return aggregator_for


def _enricher(address: str | None, in_process_rows: int | None) -> Any:
    """The Lance + Ray enricher; `in_process_rows` (None: its default) chooses where pooling
    runs."""
    options = {} if in_process_rows is None else {"in_process_rows": in_process_rows}
    return _build(
        "daedalus.adapters.lance_ray.enricher:RayLanceEnricher", address=address, **options
    )


class Container(containers.DeclarativeContainer):
    """Every surface asks this container for its services; tests override providers."""

    config = providers.Configuration()

    catalog_loader = providers.Object(_load_catalog)

    # The one engine registry; one aggregator per engine, built on first use, every one
    # reading through the one source reader.
    engines = providers.Object(ENGINES)
    source_reader = providers.Singleton(engine_table.parquet_reader)
    aggregator_for = providers.Singleton(_aggregator_for, engines, source_reader.provider)

    sink = providers.Selector(
        config.sink,
        parquet=providers.Singleton(
            _build, "daedalus.adapters.parquet.sink:ParquetSink", config.out_dir
        ),
    )
    enricher = providers.Singleton(_enricher, config.ray_address, config.enrich_in_process_rows)
    # Chosen by settings.ray_address: the Ray runner (and Ray) is only imported when asked for.
    day_runner = providers.Singleton(_day_runner, config.ray_address, config.ray_days_in_flight)
    open_store = providers.Object(
        _lazy("daedalus.adapters.lance_ray.store:LanceEmbeddingStore.open")
    )
    demo_writer = providers.Object(_lazy("daedalus.adapters.demo.generator:write_demo_workspace"))

    catalog_cases = providers.Singleton(
        CatalogCases, catalog_dir=config.catalog_dir, load=catalog_loader
    )
    pipeline_cases = providers.Singleton(
        PipelineCases,
        workspace=config.workspace,
        catalog_cases=catalog_cases,
        aggregator_for=aggregator_for,
        sink=sink,
        enricher=enricher.provider,
        open_store=open_store,
        default_engine=config.engine,
        day_runner=day_runner.provider,
        batch_rows=config.batch_rows,
        source_reader=source_reader.provider,
    )
    demo_start = providers.Object(_lazy("daedalus.adapters.demo.generator:demo_start"))
    demo_cases = providers.Singleton(DemoCases, writer=demo_writer, read_start=demo_start)

    run_store = providers.Singleton(
        _build, "daedalus.adapters.runstore.sqlite:SqliteRunStore", config.run_store_path
    )
    job_cases = providers.Singleton(JobCases, store=run_store, pipeline=pipeline_cases)
    application = providers.Singleton(
        Application,
        settings=config.settings_object,
        catalog=catalog_cases,
        pipeline=pipeline_cases,
        jobs=job_cases,
        demo=demo_cases,
    )


def build_container(settings: Settings) -> Container:
    """A container configured from `settings`."""
    container = Container()
    container.config.from_dict(
        {
            "workspace": settings.workspace,
            "catalog_dir": settings.catalog_dir,
            "out_dir": settings.out_dir,
            "engine": settings.engine,
            "sink": "parquet",
            "ray_address": settings.ray_address,
            "ray_days_in_flight": settings.ray_days_in_flight,
            "batch_rows": settings.batch_rows,
            "enrich_in_process_rows": settings.enrich_in_process_rows,
            "run_store_path": settings.workspace / ".daedalus" / "runs.sqlite",
        }
    )
    container.config.settings_object.from_value(settings)
    return container
