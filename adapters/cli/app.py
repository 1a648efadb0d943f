"""The `daeda` command line (cyclopts): a thin skin over the application use cases."""

from __future__ import annotations

import json as jsonlib
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

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
        help="Catalog directory (default: <workspace>/feature_views, else ./feature_views; env DAEDA_CATALOG)."
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


def _emit(data: Any, as_json: bool, human: Callable[[Any], None]) -> None:
    if as_json:
        print(jsonlib.dumps(data, indent=2, default=str))
    else:
        human(data)


def _run(action: Callable[[], int], debug: bool, as_json: bool) -> int:
    """Run a command body; turn errors into located messages on stderr and an exit code."""
    try:
        return action()
    except AppError as exc:
        if debug:
            traceback.print_exc()
        if as_json:
            print(jsonlib.dumps({"error": exc.to_dict()}, indent=2, default=str))
        print(f"error: {exc.message}", file=sys.stderr)
        known = exc.data.get("known") if isinstance(exc.data, dict) else None
        if exc.kind == "not_found" and known and "did you mean" not in exc.message:
            print(f"known: {', '.join(map(str, known))}", file=sys.stderr)
        if exc.kind == "invalid_catalog" and isinstance(exc.data, list):
            for err in exc.data:
                print(_located(err), file=sys.stderr)
        return EXIT_CODES.get(exc.kind, 1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
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
        data = _container(_settings(workspace, catalog)).catalog_cases().list_catalog()

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
        data = _container(_settings(workspace, catalog)).catalog_cases().describe(name)

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
    directory: Path | None = None, /, *, json: Json = False, debug: Debug = False
) -> int:
    """Check every definition of a catalog directory; report every error with file:line:column.

    Exit code 0 when valid, 3 when any definition is wrong (messages on stderr).

    Example: daeda catalog validate feature_views

    Parameters
    ----------
    directory
        The catalog directory (default: the configured catalog).
    """

    def body() -> int:
        settings = _settings(None, directory)
        result = _container(settings).catalog_cases().validate(settings.catalog_dir)
        if json:
            print(jsonlib.dumps(result, indent=2))
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
        return 0

    return _run(body, debug, json)


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
        data = _container(_settings(workspace, catalog)).catalog_cases().service_schema(name)

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
    sys.exit(app())


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

    Parameters
    ----------
    directory
        Where to write it (created; refused if it holds other files unless --overwrite).
    scale
        tiny, small (default), medium or large (benchmarks).
    seed
        Random seed: the same seed writes the same data.
    overwrite
        Write into a non-empty directory (never deletes files that are not the demo's).
    """

    def body() -> int:
        data = (
            _container(_settings(directory, None))
            .demo_cases()
            .init(directory, scale, seed, overwrite)
        )

        def human(d: dict[str, Any]) -> None:
            rows = ", ".join(f"{v:,} {k}" for k, v in d["rows"].items())
            print(f"demo workspace ({d['scale']}, seed {d['seed']}) in {d['workspace']}")
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
    Parameter(
        help="Output root: days go to <out>/<service>/dt=YYYY-MM-DD/ (default <workspace>/out)."
    ),
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
) -> Any:
    settings = _settings(workspace, catalog, out_dir=out, engine=engine, ray_address=ray_address)
    return _container(settings).pipeline_cases()


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
        data = _pipeline(workspace, catalog, engine=engine).compile(service, engine, format)

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
    ray_address: Annotated[
        str | None, Parameter(help="Run enrichment on this Ray cluster (env RAY_ADDRESS).")
    ] = None,
    json: Json = False,
    debug: Debug = False,
) -> int:
    """Train a feature service: one point-in-time-correct parquet day per date, atomically.

    Days whose manifest still matches are skipped (use --force to recompute them).

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
        cases = _pipeline(workspace, catalog, out, engine, ray_address)
        if json:
            summary = cases.train(service, start, end, engine=engine, force=force)
        else:
            summary = _train_with_progress(cases, service, start, end, engine, force)
        _emit(summary, json, _print_summary)
        return 0

    return _run(body, debug, json)


def _train_with_progress(
    cases: Any, service: str, start: str, end: str, engine: str | None, force: bool
) -> dict[str, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=False,
    ) as progress:
        task = progress.add_task(f"{service}", total=None)

        def on_event(event: dict[str, Any]) -> None:
            kind = event["event"]
            if kind == "run_started":
                progress.update(task, total=event["days"])
            elif kind == "day_started":
                progress.update(task, description=f"{service} {event['day']}")
            elif kind in ("day_done", "day_skipped"):
                progress.advance(task)

        return cases.train(service, start, end, engine=engine, force=force, on_event=on_event)


def _print_summary(d: dict[str, Any]) -> None:
    print(
        f"{d['service']} [{d['engine']}]: {d['days_written']} day(s) written, "
        f"{d['days_skipped']} skipped, {d['rows']:,} rows in {d['seconds']:.1f}s"
    )
    print(f"dataset: {d['out_dir']}/dt=*/part-*.parquet")


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
        data = _pipeline(workspace, catalog, out).status(service)

        def human(d: dict[str, Any]) -> None:
            if d.get("problem"):
                print(f"warning: cannot check freshness: {d['problem']}", file=sys.stderr)
            state = {True: "current", False: "stale", None: "unknown"}
            _table(
                f"{d['service']} in {d['out_dir']}",
                ["day", "rows", "engine", "state", "written at"],
                [
                    [x["day"], x["rows"], x["engine"], state[x["current"]], x["written_at"]]
                    for x in d["days"]
                ],
            )

        _emit(data, json, human)
        return 0

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
        data = _pipeline(workspace, catalog, out).preview(service, day, limit)

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
        data = _pipeline(workspace, catalog, out).manifest(service, day)
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
    """Recompute sampled rows of a written day by brute force from the raw sources.

    Exit code 0 when every value matches, 9 when any differs (each difference is listed).

    Example: daeda audit feed_ranking --day 2026-10-02 --sample 200 --workspace demo

    Parameters
    ----------
    sample
        How many random rows to recompute.
    seed
        Which rows (the same seed picks the same rows).
    """

    def body() -> int:
        data = _pipeline(workspace, catalog, out).audit(service, day, sample, seed)

        def human(d: dict[str, Any]) -> None:
            print(
                f"{d['service']} {d['day']}: checked {d['rows_checked']} of {d['rows_in_day']} rows, "
                f"{d['columns_checked']} feature columns each"
            )
            for diff in d["differences"]:
                print(
                    f"  row {diff['row']} {diff['column']}: written {diff['written']!r}, "
                    f"expected {diff['expected']!r}"
                )
            print("no differences" if d["ok"] else f"{len(d['differences'])} difference(s)")

        _emit(data, json, human)
        return 0 if data["ok"] else EXIT_CODES["audit_failed"]

    return _run(body, debug, json)
