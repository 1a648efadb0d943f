"""JSON-RPC 2.0 over HTTP (Starlette + jsonrpcserver): every use case a method, OpenRPC discovery.

Routes: `POST /rpc` (one request or a batch) and `GET /health`. Each entry of USE_CASES is a
method named by its `UseCase.method` (`catalog.list`, `pipeline.train`, ...), and `rpc.discover`
returns the OpenRPC 1.2.6 document generated from the same table (`openrpc_document()`).

Params are an object (by name) or an array (by position, in the order `rpc.discover` lists
them). They are checked against the use case's JSON schema (`UseCase.input_schema()`) before
the use case runs; every invalid-params error names the field at fault in `error.data.field`.

Methods of use cases that write or start work (`writes=True`: `pipeline.train`, `job.cancel`)
need `Authorization: Bearer <token>`; a server started without a token refuses them all.
JSON-RPC errors are sent with HTTP 200; only an oversized body (413) and a body not received
within `read_timeout` seconds (408, default 10 s, then the connection is closed) change the
status. A notification (no `id`) gets no answer, and a body of notifications only gets HTTP 204.

Host and Origin (DNS rebinding): every request, `GET /health` included, must name this server
in `Host`: a loopback name (`127.0.0.1`, `localhost`, `[::1]`) or a name added with
`allowed_hosts` (`--allow-host`, env DAEDA_ALLOW_HOSTS), with the port the server listens on
(or no port: a client's default port only reaches this server through a proxy or a port
forward someone set up); otherwise HTTP 421. An `Origin` header, when present, must be
`http://` or `https://` + an allowed name, any port (a page served from this machine);
otherwise (`null` included) HTTP 403. Both answers carry a JSON-RPC error body (-32600, kind
`misdirected` or `forbidden_origin`). Content-Type is not checked (`curl -d` stays usable):
browsers send `Origin` with every cross-origin POST, which is what the Origin check refuses.

Ids (JSON-RPC 2.0: a string, a number or null). The body is parsed with our own number hooks
so that a number is never silently changed: an id that is an integer outside 64 bits (signed
or unsigned), or a number that overflows a double (`1e400`) or underflows to zero (`1e-400`),
is an invalid request (-32600, id null) and is never executed; in a batch only that member
gets the error. Such a number inside params is an invalid param (-32602) naming the field.

Error codes (`error.data.kind` is always set; for an AppError, `error.data` is
`{"kind": kind, **AppError.data}`, a list of details going under `errors`):

    code    meaning                                      error.data
    ------  -------------------------------------------  ------------------------------------
    -32700  parse error: the body is not JSON            kind parse_error, reason
    -32600  invalid request: not an object or array,     kind invalid_request, reason
            jsonrpc not "2.0", method not a string, bad
            id (or a number that does not fit), unknown
            member, empty batch, batch over 100 requests;
            body over max_body_bytes (HTTP 413)          kind invalid_request, limit
            body not received in time (HTTP 408)         kind timeout, seconds
            Host not allowed (HTTP 421)                  kind misdirected, host
            Origin not allowed (HTTP 403)                kind forbidden_origin, origin
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
            the workspace; a catalog file whose real     kind forbidden, file
            path is outside it, never read)
    -32003  AppError invalid_catalog                     kind invalid_catalog, errors
    -32004  AppError not_found                           kind not_found, AppError.data
    -32006  AppError invalid_input                       kind invalid_input, AppError.data
    -32009  AppError conflict                            kind conflict, AppError.data
    -32010  AppError cancelled                           kind cancelled, AppError.data
    -32011  AppError storage (a filesystem fault)        kind storage, AppError.data

Messages quote at most 200 characters of any value a caller sent (a method name, a param
name, a path, a Host).

Each request logs one INFO line on `daedalus.adapters.jsonrpc.server`: the method names, the
HTTP status and the duration; never a body or a param.
"""

from __future__ import annotations

import asyncio
import copy
import difflib
import errno
import hmac
import ipaddress
import json
import logging
import socket
import sys
import time
import warnings
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import uvicorn
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

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
    "LOOPBACK_HOSTS",
    "MAX_BATCH",
    "READ_TIMEOUT",
    "create_app",
    "normalize_hosts",
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

#: Seconds a request's body may take to arrive in full (then HTTP 408 and the connection closes).
READ_TIMEOUT = 10.0

#: Host names always allowed (with the server's port): the loopback names.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})

#: The range of an integer id: 64 bits, signed or unsigned.
_ID_MIN, _ID_MAX = -(2**63), 2**64 - 1

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
            _clip(unknown[0]),
        )
    for field, value in params.items():
        if _holds_unfit(value):
            return _invalid(
                f"{field} holds a number that does not fit: an integer of at most "
                f"{_MAX_DIGITS} digits, or a number within a double's range",
                field,
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
        # Answers should be JSON-ready already; what slips through (a datetime in previewed
        # rows, a NaN) is turned into JSON by _render, as `jsonable` does.
        return application.call(case.name, arguments)

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
            field = _clip(next(iter(kwargs), "params"))
            return _invalid(f"rpc.discover takes no params, got {field!r}", field)
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
        if isinstance(id_, _Unfit) or (
            isinstance(id_, int) and not isinstance(id_, bool) and not _ID_MIN <= id_ <= _ID_MAX
        ):
            return (
                "id is a number that does not fit: an integer id must fit in 64 bits, "
                "a fractional one in a double"
            )
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
            {"kind": "method_not_found", "method": _clip(name)},
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


def _dumps(content: Any) -> str:
    # ensure_ascii: a lone surrogate sent in a string (valid JSON) is echoed as an escape, not
    # as text UTF-8 cannot encode. `default=jsonable` converts what JSON has no type for
    # (timestamps and dates to ISO 8601, decimals, bytes) exactly as `jsonable` would, in C
    # speed for everything else (a preview's rows: ~10x faster than walking them in Python).
    return json.dumps(
        content, ensure_ascii=True, allow_nan=False, separators=(",", ":"), default=jsonable
    )


def _render(content: Any, status_code: int = 200) -> Response:
    try:
        body = _dumps(content)
    except (ValueError, TypeError):
        # A NaN or infinity (JSON has none), or a key JSON cannot take: `jsonable` writes
        # them as "NaN" / "Infinity" / text.
        body = _dumps(jsonable(content))
    return Response(body, status_code=status_code, media_type="application/json")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


#: Python's own limit on the digits of an int parsed from text (sys.int_info).
_MAX_DIGITS = 4300


class _Unfit:
    """A JSON number that cannot be represented as it was written: an integer of more than
    `_MAX_DIGITS` digits, or a number that overflows a double or underflows to zero. Never
    echoed, never executed."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<a number that does not fit>"


_UNFIT = _Unfit()


def _parse_int(text: str) -> int | _Unfit:
    return _UNFIT if len(text.lstrip("-")) > _MAX_DIGITS else int(text)


def _parse_float(text: str) -> float | _Unfit:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        return _UNFIT
    mantissa = text.lower().partition("e")[0]
    if value == 0.0 and any(c in "123456789" for c in mantissa):
        return _UNFIT  # a non-zero number below the smallest double
    return value


def _holds_unfit(value: Any) -> bool:
    """Whether `value` (parsed JSON) holds an _Unfit anywhere (iteratively: JSON may be deep)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Unfit):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _loads(body: bytes) -> Any:
    return json.loads(
        body, parse_constant=_reject_constant, parse_int=_parse_int, parse_float=_parse_float
    )


class _BodyTimeout(Exception):
    """The body did not arrive in full within the read timeout."""


async def _read_body(request: Request, limit: int, timeout: float) -> bytes | None:
    """The body, or None when it is larger than `limit` bytes; raises _BodyTimeout when it has
    not arrived in full within `timeout` seconds (a stalled or trickling client)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    try:
        async with asyncio.timeout(timeout):
            # Count what arrives too: a chunked body has no Content-Length, and a header can lie.
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    return None
    except TimeoutError as exc:
        raise _BodyTimeout from exc
    return bytes(body)


# -- Host and Origin --------------------------------------------------------------------------


def normalize_hosts(names: Iterable[str]) -> frozenset[str]:
    """Host names as the Host check compares them: lower case, IPv6 in brackets, no port.

    Raises ValueError for an entry that is not a bare name or address (a port, a scheme, a
    path, a space).
    """
    out = set()
    for raw in names:
        name = raw.strip().lower()
        if not name:
            continue
        bare = name[1:-1] if name.startswith("[") and name.endswith("]") else name
        try:
            address = ipaddress.ip_address(bare)
        except ValueError:
            address = None
        if address is not None:
            out.add(f"[{address}]" if address.version == 6 else str(address))
            continue
        if not all(c.isascii() and (c.isalnum() or c in "-._") for c in name):
            raise ValueError(
                f"allowed host {_clip(raw)!r} must be a host name or an IP address, "
                "without a scheme, port or path"
            )
        out.add(name)
    return frozenset(out)


def _split_host(value: str) -> tuple[str, int | None] | None:
    """`name[:port]` of a Host header (or an Origin's authority), lower case; None if malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[: end + 1], value[end + 1 :]
    else:
        name, sep, port = value.partition(":")
        rest = sep + port
    if not name:
        return None
    if not rest:
        return name, None
    digits = rest[1:]
    if rest[0] != ":" or not digits.isascii() or not digits.isdigit() or len(digits) > 5:
        return None
    return name, int(digits)


def _refusal(status: int, kind: str, message: str, what: str, value: str) -> Response:
    body = _error(INVALID_REQUEST, message, {"kind": kind, what: _clip(value)})
    return _render(body, status_code=status)


class _HostOriginGuard:
    """ASGI middleware: HTTP 421 for a Host that is not this server, 403 for a foreign Origin."""

    def __init__(self, app: ASGIApp, allowed: frozenset[str]) -> None:
        self.app = app
        self.allowed = LOOPBACK_HOSTS | allowed

    def _check(self, scope: Scope) -> Response | None:
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        split = _split_host(host)
        server = scope.get("server")
        bound = server[1] if server and len(server) > 1 else None
        if (
            split is None
            or split[0] not in self.allowed
            or (split[1] is not None and bound is not None and split[1] != bound)
        ):
            return _refusal(
                421,
                "misdirected",
                "misdirected request: the Host header does not name this server "
                "(allowed: the loopback names with the server's port, and --allow-host names)",
                "host",
                host,
            )
        origin = headers.get("origin")
        if origin is not None:
            scheme, sep, authority = origin.strip().partition("://")
            split = _split_host(authority) if sep else None
            if scheme.lower() not in ("http", "https") or split is None:
                split = None
            if split is None or split[0] not in self.allowed:
                return _refusal(
                    403,
                    "forbidden_origin",
                    "forbidden: requests from this Origin are refused (allowed: http(s) "
                    "origins of the loopback names and --allow-host names)",
                    "origin",
                    origin,
                )
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self._check(scope)
            if refusal is not None:
                # Neither the header nor an unknown path goes into the log (a request must not
                # be able to write into it); the method is an HTTP token the parser checked.
                path = scope["path"] if scope["path"] in ("/rpc", "/health") else "?"
                logger.info("%s %s refused -> %d", scope["method"], path, refusal.status_code)
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(
    application: Application,
    *,
    token: str | None,
    max_body_bytes: int = 1_000_000,
    allowed_hosts: Iterable[str] = (),
    read_timeout: float = READ_TIMEOUT,
) -> Starlette:
    """The Starlette app: `POST /rpc` (JSON-RPC 2.0) and `GET /health`.

    `token` is the bearer token write methods need; None (or empty) disables them.
    `allowed_hosts`: names accepted in Host and Origin besides the loopback names.
    `read_timeout`: seconds a request body may take to arrive (then HTTP 408).
    """
    token = token or None  # an empty token would let an empty `Bearer ` header through
    allowed = normalize_hosts(allowed_hosts)
    methods: dict[str, Method] = {
        case.method: _use_case_method(application, case, token) for case in USE_CASES
    }
    methods["rpc.discover"] = _discover_method(openrpc_document())

    async def respond(request: Request, names: list[str]) -> Response:
        try:
            body = await _read_body(request, max_body_bytes, read_timeout)
        except _BodyTimeout:
            response = _render(
                _error(
                    INVALID_REQUEST,
                    f"request body not received within {read_timeout:g} s",
                    {"kind": "timeout", "seconds": read_timeout},
                ),
                status_code=408,
            )
            response.headers["connection"] = "close"  # the rest of the body is never read
            return response
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
            payload = _loads(body)
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
        routes=[Route("/rpc", rpc, methods=["POST"]), Route("/health", health, methods=["GET"])],
        middleware=[Middleware(_HostOriginGuard, allowed=allowed)],
    )


# -- serving ----------------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name could resolve anywhere


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (as uvicorn binds one); AppError naming host:port if not."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)  # uvicorn's backlog: connections queue from here on
    except OSError as exc:
        sock.close()
        data = {"host": host, "port": port}
        if exc.errno == errno.EADDRINUSE:
            raise AppError(
                "conflict",
                f"cannot listen on {where}: the address is already in use (another server?); "
                "choose another --port",
                data,
            ) from exc
        if exc.errno == errno.EACCES:
            raise AppError(
                "forbidden",
                f"cannot listen on {where}: permission denied (ports below 1024 need privileges)",
                data,
            ) from exc
        raise AppError(
            "invalid_argument",
            f"cannot listen on {where}: {exc.strerror or exc} (is {host} an address of this "
            "machine?)",
            {**data, "field": "host"},
        ) from exc
    sock.set_inheritable(True)
    return sock


def serve(
    application: Application,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    allowed_hosts: Iterable[str] = (),
    read_timeout: float = READ_TIMEOUT,
) -> None:
    """Serve the control plane with uvicorn until interrupted.

    Raises ValueError for a non-loopback `host` without a `token`: the callers (the CLI) pass
    DAEDA_API_TOKEN explicitly, and an open port without one would expose the server.
    Raises AppError invalid_argument for a port outside 0-65535 or a malformed allowed host,
    conflict when host:port is in use, forbidden when binding is not permitted. Port 0 takes
    any free port. Once bound, one line `daeda serve-api: listening on http://HOST:PORT ...`
    goes to stderr, naming the port actually bound.
    """
    token = token or None
    if token is None and not _is_loopback(host):
        raise ValueError(
            f"refusing to listen on {host} without an API token: set DAEDA_API_TOKEN, "
            "or listen on 127.0.0.1"
        )
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise AppError(
            "invalid_argument",
            f"port {port} is out of range: use 1-65535 (or 0 for any free port)",
            {"field": "port"},
        )
    try:
        allowed = normalize_hosts(allowed_hosts)
    except ValueError as exc:
        raise AppError("invalid_argument", str(exc), {"field": "allow_host"}) from exc
    sock = _listen(host, port)
    bound = int(sock.getsockname()[1])
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    # Our one line per request replaces uvicorn's access log (which cannot name the methods).
    log_config["loggers"][__name__] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    config = uvicorn.Config(
        create_app(application, token=token, allowed_hosts=allowed, read_timeout=read_timeout),
        host=host,
        port=bound,
        access_log=False,
        log_config=log_config,
    )
    url = f"http://[{host}]:{bound}" if ":" in host else f"http://{host}:{bound}"
    print(
        f"daeda serve-api: listening on {url} (POST /rpc, GET /health)", file=sys.stderr, flush=True
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
