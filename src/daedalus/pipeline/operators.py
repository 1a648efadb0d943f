"""The operator DAG a feature service compiles to, and its text, Mermaid and JSON renderings."""

from __future__ import annotations

import enum
import json
from typing import Any

import attrs

__all__ = ["OpKind", "Operator", "OperatorPipeline"]


class OpKind(enum.StrEnum):
    """What an operator does."""

    READ_SPINE = "read_spine"
    ASOF_JOIN = "asof_join"
    ROLLING_AGGREGATE = "rolling_aggregate"
    PROJECT = "project"
    ENRICH = "enrich"
    WRITE_DAY = "write_day"


@attrs.frozen
class Operator:
    """One node of the DAG: an id, what it does, which engine runs it, its inputs, its params."""

    id: str
    kind: OpKind
    engine: str
    inputs: tuple[str, ...] = ()
    params: dict[str, Any] = attrs.field(factory=dict, eq=False, hash=False)

    def label(self) -> str:
        detail = {
            OpKind.READ_SPINE: lambda p: p["path"],
            OpKind.ASOF_JOIN: lambda p: f"{p['view']}: {len(p['features'])} features",
            OpKind.ROLLING_AGGREGATE: lambda p: f"{p['view']}: {len(p['features'])} aggregates",
            OpKind.PROJECT: lambda p: f"{len(p['columns'])} columns",
            OpKind.ENRICH: lambda p: ", ".join(e["name"] for e in p["embeddings"]),
            OpKind.WRITE_DAY: lambda p: p["layout"],
        }[self.kind](self.params)
        return f"{self.kind.value} [{self.engine}] {detail}"


@attrs.frozen
class OperatorPipeline:
    """A compiled feature service: operators in topological order, plus what identifies it."""

    service: str
    engine: str
    operators: tuple[Operator, ...]
    contract_hash: str
    definition_hash: str

    def op(self, op_id: str) -> Operator:
        return next(o for o in self.operators if o.id == op_id)

    def of_kind(self, kind: OpKind) -> list[Operator]:
        return [o for o in self.operators if o.kind is kind]

    def to_dict(self) -> dict[str, Any]:
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
                    "params": o.params,
                }
                for o in self.operators
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OperatorPipeline:
        ops = tuple(
            Operator(o["id"], OpKind(o["kind"]), o["engine"], tuple(o["inputs"]), o["params"])
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
