"""The `daeda` command line (cyclopts): a thin skin over the application use cases."""

from __future__ import annotations

import contextlib
import json as jsonlib
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TextIO

from cyclopts import App, Parameter

from daedalus.app.errors import AppError
from daedalus.app.settings import Settings

__all__ = ["EXIT_CODES", "app", "main"]

#: What each exit code means (also in the README).
EXIT_CODES = {
    "ok": 0,
    "internal": 1,
    "usage": 2,
    "invalid_catalog": 3,
    "not_found": 4,
    "invalid_argument": 5,
    "invalid_input": 6,
    "conflict": 7,
    "forbidden": 8,
    "audit_failed": 9,
    "cancelled": 10,
    "storage": 11,
}

app = App(
    name="daeda",
    help="Daedalus: point-in-time-correct feature datasets from YAML feature views.\n\n"
    "Examples:\n\n"
    "  daeda catalog list\n\n"
    "  daeda catalog validate feature_views\n\n"
    "  daeda service schema feed_ranking --json",
    version_flags=["--version"],
)
catalog_app = App(name="catalog", help="Inspect and validate the feature catalog.")
service_app = App(name="service", help="Feature services: their resolved schemas.")
app.command(catalog_app)
app.command(service_app)

Catalog = Annotated[
    Path | None,
    Parameter(
        help="Catalog directory (default: WORKSPACE/feature_views, else ./feature_views; env DAEDA_CATALOG)."
    ),
]
Workspace = Annotated[
    Path | None,
    Parameter(help="Workspace directory: source paths are relative to it (env DAEDA_WORKSPACE)."),
]
Json = Annotated[bool, Parameter(help="Print machine-readable JSON on stdout.", negative="")]
Debug = Annotated[bool, Parameter(help="Show tracebacks for errors.", negative="")]


def _settings(workspace: Path | None, catalog: Path | None, **kw: Any) -> Settings:
    return Settings.from_env(workspace=workspace, catalog_dir=catalog, **kw)


def _container(settings: Settings) -> Any:
    from daedalus.container import build_container

    return build_container(settings)


def _application(workspace: Path | None, catalog: Path | None, **kw: Any) -> Any:
    """The application (every use case) for these paths, from the container."""
    return _container(_settings(workspace, catalog, **kw)).application()


# Where --json output goes: the real stdout, kept aside while a command runs with stdout pointed
# at stderr, so that nothing a library prints (Ray's notices, say) can corrupt the JSON.
_json_out: list[TextIO] = []
# The process's real stdout when `main` has pointed file descriptor 1 at stderr for a --json
# command (Ray's driver threads print raylet notices to sys.stdout at any moment, even between
# the command's end and the process's exit).
_real_stdout: list[TextIO] = []


def _emit(data: Any, as_json: bool, human: Callable[[Any], None]) -> None:
    if as_json:
        print(
            jsonlib.dumps(data, indent=2, default=str),
            file=_json_out[-1] if _json_out else sys.stdout,
            flush=True,
        )
    else:
        human(data)


def _run(action: Callable[[], int], debug: bool, as_json: bool) -> int:
    """Run a command body; turn errors into located messages on stderr and an exit code."""
    if as_json:
        _json_out.append(_real_stdout[-1] if _real_stdout else sys.stdout)
        try:
            with contextlib.redirect_stdout(sys.stderr):
                return _guarded(action, debug, True)
        finally:
            _json_out.pop()
    return _guarded(action, debug, False)


def _guarded(action: Callable[[], int], debug: bool, as_json: bool) -> int:
    try:
        return action()
    except AppError as exc:
        if debug:
            traceback.print_exc()
        if as_json:
            _emit({"error": exc.to_dict()}, True, lambda _: None)
        print(f"error: {exc.message}", file=sys.stderr)
        known = exc.data.get("known") if isinstance(exc.data, dict) else None
        if exc.kind == "not_found" and known and "did you mean" not in exc.message:
            print(f"known: {', '.join(map(str, known))}", file=sys.stderr)
        if exc.kind == "invalid_catalog" and isinstance(exc.data, list):
            for err in exc.data:
                print(_located(err), file=sys.stderr)
        return EXIT_CODES.get(exc.kind, 1)
    except KeyboardInterrupt:  # Ctrl-C: the job (if any) is recorded as cancelled
        if as_json:
            error = {"kind": "cancelled", "message": "interrupted (Ctrl-C)"}
            _emit({"error": error}, True, lambda _: None)
        print("error: interrupted (Ctrl-C); days published before are complete", file=sys.stderr)
        return EXIT_CODES["cancelled"]
    except OSError as exc:  # a filesystem fault no use case named (e.g. the job database)
        if debug:
            traceback.print_exc()
        where = f"{exc.filename}: " if exc.filename else ""
        message = f"storage: {where}{exc.strerror or exc}"
        if as_json:
            _emit({"error": {"kind": "storage", "message": message}}, True, lambda _: None)
        print(f"error: {message}", file=sys.stderr)
        return EXIT_CODES["storage"]
    except Exception as exc:  # the last line of defence: a message, not a traceback
        if debug:
            traceback.print_exc()
        print(
            f"error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
            file=sys.stderr,
        )
        return EXIT_CODES["internal"]


def _located(err: dict[str, Any]) -> str:
    text = f"{err['file']}:{err['line']}:{err['column']}: {err['message']}"
    return f"{text} — {err['hint']}" if err.get("hint") else text


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    Console().print(table)


# -- catalog -----------------------------------------------------------------------------------


@catalog_app.command(name="list")
def catalog_list(
    *,
    catalog: Catalog = None,
    workspace: Workspace = None,
    json: Json = False,
    debug: Debug = False,
) -> int:
    """List entities, feature views, feature services and embedding stores.

    Example: daeda catalog list --json
    """

    def body() -> int:
        data = _application(workspace, catalog).catalog_list()

        def human(d: dict[str, Any]) -> None:
            _table(
                "Entities",
                ["name", "join keys", "type"],
                [[e["name"], ", ".join(e["join_keys"]), e["type"]] for e in d["entities"]],
            )
            _table(
                "Feature views",
                ["name", "entities", "as-of", "rolling", "source"],
                [
                    [
                        v["name"],
                        ", ".join(v["entities"]),
                        v["features"],
                        v["aggregations"],
                        v["source"],
                    ]
                    for v in d["views"]
                ],
            )
            _table(
                "Feature services",
                ["name", "features", "embeddings", "spine"],
                [[s["name"], s["features"], s["embeddings"], s["spine"]] for s in d["services"]],
            )
            _table(
                "Embedding stores",
                ["name", "dim", "path"],
                [[s["name"], s["dim"], s["path"]] for s in d["stores"]],
            )

        _emit(data, json, human)
        return 0

    return _run(body, debug, json)


@catalog_app.command(name="show")
def catalog_show(
    name: str,
    /,
    *,
    catalog: Catalog = None,
    workspace: Workspace = None,
    json: Json = False,
    debug: Debug = False,
) -> int:
    """Show one feature view, service, embedding store or entity.

    Example: daeda catalog show user_activity

    Parameters
    ----------
    name
        The view, service, store or entity to show.
    """

    def body() -> int:
        data = _application(workspace, catalog).catalog_describe(name)

        def human(d: dict[str, Any]) -> None:
            from rich.console import Console
            from ruamel.yaml import YAML

            console = Console()
            where = f"  ({d['location']})" if d.get("location") else ""
            console.print(f"[bold]{d['kind']}[/bold] {name}{where}")
            yaml = YAML()
            yaml.default_flow_style = False
            yaml.dump(d["definition"], sys.stdout)
            if "outputs" in d:
                _table(
                    "Outputs", ["feature", "type"], [[o["name"], o["type"]] for o in d["outputs"]]
                )
            if "schema" in d:
                _table(
                    "Resolved schema",
                    ["column", "type", "nullable"],
                    [[c["name"], c["type"], c["nullable"]] for c in d["schema"]],
                )

        _emit(data, json, human)
        return 0

    return _run(body, debug, json)


@catalog_app.command(name="validate")
def catalog_validate(
    directory: Path | None = None,
    /,
    *,
    with_data: Annotated[
        bool,
        Parameter(
            help="Also check the data under --workspace: every file of every source and spine "
            "against its declared schema (types, time zones), and every filter value against "
            "the values that occur (the closest ones are suggested).",
            negative="",
        ),
    ] = False,
    workspace: Workspace = None,
    json: Json = False,
    debug: Debug = False,
) -> int:
    """Check every definition of a catalog directory; report every error with file:line:column.

    Exit code 0 when valid, 3 when any definition is wrong (messages on stderr), or with
    --with-data when the data does not match it (the file and column; for a filter value its
    file:line:column).

    Examples:

      daeda catalog validate feature_views

      daeda catalog validate --with-data --workspace demo

    Parameters
    ----------
    directory
        The catalog directory (default: the configured catalog).
    """

    def body() -> int:
        settings = _settings(workspace if with_data else None, directory)
        container = _container(settings)
        result = container.catalog_cases().validate(settings.catalog_dir)
        if result["ok"] and with_data:
            result = {**result, "data": container.application().catalog_validate_data()}
        if json:
            _emit(result, True, lambda _: None)
        elif result["ok"]:
            print(
                f"ok: {result['views']} views, {result['services']} services, "
                f"{result['stores']} embedding stores in {result['catalog_dir']}"
            )
        if not result["ok"]:
            for err in result["errors"]:
                print(_located(err), file=sys.stderr)
            n = len(result["errors"])
            print(f"{n} error{'s' if n != 1 else ''} in {result['catalog_dir']}", file=sys.stderr)
            return EXIT_CODES["invalid_catalog"]
        if with_data:
            return _report_data_checks(result["data"], json)
        return 0

    return _run(body, debug, json)


def _report_data_checks(data: dict[str, Any], as_json: bool) -> int:
    """Print what `catalog validate --with-data` found; exit 3 when anything."""
    for p in data["problems"]:
        if p["kind"] == "filter_value":
            where = f"{p['location']}: " if p.get("location") else ""
            hint = f" — {p['hint']}" if p.get("hint") else ""
            print(f"{where}{p['message']}{hint}", file=sys.stderr)
        else:
            print(f"{p['message']} [{', '.join(p['sources'])}]", file=sys.stderr)
    n = len(data["problems"])
    if n:
        print(
            f"{n} problem{'s' if n != 1 else ''} in the data of {data['workspace']}",
            file=sys.stderr,
        )
        return EXIT_CODES["invalid_catalog"]
    if not as_json:
        print(
            f"ok: {data['files_checked']} file(s) of {len(data['sources'])} source(s) in "
            f"{data['workspace']} match their definitions; "
            f"{data['filter_values_checked']} filter value(s) occur in the data"
        )
    return 0


@catalog_app.command(name="plan")
def catalog_plan(
    *,
    workspace: Workspace = None,
    out: Annotated[
        Path | None,
        Parameter(help="Output root of the trained days (default WORKSPACE/out)."),
    ] = None,
    catalog: Catalog = None,
    json: Json = False,
    debug: Debug = False,
) -> int:
    """What the catalog as it is now does to each service's trained output, without training:
    the contract diff against the most recently written day (columns added, removed, retyped,
    reordered) and which written days become stale, and why.

    Exit code 0 when no contract breaks (added or moved columns, stale days and untrained
    services are reported but pass), 9 when a service's contract breaks (a column that its
    written days have is removed or changes type).

    Example: daeda catalog plan --workspace demo --json
    """

    def body() -> int:
        data = _application(workspace, catalog, out_dir=out).catalog_plan()
        _emit(data, json, _print_plan)
        return 0 if data["ok"] else EXIT_CODES["audit_failed"]

    return _run(body, debug, json)


def _day_span(days: list[str]) -> str:
    if len(days) == 1:
        return days[0]
    return f"{days[0]} … {days[-1]} ({len(days)} days)"


def _print_plan(d: dict[str, Any]) -> None:
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
        for x in c.get("removed", []):
            print(f"  - removed  {x['name']} {x['type']}")
        for x in c.get("added", []):
            print(f"  + added    {x['name']} {x['type']} (column {x['position'] + 1})")
        for x in c.get("retyped", []):
            print(f"  ~ retyped  {x['name']}: {x['from']} → {x['to']}")
        for x in c.get("nullability", []):
            print(f"  ~ nullable {x['name']}: {x['from']} → {x['to']}")
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
            print(f"  warning: {s['problem']}", file=sys.stderr)
    if d["breaking"]:
        print(f"contract break in: {', '.join(d['breaking'])}")
    else:
        print("no contract break")


# -- service -------------------------------------------------------------------------------------


@service_app.command(name="schema")
def service_schema(
    name: str,
    /,
    *,
    catalog: Catalog = None,
    workspace: Workspace = None,
    json: Json = False,
    debug: Debug = False,
) -> int:
    """Print the resolved schema (the column-level contract) of a feature service.

    Example: daeda service schema feed_ranking

    Parameters
    ----------
    name
        The feature service.
    """

    def body() -> int:
        data = _application(workspace, catalog).service_schema(name)

        def human(d: dict[str, Any]) -> None:
            _table(
                f"{d['service']} (contract {d['contract_hash'][:12]})",
                ["column", "type", "nullable"],
                [[c["name"], c["type"], c["nullable"]] for c in d["columns"]],
            )

        _emit(data, json, human)
        return 0

    return _run(body, debug, json)


def main() -> None:
    """Console-script entry point."""
    if "--json" in sys.argv[1:]:
        # Only the JSON goes to the real stdout (a duplicate of fd 1); fd 1 itself, and with it
        # sys.stdout and native writes, points at stderr for the rest of the process.
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
            real = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
            os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
            _real_stdout.append(real)
    code = app()
    for stream in (*_real_stdout, sys.stdout):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    # Whatever libraries print while the process winds down (Ray's exit notices, from Python or
    # from native threads) goes to stderr: stdout holds the command's output alone, so `--json`
    # output stays parseable.
    with contextlib.suppress(OSError, ValueError):
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.exit(code)


# -- demo ------------------------------------------------------------------------------------------

demo_app = App(name="demo", help="The seeded AI-artwork demo workspace.")
app.command(demo_app)


@demo_app.command(name="init")
def demo_init(
    directory: Path = Path("demo"),
    /,
    *,
    scale: str = "small",
    seed: int = 7,
    overwrite: bool = False,
    json: Json = False,
    debug: Debug = False,
) -> int:
    """Write a demo workspace: events, impressions, profiles, artworks, a Lance embedding store.

    Example: daeda demo init demo --scale small

    Run again on a complete workspace of the same scale and seed, it writes nothing (the files
    keep their bytes and times, so trained days stay current); a complete one of another scale
    or seed is refused (exit 7) unless --overwrite; an interrupted one is written again.

    Parameters
    ----------
    directory
        Where to write it (created; refused if it holds other files unless --overwrite).
    scale
        tiny, small (default), medium or large (benchmarks).
    seed
        Random seed: the same seed writes the same data.
    overwrite
        Write into a non-empty directory, or replace a complete demo workspace (even the same
        one); never deletes files that are not the demo's.
    """

    def body() -> int:
        data = (
            _container(_settings(directory, None))
            .demo_cases()
            .init(directory, scale, seed, overwrite)
        )

        def human(d: dict[str, Any]) -> None:
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

        _emit(data, json, human)
        return 0

    return _run(body, debug, json)


# -- pipeline --------------------------------------------------------------------------------------

pipeline_app = App(name="pipeline", help="Compile, train and inspect a feature service's datasets.")
app.command(pipeline_app)

Out = Annotated[
    Path | None,
    Parameter(help="Output root: days go to OUT/SERVICE/dt=YYYY-MM-DD/ (default WORKSPACE/out)."),
]
Engine = Annotated[
    str | None,
    Parameter(help="Compute engine: duckdb or polars (default duckdb; env DAEDA_ENGINE)."),
]


def _pipeline(
    workspace: Path | None,
    catalog: Path | None,
    out: Path | None = None,
    engine: str | None = None,
    ray_address: str | None = None,
    ray_days_in_flight: int | None = None,
    batch_rows: int | None = None,
) -> Any:
    return _application(
        workspace,
        catalog,
        out_dir=out,
        engine=engine,
        ray_address=ray_address,
        ray_days_in_flight=ray_days_in_flight,
        batch_rows=batch_rows,
    )


@pipeline_app.command(name="compile")
def pipeline_compile(
    service: str,
    /,
    *,
    format: str = "text",
    engine: Engine = None,
    catalog: Catalog = None,
    workspace: Workspace = None,
    json: Json = False,
    debug: Debug = False,
) -> int:
    """Compile a feature service into its operator DAG.

    Example: daeda pipeline compile feed_ranking --format mermaid

    Parameters
    ----------
    service
        The feature service.
    format
        text, mermaid or json.
    """

    def body() -> int:
        data = _pipeline(workspace, catalog, engine=engine).pipeline_compile(
            service, format, engine
        )

        def human(d: dict[str, Any]) -> None:
            out = d["pipeline"]
            print(out if isinstance(out, str) else jsonlib.dumps(out, indent=2))

        _emit(data, json, human)
        return 0

    return _run(body, debug, json)


@pipeline_app.command(name="train")
def pipeline_train(
    service: str,
    /,
    *,
    start: str,
    end: str,
    engine: Engine = None,
    workspace: Workspace = None,
    out: Out = None,
    catalog: Catalog = None,
    force: bool = False,
    max_invalid_fraction: Annotated[
        float | None,
        Parameter(
            help="The largest share of a source's rows that may be unusable (null event time or "
            "null key) before the run refuses its inputs; overrides every definition's "
            "max_invalid_fraction (default: the definition's, else 0.01)."
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        Parameter(
            help="Say what the run would do (each day to compute or skip, and why; the "
            "batches) after checking the inputs, and write nothing.",
            negative="",
        ),
    ] = False,
    batch_rows: Annotated[
        int | None,
        Parameter(
            help="The most spine rows computed together: consecutive days are batched up to "
            "this many rows, one engine call per feature view per batch (default 500,000; "
            "env DAEDA_BATCH_ROWS). Lower it to bound memory on a small machine; the output "
            "is the same."
        ),
    ] = None,
    allow_duplicate_spine_rows: Annotated[
        bool,
        Parameter(
            help="Keep spine rows that repeat the entity keys and timestamp of another row "
            "(they are counted in the summary); without it they are an error (exit 6).",
            negative="",
        ),
    ] = False,
    ray_address: Annotated[
        str | None,
        Parameter(
            help="Run the days, and their enrich batches, as tasks on this Ray cluster "
            "(host:port, auto or ray://host:port; env RAY_ADDRESS). The workspace and --out must "
            "be on storage every node sees at the same path. Without it, days run one after "
            "another in this process and enrich on a local Ray."
        ),
    ] = None,
    ray_days_in_flight: Annotated[
        int | None,
        Parameter(
            help="With --ray-address: days run at once on the cluster (default: half its CPUs, "
            "at least 1; env DAEDA_RAY_DAYS_IN_FLIGHT)."
        ),
    ] = None,
    json: Json = False,
    debug: Debug = False,
) -> int:
    """Train a feature service: one point-in-time-correct parquet day per date, atomically.

    Days whose manifest still matches are skipped (use --force to recompute them). With
    --ray-address the other days run on that Ray cluster, several at once; each day's manifest
    records the runner ("local" or "ray"), and so does the summary.

    Example: daeda pipeline train feed_ranking --workspace demo --start 2026-10-02 --end 2026-10-08

    Parameters
    ----------
    service
        The feature service.
    start
        First day (YYYY-MM-DD).
    end
        Last day, included (YYYY-MM-DD).
    force
        Recompute every day even if it is current.
    """

    def body() -> int:
        application = _pipeline(
            workspace, catalog, out, engine, ray_address, ray_days_in_flight, batch_rows
        )
        options = {
            "engine": engine,
            "force": force,
            "max_invalid_fraction": max_invalid_fraction,
            "allow_duplicate_spine_rows": allow_duplicate_spine_rows,
        }
        if dry_run:
            plan = application.train_dry_run(service, start, end, **options)
            _emit(plan, json, _print_dry_run)
            return 0
        job = _train(application, service, start, end, options, progress=not json)
        if job["state"] != "succeeded":
            error = job.get("error") or {"kind": "internal", "message": "the job did not finish"}
            raise AppError(
                error.get("kind", "internal"), error.get("message", ""), error.get("data")
            )
        _emit(job["result"], json, _print_summary)
        return 0

    return _run(body, debug, json)


def _train(
    application: Any,
    service: str,
    start: str,
    end: str,
    options: dict[str, Any],
    *,
    progress: bool,
) -> dict[str, Any]:
    """Run a training job in this process (recorded in the run store), with a progress bar."""
    if not progress:
        return application.jobs.start_training(service, start, end, wait=True, **options)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=False,
    )
    task = bar.add_task(f"{service}", total=None)

    def on_event(event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "run_started":  # shown once the run has started: not before an arg error
            bar.start()
            started.append(True)
            bar.update(task, total=event["days"])
        elif kind == "day_started":
            bar.update(task, description=f"{service} {event['day']}")
        elif kind in ("day_done", "day_skipped"):
            bar.advance(task)

    started: list[bool] = []
    try:
        return application.jobs.start_training(
            service, start, end, wait=True, on_event=on_event, **options
        )
    finally:
        if started:
            bar.stop()


def _print_dry_run(d: dict[str, Any]) -> None:
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
    for warning in d.get("warnings") or []:
        print(f"warning: {warning}", file=sys.stderr)


def _print_summary(d: dict[str, Any]) -> None:
    print(
        f"{d['service']} [{d['engine']}, {d.get('runner', 'local')}]: "
        f"{d['days_written']} day(s) written, "
        f"{d['days_skipped']} skipped, {d['rows']:,} rows in {d['seconds']:.1f}s"
    )
    print(f"dataset: {d['out_dir']}/dt=*/part-*.parquet")
    for warning in d.get("warnings") or []:
        print(f"warning: {warning}", file=sys.stderr)


@pipeline_app.command(name="status")
def pipeline_status(
    service: str,
    /,
    *,
    workspace: Workspace = None,
    out: Out = None,
    catalog: Catalog = None,
    json: Json = False,
    debug: Debug = False,
) -> int:
    """List the days written for a service and whether each is current.

    Example: daeda pipeline status feed_ranking --workspace demo
    """

    def body() -> int:
        data = _pipeline(workspace, catalog, out).days_list(service)

        def human(d: dict[str, Any]) -> None:
            if d.get("problem"):
                print(f"warning: cannot check freshness: {d['problem']}", file=sys.stderr)
            state = {True: "current", False: "stale", None: "unknown"}
            for x in d["days"]:
                for p in x.get("problems") or []:
                    print(f"warning: {x['day']}: {_problem_text(p)}", file=sys.stderr)
                for reason in x.get("why") or []:
                    print(f"{x['day']} is stale: {reason}")
            if d.get("missing"):
                print(f"not written ({len(d['missing'])} day(s) of the spine): ", end="")
                print(", ".join(d["missing"]))
            _table(
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

        _emit(data, json, human)
        return 0

    return _run(body, debug, json)


def _problem_text(p: dict[str, Any]) -> str:
    what = f"{p['file']}: " if p.get("file") else ""
    return f"{what}{p['problem']} (expected {p.get('expected')!r}, found {p.get('found')!r})"


@pipeline_app.command(name="verify")
def pipeline_verify(
    service: str,
    /,
    *,
    day: str | None = None,
    workspace: Workspace = None,
    out: Out = None,
    catalog: Catalog = None,
    json: Json = False,
    debug: Debug = False,
) -> int:
    """Check written days against their manifests: every part file present, none extra, and
    each file's size, sha256 checksum and row count as recorded.

    Exit code 0 when every file matches, 9 when anything differs (each difference is listed).

    Example: daeda pipeline verify feed_ranking --workspace demo [--day 2026-10-02]

    Parameters
    ----------
    day
        Only this day (YYYY-MM-DD); default every written day.
    """

    def body() -> int:
        data = _pipeline(workspace, catalog, out).days_verify(service, day)

        def human(d: dict[str, Any]) -> None:
            for x in d["days"]:
                for p in x["problems"]:
                    print(f"{x['day']}: {_problem_text(p)}")
            bad = sum(1 for x in d["days"] if x["problems"])
            print(
                f"{d['service']}: {d['days_checked']} day(s) checked, "
                + ("every file matches its manifest" if d["ok"] else f"{bad} with differences")
            )

        _emit(data, json, human)
        return 0 if data["ok"] else EXIT_CODES["audit_failed"]

    return _run(body, debug, json)


@pipeline_app.command(name="preview")
def pipeline_preview(
    service: str,
    /,
    *,
    day: str,
    limit: int = 5,
    workspace: Workspace = None,
    out: Out = None,
    catalog: Catalog = None,
    json: Json = False,
    debug: Debug = False,
) -> int:
    """Show the first rows of a written day.

    Example: daeda pipeline preview feed_ranking --day 2026-10-02 --workspace demo
    """

    def body() -> int:
        data = _pipeline(workspace, catalog, out).day_preview(service, day, limit)

        def human(d: dict[str, Any]) -> None:
            for i, row in enumerate(d["rows"]):
                print(f"-- row {i}")
                for k, v in row.items():
                    text = repr(v)
                    print(f"  {k}: {text if len(text) < 100 else text[:97] + '...'}")

        _emit(data, json, human)
        return 0

    return _run(body, debug, json)


@pipeline_app.command(name="manifest")
def pipeline_manifest(
    service: str,
    /,
    *,
    day: str,
    workspace: Workspace = None,
    out: Out = None,
    catalog: Catalog = None,
    json: Json = False,
    debug: Debug = False,
) -> int:
    """Print the manifest of a written day (rows, hashes, inputs, store versions, timings).

    Example: daeda pipeline manifest feed_ranking --day 2026-10-02 --workspace demo
    """

    def body() -> int:
        data = _pipeline(workspace, catalog, out).day_manifest(service, day)
        _emit(data, json, lambda d: print(jsonlib.dumps(d, indent=2)))
        return 0

    return _run(body, debug, json)


@app.command(name="audit")
def audit(
    service: str,
    /,
    *,
    day: str,
    sample: int = 100,
    seed: int = 0,
    workspace: Workspace = None,
    out: Out = None,
    catalog: Catalog = None,
    json: Json = False,
    debug: Debug = False,
) -> int:
    """Recompute sampled rows of a written day by brute force from the raw sources, and check
    every row against the spine (labels, row count, no missing, extra or duplicated rows).

    Exit code 0 when everything matches, 9 when anything differs (each difference is listed).

    Example: daeda audit feed_ranking --day 2026-10-02 --sample 200 --workspace demo

    Parameters
    ----------
    sample
        How many random rows to recompute.
    seed
        Which rows (the same seed picks the same rows).
    """

    def body() -> int:
        data = _pipeline(workspace, catalog, out).day_audit(service, day, sample, seed)

        def human(d: dict[str, Any]) -> None:
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
                print(f"  {diff['kind']}: {jsonlib.dumps(fields, default=str)}")
            total = len(d["differences"]) + len(d["row_differences"])
            print("no differences" if d["ok"] else f"{total} difference(s) listed")

        _emit(data, json, human)
        return 0 if data["ok"] else EXIT_CODES["audit_failed"]

    return _run(body, debug, json)


# -- dataset ---------------------------------------------------------------------------------------

dataset_app = App(name="dataset", help="A service's written days: per-feature statistics.")
app.command(dataset_app)


@dataset_app.command(name="stats")
def dataset_stats(
    service: str,
    /,
    *,
    start: str | None = None,
    end: str | None = None,
    html: Annotated[
        Path | None,
        Parameter(
            help="Also write a self-contained HTML report (inline SVG, no script) with a chart "
            "per feature over the days: null share, min, max and mean per day."
        ),
    ] = None,
    workspace: Workspace = None,
    out: Out = None,
    catalog: Catalog = None,
    json: Json = False,
    debug: Debug = False,
) -> int:
    """Per-feature statistics of a service's written days, from their manifests (no data is
    read again): null share, min, max, distinct values, list lengths; and warnings about
    features null or constant on every row, filters that matched nothing and empty days.

    Example: daeda dataset stats feed_ranking --workspace demo --start 2026-10-02 --html report.html

    Parameters
    ----------
    service
        The feature service.
    start
        First day (YYYY-MM-DD; default the first written).
    end
        Last day, included (YYYY-MM-DD; default the last written).
    """

    def body() -> int:
        data = _pipeline(workspace, catalog, out).dataset_stats(service, start, end)
        if html is not None:
            from daedalus.pipeline.stats import render_html

            try:
                html.write_text(render_html(data), encoding="utf-8")
            except OSError as exc:
                raise AppError(
                    "storage", f"cannot write {html}: {exc.strerror or exc}", {"path": str(html)}
                ) from exc
            data = {**data, "html": str(html)}
        _emit(data, json, _print_stats)
        return 0

    return _run(body, debug, json)


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


def _print_stats(d: dict[str, Any]) -> None:
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
        print(
            f"{len(d['days_without_stats'])} day(s) have no statistics (written before they "
            "were recorded; train them again with --force)",
            file=sys.stderr,
        )
    for warning in d.get("warnings") or []:
        print(f"warning: {warning}", file=sys.stderr)
    if d.get("html"):
        print(f"report: {d['html']}")


# -- jobs ------------------------------------------------------------------------------------------

job_app = App(
    name="job", help="Training jobs: history, status, cancel (recorded in WORKSPACE/.daedalus/)."
)
app.command(job_app)


def _print_job(job: dict[str, Any]) -> None:
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
            f"  result: {r['days_written']} written, {r['days_skipped']} skipped, {r['rows']} rows, {r['out_dir']}"
        )


@job_app.command(name="list")
def job_list(
    *, limit: int = 20, workspace: Workspace = None, json: Json = False, debug: Debug = False
) -> int:
    """The most recent jobs, newest first.

    Example: daeda job list --workspace demo
    """

    def body() -> int:
        data = _application(workspace, None).job_list(limit)

        def human(d: dict[str, Any]) -> None:
            _table(
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

        _emit(data, json, human)
        return 0

    return _run(body, debug, json)


@job_app.command(name="status")
def job_status(
    job_id: str, /, *, workspace: Workspace = None, json: Json = False, debug: Debug = False
) -> int:
    """A job's state, progress, result or error.

    Example: daeda job status 3f2a9c1b7e4d --workspace demo
    """

    def body() -> int:
        _emit(_application(workspace, None).job_status(job_id), json, _print_job)
        return 0

    return _run(body, debug, json)


@job_app.command(name="cancel")
def job_cancel(
    job_id: str, /, *, workspace: Workspace = None, json: Json = False, debug: Debug = False
) -> int:
    """Ask a running job to stop at its next step (no partial day is left behind).

    Example: daeda job cancel 3f2a9c1b7e4d --workspace demo
    """

    def body() -> int:
        _emit(_application(workspace, None).job_cancel(job_id), json, _print_job)
        return 0

    return _run(body, debug, json)


# -- servers ---------------------------------------------------------------------------------------


@app.command(name="serve-api")
def serve_api(
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    allow_host: Annotated[
        list[str] | None,
        Parameter(
            name="--allow-host",
            negative="",
            consume_multiple=False,
            help="A host name (or address) accepted in the Host and Origin headers besides "
            "127.0.0.1, localhost and [::1]; repeatable (also env DAEDA_ALLOW_HOSTS, "
            "comma-separated). Others get HTTP 421 (Host) or 403 (Origin).",
        ),
    ] = None,
    workspace: Workspace = None,
    catalog: Catalog = None,
    out: Out = None,
    debug: Debug = False,
) -> int:
    """Serve the JSON-RPC 2.0 control plane (POST /rpc, GET /health) with uvicorn.

    Methods that write or start work need `Authorization: Bearer <token>` (--token or env
    DAEDA_API_TOKEN); without a token the server refuses to bind beyond loopback. Once bound it
    prints `daeda serve-api: listening on http://HOST:PORT ...` on stderr.

    Exit codes: 5 for a port outside 0-65535 or a malformed --allow-host, 7 when HOST:PORT is
    already in use, 8 when binding is not permitted (or a public host without a token).

    Example: DAEDA_API_TOKEN=s3cret daeda serve-api --workspace demo --port 8000

    Parameters
    ----------
    host
        Interface to bind (default loopback).
    port
        TCP port, 1-65535; 0 takes any free port (the line printed at start names it).
    token
        Bearer token for write methods (default: env DAEDA_API_TOKEN).
    """

    def body() -> int:
        import os

        from daedalus.adapters.jsonrpc.server import serve

        if isinstance(port, bool) or not 0 <= port <= 65535:  # before anything is loaded
            raise AppError(
                "invalid_argument",
                f"port {port} is out of range: use 1-65535 (or 0 for any free port)",
                {"field": "port"},
            )
        hosts = [*(allow_host or ()), *os.environ.get("DAEDA_ALLOW_HOSTS", "").split(",")]
        application = _application(workspace, catalog, out_dir=out)
        try:
            serve(
                application,
                host=host,
                port=port,
                token=token or os.environ.get("DAEDA_API_TOKEN") or None,
                allowed_hosts=[h for h in hosts if h.strip()],
            )
        except ValueError as exc:
            raise AppError("forbidden", str(exc)) from exc
        return 0

    return _run(body, debug, False)


@app.command(name="mcp")
def mcp(
    *,
    http: Annotated[bool, Parameter(negative="")] = False,
    host: str | None = None,
    port: int | None = None,
    token: str | None = None,
    workspace: Workspace = None,
    catalog: Catalog = None,
    out: Out = None,
    engine: Engine = None,
    debug: Debug = False,
) -> int:
    """Serve the MCP tools and resources over stdio (for agents; see the README to register it),
    or over streamable HTTP with --http (http://HOST:PORT/mcp).

    Over HTTP, with a token (--token or env DAEDA_MCP_TOKEN) every request needs
    `Authorization: Bearer <token>`, reads included; without one the server listens on loopback
    only and refuses the tools that write or start work (train_start, job_cancel).

    Examples:

      daeda mcp --workspace demo

      DAEDA_MCP_TOKEN=s3cret daeda mcp --http --port 8001 --workspace demo

    Parameters
    ----------
    http
        Serve streamable HTTP instead of stdio.
    host
        With --http: the interface to bind (default 127.0.0.1; beyond loopback needs a token).
    port
        With --http: the TCP port (default 8001).
    token
        With --http: the bearer token every request must carry (default: env DAEDA_MCP_TOKEN).
    """

    def body() -> int:
        import logging

        # stdout may carry the protocol: every log line goes to stderr.
        logging.basicConfig(
            stream=sys.stderr,
            level=logging.INFO,
            format="%(asctime)s %(name)s %(levelname)s %(message)s",
        )
        if not http and (host is not None or port is not None or token is not None):
            raise AppError(
                "invalid_argument",
                "--host, --port and --token apply to --http only (stdio needs none)",
                {"field": "http"},
            )
        application = _application(workspace, catalog, out_dir=out, engine=engine)
        # Imported once the settings are read, so `daeda --help` stays fast.
        from daedalus.adapters.mcp.server import DEFAULT_HTTP_PORT, TOKEN_ENV, run_http, run_stdio

        if not http:
            run_stdio(application)
            return 0
        try:
            run_http(
                application,
                host=host or "127.0.0.1",
                port=DEFAULT_HTTP_PORT if port is None else port,
                token=token or os.environ.get(TOKEN_ENV) or None,
            )
        except ValueError as exc:
            raise AppError("forbidden", str(exc)) from exc
        return 0

    return _run(body, debug, False)
