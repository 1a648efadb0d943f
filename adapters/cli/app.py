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
