"""The MCP server: one tool per use case, the catalog files and service schemas as resources.

Built on the SDK's low-level `Server` because the tools' input schemas come verbatim from
`UseCase.input_schema()` (the same JSON schemas the RPC surface publishes), which the decorator
API would re-derive from Python signatures. The server holds no feature logic: a tool call is
handed to `Application.request`, which checks it against that schema once (`ArgumentsError`
lists each violation, which the tool error words).

Tool failures (an `AppError`, a schema violation, an unknown tool, any exception) come back as
tool results with `isError: true`, so an agent can read the message and correct itself; the
session always survives. stdout is the transport, so everything else logs to stderr.

What a client sends is never echoed at length: every value an error or a log line quotes is
clipped to `CLIP` characters, a whole message and a list as `daedalus.app.clip` says.
Paths are confined by the application (symlinks resolved): a tool's `directory` to the
workspace (`Application.confine`), every catalog file to the workspace or the configured catalog
directory (`Application.confine_catalog_file`, before the loader opens it). A catalog file that
resolves elsewhere (a link to /etc/passwd, say) is refused by name, never quoted, and is
neither listed nor read as a resource (`Application.catalog_files`, `catalog_file`).

Two transports: stdio (`run_stdio`, the client that started the process owns it) and
streamable HTTP (`run_http`, `http_app`): with a token every HTTP request needs
`Authorization: Bearer <token>` (401 otherwise), reads included; without one the server binds
to loopback only and refuses the tools that write or start work. On loopback the Host and
Origin headers are checked (421, 403) against DNS rebinding.
"""

from __future__ import annotations

import difflib
import functools
import importlib.metadata
import json
import logging
import os
import traceback
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, unquote

import anyio
import anyio.to_thread
import mcp.types as types
from daedalus.adapters._surface import (
    check_port,
    is_loopback,
    listen,
)
from daedalus.adapters.mcp.http_guard import Guard, loopback_security
from mcp.server import Server, ServerRequestContext
from mcp.server.stdio import stdio_server
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from starlette.types import ASGIApp

from daedalus.app.application import USE_CASES, Application, UseCase
from daedalus.app.arguments import ArgumentsError
from daedalus.app.clip import CLIP, clip, clip_reports, clip_text, clipped
from daedalus.app.errors import AppError
from daedalus.app.guide import guide
from daedalus.app.jsonable import jsonable

__all__ = [
    "CATALOG_URI",
    "CLIP",
    "DEFAULT_HTTP_PORT",
    "SERVICE_URI",
    "TOKEN_ENV",
    "build_server",
    "http_app",
    "is_loopback",
    "run_http",
    "run_stdio",
    "tool_description",
]

log = logging.getLogger(__name__)

CATALOG_URI = "daedalus://catalog/"
SERVICE_URI = "daedalus://services/"
_SCHEMA_SUFFIX = "/schema"

#: The environment variable holding the HTTP bearer token.
TOKEN_ENV = "DAEDA_MCP_TOKEN"
DEFAULT_HTTP_PORT = 8001
#: The largest HTTP request body (a tool call's arguments are a few hundred bytes).
MAX_BODY_BYTES = 1_000_000

_INSTRUCTIONS = """\
Daedalus builds point-in-time-correct training datasets from YAML feature definitions.
Start with catalog_list to learn the service, view and store names, then service_schema or
catalog_describe for details. train_start returns a job at once: poll job_status every few
seconds until its state is succeeded, failed or cancelled. Written days are read with
days_list, day_preview and day_manifest, and checked with day_audit. Resources hold the catalog
YAML files (daedalus://catalog/<file>) and each service's resolved schema
(daedalus://services/<service>/schema)."""

#: What this server quotes of a value: CLIP characters, "…" after a cut one.
_clip = functools.partial(clip, mark="…")


def tool_description(case: UseCase, *, writes_refused: bool = False) -> str:
    """The summary, when to use the tool, and example arguments (a placeholder per required
    parameter for a use case without a written guide)."""
    when, example = guide(case)
    parts = [case.summary]
    if when:
        parts.append(when)
    if case.writes:
        parts.append(
            "This tool writes data or starts work."
            + (
                f" This server has no token ({TOKEN_ENV}), so it refuses it."
                if writes_refused
                else ""
            )
        )
    parts.append(f"Example arguments: {json.dumps(example)}")
    return "\n\n".join(parts)


def _tool(case: UseCase, writes_refused: bool) -> types.Tool:
    return types.Tool(
        name=case.name,
        title=case.method,
        description=tool_description(case, writes_refused=writes_refused),
        input_schema=case.input_schema(),
        annotations=types.ToolAnnotations(
            title=case.method, read_only_hint=not case.writes, open_world_hint=False
        ),
    )


# -- tool results ------------------------------------------------------------------------------


def _success(answer: Any) -> types.CallToolResult:
    # jsonable: timestamps in ISO 8601 with a "T" and NaN as "NaN", as every surface answers.
    structured = jsonable(answer)
    text = json.dumps(structured, indent=2, allow_nan=False)
    # Structured content must be a JSON object on the 2025 protocol versions.
    if not isinstance(structured, dict):
        structured = {"result": structured}
    return types.CallToolResult(
        content=[types.TextContent(text=text)], structured_content=structured
    )


def _failure(
    kind: str, message: str, field: str | None = None, data: Any = None
) -> types.CallToolResult:
    """A tool error: its kind, a clipped message, the field at fault, clipped details."""
    message = clip_text(message)
    field = None if field is None else _clip(field)
    error: dict[str, Any] = {"kind": kind, "message": message}
    if field is not None:
        error["field"] = field
    if data is not None:
        data = clipped(jsonable(data))
        error["data"] = data
    where = f" in field {field!r}" if field else ""
    text = f"error {kind}{where}: {message}"
    if data is not None and data != {"field": field}:
        # The details (located catalog errors, known names) are what an agent fixes things with.
        text += "\n" + json.dumps(data, indent=2)
    return types.CallToolResult(
        content=[types.TextContent(text=text)],
        structured_content={"error": error},
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


def _invalid_arguments(name: str, exc: ArgumentsError) -> types.CallToolResult:
    """Every violation the application found, one per argument and rule, in one tool error."""
    found = [
        {"field": None if v.field is None else _clip(v.field), "message": v.predicate()}
        for v in exc.violations
    ]
    unique = {(e["field"], e["message"]): e for e in found}
    errors = sorted(unique.values(), key=lambda e: (e["field"] or "", e["message"]))
    listed = "; ".join(
        f"{e['field']!r} {e['message']}" if e["field"] else e["message"] for e in errors
    )
    return _failure(
        "invalid_argument",
        f"invalid arguments for {name}: {listed}",
        errors[0]["field"],
        {"errors": errors},
    )


def _internal_failure(name: str, exc: Exception) -> types.CallToolResult:
    # A traceback's lines can quote a client's value (an OSError names the path): clip them.
    lines = traceback.format_exception(exc)
    log.error("tool %s raised:\n%s", name, "".join(_clip(line, 2 * CLIP) for line in lines[-40:]))
    return _failure("internal", f"{type(exc).__name__}: {exc}")


# -- resources ---------------------------------------------------------------------------------


def _service_uri(service: str) -> str:
    return f"{SERVICE_URI}{quote(service, safe='')}{_SCHEMA_SUFFIX}"


def _not_found(uri: str, why: str) -> MCPError:
    return MCPError(
        types.INVALID_PARAMS,
        clip_text(f"unknown resource {_clip(uri)!r}: {why}"),
        {"uri": _clip(uri)},
    )


# -- the server --------------------------------------------------------------------------------

#: Tools whose answers carry error reports (catalog errors, a job's error): those parts are
#: clipped as tool errors are. Other answers are data and are left whole.
_REPORTS_ERRORS = frozenset(
    {"catalog_validate", "train_start", "job_status", "job_list", "job_cancel"}
)


def build_server(application: Application, *, refuse_writes: bool = False) -> Server[Any]:
    """The MCP server for `application`: its use cases as tools, its catalog as resources.

    `refuse_writes`: the tools that write or start work (`UseCase.writes`) answer a tool error
    `unauthorized` (an HTTP server without a token).
    """
    cases = {case.name: case for case in USE_CASES}
    tools = [_tool(case, refuse_writes) for case in USE_CASES]
    catalog_dir = application.settings.catalog_dir

    def run(name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        # On a worker thread: the use case, and the clipping and encoding of its answer.
        try:
            answer = application.request(name, arguments)
        except ArgumentsError as exc:
            return _invalid_arguments(name, exc)
        except AppError as exc:
            log.info("tool %s failed: %s: %s", name, exc.kind, clip_text(exc.message))
            return _failure(exc.kind, exc.message, _field_of(exc, arguments), exc.data)
        except Exception as exc:  # a bug must not end the session: report it as the tool's error
            return _internal_failure(name, exc)
        return _success(clip_reports(answer) if name in _REPORTS_ERRORS else answer)

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
            close = difflib.get_close_matches(name[: 2 * CLIP], list(cases), n=1)
            hint = f" — did you mean {close[0]}?" if close else ""
            return _failure(
                "not_found", f"unknown tool {_clip(name)!r}{hint}", None, {"known": [*cases]}
            )
        if refuse_writes and cases[name].writes:
            return _failure(
                "unauthorized",
                f"{name} writes data or starts work, which this server refuses: it was started "
                f"without a token (serve with --token or {TOKEN_ENV}, and send "
                "'Authorization: Bearer <token>')",
            )
        return await in_thread(run, name, arguments)

    async def list_resources(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        # Listed afresh on every request: a YAML file added or removed shows without a restart.
        resources = [
            types.Resource(
                name=file["name"],
                title=f"Catalog file {file['name']}",
                uri=CATALOG_URI + quote(file["name"]),
                description=f"A feature catalog definition file (YAML) in {catalog_dir}.",
                mime_type="application/yaml",
                size=file["size"],
            )
            for file in await in_thread(application.catalog_files)
        ]
        try:
            listing = await in_thread(application.call, "catalog_list", {})
        except AppError as exc:
            # An invalid catalog has no services to list, but its files are still readable
            # (that is how an agent fixes it).
            log.warning("services not listed: %s", clip_text(exc.message))
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
            try:
                # Only the listed files: a crafted name ("../x", "a/b") never leaves the catalog.
                text = await in_thread(application.catalog_file, file_name)
            except AppError as exc:
                raise _not_found(uri, exc.message) from exc
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
                    types.INTERNAL_ERROR,
                    clip_text(f"{exc.kind}: {exc.message}"),
                    clipped(jsonable(exc.data)),
                ) from exc
            text = json.dumps(jsonable(answer), indent=2)
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
    corrupt the protocol stream. The client that started the process owns it: no token.
    """
    _exit_promptly()
    server = build_server(application)

    async def serve() -> None:
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())

    anyio.run(serve)


# -- streamable HTTP ---------------------------------------------------------------------------


def http_app(
    application: Application,
    *,
    host: str = "127.0.0.1",
    token: str | None = None,
    path: str = "/mcp",
) -> ASGIApp:
    """The streamable HTTP app (at `path`) of `application`, for a server bound to `host`.

    With a `token`, every request needs `Authorization: Bearer <token>` (reads too: the
    catalog and the trained rows are not public). Without one, the tools that write or start
    work are refused, and `host` must be a loopback address (ValueError otherwise).
    """
    token = token or None  # an empty token would let an empty `Bearer ` header through
    if token is None and not is_loopback(host):
        raise ValueError(
            f"refusing to serve MCP on {_clip(host)} without a token: set {TOKEN_ENV} (or "
            "--token), or listen on 127.0.0.1"
        )
    security = (
        loopback_security(host)
        if is_loopback(host)
        else TransportSecuritySettings(enable_dns_rebinding_protection=False)
    )
    app = build_server(application, refuse_writes=token is None).streamable_http_app(
        streamable_http_path=path,
        host=host,
        transport_security=security,
        max_request_body_size=MAX_BODY_BYTES,
    )
    return Guard(app, token, security if security.enable_dns_rebinding_protection else None)


def run_http(
    application: Application,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_HTTP_PORT,
    token: str | None = None,
    path: str = "/mcp",
) -> None:
    """Serve `application` over streamable HTTP at http://host:port/path until interrupted.

    Raises ValueError (before binding anything) for a non-loopback `host` without a `token`;
    AppError invalid_argument for a port outside 0-65535, conflict when host:port is in use,
    forbidden when binding is not permitted (the port is bound as JSON-RPC binds its own).
    """
    import uvicorn  # only this transport needs it

    _exit_promptly()
    app = http_app(application, host=host, token=token, path=path)
    check_port(port)
    bare = host.strip("[]")
    sock = listen(bare, port)
    bound = int(sock.getsockname()[1])
    shown = f"[{bare}]" if ":" in bare else bare
    log.info(
        "serving MCP on http://%s:%d%s (%s)",
        shown,
        bound,
        path,
        "bearer token required" if token else "no token: tools that write are refused",
    )
    config = uvicorn.Config(app, host=bare, port=bound, log_level="warning")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
