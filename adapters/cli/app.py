"""The `daeda` command line (cyclopts): a thin skin over the application's use cases.

Every command that runs a use case is generated from its entry in USE_CASES (see COMMANDS):
the use case's summary is the command's help, its parameters are the command's arguments and
options (their descriptions the help), and the body is one path for all: build the
Application from the settings, `Application.call` the use case, emit the answer as JSON
(`--json`) or render it (`render.RENDER`), and exit with a code that says what happened
(`output.EXIT_CODES`). The CLI's own: where the settings come from (--workspace, --catalog,
--out, the Ray options), --json and --debug, a training run's progress bar, the servers'
options, and how `catalog validate` takes its directory.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, get_args

import attrs
from cyclopts import App, Parameter
from daedalus.adapters.cli import render
from daedalus.adapters.cli.options import (
    OPTIONS,
    SETTINGS,
    Debug,
    Json,
    Workspace,
    build_application,
)
from daedalus.adapters.cli.output import EXIT_CODES, emit, json_stdout, release_stdout, run
from daedalus.adapters.cli.servers import mcp, serve_api

from daedalus.app.application import USE_CASES, Application, UseCase
from daedalus.app.errors import AppError

__all__ = ["COMMANDS", "EXIT_CODES", "USES", "app", "main"]

app = App(
    name="daeda",
    help="Daedalus: point-in-time-correct feature datasets from YAML feature views.\n\n"
    "Examples:\n\n"
    "  daeda catalog list\n\n"
    "  daeda catalog validate feature_views\n\n"
    "  daeda service schema feed_ranking --json",
    version_flags=["--version"],
)
_GROUPS = {
    "catalog": App(name="catalog", help="Inspect and validate the feature catalog."),
    "service": App(name="service", help="Feature services: their resolved schemas."),
    "pipeline": App(
        name="pipeline", help="Compile, train and inspect a feature service's datasets."
    ),
    "dataset": App(name="dataset", help="A service's written days: per-feature statistics."),
    "job": App(
        name="job",
        help="Training jobs: history, status, cancel (recorded in WORKSPACE/.daedalus/).",
    ),
    "demo": App(name="demo", help="The seeded AI-artwork demo workspace."),
}
for _group in _GROUPS.values():
    app.command(_group)

#: What the CLI adds to a use case parameter's help.
_MORE_HELP = {
    "engine": "; default duckdb, or env DAEDA_ENGINE.",
    "allow_duplicate_spine_rows": " (exit 6).",
}
#: CLI defaults that differ from the use case's (the engine: DAEDA_ENGINE, else duckdb).
_CLI_DEFAULTS = {"engine": None}
_TYPES = {"string": str, "integer": int, "number": float, "boolean": bool}


def _case(name: str) -> UseCase:
    return next(c for c in USE_CASES if c.name == name)


# -- commands generated from the use cases ---------------------------------------------------------


@attrs.frozen
class Request:
    """One run of a generated command: its use case and arguments, the settings (where things
    are), the command's own options (`others`), and whether the answer goes out as JSON."""

    case: str
    arguments: dict[str, Any]
    settings: dict[str, Any]
    others: dict[str, Any]
    as_json: bool

    def application(self) -> Application:
        return build_application(**self.settings)


def _answer(req: Request) -> int:
    """The one path: call the use case, emit its answer, exit 9 if it says `ok: false`."""
    data = req.application().call(req.case, req.arguments)
    emit(data, req.as_json, render.RENDER[req.case])
    return 0 if data.get("ok", True) else EXIT_CODES["audit_failed"]


@attrs.frozen
class Command:
    """A CLI command that runs use case `case`: `path` names it (`pipeline status`), the use
    case's parameters in `positional` are arguments, the others options; `options` are the
    CLI's own; `defaults` are the CLI's where they differ; `notes` (exit codes, say) and
    `example` follow the summary in its help."""

    path: tuple[str, ...]
    case: str
    example: str
    positional: tuple[str, ...] = ()
    options: tuple[str, ...] = ("workspace", "out", "catalog")
    defaults: Mapping[str, Any] = attrs.field(factory=dict)
    notes: str = ""
    body: Callable[[Request], int] = _answer
    #: The CLI's own first line, where the command does more than the use case's summary says.
    summary: str = ""

    def help(self) -> str:
        parts = [self.summary or _case(self.case).summary, self.notes, f"Example: {self.example}"]
        return "\n\n".join(p for p in parts if p)

    def signature(self) -> inspect.Signature:
        P = inspect.Parameter
        first, rest = [], []
        defaults = {**_CLI_DEFAULTS, **self.defaults}
        for p in _case(self.case).params:
            kind = P.POSITIONAL_ONLY if p.name in self.positional else P.KEYWORD_ONLY
            typ: Any = _TYPES[p.schema.get("type", "string")]
            default = defaults.get(p.name, p.default) if not p.required else P.empty
            typ = typ | None if default is None else typ
            negative = {"negative": ""} if typ is bool else {}
            more = _MORE_HELP.get(p.name)
            help_text = p.description.rstrip(".") + more if more else p.description
            annotation = Annotated[typ, Parameter(help=help_text, **negative)]
            (first if kind is P.POSITIONAL_ONLY else rest).append(
                P(p.name, kind, default=default, annotation=annotation)
            )
        for name in self.options:
            annotation = OPTIONS[name]
            default = False if get_args(annotation)[0] is bool else None
            rest.append(P(name, P.KEYWORD_ONLY, default=default, annotation=annotation))
        rest += [
            P("json", P.KEYWORD_ONLY, default=False, annotation=Json),
            P("debug", P.KEYWORD_ONLY, default=False, annotation=Debug),
        ]
        return inspect.Signature([*first, *rest], return_annotation=int)

    def register(self) -> None:
        signature = self.signature()
        case_params = {p.name for p in _case(self.case).params}

        def command(*args: Any, **kwargs: Any) -> int:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            values = dict(bound.arguments)
            as_json, debug = values.pop("json"), values.pop("debug")
            arguments = {k: v for k, v in values.items() if k in case_params}
            settings = {k: v for k, v in values.items() if k in SETTINGS}
            if "engine" in arguments:
                settings["engine"] = arguments["engine"]
            others = {k: v for k, v in values.items() if k not in case_params | SETTINGS}
            req = Request(self.case, arguments, settings, others, as_json)
            return run(lambda: self.body(req), debug, as_json)

        command.__signature__ = signature  # type: ignore[attr-defined]
        command.__name__ = command.__qualname__ = "_".join(self.path).replace("-", "_")
        parent = _GROUPS[self.path[0]] if len(self.path) > 1 else app
        parent.command(command, name=self.path[-1], help=self.help())


def _train(req: Request) -> int:
    """Train in this process (recorded as a job), with a progress bar; or only say what the
    run would do (--dry-run)."""
    application = req.application()
    if req.others["dry_run"]:
        plan = application.call("train_dry_run", req.arguments)
        emit(plan, req.as_json, render.train_dry_run)
        return 0
    with _progress(req.arguments["service"], shown=not req.as_json) as on_event:
        done = application.call(req.case, req.arguments, wait=True, on_event=on_event)
    if done["state"] != "succeeded":
        error = done.get("error") or {"kind": "internal", "message": "the job did not finish"}
        raise AppError(error.get("kind", "internal"), error.get("message", ""), error.get("data"))
    emit(done["result"], req.as_json, render.train_summary)
    return 0


@contextlib.contextmanager
def _progress(title: str, *, shown: bool) -> Iterator[Callable[[dict[str, Any]], None] | None]:
    """A progress bar fed by a run's events, shown once the run has started (not before an
    argument error); None when not `shown`."""
    if not shown:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
    )
    task = bar.add_task(title, total=None)
    started: list[bool] = []

    def on_event(event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "run_started":
            bar.start()
            started.append(True)
            bar.update(task, total=event["days"])
        elif kind == "day_started":
            bar.update(task, description=f"{title} {event['day']}")
        elif kind in ("day_done", "day_skipped"):
            bar.advance(task)

    try:
        yield on_event
    finally:
        if started:
            bar.stop()


def _stats(req: Request) -> int:
    """The statistics, and with --html the report written there."""
    application = req.application()
    data = application.call(req.case, req.arguments)
    html: Path | None = req.others["html"]
    if html is not None:
        try:
            html.write_text(application.dataset_stats_html(data), encoding="utf-8")
        except OSError as exc:
            raise AppError(
                "storage", f"cannot write {html}: {exc.strerror or exc}", {"path": str(html)}
            ) from exc
        data = {**data, "html": str(html)}
    emit(data, req.as_json, render.dataset_stats)
    return 0


_CATALOG_ONLY = ("catalog", "workspace")
_WHERE = ("workspace", "out", "catalog")
_BREAKS = "{} when anything differs (each difference is listed)."
#: The commands that run a use case, each generated from its entry in USE_CASES.
COMMANDS = (
    Command(("catalog", "list"), "catalog_list", "daeda catalog list --json", (), _CATALOG_ONLY),
    Command(
        ("catalog", "show"),
        "catalog_describe",
        "daeda catalog show user_activity",
        ("name",),
        _CATALOG_ONLY,
    ),
    Command(
        ("catalog", "plan"),
        "catalog_plan",
        "daeda catalog plan --workspace demo --json",
        notes="Exit code 0 when no contract breaks (added or moved columns, stale days and "
        "untrained services are reported but pass), 9 when a service's contract breaks (a "
        "column that its written days have is removed or changes type).",
    ),
    Command(
        ("service", "schema"),
        "service_schema",
        "daeda service schema feed_ranking",
        ("service",),
        _CATALOG_ONLY,
    ),
    Command(
        ("pipeline", "compile"),
        "pipeline_compile",
        "daeda pipeline compile feed_ranking --format mermaid",
        ("service",),
        _CATALOG_ONLY,
    ),
    Command(
        ("pipeline", "train"),
        "train_start",
        "daeda pipeline train feed_ranking --workspace demo --start 2026-10-02 --end 2026-10-08",
        ("service",),
        (*_WHERE, "batch_rows", "ray_address", "ray_days_in_flight", "dry_run"),
        summary="Train a feature service: one point-in-time-correct parquet day per date, "
        "atomically, in this process (recorded as a job, like pipeline.train's).",
        notes="Days whose manifest still matches are skipped (use --force to "
        "recompute them). With --ray-address the other days run on that Ray cluster, several "
        "at once; each day's manifest records the runner (local or ray), and so does the summary.",
        body=_train,
    ),
    Command(
        ("pipeline", "status"),
        "days_list",
        "daeda pipeline status feed_ranking --workspace demo",
        ("service",),
    ),
    Command(
        ("pipeline", "verify"),
        "days_verify",
        "daeda pipeline verify feed_ranking --workspace demo [--day 2026-10-02]",
        ("service",),
        notes=_BREAKS.format("Exit code 0 when every file matches, 9"),
    ),
    Command(
        ("pipeline", "preview"),
        "day_preview",
        "daeda pipeline preview feed_ranking --day 2026-10-02 --workspace demo",
        ("service",),
        defaults={"limit": 5},
    ),
    Command(
        ("pipeline", "manifest"),
        "day_manifest",
        "daeda pipeline manifest feed_ranking --day 2026-10-02 --workspace demo",
        ("service",),
    ),
    Command(
        ("audit",),
        "day_audit",
        "daeda audit feed_ranking --day 2026-10-02 --sample 200 --workspace demo",
        ("service",),
        notes=_BREAKS.format("Exit code 0 when everything matches, 9"),
    ),
    Command(
        ("dataset", "stats"),
        "dataset_stats",
        "daeda dataset stats feed_ranking --workspace demo --start 2026-10-02 --html report.html",
        ("service",),
        (*_WHERE, "html"),
        body=_stats,
    ),
    Command(("job", "list"), "job_list", "daeda job list --workspace demo", (), ("workspace",)),
    Command(
        ("job", "status"),
        "job_status",
        "daeda job status 3f2a9c1b7e4d --workspace demo",
        ("job_id",),
        ("workspace",),
    ),
    Command(
        ("job", "cancel"),
        "job_cancel",
        "daeda job cancel 3f2a9c1b7e4d --workspace demo",
        ("job_id",),
        ("workspace",),
    ),
)
for _command in COMMANDS:
    _command.register()

#: Which use case each command runs (the generated ones, and those written out below).
USES = {
    **{cmd.path: cmd.case for cmd in COMMANDS},
    ("catalog", "validate"): "catalog_validate",
}

# -- commands written out ---------------------------------------------------------------------------


@_GROUPS["catalog"].command(
    name="validate",
    help=f"{_case('catalog_validate').summary}\n\n"
    "Exit code 0 when valid, 3 when any definition is wrong (messages on stderr), or with "
    "--with-data when the data does not match it (the file and column; for a filter value its "
    "file:line:column).\n\n"
    "Examples:\n\n"
    "  daeda catalog validate feature_views\n\n"
    "  daeda catalog validate --with-data --workspace demo",
)
def catalog_validate(
    directory: Annotated[
        Path | None, Parameter(help="The catalog directory (default: the configured catalog).")
    ] = None,
    /,
    *,
    with_data: Annotated[
        bool,
        Parameter(
            help=f"Also check the data under --workspace (catalog.validate_data). {_case('catalog_validate_data').summary}",
            negative="",
        ),
    ] = False,
    workspace: Workspace = None,
    json: Json = False,
    debug: Debug = False,
) -> int:
    def body() -> int:
        # The directory is the catalog of this run (chosen by the operator, like --catalog).
        application = build_application(workspace if with_data else None, directory)
        result = application.call("catalog_validate", {})
        if result["ok"] and with_data:
            result = {**result, "data": application.call("catalog_validate_data", {})}
        emit(result, json, render.validation)
        if not result["ok"]:
            if json:
                render.validation(result, quiet=True)
            return EXIT_CODES["invalid_catalog"]
        if with_data:
            render.data_checks(result["data"], quiet=json)
            return EXIT_CODES["invalid_catalog"] if result["data"]["problems"] else 0
        return 0

    return run(body, debug, json)


@_GROUPS["demo"].command(name="init")
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
        application = build_application(workspace=directory)
        data = application.demo_init(directory, scale, seed, overwrite)
        emit(data, json, lambda d: render.demo(d, directory))
        return 0

    return run(body, debug, json)


app.command(serve_api, name="serve-api")
app.command(mcp, name="mcp")


def main() -> None:
    """Console-script entry point."""
    if "--json" in sys.argv[1:]:
        json_stdout()
    code = app()
    release_stdout()
    sys.exit(code)
