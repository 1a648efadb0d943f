"""The MCP server: one tool per use case, the catalog files and service schemas as resources.

Built on the SDK's low-level `Server` because the tools' input schemas come verbatim from
`UseCase.input_schema()` (the same JSON schemas the RPC surface publishes), which the decorator
API would re-derive from Python signatures. The server holds no feature logic: a tool call is
checked against its schema and handed to `Application.call`.

Tool failures (an `AppError`, a schema violation, an unknown tool, any exception) come back as
tool results with `isError: true`, so an agent can read the message and correct itself; the
session always survives. stdout is the transport, so everything else logs to stderr.

What a client sends is never echoed at length: every value an error or a log line quotes is
clipped to `CLIP` characters, a whole message to `MAX_MESSAGE`, a list to `MAX_ITEMS` items.
Paths are confined by the application (symlinks resolved): a tool's `directory` to the
workspace (`Application.confine`), every catalog file to the workspace or the configured catalog
directory (`Application.confine_catalog_file`, before the loader opens it). A catalog file that
resolves elsewhere (a link to /etc/passwd, say) is refused by name, never quoted, and is
neither listed nor read as a resource.

Two transports: stdio (`run_stdio`, the client that started the process owns it) and
streamable HTTP (`run_http`, `http_app`): with a token every HTTP request needs
`Authorization: Bearer <token>` (401 otherwise), reads included; without one the server binds
to loopback only and refuses the tools that write or start work. On loopback the Host and
Origin headers are checked (421, 403) against DNS rebinding.
"""

from __future__ import annotations

import difflib
import hmac
import importlib.metadata
import ipaddress
import json
import logging
import os
import re
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import anyio
import anyio.to_thread
import mcp.types as types
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from mcp.server import Server, ServerRequestContext
from mcp.server.stdio import stdio_server
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from daedalus.app.application import USE_CASES, Application, UseCase
from daedalus.app.errors import AppError
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
_YAML_SUFFIXES = (".yaml", ".yml")  # what the catalog loader reads

#: The most characters of any one value (an argument, a name, a path, a quoted run of a
#: message) that an error or a log line quotes.
CLIP = 200
#: The most characters of one message.
MAX_MESSAGE = 1000
#: The most items of one list inside an error's details.
MAX_ITEMS = 50
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
        "to get every error with its file, line and column. Without arguments it checks the "
        "configured catalog; `directory` (relative to the workspace) checks another one.",
        {},
    ),
    "catalog_validate_data": (
        "Use it after the YAML files or the data change, before training: it checks every "
        "source file against its declared schema and every filter value against the values "
        "that occur, without computing anything.",
        {},
    ),
    "catalog_plan": (
        "Use it after editing the catalog, before training, to see what the edit does to each "
        "service: its contract diff (a removed or retyped column is a break) and which written "
        "days become stale.",
        {},
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
    "dataset_stats": (
        "Use it after training to sanity-check a service's features: null counts, ranges and "
        "distinct values per feature, with warnings for features null or constant everywhere.",
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


def tool_description(case: UseCase, *, writes_refused: bool = False) -> str:
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


# -- clipping ----------------------------------------------------------------------------------

#: A quoted run (closed or not) or a word longer than CLIP characters.
_LONG_RUN = re.compile(rf"'[^']{{{CLIP},}}'?|\"[^\"]{{{CLIP},}}\"?|[^\s'\"]{{{CLIP + 1},}}")


def _clip(text: str, width: int = CLIP) -> str:
    return text if len(text) <= width else text[:width] + "…"


def _clip_text(text: str) -> str:
    """`text` with every quoted run or word over CLIP characters clipped, and at most
    MAX_MESSAGE characters in all: what an error message may quote of a client's value."""
    return _clip(_LONG_RUN.sub(lambda m: _clip(m.group()), text), MAX_MESSAGE)


def _clipped(value: Any, max_items: int | None = MAX_ITEMS) -> Any:
    """A JSON value with every string clipped (`_clip_text`) and every list or object cut to
    `max_items` entries (a last entry says how many more there were)."""
    if isinstance(value, str):
        return _clip_text(value)
    if isinstance(value, dict):
        items = list(value.items())
        kept = items if max_items is None else items[:max_items]
        out = {_clip(str(k)): _clipped(v, max_items) for k, v in kept}
        if len(kept) < len(items):
            out["…"] = f"{len(items) - len(kept)} more"
        return out
    if isinstance(value, list):
        kept_list = value if max_items is None else value[:max_items]
        out_list = [_clipped(v, max_items) for v in kept_list]
        if len(kept_list) < len(value):
            out_list.append(f"… {len(value) - len(kept_list)} more")
        return out_list
    return value


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
    message = _clip_text(message)
    field = None if field is None else _clip(field)
    error: dict[str, Any] = {"kind": kind, "message": message}
    if field is not None:
        error["field"] = field
    if data is not None:
        data = _clipped(jsonable(data))
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


def _describe(error: ValidationError) -> str:
    """A schema violation in a few words; jsonschema's own message repeats the (maybe huge)
    value."""
    rule, expected = str(error.validator), error.validator_value
    messages = {
        "type": f"is not of type {expected!r}",
        "format": f"is not a {expected!r}",
        "pattern": f"does not match {expected!r}",
        "enum": f"is not one of {expected!r}",
        "minLength": f"is shorter than {expected} character(s)",
        "maxLength": f"is longer than {expected} characters",
        "minimum": f"is less than the minimum of {expected}",
        "maximum": f"is more than the maximum of {expected}",
    }
    return messages.get(rule) or _clip_text(error.message)


def _plain_text(value: str) -> bool:
    """No NUL and no lone surrogate: no name, day or path holds one, and paths, SQLite and
    UTF-8 encoders fail on them deep inside a use case."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
                    found.append(
                        {"field": _clip(name), "message": f"is not an argument (known: {known})"}
                    )
        else:
            field = _clip(str(err.path[0])) if err.path else None
            found.append({"field": field, "message": _describe(err)})
    for name, value in arguments.items():
        if name in properties and isinstance(value, str) and not _plain_text(value):
            found.append(
                {"field": name, "message": "must be text without NUL or lone surrogate characters"}
            )
    unique = {(e["field"], e["message"]): e for e in found}  # `required` repeats per name
    return sorted(unique.values(), key=lambda e: (e["field"] or "", e["message"] or ""))


def _internal_failure(name: str, exc: Exception) -> types.CallToolResult:
    # A traceback's lines can quote a client's value (an OSError names the path): clip them.
    lines = traceback.format_exception(exc)
    log.error("tool %s raised:\n%s", name, "".join(_clip(line, 2 * CLIP) for line in lines[-40:]))
    return _failure("internal", f"{type(exc).__name__}: {exc}")


# -- resources ---------------------------------------------------------------------------------


def _catalog_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix in _YAML_SUFFIXES and p.is_file())


def _service_uri(service: str) -> str:
    return f"{SERVICE_URI}{quote(service, safe='')}{_SCHEMA_SUFFIX}"


def _not_found(uri: str, why: str) -> MCPError:
    return MCPError(
        types.INVALID_PARAMS,
        _clip_text(f"unknown resource {_clip(uri)!r}: {why}"),
        {"uri": _clip(uri)},
    )


# -- the server --------------------------------------------------------------------------------

#: Tools whose answers carry error reports (catalog errors, a job's error): those parts are
#: clipped as tool errors are. Other answers are data and are left whole.
_REPORTS_ERRORS = frozenset(
    {"catalog_validate", "train_start", "job_status", "job_list", "job_cancel"}
)
_OUTSIDE = (
    "it resolves outside the workspace and the catalog directory (a symlink?); it is not read"
)


def build_server(application: Application, *, refuse_writes: bool = False) -> Server[Any]:
    """The MCP server for `application`: its use cases as tools, its catalog as resources.

    `refuse_writes`: the tools that write or start work (`UseCase.writes`) answer a tool error
    `unauthorized` (an HTTP server without a token).
    """
    cases = {case.name: case for case in USE_CASES}
    tools = [_tool(case, refuse_writes) for case in USE_CASES]
    validators = {
        name: Draft202012Validator(
            case.input_schema(), format_checker=Draft202012Validator.FORMAT_CHECKER
        )
        for name, case in cases.items()
    }
    catalog_dir = application.settings.catalog_dir

    def served(path: Path) -> Path | None:
        """`path` resolved (symlinks too) if the application lets a catalog file be read from
        there (the workspace or the configured catalog directory), else None."""
        try:
            real = path.resolve(strict=True)
            application.confine_catalog_file(path, real)
        except (AppError, OSError, RuntimeError):
            return None
        return real

    def reported(name: str, answer: Any) -> Any:
        """An answer's error reports (a job's error, catalog errors) clipped as tool errors
        are; the rest of an answer is data and is left whole."""
        if name not in _REPORTS_ERRORS or not isinstance(answer, dict):
            return answer

        def clean(record: dict[str, Any]) -> dict[str, Any]:
            out = dict(record)
            for key in ("error", "errors"):
                if out.get(key) is not None:
                    out[key] = _clipped(jsonable(out[key]), None)
            return out

        if isinstance(answer.get("jobs"), list):
            return {
                **answer,
                "jobs": [clean(j) if isinstance(j, dict) else j for j in answer["jobs"]],
            }
        return clean(answer)

    def run(name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        # On a worker thread: the use case, and the clipping and encoding of its answer.
        try:
            answer = application.call(name, arguments)
        except AppError as exc:
            log.info("tool %s failed: %s: %s", name, exc.kind, _clip_text(exc.message))
            return _failure(exc.kind, exc.message, _field_of(exc, arguments), exc.data)
        except Exception as exc:  # a bug must not end the session: report it as the tool's error
            return _internal_failure(name, exc)
        return _success(reported(name, answer))

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
        return await in_thread(run, name, arguments)

    def served_files() -> list[tuple[Path, Path | None]]:
        """The catalog's YAML files, each with its confined (resolved) path, None if it
        resolves outside the workspace and the catalog directory."""
        return [(path, served(path)) for path in _catalog_files(catalog_dir)]

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
                size=resolved.stat().st_size,
            )
            for path, resolved in await in_thread(served_files)
            if resolved is not None
        ]
        try:
            listing = await in_thread(application.call, "catalog_list", {})
        except AppError as exc:
            # An invalid catalog has no services to list, but its files are still readable
            # (that is how an agent fixes it).
            log.warning("services not listed: %s", _clip_text(exc.message))
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

    def read_catalog_file(uri: str, file_name: str) -> str:
        # Only the listed files: a crafted name ("../x", "a/b") never leaves the catalog.
        found = next(((p, r) for p, r in served_files() if p.name == file_name), None)
        if found is None:
            raise _not_found(uri, f"no catalog file {_clip(file_name)!r} in {catalog_dir}")
        if found[1] is None:
            raise _not_found(uri, f"catalog file {_clip(file_name)!r}: {_OUTSIDE}")
        # The resolved path, read as bytes: the text is exactly the file's.
        return found[1].read_bytes().decode("utf-8")

    async def read_resource(
        ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        uri = str(params.uri)
        if uri.startswith(CATALOG_URI):
            file_name = unquote(uri.removeprefix(CATALOG_URI))
            text = await in_thread(read_catalog_file, uri, file_name)
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
                    _clip_text(f"{exc.kind}: {exc.message}"),
                    _clipped(jsonable(exc.data)),
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


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses; a host name could resolve anywhere."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _loopback_security(host: str) -> TransportSecuritySettings:
    """Host and Origin must name a loopback address (DNS rebinding: a web page's script could
    otherwise reach the port under a name of its own)."""
    bare = host.strip("[]")
    named = f"[{bare}]" if ":" in bare else bare
    hosts = sorted({"127.0.0.1", "localhost", "[::1]", named})
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[f"{h}:*" for h in hosts],
        allowed_origins=[f"http://{h}:*" for h in hosts],
    )


def _auth_problem(authorization: str | None, token: str) -> str | None:
    """Why `authorization` does not carry `token` as a bearer token, else None."""
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials:
        return "this server needs an 'Authorization: Bearer <token>' header"
    # Constant time: the answer's timing does not tell how much of the token matched.
    if not hmac.compare_digest(
        credentials.encode("utf-8", "surrogateescape"), token.encode("utf-8", "surrogateescape")
    ):
        return "invalid token"
    return None


class _Guard:
    """ASGI middleware in front of the SDK's app: Host/Origin (loopback: 421/403), then the
    bearer token (401) of every HTTP request."""

    def __init__(self, app: ASGIApp, token: str | None, security: TransportSecuritySettings | None):
        self.app = app
        self.token = token
        self.security = None if security is None else TransportSecurityMiddleware(security)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            request = Request(scope)
            refusal = None
            if self.security is not None:
                refusal = await self.security.validate_request(request, is_post=False)
            if refusal is None and self.token is not None:
                problem = _auth_problem(request.headers.get("authorization"), self.token)
                if problem is not None:
                    challenge = 'Bearer realm="daedalus"'
                    if problem == "invalid token":
                        challenge += ', error="invalid_token"'
                    refusal = JSONResponse(
                        {"error": "unauthorized", "message": problem},
                        status_code=401,
                        headers={"WWW-Authenticate": challenge},
                    )
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


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
        _loopback_security(host)
        if is_loopback(host)
        else TransportSecuritySettings(enable_dns_rebinding_protection=False)
    )
    app = build_server(application, refuse_writes=token is None).streamable_http_app(
        streamable_http_path=path,
        host=host,
        transport_security=security,
        max_request_body_size=MAX_BODY_BYTES,
    )
    return _Guard(app, token, security if security.enable_dns_rebinding_protection else None)


def run_http(
    application: Application,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_HTTP_PORT,
    token: str | None = None,
    path: str = "/mcp",
) -> None:
    """Serve `application` over streamable HTTP at http://host:port/path until interrupted.

    Raises ValueError (before binding anything) for a non-loopback `host` without a `token`.
    """
    import uvicorn  # only this transport needs it

    _exit_promptly()
    app = http_app(application, host=host, token=token, path=path)
    bare = host.strip("[]")
    shown = f"[{bare}]" if ":" in bare else bare
    log.info(
        "serving MCP on http://%s:%d%s (%s)",
        shown,
        port,
        path,
        "bearer token required" if token else "no token: tools that write are refused",
    )
    uvicorn.run(app, host=bare, port=port, log_level="warning")
