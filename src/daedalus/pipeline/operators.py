"""The typed plan a feature service compiles to: operators that hold what they run (the spine
source, the point-in-time specs of each view with the range each can see, the contract, the
pooling requests), and its text, Mermaid and JSON renderings — all of one object."""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pyarrow as pa

from daedalus.catalog.dtypes import format_dtype, parse_dtype
from daedalus.catalog.model import AggFunction, FilterDef
from daedalus.pit.spec import AggregationSpec, AsOfSpec, PitSpec, SourceSpec
from daedalus.ports import PoolRequest, StoreRef

__all__ = [
    "DayWrite",
    "Enrichment",
    "FeatureJoin",
    "OpKind",
    "Operator",
    "OperatorPipeline",
    "Payload",
    "Projection",
    "SpineRead",
]


class OpKind(enum.StrEnum):
    """What an operator does."""

    READ_SPINE = "read_spine"
    ASOF_JOIN = "asof_join"
    ROLLING_AGGREGATE = "rolling_aggregate"
    PROJECT = "project"
    ENRICH = "enrich"
    WRITE_DAY = "write_day"


@attrs.frozen
class SpineRead:
    """The spine: its source (keys, timestamp, labels with their types), the entity keys, the
    label columns, and the share of rows that may lack a timestamp (None: the run's default)."""

    source: SourceSpec
    keys: tuple[str, ...]
    labels: tuple[str, ...]
    max_invalid_fraction: float | None = None


@attrs.frozen
class FeatureJoin:
    """The features one view gives a service, computed by one aggregator call per batch.

    `lookback_us`: how far before a day its rows can see, `delay + longest window` (or
    `delay + ttl` for as-of features); None for lifetime windows and as-of without a TTL. A day
    D sees the rows with event time in `[D - lookback_us, D + 1)`.
    """

    view: str
    source: SourceSpec
    keys: tuple[str, ...]
    specs: tuple[PitSpec, ...]
    lookback_us: int | None
    max_invalid_fraction: float | None = None


@attrs.frozen
class Projection:
    """The day's rows put in the order and types of the contract (before embeddings)."""

    schema: pa.Schema


@attrs.frozen
class Enrichment:
    """Average-pooled embedding columns appended to the projected rows."""

    requests: tuple[PoolRequest, ...]


@attrs.frozen
class DayWrite:
    """Each day staged, checked against `schema` (the resolved contract) and published."""

    layout: str
    schema: pa.Schema


Payload = SpineRead | FeatureJoin | Projection | Enrichment | DayWrite


@attrs.frozen
class Operator:
    """One node of the DAG: an id, what it does, which engine runs it, its inputs, and the typed
    payload it runs."""

    id: str
    kind: OpKind
    engine: str
    inputs: tuple[str, ...]
    payload: Payload = attrs.field(eq=False, hash=False)

    def label(self) -> str:
        p = self.payload
        if isinstance(p, SpineRead):
            detail = ", ".join(p.source.paths)
        elif isinstance(p, FeatureJoin):
            what = "features" if self.kind is OpKind.ASOF_JOIN else "aggregates"
            detail = f"{p.view}: {len(p.specs)} {what}"
        elif isinstance(p, Projection):
            detail = f"{len(p.schema)} columns"
        elif isinstance(p, Enrichment):
            detail = ", ".join(r.name for r in p.requests)
        else:
            detail = p.layout
        return f"{self.kind.value} [{self.engine}] {detail}"


@attrs.frozen
class OperatorPipeline:
    """A compiled feature service: operators in topological order, plus what identifies it.

    The one carrier of a service's plan: the executor runs it without going back to the
    catalog. Source paths are as the definitions wrote them (relative to a workspace) until
    `bind` resolves them.
    """

    service: str
    engine: str
    operators: tuple[Operator, ...]
    contract_hash: str
    definition_hash: str

    def op(self, op_id: str) -> Operator:
        return next(o for o in self.operators if o.id == op_id)

    def of_kind(self, kind: OpKind) -> list[Operator]:
        return [o for o in self.operators if o.kind is kind]

    # -- typed views ---------------------------------------------------------------------------

    @property
    def spine(self) -> SpineRead:
        (op,) = self.of_kind(OpKind.READ_SPINE)
        assert isinstance(op.payload, SpineRead)
        return op.payload

    @property
    def feature_ops(self) -> list[tuple[Operator, FeatureJoin]]:
        """Each feature operator with its join, in plan order."""
        out = []
        for op in self.operators:
            if isinstance(op.payload, FeatureJoin):
                out.append((op, op.payload))
        return out

    @property
    def schema(self) -> pa.Schema:
        """The resolved contract every written day matches exactly."""
        (op,) = self.of_kind(OpKind.WRITE_DAY)
        assert isinstance(op.payload, DayWrite)
        return op.payload.schema

    @property
    def pool_requests(self) -> tuple[PoolRequest, ...]:
        ops = self.of_kind(OpKind.ENRICH)
        if not ops:
            return ()
        assert isinstance(ops[0].payload, Enrichment)
        return ops[0].payload.requests

    def sources(self) -> Iterator[tuple[str, SourceSpec]]:
        """Every source once: the spine (as "spine"), then each view's."""
        yield "spine", self.spine.source
        seen: set[str] = set()
        for _op, join in self.feature_ops:
            if join.view not in seen:
                seen.add(join.view)
                yield join.view, join.source

    def bind(self, workspace: str | Path) -> OperatorPipeline:
        """The same plan with every source and store path resolved against `workspace` (paths
        that are absolute stay as they are); specs keep sharing their view's one source."""
        root = Path(workspace)
        rebased: dict[int, SourceSpec] = {}

        def rebase(src: SourceSpec) -> SourceSpec:
            if id(src) not in rebased:
                rebased[id(src)] = attrs.evolve(src, paths=tuple(str(root / p) for p in src.paths))
            return rebased[id(src)]

        ops = []
        for op in self.operators:
            p = op.payload
            if isinstance(p, SpineRead):
                p = attrs.evolve(p, source=rebase(p.source))
            elif isinstance(p, FeatureJoin):
                src = rebase(p.source)
                specs = tuple(attrs.evolve(s, source=src) for s in p.specs)
                p = attrs.evolve(p, source=src, specs=specs)
            elif isinstance(p, Enrichment):
                p = Enrichment(
                    tuple(
                        attrs.evolve(r, store=attrs.evolve(r.store, path=str(root / r.store.path)))
                        for r in p.requests
                    )
                )
            ops.append(attrs.evolve(op, payload=p))
        return attrs.evolve(self, operators=tuple(ops))

    # -- renderings ----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form that `from_dict` reads back into an equal plan."""
        return {
            "service": self.service,
            "engine": self.engine,
            "contract_hash": self.contract_hash,
            "definition_hash": self.definition_hash,
            "operators": [
                {
                    "id": o.id,
                    "kind": o.kind.value,
                    "engine": o.engine,
                    "inputs": list(o.inputs),
                    "params": _payload_to_dict(o.payload),
                }
                for o in self.operators
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OperatorPipeline:
        ops = tuple(
            Operator(
                o["id"],
                OpKind(o["kind"]),
                o["engine"],
                tuple(o["inputs"]),
                _payload_from_dict(OpKind(o["kind"]), o["params"]),
            )
            for o in data["operators"]
        )
        return cls(
            data["service"], data["engine"], ops, data["contract_hash"], data["definition_hash"]
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    def to_text(self) -> str:
        """One line per operator with its inputs: readable in a terminal."""
        lines = [
            f"pipeline {self.service} (engine {self.engine}, contract {self.contract_hash[:12]})"
        ]
        for o in self.operators:
            src = f"  <- {', '.join(o.inputs)}" if o.inputs else ""
            lines.append(f"  {o.id}: {o.label()}{src}")
        return "\n".join(lines)

    def to_mermaid(self) -> str:
        """A Mermaid flowchart of the DAG."""
        lines = ["flowchart TD"]
        for o in self.operators:
            text = o.label().replace('"', "'")
            lines.append(f'    {o.id}["{text}"]')
        for o in self.operators:
            lines += [f"    {i} --> {o.id}" for i in o.inputs]
        return "\n".join(lines)


# -- JSON forms of the payloads ----------------------------------------------------------------


def _schema_to_list(schema: pa.Schema) -> list[dict[str, Any]]:
    return [{"name": f.name, "type": format_dtype(f.type), "nullable": f.nullable} for f in schema]


def _schema_from_list(items: list[dict[str, Any]]) -> pa.Schema:
    return pa.schema(
        [pa.field(f["name"], parse_dtype(f["type"]), f.get("nullable", True)) for f in items]
    )


def _source_to_dict(src: SourceSpec) -> dict[str, Any]:
    return {
        "name": src.name,
        "paths": list(src.paths),
        "timestamp": src.timestamp,
        "created_timestamp": src.created_timestamp,
        "naive_timestamps_are_utc": src.naive_timestamps_are_utc,
        "schema": _schema_to_list(src.schema),
    }


def _source_from_dict(d: dict[str, Any]) -> SourceSpec:
    return SourceSpec(
        name=d["name"],
        timestamp=d["timestamp"],
        schema=_schema_from_list(d["schema"]),
        paths=tuple(d["paths"]),
        created_timestamp=d["created_timestamp"],
        naive_timestamps_are_utc=d["naive_timestamps_are_utc"],
    )


def _spec_to_dict(spec: PitSpec) -> dict[str, Any]:
    if isinstance(spec, AsOfSpec):
        return {
            "name": spec.name,
            "kind": "asof",
            "column": spec.column,
            "keys": list(spec.keys),
            "ttl_us": spec.ttl_us,
            "delay_us": spec.delay_us,
        }
    return {
        "name": spec.name,
        "kind": "aggregation",
        "function": spec.function.value,
        "column": spec.column,
        "keys": list(spec.keys),
        "window_us": spec.window_us,
        "filters": [{"column": f.column, "values": list(f.values)} for f in spec.filters],
        "n": spec.n,
        "delay_us": spec.delay_us,
    }


def _spec_from_dict(d: dict[str, Any], source: SourceSpec) -> PitSpec:
    if d["kind"] == "asof":
        return AsOfSpec(
            d["name"], d["column"], tuple(d["keys"]), source, d["ttl_us"], d["delay_us"]
        )
    return AggregationSpec(
        name=d["name"],
        function=AggFunction(d["function"]),
        keys=tuple(d["keys"]),
        source=source,
        window_us=d["window_us"],
        column=d["column"],
        filters=tuple(FilterDef(f["column"], tuple(f["values"])) for f in d["filters"]),
        n=d["n"],
        delay_us=d["delay_us"],
    )


def _payload_to_dict(p: Payload) -> dict[str, Any]:
    if isinstance(p, SpineRead):
        return {
            "source": _source_to_dict(p.source),
            "keys": list(p.keys),
            "labels": list(p.labels),
            "max_invalid_fraction": p.max_invalid_fraction,
        }
    if isinstance(p, FeatureJoin):
        return {
            "view": p.view,
            "source": _source_to_dict(p.source),
            "keys": list(p.keys),
            "lookback_us": p.lookback_us,
            "max_invalid_fraction": p.max_invalid_fraction,
            "features": [_spec_to_dict(s) for s in p.specs],
        }
    if isinstance(p, Projection):
        return {"columns": _schema_to_list(p.schema)}
    if isinstance(p, Enrichment):
        return {"embeddings": [attrs.asdict(r) for r in p.requests]}
    return {"layout": p.layout, "schema": _schema_to_list(p.schema)}


def _payload_from_dict(kind: OpKind, d: dict[str, Any]) -> Payload:
    if kind is OpKind.READ_SPINE:
        return SpineRead(
            _source_from_dict(d["source"]),
            tuple(d["keys"]),
            tuple(d["labels"]),
            d["max_invalid_fraction"],
        )
    if kind in (OpKind.ASOF_JOIN, OpKind.ROLLING_AGGREGATE):
        source = _source_from_dict(d["source"])
        return FeatureJoin(
            d["view"],
            source,
            tuple(d["keys"]),
            tuple(_spec_from_dict(s, source) for s in d["features"]),
            d["lookback_us"],
            d["max_invalid_fraction"],
        )
    if kind is OpKind.PROJECT:
        return Projection(_schema_from_list(d["columns"]))
    if kind is OpKind.ENRICH:
        return Enrichment(
            tuple(
                PoolRequest(e["name"], e["source"], StoreRef(**e["store"])) for e in d["embeddings"]
            )
        )
    return DayWrite(d["layout"], _schema_from_list(d["schema"]))
