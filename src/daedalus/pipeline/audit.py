"""Audit a written day: recompute sampled rows by brute force from the raw sources and compare."""

from __future__ import annotations

import datetime as dt
import math
import random
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pyarrow as pa

from daedalus.catalog.registry import FeatureCatalog
from daedalus.pipeline.executor import Plan
from daedalus.pipeline.operators import OperatorPipeline
from daedalus.pit.reference import reference_pit_table
from daedalus.ports import EmbeddingStorePort, SinkPort, StoreRef

__all__ = ["AuditReport", "audit_day"]


@attrs.frozen
class AuditReport:
    """What an audit checked and every value that differed from the brute-force recomputation."""

    service: str
    day: str
    rows_in_day: int
    rows_checked: int
    columns_checked: int
    differences: tuple[dict[str, Any], ...]

    @property
    def ok(self) -> bool:
        return not self.differences

    def to_dict(self) -> dict[str, Any]:
        return {
            **attrs.asdict(self, recurse=False),
            "differences": list(self.differences),
            "ok": self.ok,
        }


def _same(a: Any, b: Any) -> bool:
    """Equality with floats compared by bits (so NaN equals NaN and -0.0 differs from 0.0)."""
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _pooled(ids: Any, store: EmbeddingStorePort) -> list[float] | None:
    """The brute-force mean of the store vectors of `ids` (float64 sum in order, then float32)."""
    values = [] if ids is None else (ids if isinstance(ids, list) else [ids])
    found = []
    for value in values:
        if value is None:
            continue
        vec, ok = store.lookup(np.array([value], dtype=np.int64))
        if ok[0]:
            found.append(vec[0].astype(np.float64))
    if not found:
        return None
    total = np.zeros(store.dim, dtype=np.float64)
    for vec in found:
        total += vec
    return [float(x) for x in (total / len(found)).astype(np.float32)]


def audit_day(
    pipeline: OperatorPipeline,
    day: dt.date,
    *,
    catalog: FeatureCatalog,
    workspace: str | Path,
    sink: SinkPort,
    open_store: Callable[[StoreRef], EmbeddingStorePort] | None = None,
    sample: int = 100,
    seed: int = 0,
) -> AuditReport:
    """Recompute `sample` random rows of a written day from the raw sources by brute force
    (`daedalus.pit.reference`), and report every value that differs, bit for bit.

    Raises SinkError when the day is not written.
    """
    plan = Plan(pipeline, catalog, Path(workspace))
    table = sink.read_day(pipeline.service, day)
    rng = random.Random(seed)
    picks = sorted(rng.sample(range(table.num_rows), min(sample, table.num_rows)))
    rows = table.take(pa.array(picks, pa.int64())) if picks else table.slice(0, 0)
    probe = rows.select([*plan.keys, plan.timestamp])
    differences: list[dict[str, Any]] = []
    checked = 0
    for _op, specs in plan.feature_ops:
        expected = reference_pit_table(
            probe, specs, timestamp=plan.timestamp, naive_timestamps_are_utc=plan.naive_spine
        )
        for spec in specs:
            checked += 1
            for i, (got, want) in enumerate(
                zip(rows[spec.name].to_pylist(), expected[spec.name].to_pylist(), strict=True)
            ):
                if not _same(got, want):
                    differences.append(
                        {"row": picks[i], "column": spec.name, "written": got, "expected": want}
                    )
    if plan.pool_requests and open_store is not None:
        stores: dict[str, EmbeddingStorePort] = {}
        for req in plan.pool_requests:
            store = stores.setdefault(req.store.name, open_store(req.store))
            checked += 1
            for i, (ids, got) in enumerate(
                zip(rows[req.source].to_pylist(), rows[req.name].to_pylist(), strict=True)
            ):
                want = _pooled(ids, store)
                if not _same(got, want):
                    differences.append(
                        {
                            "row": picks[i],
                            "column": req.name,
                            "written": _short(got),
                            "expected": _short(want),
                        }
                    )
    return AuditReport(
        pipeline.service, day.isoformat(), table.num_rows, len(picks), checked, tuple(differences)
    )


def _short(vec: list[float] | None) -> Any:
    if vec is None:
        return None
    head = ", ".join(f"{v:.6g}" if not math.isnan(v) else "nan" for v in vec[:4])
    return f"[{head}, …] ({len(vec)} values)"
