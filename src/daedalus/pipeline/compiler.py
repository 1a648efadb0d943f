"""Compile a feature service into an engine-tagged operator DAG (read spine → features → write)."""

from __future__ import annotations

from typing import Any

from daedalus.catalog.converter import CONVERTER
from daedalus.catalog.dtypes import format_dtype
from daedalus.catalog.model import AggregationDef, FeatureDef, FeatureServiceDef, FeatureViewDef
from daedalus.catalog.registry import FeatureCatalog
from daedalus.pipeline.operators import Operator, OperatorPipeline, OpKind
from daedalus.pit.spec import Engine

__all__ = ["compile_service"]


def _view_source(view: FeatureViewDef) -> dict[str, Any]:
    return CONVERTER.unstructure(view.source)


def compile_service(
    service: FeatureServiceDef | str, catalog: FeatureCatalog, engine: Engine | str = Engine.DUCKDB
) -> OperatorPipeline:
    """The operator DAG of `service`: one spine read, one as-of join and/or one rolling-aggregate
    operator per view (tagged with `engine`), a projection onto the resolved schema, the
    embedding enrichment (Ray + Lance) when the service asks for embeddings, and the day write.

    Raises UnknownName for an unknown service and ValueError for an unknown engine.
    """
    svc = catalog.service(service) if isinstance(service, str) else service
    eng = Engine(engine).value
    keys = catalog.join_keys(svc.spine.entities)
    spine = Operator(
        "spine",
        OpKind.READ_SPINE,
        "arrow",
        (),
        {
            "path": svc.spine.path,
            "timestamp": svc.spine.timestamp,
            "keys": keys,
            "labels": {c.name: c.dtype for c in svc.spine.labels},
            "naive_timestamps_are_utc": svc.spine.naive_timestamps_are_utc,
        },
    )
    ops: list[Operator] = [spine]
    by_view: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for rf in catalog.resolve_features(svc):
        entry = by_view.setdefault(rf.view.name, {"asof": [], "rolling": []})
        feature = rf.feature
        if isinstance(feature, FeatureDef):
            entry["asof"].append(
                {"name": feature.name, "output": rf.output, "column": feature.column}
            )
        else:
            assert isinstance(feature, AggregationDef)
            agg = CONVERTER.unstructure(feature)
            agg.pop("description", None)
            entry["rolling"].append({**agg, "output": rf.output})
    feature_ops: list[str] = []
    for view_name, parts in by_view.items():
        view = catalog.views[view_name]
        common = {
            "view": view_name,
            "keys": catalog.join_keys(view.entities),
            "source": _view_source(view),
        }
        if parts["asof"]:
            op_id = f"asof_{view_name}"
            ttl = view.ttl.text if view.ttl else None
            ops.append(
                Operator(
                    op_id,
                    OpKind.ASOF_JOIN,
                    eng,
                    ("spine",),
                    {**common, "ttl": ttl, "features": parts["asof"]},
                )
            )
            feature_ops.append(op_id)
        if parts["rolling"]:
            op_id = f"rolling_{view_name}"
            ops.append(
                Operator(
                    op_id,
                    OpKind.ROLLING_AGGREGATE,
                    eng,
                    ("spine",),
                    {**common, "features": parts["rolling"]},
                )
            )
            feature_ops.append(op_id)
    schema = catalog.resolved_schema(svc)
    embedding_names = {e.name for e in svc.embeddings}
    ops.append(
        Operator(
            "project",
            OpKind.PROJECT,
            "arrow",
            ("spine", *feature_ops),
            {
                "columns": [
                    {"name": f.name, "type": format_dtype(f.type)}
                    for f in schema
                    if f.name not in embedding_names
                ]
            },
        )
    )
    last = "project"
    if svc.embeddings:
        ops.append(
            Operator(
                "enrich",
                OpKind.ENRICH,
                "ray",
                ("project",),
                {
                    "embeddings": [
                        {
                            "name": e.name,
                            "source": e.source,
                            "store": e.store,
                            "path": catalog.stores[e.store].path,
                            "dim": catalog.stores[e.store].dim,
                        }
                        for e in svc.embeddings
                    ]
                },
            )
        )
        last = "enrich"
    ops.append(
        Operator(
            "write_day",
            OpKind.WRITE_DAY,
            "parquet",
            (last,),
            {"layout": f"<out>/{svc.name}/dt=YYYY-MM-DD/part-*.parquet"},
        )
    )
    return OperatorPipeline(
        service=svc.name,
        engine=eng,
        operators=tuple(ops),
        contract_hash=catalog.contract_hash(svc),
        definition_hash=catalog.definition_hash(svc),
    )
