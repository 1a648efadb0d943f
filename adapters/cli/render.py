"""Human-readable output of the CLI: one renderer per use case's answer (RENDER, keyed by the
use case's name in USE_CASES), and the messages for errors. Renderers print; they compute
nothing the answer does not hold. Warnings go to stderr, everything else to stdout."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from daedalus.app.errors import AppError

__all__ = ["RENDER", "data_checks", "demo", "error_lines", "located", "validation"]


def _warn(text: str) -> None:
    print(text, file=sys.stderr)


def _warnings(d: dict[str, Any]) -> None:
    for warning in d.get("warnings") or []:
        _warn(f"warning: {warning}")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Table(title=title, title_justify="left")
    for col in columns:
        out.add_column(col)
    for row in rows:
        out.add_row(*("" if v is None else str(v) for v in row))
    Console().print(out)


def located(err: dict[str, Any]) -> str:
    """A catalog error as `file:line:column: message — hint`."""
    text = f"{err['file']}:{err['line']}:{err['column']}: {err['message']}"
    return f"{text} — {err['hint']}" if err.get("hint") else text


def error_lines(exc: AppError) -> list[str]:
    """What stderr says about a failed use case: the message, then what is known (for a name
    not found) or every located catalog error."""
    lines = [f"error: {exc.message}"]
    known = exc.data.get("known") if isinstance(exc.data, dict) else None
    if exc.kind == "not_found" and known and "did you mean" not in exc.message:
        lines.append(f"known: {', '.join(map(str, known))}")
    if exc.kind == "invalid_catalog" and isinstance(exc.data, list):
        lines.extend(located(err) for err in exc.data)
    return lines


def _day_span(days: list[str]) -> str:
    return days[0] if len(days) == 1 else f"{days[0]} … {days[-1]} ({len(days)} days)"


def _problem_text(p: dict[str, Any]) -> str:
    what = f"{p['file']}: " if p.get("file") else ""
    return f"{what}{p['problem']} (expected {p.get('expected')!r}, found {p.get('found')!r})"


def _short(value: Any) -> str:
    """A statistics value in a few characters: 6 significant digits, times to the second."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    if len(text) >= 19 and text[4:5] == "-" and text[10:11] == "T":  # an ISO time
        return text[:19].replace("T", " ")
    return text if len(text) <= 24 else text[:23] + "…"


# -- catalog -----------------------------------------------------------------------------------


def catalog_list(d: dict[str, Any]) -> None:
    table(
        "Entities",
        ["name", "join keys", "type"],
        [[e["name"], ", ".join(e["join_keys"]), e["type"]] for e in d["entities"]],
    )
    table(
        "Feature views",
        ["name", "entities", "as-of", "rolling", "source"],
        [
            [v["name"], ", ".join(v["entities"]), v["features"], v["aggregations"], v["source"]]
            for v in d["views"]
        ],
    )
    table(
        "Feature services",
        ["name", "features", "embeddings", "spine"],
        [[s["name"], s["features"], s["embeddings"], s["spine"]] for s in d["services"]],
    )
    table(
        "Embedding stores",
        ["name", "dim", "path"],
        [[s["name"], s["dim"], s["path"]] for s in d["stores"]],
    )


def _columns(title: str, columns: list[dict[str, Any]]) -> None:
    rows = [[c["name"], c["type"], c["nullable"]] for c in columns]
    table(title, ["column", "type", "nullable"], rows)


def catalog_describe(d: dict[str, Any]) -> None:
    from rich.console import Console
    from ruamel.yaml import YAML

    where = f"  ({d['location']})" if d.get("location") else ""
    Console().print(f"[bold]{d['kind']}[/bold] {d['definition'].get('name')}{where}")
    yaml = YAML()
    yaml.default_flow_style = False
    yaml.dump(d["definition"], sys.stdout)
    if "outputs" in d:
        table("Outputs", ["feature", "type"], [[o["name"], o["type"]] for o in d["outputs"]])
    if "schema" in d:
        _columns("Resolved schema", d["schema"])


def validation(result: dict[str, Any], *, quiet: bool = False) -> None:
    """`catalog validate`: a line on stdout when valid (unless `quiet`: the answer went out as
    JSON), else every located error on stderr."""
    if result["ok"]:
        if not quiet:
            print(
                f"ok: {result['views']} views, {result['services']} services, "
                f"{result['stores']} embedding stores in {result['catalog_dir']}"
            )
        return
    for err in result["errors"]:
        _warn(located(err))
    _warn(f"{_plural(len(result['errors']), 'error')} in {result['catalog_dir']}")


def data_checks(data: dict[str, Any], *, quiet: bool = False) -> None:
    """`catalog validate --with-data`: every problem on stderr, or a line on stdout (unless
    `quiet`)."""
    for p in data["problems"]:
        if p["kind"] == "filter_value":
            where = f"{p['location']}: " if p.get("location") else ""
            hint = f" — {p['hint']}" if p.get("hint") else ""
            _warn(f"{where}{p['message']}{hint}")
        else:
            _warn(f"{p['message']} [{', '.join(p['sources'])}]")
    if data["problems"]:
        _warn(f"{_plural(len(data['problems']), 'problem')} in the data of {data['workspace']}")
    elif not quiet:
        print(
            f"ok: {data['files_checked']} file(s) of {len(data['sources'])} source(s) in "
            f"{data['workspace']} match their definitions; "
            f"{data['filter_values_checked']} filter value(s) occur in the data"
        )


_CONTRACT_LINES: tuple[tuple[str, Callable[[dict[str, Any]], str]], ...] = (
    ("removed", lambda x: f"- removed  {x['name']} {x['type']}"),
    ("added", lambda x: f"+ added    {x['name']} {x['type']} (column {x['position'] + 1})"),
    ("retyped", lambda x: f"~ retyped  {x['name']}: {x['from']} → {x['to']}"),
    ("nullability", lambda x: f"~ nullable {x['name']}: {x['from']} → {x['to']}"),
)


def catalog_plan(d: dict[str, Any]) -> None:
    for s in d["services"]:
        trained = s.get("trained") or {}
        head = f"{s['service']}: {s['state']}"
        if s["days_written"]:
            head += (
                f" ({s['days_written']} day(s) written; compared with {trained.get('day')}, "
                f"contract {str(trained.get('contract_hash'))[:12]} → {s['contract_hash'][:12]})"
            )
        print(head)
        c = s.get("contract") or {}
        for key, line in _CONTRACT_LINES:
            for x in c.get(key, []):
                print(f"  {line(x)}")
        if c.get("reordered"):
            print(f"  ↕ moved    {', '.join(c['reordered'])}")
        for x in c.get("renamed", []):
            print(f"  ? renamed  {x['from']} → {x['to']}? (a removed and an added {x['type']})")
        for x in c.get("redefined", []):
            print(f"  * redefined {x['name']}: {'; '.join(x['changes'])}")
        if s.get("definition_changed") and not c.get("changed") and not c.get("redefined"):
            print("  definitions changed (same contract)")
        stale = s["stale"]
        if stale["stale"]:
            print(f"  {stale['stale']} of {s['days_written']} written day(s) become stale:")
            for r in stale["reasons"]:
                print(f"    {r['reason']}: {_day_span(r['days'])}")
        elif s["days_written"] and s["state"] != "unknown":
            print(f"  all {s['days_written']} written day(s) stay current")
        if s.get("problem"):
            _warn(f"  warning: {s['problem']}")
    breaking = d["breaking"]
    print(f"contract break in: {', '.join(breaking)}" if breaking else "no contract break")


def service_schema(d: dict[str, Any]) -> None:
    _columns(f"{d['service']} (contract {d['contract_hash'][:12]})", d["columns"])


# -- pipeline ----------------------------------------------------------------------------------


def pipeline_compile(d: dict[str, Any]) -> None:
    out = d["pipeline"]
    print(out if isinstance(out, str) else json.dumps(out, indent=2))


def train_summary(d: dict[str, Any]) -> None:
    """A finished training job's result."""
    print(
        f"{d['service']} [{d['engine']}, {d.get('runner', 'local')}]: "
        f"{d['days_written']} day(s) written, "
        f"{d['days_skipped']} skipped, {d['rows']:,} rows in {d['seconds']:.1f}s"
    )
    print(f"dataset: {d['out_dir']}/dt=*/part-*.parquet")
    _warnings(d)


def train_dry_run(d: dict[str, Any]) -> None:
    for x in d["days"]:
        print(f"{x['day']}  {x['action']:<8} {'; '.join(x['why'])}")
    for b in d["batches"]:
        days = b["days"]
        span = days[0] if len(days) == 1 else f"{days[0]}..{days[-1]}"
        print(f"batch {span}: {len(days)} day(s), {b['rows']:,} spine rows")
    print(
        f"{d['service']} [{d['engine']}]: would compute {d['days_to_compute']} day(s) in "
        f"{len(d['batches'])} batch(es), skip {d['days_to_skip']}; nothing written"
    )
    _warnings(d)


def days_list(d: dict[str, Any]) -> None:
    if d.get("problem"):
        _warn(f"warning: cannot check freshness: {d['problem']}")
    state = {True: "current", False: "stale", None: "unknown"}
    for x in d["days"]:
        for p in x.get("problems") or []:
            _warn(f"warning: {x['day']}: {_problem_text(p)}")
        for reason in x.get("why") or []:
            print(f"{x['day']} is stale: {reason}")
    if d.get("missing"):
        print(f"not written ({len(d['missing'])} day(s) of the spine): ", end="")
        print(", ".join(d["missing"]))
    table(
        f"{d['service']} in {d['out_dir']}",
        ["day", "rows", "engine", "runner", "state", "written at"],
        [
            [
                x["day"],
                x["rows"],
                x["engine"],
                x.get("runner") or "local",  # days written before runners existed
                state[x["current"]] if x.get("files_ok", True) else "damaged",
                x["written_at"],
            ]
            for x in d["days"]
        ],
    )


def days_verify(d: dict[str, Any]) -> None:
    for x in d["days"]:
        for p in x["problems"]:
            print(f"{x['day']}: {_problem_text(p)}")
    bad = sum(1 for x in d["days"] if x["problems"])
    print(
        f"{d['service']}: {d['days_checked']} day(s) checked, "
        + ("every file matches its manifest" if d["ok"] else f"{bad} with differences")
    )


def day_preview(d: dict[str, Any]) -> None:
    for i, row in enumerate(d["rows"]):
        print(f"-- row {i}")
        for k, v in row.items():
            text = repr(v)
            print(f"  {k}: {text if len(text) < 100 else text[:97] + '...'}")


def day_manifest(d: dict[str, Any]) -> None:
    print(json.dumps(d, indent=2))


def day_audit(d: dict[str, Any]) -> None:
    print(
        f"{d['service']} {d['day']}: checked {d['rows_checked']} of {d['rows_in_day']} rows, "
        f"{d['columns_checked']} feature columns each"
    )
    print(
        f"rows: {d['rows_in_day']} written, {d['rows_in_manifest']} in the manifest, "
        f"{d['rows_in_spine']} in the spine; {d['missing_rows']} missing, "
        f"{d['extra_rows']} extra, {d['duplicated_rows']} duplicated, "
        f"{d['label_differences']} label difference(s)"
    )
    for diff in d["differences"]:
        print(
            f"  row {diff['row']} {diff['column']}: written {diff['written']!r}, "
            f"expected {diff['expected']!r}"
        )
    for diff in d["row_differences"]:
        fields = {k: v for k, v in diff.items() if k != "kind"}
        print(f"  {diff['kind']}: {json.dumps(fields, default=str)}")
    total = len(d["differences"]) + len(d["row_differences"])
    print("no differences" if d["ok"] else f"{total} difference(s) listed")


def dataset_stats(d: dict[str, Any]) -> None:
    if not d["days"]:
        print(f"{d['service']}: no written day in the range")
    else:
        rows = sum(x["rows"] for x in d["days"])
        print(f"{d['service']} {d['start']} … {d['end']}: {len(d['days'])} day(s), {rows:,} rows")
        lines = [["feature", "type", "function", "null", "min", "max", "distinct/day"]]
        for c in d["columns"]:
            lengths = [x for x in c["days"] if "length_max" in x]
            low, high = c["min"], c["max"]
            if lengths:  # lists: their lengths
                low = f"len {min(x['length_min'] for x in lengths)}"
                high = f"len {max(x['length_max'] for x in lengths)}"
            lines.append(
                [
                    c["name"],
                    c["type"] or "",
                    c.get("function") or c.get("kind") or "",
                    "" if c["null_share"] is None else f"{c['null_share']:.1%}",
                    _short(low),
                    _short(high),
                    "" if c["distinct_max"] is None else str(c["distinct_max"]),
                ]
            )
        widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
        for line in lines:
            print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
    if d.get("days_without_stats"):
        _warn(
            f"{len(d['days_without_stats'])} day(s) have no statistics (written before they "
            "were recorded; train them again with --force)"
        )
    _warnings(d)
    if d.get("html"):
        print(f"report: {d['html']}")


# -- jobs and demo -----------------------------------------------------------------------------


def job_status(job: dict[str, Any]) -> None:
    params = job["params"]
    print(
        f"job {job['id']}: {job['state']}  {job['kind']} {params.get('service')} "
        f"{params.get('start')}..{params.get('end')} [{params.get('engine')}]"
    )
    progress = job.get("progress") or {}
    if progress:
        print(
            f"  progress: {progress.get('days_done')}/{progress.get('days_total')} days, "
            f"current {progress.get('current_day')}, {progress.get('rows')} rows"
        )
    if job.get("error"):
        print(f"  error: {job['error'].get('message')}")
    if job.get("result"):
        r = job["result"]
        print(
            f"  result: {r['days_written']} written, {r['days_skipped']} skipped, "
            f"{r['rows']} rows, {r['out_dir']}"
        )


def job_list(d: dict[str, Any]) -> None:
    table(
        "Jobs",
        ["id", "state", "service", "days", "created", "finished"],
        [
            [
                j["id"],
                j["state"],
                j["params"].get("service"),
                f"{j['params'].get('start')}..{j['params'].get('end')}",
                j["created_at"],
                j["finished_at"],
            ]
            for j in d["jobs"]
        ],
    )


def demo(d: dict[str, Any], directory: object) -> None:
    """A demo workspace written (or found complete), and the command to train it."""
    rows = ", ".join(f"{v:,} {k}" for k, v in d["rows"].items())
    where = f"demo workspace ({d['scale']}, seed {d['seed']}) in {d['workspace']}"
    if d.get("written", True):
        print(where)
    else:
        print(f"{where}: already complete; nothing written (--overwrite rewrites it)")
    print(f"  days {d['start']} … {d['end']}: {rows}")
    print(
        f"  next: daeda pipeline train feed_ranking --workspace {directory} "
        f"--start {d['start']} --end {d['end']}"
    )


#: The human rendering of each use case's answer (the keys are USE_CASES names).
RENDER: dict[str, Callable[[dict[str, Any]], None]] = {
    "catalog_list": catalog_list,
    "catalog_describe": catalog_describe,
    "catalog_validate": validation,
    "catalog_validate_data": data_checks,
    "catalog_plan": catalog_plan,
    "service_schema": service_schema,
    "pipeline_compile": pipeline_compile,
    "train_start": job_status,
    "train_dry_run": train_dry_run,
    "job_status": job_status,
    "job_list": job_list,
    "job_cancel": job_status,
    "days_list": days_list,
    "day_manifest": day_manifest,
    "day_preview": day_preview,
    "day_audit": day_audit,
    "dataset_stats": dataset_stats,
    "days_verify": days_verify,
}
