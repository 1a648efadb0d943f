"""What a catalog change does to a service's trained output, before any training: the contract
diff between the schema its days were written with and the schema the catalog resolves now, and
which written days become stale and why.

`contract_diff(trained, current)` compares two Arrow schemas column by column: columns added,
removed, retyped (a different type) and renull-ed (nullability changed), and whether the columns
both have are in another order. A removed or retyped column is a **contract break**: a consumer
reading the dataset by name finds a column gone or of another type. A removed and an added
column of the same type at the same position are listed as a possible rename too (the catalog
keeps no history, so a rename looks like a removal and an addition). Adding a column or moving
one changes the contract (every day is stale) but breaks no reader by name.

`redefined(recorded, current)` names the features whose definition changed while their column
stayed (same name, same type): a window, a filter, a function, a delay. It compares the
descriptions each day's statistics record per feature (`pipeline.stats.describe_spec`) with the
catalog's now.

`stale_summary(days)` groups the written days' staleness reasons (`RunIdentity.why_stale`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from daedalus.catalog.dtypes import format_dtype

__all__ = ["contract_diff", "redefined", "stale_summary"]


def _type(t: pa.DataType) -> str:
    try:
        return format_dtype(t)
    except Exception:  # a type the DuckDB-like names cannot spell: Arrow's own name
        return str(t)


def contract_diff(trained: pa.Schema, current: pa.Schema) -> dict[str, Any]:
    """The difference between the `trained` contract and the `current` one (see the module's
    docstring): `added`, `removed`, `retyped`, `nullability`, `reordered`, `renamed` (possible
    renames), `changed` (anything differs) and `breaking` (a column removed or retyped)."""
    old = {f.name: (i, f) for i, f in enumerate(trained)}
    new = {f.name: (i, f) for i, f in enumerate(current)}
    added = [
        {"name": f.name, "type": _type(f.type), "position": i}
        for i, f in enumerate(current)
        if f.name not in old
    ]
    removed = [
        {"name": f.name, "type": _type(f.type), "position": i}
        for i, f in enumerate(trained)
        if f.name not in new
    ]
    retyped = []
    nullability = []
    for name, (_i, f) in new.items():
        if name not in old:
            continue
        before = old[name][1]
        if not before.type.equals(f.type):
            retyped.append({"name": name, "from": _type(before.type), "to": _type(f.type)})
        elif before.nullable != f.nullable:
            nullability.append({"name": name, "from": before.nullable, "to": f.nullable})
    common_old = [f.name for f in trained if f.name in new]
    common_new = [f.name for f in current if f.name in old]
    reordered = [a for a, b in zip(common_old, common_new, strict=True) if a != b]
    renamed = []
    taken: set[str] = set()
    for r in removed:
        match = next(
            (
                a
                for a in added
                if a["name"] not in taken
                and a["type"] == r["type"]
                and (a["position"] == r["position"] or len(removed) == len(added) == 1)
            ),
            None,
        )
        if match is not None:
            taken.add(match["name"])
            renamed.append({"from": r["name"], "to": match["name"], "type": r["type"]})
    changed = bool(added or removed or retyped or nullability or reordered)
    return {
        "changed": changed,
        "breaking": bool(removed or retyped),
        "added": added,
        "removed": removed,
        "retyped": retyped,
        "nullability": nullability,
        "reordered": reordered,
        "renamed": renamed,
    }


def _filter_text(flt: Mapping[str, Any] | None) -> str:
    if not flt:
        return "none"
    parts = [
        f"{k}: {v[0]}" if len(v) == 1 else f"{k}: [{', '.join(map(str, v))}]"
        for k, v in flt.items()
    ]
    return "{" + ", ".join(parts) + "}"


def redefined(
    recorded: Mapping[str, Mapping[str, Any]], current: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The features of `current` (name → `describe_spec`) whose recorded description (name →
    a day's statistics entry) has another definition fingerprint: each with what visibly
    changed (function, window, TTL, filter), or that something else did (the delay, keys, the
    source's column type or time columns). Features the statistics do not describe (days
    written before they were recorded, a new feature) are left out."""
    out = []
    for name, now in current.items():
        before = recorded.get(name)
        if not before or "definition" not in before or before["definition"] == now["definition"]:
            continue
        changes = []
        if before.get("function") != now.get("function"):
            changes.append(f"function {before.get('function')} → {now.get('function')}")
        for key in ("window", "ttl"):
            if key in before and before.get(key) != now.get(key):
                changes.append(f"{key} {before.get(key)} → {now.get(key)}")
        if (before.get("filter") or None) != (now.get("filter") or None):
            changes.append(
                f"filter {_filter_text(before.get('filter'))} → {_filter_text(now.get('filter'))}"
            )
        if not changes:
            changes.append("its delay, keys, or the source's column type or time columns")
        out.append({"name": name, "changes": changes})
    return out


def stale_summary(days: Sequence[tuple[str, list[str]]]) -> dict[str, Any]:
    """`days` are `(day, reasons)` of every written day (no reasons: current). Returns the
    number of stale and current days and, per reason, the days it applies to (in date order,
    reasons in the order first met)."""
    reasons: dict[str, list[str]] = {}
    stale = 0
    for day, why in days:
        if why:
            stale += 1
        for reason in why:
            reasons.setdefault(reason, []).append(day)
    return {
        "stale": stale,
        "current": len(days) - stale,
        "reasons": [{"reason": r, "days": d} for r, d in reasons.items()],
    }
