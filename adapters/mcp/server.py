"""The MCP server: one tool per use case, the catalog files and service schemas as resources.

Built on the SDK's low-level `Server` because the tools' input schemas come verbatim from
`UseCase.input_schema()` (the same JSON schemas the RPC surface publishes), which the decorator
API would re-derive from Python signatures. The server holds no feature logic: a tool call is
checked against its schema and handed to `Application.call`.

Tool failures (an `AppError`, a schema violation, an unknown tool, any exception) come back as
tool results with `isError: true`, so an agent can read the message and correct itself; the
session always survives. stdout is the transport, so everything else logs to stderr.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import anyio
import anyio.to_thread
import mcp.types as types
from jsonschema import Draft202012Validator
from mcp.server import Server, ServerRequestContext
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError

from daedalus.app.application import USE_CASES, Application, UseCase
from daedalus.app.errors import AppError

__all__ = [
    "CATALOG_URI",
    "SERVICE_URI",
    "build_server",
    "run_http",
    "run_stdio",
    "tool_description",
]

log = logging.getLogger(__name__)

CATALOG_URI = "daedalus://catalog/"
SERVICE_URI = "daedalus://services/"
_SCHEMA_SUFFIX = "/schema"
_YAML_SUFFIXES = (".yaml", ".yml")  # what the catalog loader reads

_INSTRUCTIONS = """\
Daedalus builds point-in-time-correct training datasets from YAML feature definitions.
Start with catalog_list to learn the service, view and store names, then service_schema or
catalog_describe for details. train_start returns a job at once: poll job_status every few
seconds until its state is succeeded, failed or cancelled. Written days are read with
days_list, day_preview and day_manifest, and checked with day_audit. Resources hold the catalog
YAML files (daedalus://catalog/<file>) and each service's resolved schema
(daedalus://services/<service>/schema)."""

# When an agent should reach for each tool, and arguments it could send (the demo's names and
# dates): the schema says what is allowed, this says what is useful.
_GUIDE: dict[str, tuple[str, dict[str, Any]]] = {
    "catalog_list": (
        "Use it first, to learn which services, views, entities and embedding stores exist "
        "before naming one in another tool.",
        {},
    ),
    "catalog_describe": (
        "Use it to read one definition (source, features, windows, types) once catalog_list "
        "gave you its name.",
        {"name": "user_activity"},
    ),
    "catalog_validate": (
        "Use it after the YAML files change, or when another tool fails with invalid_catalog, "
        "to get every error with its file, line and column.",
        {"directory": "feature_views"},
    ),
    "service_schema": (
        "Use it to learn the exact columns and types a service's training days will have "
        "(its contract) before training or reading them.",
        {"service": "feed_ranking"},
    ),
    "pipeline_compile": (
        "Use it to explain how a service is computed (sources, point-in-time joins, windows, "
        "embedding lookups) without running anything.",
        {"service": "feed_ranking", "format": "mermaid"},
    ),
    "train_start": (
        "Use it to write a service's training days for a date range. It returns a job at once; "
        "poll job_status until the state is succeeded, failed or cancelled. Days that are "
        "already current are skipped unless force is true.",
        {"service": "feed_ranking", "start": "2026-10-02", "end": "2026-10-04", "engine": "duckdb"},
    ),
    "train_dry_run": (
        "Use it before train_start to see what a run would do: which days it would compute or "
        "skip and why (a changed input, definition, contract or store), and its batches. It "
        "checks the inputs as a run does and writes nothing.",
        {"service": "feed_ranking", "start": "2026-10-02", "end": "2026-10-04"},
    ),
    "days_verify": (
        "Use it to check written days against their manifests (every part file's size, sha256 "
        "and rows); ok false lists each difference.",
        {"service": "feed_ranking", "day": "2026-10-02"},
    ),
    "job_status": (
        "Use it to follow a job from train_start: poll every few seconds until the state is "
        "succeeded (the result lists the days written), failed (the error says why) or cancelled.",
        {"job_id": "<the id train_start returned>"},
    ),
    "job_list": (
        "Use it to find a job id you no longer have, or to see what ran recently.",
        {"limit": 5},
    ),
    "job_cancel": (
        "Use it to stop a queued or running training job; days already published stay, no "
        "partial day is left.",
        {"job_id": "<the id train_start returned>"},
    ),
    "days_list": (
        "Use it to see which days of a service are written and whether each is still current "
        "(the definitions and inputs it was made from are unchanged).",
        {"service": "feed_ranking"},
    ),
    "day_manifest": (
        "Use it to see what made a written day: rows, files, hashes, engine, embedding store "
        "versions and timings.",
        {"service": "feed_ranking", "day": "2026-10-02"},
    ),
    "day_preview": (
        "Use it to look at actual rows of a written day.",
        {"service": "feed_ranking", "day": "2026-10-02", "limit": 5},
    ),
    "day_audit": (
        "Use it to check a written day is point-in-time correct: sampled rows are recomputed "
        "by brute force, and every row is checked against the spine (labels, missing, extra or "
        "duplicated rows); ok true means no difference was found.",
        {"service": "feed_ranking", "day": "2026-10-02", "sample": 50},
    ),
}


def tool_description(case: UseCase) -> str:
    """The summary, when to use the tool, and example arguments (a placeholder per required
    parameter for a use case without a written guide)."""
    when, example = _GUIDE.get(
        case.name,
        ("", {p.name: f"<{p.name}>" for p in case.params if p.required}),
    )
    parts = [case.summary]
    if when:
        parts.append(when)
    if case.writes:
        parts.append("This tool writes data or starts work.")
    parts.append(f"Example arguments: {json.dumps(example)}")
    return "\n\n".join(parts)


def _tool(case: UseCase) -> types.Tool:
    return types.Tool(
        name=case.name,
        title=case.method,
        description=tool_description(case),
        input_schema=case.input_schema(),
        annotations=types.ToolAnnotations(
            title=case.method, read_only_hint=not case.writes, open_world_hint=False
        ),
    )


# -- tool results ------------------------------------------------------------------------------


def _success(answer: Any) -> types.CallToolResult:
    text = json.dumps(answer, indent=2, default=str)
    # Structured content must be a JSON object on the 2025 protocol versions; the round trip
    # through text also turns dates and paths into the strings the text shows.
    structured = json.loads(text)
    if not isinstance(structured, dict):
        structured = {"result": structured}
    return types.CallToolResult(
        content=[types.TextContent(text=text)], structured_content=structured
    )


def _failure(
    kind: str, message: str, field: str | None = None, data: Any = None
) -> types.CallToolResult:
    error: dict[str, Any] = {"kind": kind, "message": message}
    if field is not None:
        error["field"] = field
    if data is not None:
        error["data"] = data
    where = f" in field {field!r}" if field else ""
    text = f"error {kind}{where}: {message}"
    if data is not None and data != {"field": field}:
        # The details (located catalog errors, known names) are what an agent fixes things with.
        text += "\n" + json.dumps(data, indent=2, default=str)
    return types.CallToolResult(
        content=[types.TextContent(text=text)],
        structured_content=json.loads(json.dumps({"error": error}, default=str)),
        is_error=True,
    )


def _field_of(exc: AppError, arguments: dict[str, Any]) -> str | None:
    """The argument at fault: named by the error, or else the one whose value it names (a
    not_found error carries the unknown value, e.g. {"name": "feed_rankin"})."""
    data = exc.data if isinstance(exc.data, dict) else {}
    if isinstance(data.get("field"), str):
        return data["field"]
    named = [v for v in data.values() if isinstance(v, str)]
    return next((arg for arg, value in arguments.items() if value in named), None)


def _schema_errors(
    validator: Draft202012Validator, arguments: dict[str, Any]
) -> list[dict[str, str | None]]:
    """Every schema violation as {field, message}, one per argument at fault."""
    properties = validator.schema.get("properties", {})
    found: list[dict[str, str | None]] = []
    for err in validator.iter_errors(arguments):
        if err.validator == "required":
            # One error per missing name, but it names it only in prose: recompute.
            for name in err.validator_value:
                if name not in arguments:
                    found.append({"field": name, "message": "is required"})
        elif err.validator == "additionalProperties":
            for name in arguments:
                if name not in properties:
                    known = ", ".join(properties) or "none"
                    found.append({"field": name, "message": f"is not an argument (known: {known})"})
        else:
            field = str(err.path[0]) if err.path else None
            found.append({"field": field, "message": err.message})
    unique = {(e["field"], e["message"]): e for e in found}  # `required` repeats per name
    return sorted(unique.values(), key=lambda e: (e["field"] or "", e["message"] or ""))


# -- resources ---------------------------------------------------------------------------------


def _catalog_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix in _YAML_SUFFIXES and p.is_file())


def _service_uri(service: str) -> str:
    return f"{SERVICE_URI}{quote(service, safe='')}{_SCHEMA_SUFFIX}"


def _not_found(uri: str, why: str) -> MCPError:
    return MCPError(types.INVALID_PARAMS, f"unknown resource {uri!r}: {why}", {"uri": uri})


# -- the server --------------------------------------------------------------------------------


def build_server(application: Application) -> Server[Any]:
    """The MCP server for `application`: its use cases as tools, its catalog as resources."""
    cases = {case.name: case for case in USE_CASES}
    tools = [_tool(case) for case in USE_CASES]
    validators = {
        name: Draft202012Validator(
            case.input_schema(), format_checker=Draft202012Validator.FORMAT_CHECKER
        )
        for name, case in cases.items()
    }
    catalog_dir = application.settings.catalog_dir

    async def in_thread(function: Callable[..., Any], *args: Any) -> Any:
        # Use cases block (I/O, compute, catalog loads): keep the event loop answering.
        return await anyio.to_thread.run_sync(function, *args)

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools)

    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        name, arguments = params.name, dict(params.arguments or {})
        if name not in cases:
            close = difflib.get_close_matches(name, list(cases), n=1)
            hint = f" — did you mean {close[0]}?" if close else ""
            return _failure("not_found", f"unknown tool {name!r}{hint}", None, {"known": [*cases]})
        errors = _schema_errors(validators[name], arguments)
        if errors:
            listed = "; ".join(
                f"{e['field']!r} {e['message']}" if e["field"] else str(e["message"])
                for e in errors
            )
            return _failure(
                "invalid_argument",
                f"invalid arguments for {name}: {listed}",
                errors[0]["field"],
                {"errors": errors},
            )
        try:
            answer = await in_thread(application.call, name, arguments)
        except AppError as exc:
            log.info("tool %s failed: %s: %s", name, exc.kind, exc.message)
            return _failure(exc.kind, exc.message, _field_of(exc, arguments), exc.data)
        except Exception as exc:  # a bug must not end the session: report it as the tool's error
            log.exception("tool %s raised", name)
            return _failure("internal", f"{type(exc).__name__}: {exc}")
        return _success(answer)

    async def list_resources(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        # Listed afresh on every request: a YAML file added or removed shows without a restart.
        resources = [
            types.Resource(
                name=path.name,
                title=f"Catalog file {path.name}",
                uri=CATALOG_URI + quote(path.name),
                description=f"A feature catalog definition file (YAML) in {catalog_dir}.",
                mime_type="application/yaml",
                size=path.stat().st_size,
            )
            for path in _catalog_files(catalog_dir)
        ]
        try:
            listing = await in_thread(application.call, "catalog_list", {})
        except AppError as exc:
            # An invalid catalog has no services to list, but its files are still readable
            # (that is how an agent fixes it).
            log.warning("services not listed: %s", exc.message)
            listing = {"services": []}
        for service in listing["services"]:
            resources.append(
                types.Resource(
                    name=f"{service['name']} schema",
                    title=f"Resolved schema of {service['name']}",
                    uri=_service_uri(service["name"]),
                    description=(
                        f"The column-level contract of service {service['name']}"
                        + (f": {service['description']}" if service.get("description") else ".")
                    ),
                    mime_type="application/json",
                )
            )
        return types.ListResourcesResult(resources=resources)

    async def list_resource_templates(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(
            resource_templates=[
                types.ResourceTemplate(
                    name="catalog file",
                    uri_template=CATALOG_URI + "{file}",
                    description="A YAML file of the feature catalog, by file name.",
                    mime_type="application/yaml",
                ),
                types.ResourceTemplate(
                    name="service schema",
                    uri_template=SERVICE_URI + "{service}" + _SCHEMA_SUFFIX,
                    description="The resolved schema (column-level contract) of a service.",
                    mime_type="application/json",
                ),
            ]
        )

    async def read_resource(
        ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        uri = str(params.uri)
        if uri.startswith(CATALOG_URI):
            file_name = unquote(uri.removeprefix(CATALOG_URI))
            # Only the listed files: a crafted name ("../x", "a/b") never leaves the catalog.
            path = next((p for p in _catalog_files(catalog_dir) if p.name == file_name), None)
            if path is None:
                raise _not_found(uri, f"no catalog file {file_name!r} in {catalog_dir}")
            text = path.read_bytes().decode("utf-8")  # bytes: the text is exactly the file's
            contents = types.TextResourceContents(uri=uri, mime_type="application/yaml", text=text)
            return types.ReadResourceResult(contents=[contents])
        if uri.startswith(SERVICE_URI) and uri.endswith(_SCHEMA_SUFFIX):
            service = unquote(uri.removeprefix(SERVICE_URI).removesuffix(_SCHEMA_SUFFIX))
            try:
                answer = await in_thread(application.call, "service_schema", {"service": service})
            except AppError as exc:
                if exc.kind == "not_found":
                    raise _not_found(uri, exc.message) from exc
                raise MCPError(
                    types.INTERNAL_ERROR, f"{exc.kind}: {exc.message}", exc.data
                ) from exc
            text = json.dumps(answer, indent=2, default=str)
            contents = types.TextResourceContents(uri=uri, mime_type="application/json", text=text)
            return types.ReadResourceResult(contents=[contents])
        raise _not_found(uri, f"expected {CATALOG_URI}<file> or {SERVICE_URI}<service>/schema")

    return Server(
        "daedalus",
        version=_version(),
        title="Daedalus feature platform",
        instructions=_INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_resource_templates,
        on_read_resource=read_resource,
    )


def _version() -> str:
    try:
        return importlib.metadata.version("daedalus-features")
    except importlib.metadata.PackageNotFoundError:
        return "0"


def _exit_promptly() -> None:
    """Let a Ray started later in this process (by the enricher) stop in well under a second.

    An MCP client closes stdin and gives the server about 2 s before SIGTERM (the SDK's
    `stdio_client` does); `ray.shutdown()` at exit otherwise waits up to 5 s flushing task
    events, which only Ray's dashboard reads (the enricher runs without one). An explicit
    setting in the environment wins.
    """
    os.environ.setdefault("RAY_task_events_shutdown_flush_timeout_ms", "500")


def run_stdio(application: Application) -> None:
    """Serve `application` over stdin/stdout until the client closes the connection.

    While serving, the SDK points fd 1 at stderr, so stray prints (Ray's, a library's) cannot
    corrupt the protocol stream.
    """
    _exit_promptly()
    server = build_server(application)

    async def serve() -> None:
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())

    anyio.run(serve)


def run_http(
    application: Application, host: str = "127.0.0.1", port: int = 8765, path: str = "/mcp"
) -> None:
    """Serve `application` over streamable HTTP at http://host:port/path.

    There is no authentication: on localhost the SDK only adds DNS-rebinding protection, and
    any client that reaches the port can start training. Bind to a loopback address.
    """
    import uvicorn  # only this surface needs it

    app = build_server(application).streamable_http_app(streamable_http_path=path, host=host)
    log.info("serving MCP on http://%s:%d%s", host, port, path)
    uvicorn.run(app, host=host, port=port, log_level="warning")
