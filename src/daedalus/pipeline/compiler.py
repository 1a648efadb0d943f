"""Compile a feature service into its typed, engine-tagged operator DAG (read spine → features →
project → enrich → write)."""

from __future__ import annotations

import pyarrow as pa

from daedalus.catalog.model import FeatureServiceDef, FeatureViewDef
from daedalus.catalog.registry import TIMESTAMP_TYPE, FeatureCatalog
from daedalus.pipeline.operators import (
    DayWrite,
    Enrichment,
    FeatureJoin,
    Operator,
    OperatorPipeline,
    OpKind,
    Projection,
    SpineRead,
)
from daedalus.pit.spec import AsOfSpec, Engine, PitSpec, SourceSpec, specs_for_view
from daedalus.ports import PoolRequest, StoreRef

__all__ = ["compile_service"]


def _lookback_us(view: FeatureViewDef, specs: list[PitSpec]) -> int | None:
    """How far before a day the view's features can see (None: no lower bound)."""
    delay = view.source.delay.micros or 0
    spans = []
    for spec in specs:
        span = spec.ttl_us if isinstance(spec, AsOfSpec) else spec.window_us
        if span is None:
            return None
        spans.append(span)
    return delay + max(spans)


def compile_service(
    service: FeatureServiceDef | str, catalog: FeatureCatalog, engine: Engine | str = Engine.DUCKDB
) -> OperatorPipeline:
    """The typed plan of `service`: one spine read, one as-of join and/or one rolling-aggregate
    operator per view (tagged with `engine`, holding its point-in-time specs and the range each
    day can see), a projection onto the resolved schema, the embedding enrichment (Ray + Lance)
    when the service asks for embeddings, and the day write. Source and store paths are as the
    definitions wrote them; `OperatorPipeline.bind(workspace)` resolves them.

    Raises UnknownName for an unknown service and ValueError for an unknown engine.
    """
    svc = catalog.service(service) if isinstance(service, str) else service
    eng = Engine(engine).value
    keys = tuple(catalog.join_keys(svc.spine.entities))
    schema = catalog.resolved_schema(svc)  # resolved once: every operator shares it
    labels = tuple(c.name for c in svc.spine.labels)
    spine_source = SourceSpec(
        name=f"spine of {svc.name}",
        timestamp=svc.spine.timestamp,
        schema=pa.schema(
            [
                *(pa.field(k, pa.int64()) for k in keys),
                pa.field(svc.spine.timestamp, TIMESTAMP_TYPE),
                *(pa.field(c.name, c.arrow_type) for c in svc.spine.labels),
            ]
        ),
        paths=(svc.spine.path,),
        naive_timestamps_are_utc=svc.spine.naive_timestamps_are_utc,
    )
    spine = Operator(
        "spine",
        OpKind.READ_SPINE,
        "arrow",
        (),
        SpineRead(spine_source, keys, labels, svc.spine.max_invalid_fraction),
    )
    ops: list[Operator] = [spine]
    names: dict[str, list[str]] = {}
    aliases: dict[str, dict[str, str]] = {}
    for rf in catalog.resolve_features(svc):
        names.setdefault(rf.view.name, []).append(rf.feature.name)
        aliases.setdefault(rf.view.name, {})[rf.feature.name] = rf.output
    feature_ops: list[str] = []
    for view_name, wanted in names.items():
        view = catalog.views[view_name]
        source = SourceSpec.from_view(view, root=".")  # paths as written: bind() resolves them
        specs = specs_for_view(view, source, wanted, aliases[view_name])
        view_keys = tuple(catalog.join_keys(view.entities))
        for kind, prefix, part in (
            (OpKind.ASOF_JOIN, "asof", [s for s in specs if isinstance(s, AsOfSpec)]),
            (
                OpKind.ROLLING_AGGREGATE,
                "rolling",
                [s for s in specs if not isinstance(s, AsOfSpec)],
            ),
        ):
            if not part:
                continue
            op_id = f"{prefix}_{view_name}"
            join = FeatureJoin(
                view_name,
                source,
                view_keys,
                tuple(part),
                _lookback_us(view, part),
                view.source.max_invalid_fraction,
            )
            ops.append(Operator(op_id, kind, eng, ("spine",), join))
            feature_ops.append(op_id)
    embedding_names = {e.name for e in svc.embeddings}
    projected = pa.schema([f for f in schema if f.name not in embedding_names])
    ops.append(
        Operator("project", OpKind.PROJECT, "arrow", ("spine", *feature_ops), Projection(projected))
    )
    last = "project"
    if svc.embeddings:
        requests = []
        for e in svc.embeddings:
            store = catalog.stores[e.store]
            ref = StoreRef(store.name, store.path, store.id_column, store.vector_column, store.dim)
            requests.append(PoolRequest(e.name, e.source, ref))
        ops.append(
            Operator("enrich", OpKind.ENRICH, "ray", ("project",), Enrichment(tuple(requests)))
        )
        last = "enrich"
    ops.append(
        Operator(
            "write_day",
            OpKind.WRITE_DAY,
            "parquet",
            (last,),
            DayWrite(f"<out>/{svc.name}/dt=YYYY-MM-DD/part-*.parquet", schema),
        )
    )
    return OperatorPipeline(
        service=svc.name,
        engine=eng,
        operators=tuple(ops),
        contract_hash=catalog.contract_hash(svc),
        definition_hash=catalog.definition_hash(svc),
    )
