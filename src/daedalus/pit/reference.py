"""A brute-force, pure-Python reference of design.md §4: slow, obviously correct, engine-free.

Property tests compare both engines with it, and `daeda audit` recomputes sampled rows with it.
It reads the same sources but shares none of the encode/kernel/decode machinery.
"""

from __future__ import annotations

import math
import struct
from collections import defaultdict
from collections.abc import Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from daedalus.catalog.model import AggFunction
from daedalus.pit.compute import spine_times, validate_spine
from daedalus.pit.sources import read_source, timestamps_to_micros
from daedalus.pit.spec import AggregationSpec, AsOfSpec, PitSpec

if TYPE_CHECKING:
    from daedalus.ports import SourceReaderPort

__all__ = ["reference_pit_table", "round_fraction"]


def round_fraction(value: Fraction) -> float:
    """The float nearest to an exact rational (ties to even); ±inf beyond the float range."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _total_order(x: float) -> int:
    bits = struct.unpack("<q", struct.pack("<d", x))[0]
    return bits ^ 0x7FFFFFFFFFFFFFFF if bits < 0 else bits


def _value_order(v: Any) -> Any:
    return _total_order(v) if isinstance(v, float) else v


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


class _Rows:
    """A source's rows as Python values, indexed by key."""

    def __init__(
        self, spec: PitSpec, spine: pa.Table, reader: SourceReaderPort | None = None
    ) -> None:
        src = spec.source
        columns = [*spec.keys, src.timestamp]
        if src.created_timestamp:
            columns.append(src.created_timestamp)
        if isinstance(spec, AsOfSpec):
            columns.append(spec.column)
        else:
            columns += [f.column for f in spec.filters] + ([spec.column] if spec.column else [])
        table = read_source(src, columns, None, None, reader=reader)
        # Only rows whose first key occurs in the spine can matter: keep the Python part small.
        first = spec.keys[0]
        wanted = pc.unique(spine[first].cast(table[first].type))
        table = table.filter(pc.fill_null(pc.is_in(table[first], value_set=wanted), False))
        ts = timestamps_to_micros(
            table[src.timestamp],
            src.timestamp,
            naive_is_utc=src.naive_timestamps_are_utc,
            where="reference",
        )
        created: list[int | None] = [None] * table.num_rows
        if src.created_timestamp:
            col = table[src.created_timestamp]
            created = [
                None
                if v is None
                else int(
                    timestamps_to_micros(
                        pa.array([v], col.type), "c", naive_is_utc=True, where="reference"
                    )[0]
                )
                for v in col.to_pylist()
            ]
        data = table.to_pydict()
        self.by_key: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
        for i in range(table.num_rows):
            key = tuple(data[k][i] for k in spec.keys)
            if any(k is None for k in key):
                continue
            row = {c: data[c][i] for c in data}
            row["__ts"] = int(ts[i])
            row["__created"] = created[i] if created[i] is not None else int(ts[i])
            row["__pos"] = i
            self.by_key[key].append(row)


def _matches(row: dict[str, Any], spec: AggregationSpec) -> bool:
    for flt in spec.filters:
        v = row[flt.column]
        if _is_missing(v) or v not in flt.values:
            return False
    return True


def _aggregate(spec: AggregationSpec, rows: list[dict[str, Any]], t: int) -> Any:
    hi = t - spec.delay_us
    lo = None if spec.window_us is None else hi - spec.window_us
    window = [
        r for r in rows if r["__ts"] < hi and (lo is None or r["__ts"] >= lo) and _matches(r, spec)
    ]
    fn = spec.function
    if spec.column is None:
        return len(window)
    valid = [r for r in window if not _is_missing(r[spec.column])]
    values = [r[spec.column] for r in valid]
    if fn is AggFunction.COUNT:
        return len(values)
    if fn is AggFunction.COUNT_DISTINCT:
        return len(set(values))
    if not values:
        return [] if fn is AggFunction.LAST_N else None
    if fn in (AggFunction.SUM, AggFunction.MEAN):
        if all(isinstance(v, int) for v in values):
            total_int = sum(values)
            return total_int if fn is AggFunction.SUM else float(total_int) / len(values)
        total = _float_sum(values)
        return total if fn is AggFunction.SUM else total / len(values)
    if fn is AggFunction.STDDEV:
        if len(values) < 2:
            return None
        if any(math.isinf(v) for v in values):
            return math.nan
        n = len(values)
        s1 = sum(Fraction(v) for v in values)
        s2 = sum(Fraction(v) ** 2 for v in values)
        return math.sqrt(round_fraction((n * s2 - s1 * s1) / (n * (n - 1))))
    if fn is AggFunction.MIN:
        return min(values, key=_value_order)
    if fn is AggFunction.MAX:
        return max(values, key=_value_order)
    ordered = sorted(valid, key=lambda r: (r["__ts"], r["__created"], _value_order(r[spec.column])))
    if fn is AggFunction.FIRST:
        return ordered[0][spec.column]
    if fn is AggFunction.LAST:
        return ordered[-1][spec.column]
    assert fn is AggFunction.LAST_N and spec.n
    return [r[spec.column] for r in reversed(ordered[-spec.n :])]


def _float_sum(values: list[Any]) -> float:
    pos = any(v == math.inf for v in values)
    neg = any(v == -math.inf for v in values)
    if pos and neg:
        return math.nan
    if pos or neg:
        return math.inf if pos else -math.inf
    return round_fraction(sum((Fraction(v) for v in values), Fraction(0))) + 0.0


def _asof(spec: AsOfSpec, rows: list[dict[str, Any]], t: int) -> Any:
    hi = t - spec.delay_us
    visible = [
        r
        for r in rows
        if r["__ts"] < hi
        and r["__created"] < t
        and (spec.ttl_us is None or r["__ts"] >= hi - spec.ttl_us)
    ]
    if not visible:
        return None
    best = max(visible, key=lambda r: (r["__ts"], r["__created"], r["__pos"]))
    value = best[spec.column]
    return None if _is_missing(value) else value


def reference_pit_table(
    spine: pa.Table,
    specs: Sequence[PitSpec],
    *,
    timestamp: str = "ts",
    naive_timestamps_are_utc: bool = False,
    reader: SourceReaderPort | None = None,
) -> pa.Table:
    """The spine plus one column per spec, computed row by row from the definitions (stored
    sources read by `reader`; None: the registered default, the parquet reader)."""
    keys = sorted({k for s in specs for k in s.keys})
    validate_spine(spine, keys, timestamp, naive_is_utc=naive_timestamps_are_utc)
    times = spine_times(spine, timestamp, naive_is_utc=naive_timestamps_are_utc)
    data = spine.to_pydict()
    table = spine
    for spec in specs:
        rows = _Rows(spec, spine, reader)
        out = []
        for i, t in enumerate(times):
            key = tuple(data[k][i] for k in spec.keys)
            candidates = rows.by_key.get(key, [])
            if isinstance(spec, AsOfSpec):
                out.append(_asof(spec, candidates, int(t)))
            else:
                out.append(_aggregate(spec, candidates, int(t)))
        table = table.append_column(
            pa.field(spec.name, spec.output_type), pa.array(out, spec.output_type)
        )
    return table
