"""Per-feature statistics of a written day, the warnings they support over many days, and a small
self-contained HTML report of them.

`day_stats` runs in the same pass that publishes a day (`executor._publish_day`), on the day's
table before it is written, and its answer goes into the day's manifest under `"stats"`:

    {"rows": 672, "columns": {"user_likes_7d": {"type": "BIGINT", "kind": "feature",
     "function": "count", "filter": {"action": ["like"]}, "nulls": 0, "min": 0, "max": 9,
     "mean": 1.8, "distinct": 8}, ...}}

Per feature and embedding column (spine keys, the timestamp and labels are left out): the null
count; min, max (and mean for numbers) of numbers, timestamps, dates, booleans and text (text
clipped to `TEXT_CLIP` characters); the distinct count of integer, boolean, text, date and
timestamp columns (Arrow's hash `count_distinct`); the NaN count of floats; for lists (`last_n`,
`T[]`) the length's min, max and mean and the number of empty lists. Embeddings (fixed-size
lists) and nested values get the null count only. Every value is plain JSON (NaN and infinities
as the strings "NaN", "Infinity", "-Infinity"; times as ISO 8601).

`stats_warnings` reads the statistics of many days (a run's written days, or a range of
manifests) and says, in words, which feature is null on every row, which is constant, which has
a filter that matched nothing (a filtered feature that is 0, null or an empty list on every
row), and which days had no spine rows. `dataset_report` gathers a range of manifests into one
answer and `render_html` draws it: one inline SVG chart per feature, no script, no network.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from daedalus.catalog.dtypes import format_dtype
from daedalus.pit.spec import AggregationSpec, PitSpec

__all__ = [
    "TEXT_CLIP",
    "column_stats",
    "dataset_report",
    "day_stats",
    "describe_spec",
    "render_html",
    "spec_fingerprint",
    "stats_warnings",
]

#: Text min/max values are clipped to this many characters in a manifest.
TEXT_CLIP = 80
#: Days listed by name in one warning (the count is always given).
_LISTED = 8
#: Functions whose value over no row is 0 (a filter that matched nothing gives 0 on every row;
#: every other function gives null, `last_n` an empty list).
_ZERO_WHEN_EMPTY = {"count", "count_distinct"}


def _plain(value: Any) -> Any:
    """A scalar from Arrow as plain JSON."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, str):
        return value if len(value) <= TEXT_CLIP else value[: TEXT_CLIP - 1] + "…"
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return str(value)


def _has_order(t: pa.DataType) -> bool:
    return (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_decimal(t)
        or pa.types.is_timestamp(t)
        or pa.types.is_date(t)
        or pa.types.is_boolean(t)
        or pa.types.is_string(t)
        or pa.types.is_large_string(t)
    )


def _cheap_distinct(t: pa.DataType) -> bool:
    return (
        pa.types.is_integer(t)
        or pa.types.is_boolean(t)
        or pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_date(t)
        or pa.types.is_timestamp(t)
    )


def column_stats(column: pa.ChunkedArray | pa.Array) -> dict[str, Any]:
    """The statistics of one column (see the module's docstring), JSON-ready."""
    t = column.type
    if pa.types.is_dictionary(t):
        column = column.cast(t.value_type)
        t = t.value_type
    rows = len(column)
    nulls = column.null_count
    out: dict[str, Any] = {"nulls": nulls}
    if rows == nulls:  # nothing else to say about an empty or all-null column
        return out
    if _has_order(t):
        mm = pc.min_max(column)
        out["min"], out["max"] = _plain(mm["min"].as_py()), _plain(mm["max"].as_py())
        if pa.types.is_integer(t) or pa.types.is_floating(t):
            out["mean"] = _plain(pc.mean(column).as_py())
        if pa.types.is_floating(t):
            out["nan"] = int(pc.sum(pc.is_nan(column)).as_py() or 0)
    if _cheap_distinct(t):
        out["distinct"] = int(pc.count_distinct(column, mode="only_valid").as_py())
    elif pa.types.is_list(t) or pa.types.is_large_list(t):
        lengths = pc.list_value_length(column)
        mm = pc.min_max(lengths)
        out["length_min"] = mm["min"].as_py()
        out["length_max"] = mm["max"].as_py()
        out["length_mean"] = _plain(pc.mean(lengths).as_py())
        out["empty"] = int(pc.sum(pc.equal(lengths, 0)).as_py() or 0)
    return out


def spec_fingerprint(spec: PitSpec) -> str:
    """A short hash of what computes a feature's values: its function, column and the
    column's declared type, window or TTL, delay, filters, `n`, entity keys and the source's
    time columns (not the source's path). Recorded per feature in the statistics, so that
    `catalog plan` can say which features a definition change redefines."""
    source = spec.source
    column = spec.column
    payload: dict[str, Any] = {
        "keys": list(spec.keys),
        "column": column,
        "type": format_dtype(source.schema.field(column).type) if column else None,
        "delay_us": spec.delay_us,
        "timestamp": source.timestamp,
        "created_timestamp": source.created_timestamp,
        "naive_utc": source.naive_timestamps_are_utc,
    }
    if isinstance(spec, AggregationSpec):
        payload.update(
            function=spec.function.value,
            window_us=spec.window_us,
            filters=[[f.column, [repr(v) for v in f.values]] for f in spec.filters],
            n=spec.n,
        )
    else:
        payload.update(function="as_of", ttl_us=spec.ttl_us)
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def describe_spec(spec: PitSpec) -> dict[str, Any]:
    """What the statistics record about a feature's definition: its function (`as_of` for an
    as-of feature), its filter, and `spec_fingerprint`."""
    info: dict[str, Any] = {
        "function": spec.function.value if isinstance(spec, AggregationSpec) else "as_of"
    }
    if isinstance(spec, AggregationSpec):
        info["window"] = _duration(spec.window_us)
        if spec.filters:
            info["filter"] = {f.column: [_plain(v) for v in f.values] for f in spec.filters}
    else:
        info["ttl"] = _duration(spec.ttl_us)
    info["definition"] = spec_fingerprint(spec)
    return info


def _duration(micros: int | None) -> str | None:
    """Microseconds as a duration (`7d`, `90m`; weeks as days), None as `lifetime`."""
    if micros is None:
        return "lifetime"
    units = (("d", 86_400_000_000), ("h", 3_600_000_000), ("m", 60_000_000), ("s", 1_000_000))
    for unit, size in (*units, ("ms", 1_000)):
        if micros % size == 0:
            return f"{micros // size}{unit}"
    return f"{micros}us"


def day_stats(
    table: pa.Table,
    schema: pa.Schema,
    *,
    specs: Iterable[PitSpec],
    embeddings: Iterable[str] = (),
) -> dict[str, Any]:
    """The statistics of one day's table: `{"rows": n, "columns": {name: {...}}}` for every
    feature (a name of `specs`) and embedding column, in the order of `schema`. Each column's
    entry also says its type, whether it is a feature or an embedding, the feature's function
    (`as_of` for as-of features) and its filter, so that warnings need nothing but the stats."""
    described = {spec.name: describe_spec(spec) for spec in specs}
    pooled = set(embeddings)
    columns: dict[str, Any] = {}
    for field in schema:
        if field.name not in described and field.name not in pooled:
            continue
        if field.name not in table.column_names:
            continue
        kind = "embedding" if field.name in pooled else "feature"
        head = {"type": format_dtype(field.type), "kind": kind, **described.get(field.name, {})}
        columns[field.name] = {**head, **column_stats(table[field.name])}
    return {"rows": table.num_rows, "columns": columns}


# -------------------------------------------------------------------------------- warnings


def _days_text(days: Sequence[str]) -> str:
    listed = ", ".join(days[:_LISTED])
    return listed + (f" and {len(days) - _LISTED} more" if len(days) > _LISTED else "")


def _filter_text(flt: Mapping[str, Any]) -> str:
    parts = []
    for col, values in flt.items():
        vals = list(values) if isinstance(values, list | tuple) else [values]
        shown = vals[0] if len(vals) == 1 else "[" + ", ".join(map(str, vals)) + "]"
        parts.append(f"{col}: {shown}")
    return "{" + ", ".join(parts) + "}"


def stats_warnings(days: Sequence[tuple[str, str, Mapping[str, Any] | None]]) -> list[str]:
    """Warnings about features over `days` (each `(day, status, stats)`; status "empty" for a
    day written without spine rows, stats as `day_stats` gives them, None when unknown): a
    feature null on every row, a feature with a filter that matched nothing (a filtered count
    that is 0 on every row, or any other filtered feature that is null or an empty list on
    every row), a feature that is constant (the same value on every row, no nulls), and the days that
    had no spine rows. Days without rows do not count towards "every row"."""
    out: list[str] = []
    empty = [d for d, status, _s in days if status == "empty"]
    if empty:
        out.append(
            f"{len(empty)} day(s) had no spine rows and were written empty: {_days_text(empty)}"
        )
    seen: dict[str, dict[str, Any]] = {}
    for _day, _status, stats in days:
        if not stats or not stats.get("rows"):
            continue
        for name, col in (stats.get("columns") or {}).items():
            acc = seen.setdefault(
                name, {"rows": 0, "nulls": 0, "values": set(), "single": True, "longest": None}
            )
            acc["info"] = col  # the latest day's description (function, filter)
            acc["rows"] += stats["rows"]
            acc["nulls"] += int(col.get("nulls") or 0)
            if "min" in col:
                acc["values"].update({col["min"], col["max"]})
            if "min" not in col or int(col.get("distinct") or 0) > 1:
                acc["single"] = False  # unknown, or several values (clipped text looks alike)
            if "length_max" in col:
                acc["longest"] = max(acc["longest"] or 0, int(col["length_max"] or 0))
    for name, acc in seen.items():
        info, rows = acc["info"], acc["rows"]
        flt = info.get("filter")
        all_null = acc["nulls"] == rows
        constant = acc["single"] and acc["nulls"] == 0 and len(acc["values"]) == 1
        value = next(iter(acc["values"])) if constant else None
        always_empty = acc["longest"] == 0 and not all_null
        zero = (
            constant
            and info.get("function") in _ZERO_WHEN_EMPTY
            and not isinstance(value, bool)
            and value == 0
        )
        if flt and (all_null or zero or always_empty):
            what = "null" if all_null else "an empty list" if always_empty else "0"
            out.append(
                f"{name}: its filter {_filter_text(flt)} matched no row: the feature is {what} "
                f"on all {rows:,} rows (a filter value that never occurs? see "
                "`daeda catalog validate --with-data`)"
            )
        elif all_null:
            out.append(f"{name}: null on all {rows:,} rows")
        elif always_empty:
            out.append(f"{name}: an empty list (or null) on all {rows:,} rows")
        elif constant:
            out.append(f"{name}: constant ({value!r}) on all {rows:,} rows")
    return out


# ------------------------------------------------------------------------- a range of days


def dataset_report(service: str, days: Sequence[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """A range of written days' statistics as one answer: per column its type, function,
    filter, totals over the range (rows, nulls, null share, min, max, the most distinct values
    in a day) and its value per day; the warnings of `stats_warnings`; and the days whose
    manifests hold no statistics (written before they were recorded). `days` are
    `(day, manifest)` in date order."""
    columns: dict[str, dict[str, Any]] = {}
    listed = []
    without = []
    for day, manifest in days:
        stats = manifest.get("stats")
        rows = int(manifest.get("rows") or 0)
        listed.append({"day": day, "rows": rows, "stats": bool(stats)})
        if not stats:
            without.append(day)
            continue
        for name, col in (stats.get("columns") or {}).items():
            entry = columns.setdefault(
                name,
                {
                    "name": name,
                    "type": col.get("type"),
                    "kind": col.get("kind"),
                    "function": col.get("function"),
                    "filter": col.get("filter"),
                    "rows": 0,
                    "nulls": 0,
                    "min": None,
                    "max": None,
                    "distinct_max": None,
                    "days": [],
                },
            )
            for key in ("type", "kind", "function", "filter"):
                entry[key] = col.get(key)  # the latest day's description
            entry["rows"] += rows
            entry["nulls"] += int(col.get("nulls") or 0)
            entry["min"] = _extreme(entry["min"], col.get("min"), min)
            entry["max"] = _extreme(entry["max"], col.get("max"), max)
            if col.get("distinct") is not None:
                entry["distinct_max"] = max(entry["distinct_max"] or 0, col["distinct"])
            described = ("type", "kind", "function", "filter", "window", "ttl", "definition")
            per_day = {k: v for k, v in col.items() if k not in described}
            entry["days"].append({"day": day, "rows": rows, **per_day})
    for entry in columns.values():
        entry["null_share"] = entry["nulls"] / entry["rows"] if entry["rows"] else None
    status = [
        (day, "empty" if not int(m.get("rows") or 0) else "written", m.get("stats"))
        for day, m in days
    ]
    return {
        "service": service,
        "start": days[0][0] if days else None,
        "end": days[-1][0] if days else None,
        "days": listed,
        "columns": list(columns.values()),
        "warnings": stats_warnings(status),
        "days_without_stats": without,
    }


def _extreme(current: Any, new: Any, pick: Any) -> Any:
    """The min or max of two statistics values of one column (numbers, ISO times, text);
    "NaN" and mismatched kinds leave the current value."""
    if new is None or new == "NaN":
        return current
    if current is None:
        return new
    a, b = _number(current), _number(new)
    if a is not None and b is not None:
        return current if pick(a, b) == a else new
    if type(current) is type(new):
        try:
            return pick(current, new)
        except TypeError:
            return current
    return current


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if value == "Infinity":
        return math.inf
    if value == "-Infinity":
        return -math.inf
    if isinstance(value, str):
        try:
            return float(decimal.Decimal(value))
        except (decimal.InvalidOperation, ValueError):
            pass
        try:  # an ISO time: seconds since the epoch
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed.timestamp()
    return None


# ------------------------------------------------------------------------------ HTML report

_W, _H = 720, 170  # one chart: two panels side by side
_PANEL_W, _PAD = 330, 34

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:960px}
h1{font-size:20px}h2{font-size:15px;margin:22px 0 4px}
.meta{color:#666;font-size:12px}.warn{color:#a33}
table{border-collapse:collapse;font-size:12px}td,th{padding:2px 8px;border-bottom:1px solid #ddd;
text-align:left}svg{display:block;margin:4px 0 10px}.none{fill:#eee}
svg text{font:10px system-ui,sans-serif;fill:#555}.tick{fill:#888}.axis{stroke:#bbb}.null{fill:#d88}
.min{stroke:#36c;fill:none}.max{stroke:#c63;fill:none}.mean{stroke:#393;fill:none;
stroke-dasharray:3 2}.dot-min{fill:#36c}.dot-max{fill:#c63}.dot-mean{fill:#393}
"""


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _panel_nulls(x0: int, days: list[dict[str, Any]], n: int) -> list[str]:
    """Null share per day as bars (0–100%)."""
    top, bottom = 18, _H - 24
    height = bottom - top
    parts = [
        f'<text x="{x0}" y="12">null share per day</text>',
        f'<line class="axis" x1="{x0 + _PAD}" y1="{bottom}" x2="{x0 + _PANEL_W}" y2="{bottom}"/>',
        f'<line class="axis" x1="{x0 + _PAD}" y1="{top}" x2="{x0 + _PAD}" y2="{bottom}"/>',
        f'<text x="{x0}" y="{top + 4}">100%</text><text x="{x0 + 8}" y="{bottom}">0%</text>',
    ]
    step = (_PANEL_W - _PAD) / max(n, 1)
    for i, d in enumerate(days):
        x = x0 + _PAD + i * step + step * 0.15
        if not d.get("rows"):  # a day without rows (or without statistics): a grey band
            parts.append(
                f'<rect class="none" x="{x:.1f}" y="{top}" width="{step * 0.7:.1f}" '
                f'height="{height}"><title>{html.escape(d["day"])}: no rows</title></rect>'
            )
            continue
        share = (d.get("nulls") or 0) / d["rows"]
        h = share * height
        parts.append(
            f'<rect class="null" x="{x:.1f}" y="{bottom - h:.1f}" width="{step * 0.7:.1f}" '
            f'height="{h:.1f}"><title>{html.escape(d["day"])}: {share:.1%} null '
            f"({d.get('nulls', 0):,} of {d['rows']:,})</title></rect>"
        )
    return parts


def _label(value: Any) -> str:
    """An axis label: numbers in 6 digits, times to the minute."""
    if isinstance(value, str) and len(value) >= 16 and value[4:5] == "-" and value[10:11] == "T":
        return value[:16].replace("T", " ")
    return _fmt(value)


def _panel_values(x0: int, days: list[dict[str, Any]], n: int, lists: bool) -> list[str]:
    """Min, max (and mean) per day as lines; for lists, their lengths."""
    keys = ("length_min", "length_max", "length_mean") if lists else ("min", "max", "mean")
    title = "list length min / max / mean per day" if lists else "min / max / mean per day"
    top, bottom = 18, _H - 24
    points = {k: [(i, _number(d.get(k))) for i, d in enumerate(days)] for k in keys}
    values = [v for k in keys for _i, v in points[k] if v is not None and math.isfinite(v)]
    parts = [f'<text x="{x0}" y="12">{title}</text>']
    parts.append(
        f'<line class="axis" x1="{x0 + _PAD}" y1="{bottom}" x2="{x0 + _PANEL_W}" y2="{bottom}"/>'
    )
    if not values:
        parts.append(
            f'<text x="{x0 + _PAD + 8}" y="{(top + bottom) // 2}">no values to draw '
            "(null, or a type without an order)</text>"
        )
        return parts
    lo, hi = min(values), max(values)
    span = hi - lo or 1.0
    step = (_PANEL_W - _PAD) / max(n, 1)
    # the axis is labelled with the values as written (a time as a time, not as seconds)
    written = {_number(d.get(k)): d.get(k) for k in keys for d in days if d.get(k) is not None}
    for value, at in ((hi, top + 10), (lo, bottom - 4)):  # inside the plot, left
        label = html.escape(_label(written.get(value)))
        parts.append(f'<text class="tick" x="{x0 + _PAD + 4}" y="{at}">{label}</text>')

    def y(v: float) -> float:
        return bottom - (v - lo) / span * (bottom - top) if hi != lo else (top + bottom) / 2

    for key, cls in zip(keys, ("min", "max", "mean"), strict=True):
        pts = [
            (x0 + _PAD + i * step + step / 2, y(v), i, v)
            for i, v in points[key]
            if v is not None and math.isfinite(v)
        ]
        if len(pts) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py, _i, _v in pts)
            parts.append(f'<polyline class="{cls}" points="{path}"/>')
        for px, py, i, _v in pts:
            label = f"{days[i]['day']}: {cls} {_fmt(days[i].get(key))}"
            parts.append(
                f'<circle class="dot-{cls}" cx="{px:.1f}" cy="{py:.1f}" r="2.5">'
                f"<title>{html.escape(label)}</title></circle>"
            )
    return parts


def _chart(column: dict[str, Any], all_days: list[str]) -> str:
    """One SVG per feature: null share per day (left), min/max/mean per day (right)."""
    by_day = {d["day"]: d for d in column["days"]}
    days = [by_day.get(day, {"day": day, "rows": 0}) for day in all_days]
    lists = any("length_max" in d for d in days)
    n = len(days)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{_W}" height="{_H}" '
        f'viewBox="0 0 {_W} {_H}" data-feature="{html.escape(column["name"])}" role="img" '
        f'aria-label="{html.escape(column["name"])} per day">',
        *_panel_nulls(0, days, n),
        *_panel_values(_W // 2, days, n, lists),
    ]
    for x0 in (0, _W // 2) if n else ():  # the first and the last day under each panel
        parts.append(f'<text x="{x0 + _PAD}" y="{_H - 6}">{html.escape(all_days[0])}</text>')
        if n > 1:
            parts.append(
                f'<text x="{x0 + _PANEL_W}" y="{_H - 6}" text-anchor="end">'
                f"{html.escape(all_days[-1])}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def render_html(report: Mapping[str, Any]) -> str:
    """A self-contained HTML page of `dataset_report`'s answer: a summary table, the warnings,
    and one inline SVG chart per feature (no script, no stylesheet or font from the network)."""
    esc = html.escape
    all_days = [d["day"] for d in report["days"] if d.get("stats")]
    title = f"{report['service']}: feature statistics {report.get('start')} … {report.get('end')}"
    rows = []
    for c in report["columns"]:
        share = c.get("null_share")
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{esc(_fmt(v))}</td>"
                for v in (
                    c["name"],
                    c.get("type"),
                    c.get("function") or c.get("kind"),
                    _filter_text(c["filter"]) if c.get("filter") else None,
                    None if share is None else f"{share:.1%}",
                    c.get("min"),
                    c.get("max"),
                    c.get("distinct_max"),
                )
            )
            + "</tr>"
        )
    sections = []
    for c in report["columns"]:
        desc = " · ".join(
            x
            for x in (
                c.get("type"),
                c.get("function") or c.get("kind"),
                f"filter {_filter_text(c['filter'])}" if c.get("filter") else None,
            )
            if x
        )
        sections.append(
            f'<section><h2 id="f-{esc(c["name"])}">{esc(c["name"])}</h2>'
            f'<div class="meta">{esc(desc)}</div>{_chart(c, all_days)}</section>'
        )
    warnings = "".join(f'<li class="warn">{esc(w)}</li>' for w in report.get("warnings") or [])
    missing = report.get("days_without_stats") or []
    note = (
        f'<p class="meta">{len(missing)} day(s) have no statistics (written before they were '
        f"recorded): {esc(_days_text(missing))}</p>"
        if missing
        else ""
    )
    total_rows = sum(d["rows"] for d in report["days"])
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{esc(title)}</h1>"
        f'<p class="meta">{len(report["days"])} day(s), {total_rows:,} rows, '
        f"{len(report['columns'])} feature column(s). Charts: null share per day (left); "
        "min (blue), max (orange) and mean (green, dashed) per day (right).</p>"
        + (f"<ul>{warnings}</ul>" if warnings else "")
        + note
        + "<table><tr><th>feature</th><th>type</th><th>function</th><th>filter</th>"
        "<th>null</th><th>min</th><th>max</th><th>distinct (max a day)</th></tr>"
        + "".join(rows)
        + "</table>"
        + "".join(sections)
        + "</body></html>\n"
    )
