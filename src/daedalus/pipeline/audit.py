"""Audit a written day against what training should have written.

Two checks:

- **rows** (the whole day): the written rows must be exactly the spine's rows of `[D, D+1)`
  (`read_spine_day`, cast like training casts them), as a multiset over (entity keys,
  timestamp, labels). Differences: rows missing from the day, extra rows (not in the spine for
  that day, e.g. another day's rows), duplicated rows (written more often than the spine has
  them) and flipped labels (a missing and an extra row that pair up uniquely by keys and
  timestamp, reported per label column). The written row count is compared with the
  manifest's `rows` and the spine's count. One Arrow `group_by` over both tables does the
  counting; at most `ROW_LIMIT` differences of each kind are listed, all are counted.
- **features** (sampled rows): `sample` random written rows are recomputed by brute force
  from the raw sources (`daedalus.pit.reference`, and the pooled embeddings from the store)
  and compared bit for bit.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import random
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from daedalus.pipeline.executor import Plan, project_day, read_spine_day
from daedalus.pipeline.operators import OperatorPipeline
from daedalus.pit.reference import reference_pit_table
from daedalus.ports import EmbeddingStorePort, SinkPort, SourceReaderPort, StoreRef

__all__ = ["ROW_LIMIT", "AuditReport", "audit_day"]

ROW_LIMIT = 50
"""At most this many row differences of each kind are listed (all of them are counted)."""

_ROW = "__audit_row"  # the written row's position in the day (null for spine rows)
_SPINE = "__audit_spine"  # 1 for a spine row (null for written rows)
_GROUP = "__audit_group"  # a distinct row's number among the differing ones


@attrs.frozen
class AuditReport:
    """What an audit checked and what differed.

    `differences`: every sampled feature value that differs from the brute-force
    recomputation (`row`: position in the day, `column`, `written`, `expected`).
    `row_differences`: the day's rows against the spine, each with a `kind`:

    - `missing`: a spine row not written as often as the spine has it (`keys`, `timestamp`,
      `labels`, `written_times`, `expected_times`);
    - `extra`: a written row the spine does not have for the day (same fields, plus `rows`:
      its positions in the day);
    - `duplicated`: a spine row written more often than the spine has it (same as `extra`);
    - `label`: a row whose label differs (`row`, `keys`, `timestamp`, `column`, `written`,
      `expected`), one per label column;
    - `row_count`: the written, manifest and spine row counts (`written`, `manifest`,
      `spine`) when they disagree.

    At most `ROW_LIMIT` of each kind are listed; `missing_rows`, `extra_rows`,
    `duplicated_rows` (surplus copies) and `label_differences` count all of them.
    """

    service: str
    day: str
    rows_in_day: int
    rows_checked: int
    columns_checked: int
    differences: tuple[dict[str, Any], ...]
    rows_in_manifest: int | None = None
    rows_in_spine: int | None = None
    missing_rows: int = 0
    extra_rows: int = 0
    duplicated_rows: int = 0
    label_differences: int = 0
    row_differences: tuple[dict[str, Any], ...] = ()

    @property
    def ok(self) -> bool:
        """No difference of any kind: feature values, rows or row counts."""
        return not self.differences and not self.row_differences

    def to_dict(self) -> dict[str, Any]:
        return {
            **attrs.asdict(self, recurse=False),
            "differences": list(self.differences),
            "row_differences": list(self.row_differences),
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
    workspace: str | Path,
    sink: SinkPort,
    open_store: Callable[[StoreRef], EmbeddingStorePort] | None = None,
    sample: int = 100,
    seed: int = 0,
    reader: SourceReaderPort | None = None,
) -> AuditReport:
    """Check the whole written day against the spine's rows of `[day, day + 1)` and its
    manifest's row count, and recompute `sample` random rows from the raw sources by brute
    force (`daedalus.pit.reference`); report every difference (see `AuditReport`).

    Raises SinkError when the day is not written.
    """
    plan = Plan(pipeline, workspace, reader)
    table = sink.read_day(pipeline.service, day)
    manifest = sink.read_manifest(pipeline.service, day)
    rows = _check_rows(plan, table, read_spine_day(plan, day), manifest)
    rng = random.Random(seed)
    picks = sorted(rng.sample(range(table.num_rows), min(sample, table.num_rows)))
    sampled = table.take(pa.array(picks, pa.int64())) if picks else table.slice(0, 0)
    probe = sampled.select([*plan.keys, plan.timestamp])
    differences: list[dict[str, Any]] = []
    checked = 0
    for _op, specs in plan.feature_ops:
        expected = reference_pit_table(
            probe,
            specs,
            timestamp=plan.timestamp,
            naive_timestamps_are_utc=plan.naive_spine,
            reader=reader,
        )
        for spec in specs:
            checked += 1
            for i, (got, want) in enumerate(
                zip(sampled[spec.name].to_pylist(), expected[spec.name].to_pylist(), strict=True)
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
                zip(sampled[req.source].to_pylist(), sampled[req.name].to_pylist(), strict=True)
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
        pipeline.service,
        day.isoformat(),
        table.num_rows,
        len(picks),
        checked,
        tuple(differences),
        **rows,
    )


def _check_rows(
    plan: Plan, written: pa.Table, spine: pa.Table, manifest: dict[str, Any] | None
) -> dict[str, Any]:
    """The day's rows against the spine's, as a multiset over (keys, timestamp, labels):
    the `AuditReport` fields from `rows_in_manifest` on."""
    want = project_day(plan, spine, {})  # the spine rows exactly as training writes them
    cols = want.column_names
    place = [*plan.keys, plan.timestamp]
    labels = [c for c in cols if c not in place]
    got = written.select(cols)
    if not got.schema.equals(want.schema):
        got = got.cast(want.schema)
    n_got, n_want = got.num_rows, want.num_rows
    both = pa.concat_tables(
        [
            got.append_column(_ROW, pa.array(np.arange(n_got, dtype=np.int64))).append_column(
                _SPINE, pa.nulls(n_got, pa.int8())
            ),
            want.append_column(_ROW, pa.nulls(n_want, pa.int64())).append_column(
                _SPINE, pa.array(np.ones(n_want, dtype=np.int8))
            ),
        ]
    )
    # one group per distinct row (nulls group together, floats by bits): how often each side has it
    groups = both.group_by(cols, use_threads=False).aggregate(
        [(_ROW, "count"), (_ROW, "list"), (_SPINE, "count")]
    )
    w, e = groups[f"{_ROW}_count"], groups[f"{_SPINE}_count"]
    groups = groups.filter(pc.not_equal(w, e))
    # joins carry no list columns: the written positions stay aside, found by group number
    positions = groups[f"{_ROW}_list"]
    groups = groups.drop_columns([f"{_ROW}_list"]).append_column(
        _GROUP, pa.array(np.arange(groups.num_rows, dtype=np.int64))
    )
    w, e = groups[f"{_ROW}_count"], groups[f"{_SPINE}_count"]
    missing = groups.filter(pc.less(w, e))
    extra = groups.filter(pc.equal(e, 0))
    duplicated = groups.filter(pc.and_(pc.greater(w, e), pc.greater(e, 0)))

    # a flipped label: a row short once and a row written once with no spine row, at the
    # same keys and timestamp, each the only one there
    short = _alone(
        missing.filter(
            pc.equal(pc.subtract(missing[f"{_SPINE}_count"], missing[f"{_ROW}_count"]), 1)
        ),
        missing,
        place,
    )
    stray = _alone(extra.filter(pc.equal(extra[f"{_ROW}_count"], 1)), extra, place)
    pairs = short.select([*place, *labels]).join(
        stray.select([*place, *labels, _GROUP]),
        place,
        join_type="inner",
        left_suffix="__expected",
        right_suffix="__written",
        use_threads=False,
    )
    if pairs.num_rows:
        pairs = pairs.sort_by([(c, "ascending") for c in [plan.timestamp, *plan.keys]])
        paired = pairs.select(place)
        missing = missing.join(paired, place, join_type="left anti", use_threads=False)
        extra = extra.join(paired, place, join_type="left anti", use_threads=False)

    def written_at(group: int) -> list[int]:
        """The positions in the day where a group's row was written."""
        return [r for r in positions[group].as_py() if r is not None]

    listed: list[dict[str, Any]] = []
    label_diffs = 0
    for pair in pairs.to_pylist():
        where = _where(pair, plan)
        for label in labels:
            got_v, want_v = pair[f"{label}__written"], pair[f"{label}__expected"]
            if _same(got_v, want_v):
                continue
            label_diffs += 1
            if label_diffs <= ROW_LIMIT:
                listed.append(
                    {
                        "kind": "label",
                        "row": written_at(pair[_GROUP])[0],
                        **where,
                        "column": label,
                        "written": _plain(got_v),
                        "expected": _plain(want_v),
                    }
                )
    for kind, part in (("missing", missing), ("extra", extra), ("duplicated", duplicated)):
        part = part.sort_by([(c, "ascending") for c in [plan.timestamp, *plan.keys]])
        for group in part.slice(0, ROW_LIMIT).to_pylist():
            entry = {
                "kind": kind,
                **_where(group, plan),
                "labels": {c: _plain(group[c]) for c in labels},
                "written_times": group[f"{_ROW}_count"],
                "expected_times": group[f"{_SPINE}_count"],
            }
            if kind != "missing":
                entry["rows"] = written_at(group[_GROUP])[:ROW_LIMIT]
            listed.append(entry)

    manifest_rows = None if manifest is None else manifest.get("rows")
    if not n_got == manifest_rows == n_want:
        listed.append(
            {"kind": "row_count", "written": n_got, "manifest": manifest_rows, "spine": n_want}
        )

    return {
        "rows_in_manifest": manifest_rows,
        "rows_in_spine": n_want,
        "missing_rows": _total(pc.subtract(missing[f"{_SPINE}_count"], missing[f"{_ROW}_count"])),
        "extra_rows": _total(extra[f"{_ROW}_count"]),
        "duplicated_rows": _total(
            pc.subtract(duplicated[f"{_ROW}_count"], duplicated[f"{_SPINE}_count"])
        ),
        "label_differences": label_diffs,
        "row_differences": tuple(listed),
    }


def _total(counts: pa.ChunkedArray) -> int:
    return int(pc.sum(counts).as_py() or 0)


def _alone(rows: pa.Table, among: pa.Table, place: list[str]) -> pa.Table:
    """The rows of `rows` that are the only group of `among` at their (keys, timestamp)."""
    if not rows.num_rows:
        return rows
    counts = among.group_by(place, use_threads=False).aggregate([([], "count_all")])
    once = counts.filter(pc.equal(counts["count_all"], 1)).select(place)
    return rows.join(once, place, join_type="left semi", use_threads=False)


def _where(row: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """A row's entity keys and timestamp, JSON-ready."""
    return {
        "keys": {k: _plain(row[k]) for k in plan.keys},
        "timestamp": _plain(row[plan.timestamp]),
    }


def _plain(value: Any) -> Any:
    """A JSON-ready value: dates and times as ISO 8601 (`T` between date and time)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return str(value)


def _short(vec: list[float] | None) -> Any:
    if vec is None:
        return None
    head = ", ".join(f"{v:.6g}" if not math.isnan(v) else "nan" for v in vec[:4])
    return f"[{head}, …] ({len(vec)} values)"
