"""JSON-RPC 2.0 over HTTP (Starlette + jsonrpcserver): every use case a method, OpenRPC discovery.

Routes: `POST /rpc` (one request or a batch) and `GET /health`. Each entry of USE_CASES is a
method named by its `UseCase.method` (`catalog.list`, `pipeline.train`, ...), and `rpc.discover`
returns the OpenRPC 1.2.6 document generated from the same table (`openrpc_document()`).

Params are an object (by name) or an array (by position, in the order `rpc.discover` lists
them). They are checked against the use case's JSON schema (`UseCase.input_schema()`) before
the use case runs; every invalid-params error names the field at fault in `error.data.field`.

Methods of use cases that write or start work (`writes=True`: `pipeline.train`, `job.cancel`)
need `Authorization: Bearer <token>`; a server started without a token refuses them all.
JSON-RPC errors are sent with HTTP 200; only an oversized body changes the status (413). A
notification (no `id`) gets no answer, and a body of notifications only gets HTTP 204.

Error codes (`error.data.kind` is always set; for an AppError, `error.data` is
`{"kind": kind, **AppError.data}`, a list of details going under `errors`):

    code    meaning                                      error.data
    ------  -------------------------------------------  ------------------------------------
    -32700  parse error: the body is not JSON            kind parse_error, reason
    -32600  invalid request: not an object or array,     kind invalid_request, reason
            jsonrpc not "2.0", method not a string, bad
            id, unknown member, empty batch, batch over
            100 requests;
            body over max_body_bytes (HTTP 413)          kind invalid_request, limit
    -32601  method not found                             kind method_not_found, method
    -32602  invalid params: not an object/array, too     kind invalid_argument, field
            many positional, unknown, missing, failing
            the schema, a string with NUL or a lone
            surrogate; AppError invalid_argument
    -32603  internal error (never a traceback);          kind internal
            AppError internal
    -32000  AppError of any other kind                   kind, AppError.data
    -32001  unauthorized (write method without a valid   kind unauthorized
            token); AppError forbidden (a path outside   kind forbidden, field
            the workspace)
    -32003  AppError invalid_catalog                     kind invalid_catalog, errors
    -32004  AppError not_found                           kind not_found, AppError.data
    -32006  AppError invalid_input                       kind invalid_input, AppError.data
    -32009  AppError conflict                            kind conflict, AppError.data
    -32010  AppError cancelled                           kind cancelled, AppError.data
    -32011  AppError storage (a filesystem fault)        kind storage, AppError.data

Each request logs one INFO line on `daedalus.adapters.jsonrpc.server`: the method names, the
HTTP status and the duration; never a body or a param.
"""

from __future__ import annotations

import asyncio
import copy
import difflib
import hmac
import ipaddress
import json
import logging
import time
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from daedalus import __version__
from daedalus.app.application import USE_CASES, Application, UseCase
from daedalus.app.errors import AppError
from daedalus.app.jsonable import jsonable

with warnings.catch_warnings():
    # jsonrpcserver 5 loads its bundled schema with importlib.resources.read_text, deprecated
    # since Python 3.11: harmless, but it would warn in every process that imports this module.
    warnings.simplefilter("ignore", DeprecationWarning)
    from jsonrpcserver import Error, Result, Success
    from jsonrpcserver.async_dispatcher import dispatch_deserialized
    from jsonrpcserver.response import to_serializable_one

__all__ = [
    "KIND_CODES",
    "MAX_BATCH",
    "create_app",
    "openrpc_document",
    "serve",
]

logger = logging.getLogger(__name__)

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_ERROR = -32000
UNAUTHORIZED = -32001

#: The most requests one batch may hold.
MAX_BATCH = 100

#: AppError kind -> JSON-RPC error code (kinds not listed get SERVER_ERROR).
KIND_CODES: dict[str, int] = {
    "forbidden": UNAUTHORIZED,
    "invalid_catalog": -32003,
    "not_found": -32004,
    "invalid_input": -32006,
    "conflict": -32009,
    "cancelled": -32010,
    "storage": -32011,
    # A bad argument the schema could not see (e.g. 2026-13-01, start after end) is still a
    # bad param: the caller should get the same code as for any other invalid param.
    "invalid_argument": INVALID_PARAMS,
    "internal": INTERNAL_ERROR,
}

#: The OpenRPC `components.errors`: name -> (code, message).
_ERROR_DOCS: dict[str, tuple[int, str]] = {
    "ParseError": (PARSE_ERROR, "Parse error: the body is not valid JSON"),
    "InvalidRequest": (
        INVALID_REQUEST,
        "Invalid request (also: an empty batch, a batch over 100, a body too large: HTTP 413)",
    ),
    "MethodNotFound": (METHOD_NOT_FOUND, "Method not found"),
    "InvalidParams": (INVALID_PARAMS, "Invalid params: error.data.field names the one at fault"),
    "InternalError": (INTERNAL_ERROR, "Internal error"),
    "ServerError": (SERVER_ERROR, "Application error of an unlisted kind (see error.data.kind)"),
    "Unauthorized": (
        UNAUTHORIZED,
        "Unauthorized (a write method without a valid bearer token) or forbidden "
        "(a path outside the workspace)",
    ),
    "InvalidCatalog": (-32003, "The catalog has errors (error.data.errors locates each)"),
    "NotFound": (-32004, "Unknown service, view, entity, store, job or day"),
    "InvalidInput": (-32006, "The input data cannot be used (missing source, bad column, ...)"),
    "Conflict": (-32009, "Conflicts with existing state (a running job, a foreign output)"),
    "Cancelled": (-32010, "The work was cancelled"),
    "Storage": (-32011, "The output or the run store cannot be written (path and reason given)"),
}
_APP_ERRORS = ("InvalidCatalog", "NotFound", "InvalidInput", "Conflict", "Cancelled", "Storage")

_MEMBERS = frozenset({"jsonrpc", "method", "params", "id"})
_CLIP = 200

Method = Callable[..., Awaitable[Result]]


# -- the OpenRPC document -------------------------------------------------------------------


def openrpc_document() -> dict[str, Any]:
    """The OpenRPC 1.2.6 document of every use-case method, generated from USE_CASES."""
    return {
        "openrpc": "1.2.6",
        "info": {
            "title": "Daedalus control plane",
            "version": __version__,
            "description": "Point-in-time feature platform: catalog, training jobs and the days "
            "they wrote. Methods marked x-requires-token need `Authorization: Bearer <token>`.",
        },
        "servers": [{"name": "daedalus", "url": "/rpc"}],
        "methods": [_method_document(case) for case in USE_CASES],
        "components": {
            "errors": {
                name: {"code": code, "message": message}
                for name, (code, message) in _ERROR_DOCS.items()
            }
        },
    }


def _method_document(case: UseCase) -> dict[str, Any]:
    properties = case.input_schema()["properties"]
    params = []
    for param in case.params:
        # The description belongs to the content descriptor; the schema keeps only the type.
        schema = {k: v for k, v in properties[param.name].items() if k != "description"}
        params.append(
            {
                "name": param.name,
                "description": param.description,
                "required": param.required,
                "schema": schema,
            }
        )
    errors = ["InvalidParams", "InternalError", *_APP_ERRORS]
    if case.writes or any(p.name == "directory" for p in case.params):
        errors.append("Unauthorized")
    doc: dict[str, Any] = {
        "name": case.method,
        "summary": case.summary,
        "paramStructure": "either",
        "params": params,
        "result": {"name": "result", "schema": {"type": "object"}},
        "errors": [{"$ref": f"#/components/errors/{name}"} for name in errors],
        "x-requires-token": case.writes,
    }
    if case.writes:
        doc["description"] = "Writes or starts work: needs `Authorization: Bearer <token>`."
    return doc


# -- methods ----------------------------------------------------------------------------------


def _clip(text: str) -> str:
    return text if len(text) <= _CLIP else text[:_CLIP] + "..."


def _invalid(message: str, field: str) -> Result:
    return Error(INVALID_PARAMS, message, {"kind": "invalid_argument", "field": field})


def _app_error(exc: AppError) -> Result:
    data: dict[str, Any]
    if isinstance(exc.data, dict):
        data = {**exc.data, "kind": exc.kind}
    elif exc.data is None:
        data = {"kind": exc.kind}
    elif isinstance(exc.data, list):
        data = {"kind": exc.kind, "errors": exc.data}
    else:
        data = {"kind": exc.kind, "detail": exc.data}
    return Error(KIND_CODES.get(exc.kind, SERVER_ERROR), exc.message, data)


def _internal() -> Result:
    return Error(INTERNAL_ERROR, "Internal error", {"kind": "internal"})


def _refuse(method: str, authorization: str | None, token: str | None) -> Result | None:
    """The error for a write method called without the right bearer token, else None."""
    data = {"kind": "unauthorized"}
    if token is None:
        return Error(
            UNAUTHORIZED,
            f"unauthorized: {method} is disabled because the server has no API token; "
            "set DAEDA_API_TOKEN and restart the server",
            data,
        )
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials:
        return Error(
            UNAUTHORIZED,
            f"unauthorized: {method} needs an 'Authorization: Bearer <token>' header",
            data,
        )
    # Constant time, so the answer's timing does not reveal how much of the token matched.
    if not hmac.compare_digest(
        credentials.encode("utf-8", "surrogateescape"), token.encode("utf-8", "surrogateescape")
    ):
        return Error(UNAUTHORIZED, "unauthorized: invalid token", data)
    return None


def _describe(field: str, error: ValidationError, schema: dict[str, Any]) -> str:
    """A short message for a schema violation; jsonschema's own repeats the (maybe huge) value."""
    rule, expected = error.validator, error.validator_value
    if schema.get("format") == "date" and rule in ("pattern", "format"):
        return f"{field} must be a date YYYY-MM-DD"
    if rule == "enum":
        return f"{field} must be one of {', '.join(map(str, expected))}"
    messages = {
        "type": f"{field} must be of type {expected}",
        "pattern": f"{field} must match {expected}",
        "format": f"{field} must be a valid {expected}",
        "minimum": f"{field} must be at least {expected}",
        "maximum": f"{field} must be at most {expected}",
        "minLength": f"{field} must have at least {expected} character(s)",
        "maxLength": f"{field} must have at most {expected} characters",
    }
    return messages.get(str(rule)) or f"{field}: {_clip(error.message)}"


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _bind(
    case: UseCase, validator: Draft202012Validator, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any] | Result:
    """The use case's keyword arguments from the request's params, or an invalid-params error."""
    names = [p.name for p in case.params]
    if args:
        if len(args) > len(names):
            return _invalid(
                f"{case.method} takes at most {len(names)} positional param(s), got {len(args)}",
                "params",
            )
        params = dict(zip(names, args, strict=False))
    else:
        params = dict(kwargs)
    unknown = [k for k in params if k not in names]
    if unknown:
        accepted = ", ".join(names) or "no params"
        return _invalid(
            f"unknown param {_clip(unknown[0])!r} for {case.method} (it takes {accepted})",
            unknown[0],
        )
    missing = [p.name for p in case.params if p.required and p.name not in params]
    if missing:
        return _invalid(f"missing param {missing[0]!r} for {case.method}", missing[0])
    first: dict[str, ValidationError] = {}
    for error in validator.iter_errors(params):
        field = str(error.absolute_path[0]) if error.absolute_path else "params"
        first.setdefault(field, error)
    for field in [*names, "params"]:
        if field in first:
            schema = next((p.schema for p in case.params if p.name == field), {})
            return _invalid(_describe(field, first[field], schema), field)
    for field in names:
        value = params.get(field)
        # JSON can carry a NUL or a lone surrogate (`"\u0000"`, `"\ud800"`); no name, day or
        # path holds one, and paths, SQLite and UTF-8 encoders fail on them deep inside a case.
        if isinstance(value, str) and ("\x00" in value or not _encodable(value)):
            return _invalid(f"{field} must be text without NUL or lone surrogate characters", field)
    # A JSON number like 5.0 passes an integer schema, but the use cases expect a Python int.
    for param in case.params:
        value = params.get(param.name)
        if param.schema.get("type") == "integer" and isinstance(value, float):
            params[param.name] = int(value)
    return params


def _use_case_method(application: Application, case: UseCase, token: str | None) -> Method:
    validator = Draft202012Validator(
        case.input_schema(), format_checker=Draft202012Validator.FORMAT_CHECKER
    )

    def run(arguments: dict[str, Any]) -> Any:
        # Answers should be JSON-ready already; jsonable is idempotent on those and turns what
        # slips through (a datetime in previewed rows, a NaN) into JSON instead of a failure.
        return jsonable(application.call(case.name, arguments))

    # `authorization` is positional-only so a param of any name lands in `kwargs`.
    async def method(authorization: str | None, /, *args: Any, **kwargs: Any) -> Result:
        # Everything is inside the try: jsonrpcserver would put an uncaught exception's text
        # in `error.data`, and a client has no use for our internals.
        try:
            if case.writes:
                refusal = _refuse(case.method, authorization, token)
                if refusal is not None:
                    return refusal
            arguments = _bind(case, validator, args, kwargs)
            if not isinstance(arguments, dict):
                return arguments
            # The use cases block (files, DuckDB, Ray): keep the event loop free for others.
            return Success(await run_in_threadpool(run, arguments))
        except AppError as exc:
            return _app_error(exc)
        except Exception:
            logger.exception("%s failed", case.method)
            return _internal()

    return method


def _discover_method(document: dict[str, Any]) -> Method:
    async def method(_authorization: str | None, /, *args: Any, **kwargs: Any) -> Result:
        if args or kwargs:
            field = next(iter(kwargs), "params")
            return _invalid(f"rpc.discover takes no params, got {_clip(field)!r}", field)
        return Success(document)

    return method


# -- requests ---------------------------------------------------------------------------------


def _error(code: int, message: str, data: dict[str, Any], id_: Any = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": {"code": code, "message": message, "data": data}, "id": id_}


def _request_problem(obj: Any) -> str | None:
    """Why `obj` is not a JSON-RPC 2.0 request object, or None."""
    if not isinstance(obj, dict):
        return "a request must be a JSON object"
    if obj.get("jsonrpc") != "2.0":
        return 'jsonrpc must be "2.0"'
    if not isinstance(obj.get("method"), str):
        return "method must be a string"
    if "id" in obj:
        id_ = obj["id"]
        if isinstance(id_, bool) or not isinstance(id_, str | int | float | None):
            return "id must be a string, a number or null"
    extra = sorted(set(obj) - _MEMBERS)
    if extra:
        return f"unexpected member {_clip(extra[0])!r}"
    return None


async def _handle(
    obj: Any, methods: dict[str, Method], authorization: str | None
) -> dict[str, Any] | None:
    """The response to one request object, or None for a notification."""
    problem = _request_problem(obj)
    if problem is not None:
        # The spec: an invalid request is answered, with a null id, even if it had no id.
        return _error(
            INVALID_REQUEST, "Invalid request", {"kind": "invalid_request", "reason": problem}
        )
    name, notification, id_ = obj["method"], "id" not in obj, obj.get("id")
    if name not in methods:
        close = difflib.get_close_matches(name, list(methods), n=1)
        hint = f" — did you mean {close[0]}?" if close else ""
        response = _error(
            METHOD_NOT_FOUND,
            f"Method not found: {_clip(name)!r}{hint}",
            {"kind": "method_not_found", "method": name},
            id_,
        )
        return None if notification else response
    if "params" in obj and not isinstance(obj["params"], list | dict):
        response = _error(
            INVALID_PARAMS,
            "params must be an object (by name) or an array (by position)",
            {"kind": "invalid_argument", "field": "params"},
            id_,
        )
        return None if notification else response
    response = await dispatch_deserialized(methods, authorization, to_serializable_one, obj)
    return response  # type: ignore[return-value]  # one object in, one dict (or None) out


def _method_name(obj: Any, methods: dict[str, Method]) -> str:
    """What the log line names: only known methods, so a request cannot write into the log."""
    if not isinstance(obj, dict) or not isinstance(obj.get("method"), str):
        return "-"
    return obj["method"] if obj["method"] in methods else "?"


def _render(content: Any, status_code: int = 200) -> Response:
    # ensure_ascii: a lone surrogate sent in a string (valid JSON) is echoed as an escape, not
    # as text UTF-8 cannot encode.
    body = json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return Response(body, status_code=status_code, media_type="application/json")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None when it is larger than `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    # Count what arrives too: a chunked body has no Content-Length, and a header can lie.
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def create_app(
    application: Application, *, token: str | None, max_body_bytes: int = 1_000_000
) -> Starlette:
    """The Starlette app: `POST /rpc` (JSON-RPC 2.0) and `GET /health`.

    `token` is the bearer token write methods need; None (or empty) disables them.
    """
    token = token or None  # an empty token would let an empty `Bearer ` header through
    methods: dict[str, Method] = {
        case.method: _use_case_method(application, case, token) for case in USE_CASES
    }
    methods["rpc.discover"] = _discover_method(openrpc_document())

    async def respond(request: Request, names: list[str]) -> Response:
        body = await _read_body(request, max_body_bytes)
        if body is None:
            return _render(
                _error(
                    INVALID_REQUEST,
                    "request body too large",
                    {"kind": "invalid_request", "limit": max_body_bytes},
                ),
                status_code=413,
            )
        try:
            payload = json.loads(body, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            return _render(
                _error(
                    PARSE_ERROR, "Parse error", {"kind": "parse_error", "reason": _clip(str(exc))}
                )
            )
        authorization = request.headers.get("authorization")
        if isinstance(payload, list):
            if not payload or len(payload) > MAX_BATCH:
                reason = (
                    "empty batch"
                    if not payload
                    else f"a batch holds at most {MAX_BATCH} requests, got {len(payload)}"
                )
                return _render(
                    _error(
                        INVALID_REQUEST,
                        "Invalid request",
                        {"kind": "invalid_request", "reason": reason},
                    )
                )
            names.extend(_method_name(obj, methods) for obj in payload)
            answers = await asyncio.gather(*(_handle(o, methods, authorization) for o in payload))
            responses: Any = [a for a in answers if a is not None] or None
        else:
            names.append(_method_name(payload, methods))
            responses = await _handle(payload, methods, authorization)
        # Notifications only: nothing to say, and the spec forbids an empty array.
        return Response(status_code=204) if responses is None else _render(responses)

    async def rpc(request: Request) -> Response:
        started = time.perf_counter()
        names: list[str] = []
        try:
            response = await respond(request, names)
        except ClientDisconnect:
            response = Response(status_code=400)  # nobody is left to read an answer
        except Exception:
            logger.exception("the rpc endpoint failed")
            response = _render(_error(INTERNAL_ERROR, "Internal error", {"kind": "internal"}))
        logger.info(
            "rpc %s -> %d in %.1f ms",
            ",".join(names) or "-",
            response.status_code,
            (time.perf_counter() - started) * 1000,
        )
        return response

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "version": __version__})

    return Starlette(
        routes=[Route("/rpc", rpc, methods=["POST"]), Route("/health", health, methods=["GET"])]
    )


# -- serving ----------------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name could resolve anywhere


def serve(
    application: Application, *, host: str = "127.0.0.1", port: int = 8000, token: str | None = None
) -> None:
    """Serve the control plane with uvicorn until interrupted.

    Raises ValueError for a non-loopback `host` without a `token`: the callers (the CLI) pass
    DAEDA_API_TOKEN explicitly, and an open port without one would expose the server.
    """
    token = token or None
    if token is None and not _is_loopback(host):
        raise ValueError(
            f"refusing to listen on {host} without an API token: set DAEDA_API_TOKEN, "
            "or listen on 127.0.0.1"
        )
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    # Our one line per request replaces uvicorn's access log (which cannot name the methods).
    log_config["loggers"][__name__] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    uvicorn.run(
        create_app(application, token=token),
        host=host,
        port=port,
        access_log=False,
        log_config=log_config,
    )
