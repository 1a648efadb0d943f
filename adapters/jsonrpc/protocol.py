"""JSON-RPC 2.0 on the wire: error codes, error objects, the body's parsing, request objects
and rendering; and the OpenRPC document, generated from USE_CASES.

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
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from daedalus import __version__
from daedalus.app.application import USE_CASES, UseCase
from daedalus.app.clip import clip
from daedalus.app.errors import AppError
from daedalus.app.jsonable import jsonable

__all__ = [
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "KIND_CODES",
    "MAX_DIGITS",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "SERVER_ERROR",
    "UNAUTHORIZED",
    "app_error_data",
    "error",
    "holds_unfit",
    "loads",
    "openrpc_document",
    "render",
    "request_problem",
]

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_ERROR = -32000
UNAUTHORIZED = -32001

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

#: The range of an integer id: 64 bits, signed or unsigned.
_ID_MIN, _ID_MAX = -(2**63), 2**64 - 1


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


# -- errors ---------------------------------------------------------------------------------


def error(code: int, message: str, data: dict[str, Any], id_: Any = None) -> dict[str, Any]:
    """A JSON-RPC response object carrying an error."""
    return {"jsonrpc": "2.0", "error": {"code": code, "message": message, "data": data}, "id": id_}


def app_error_data(exc: AppError) -> dict[str, Any]:
    """An AppError's `error.data`: its kind, and its data (an object's members, a list under
    `errors`, anything else under `detail`)."""
    if isinstance(exc.data, dict):
        return {**exc.data, "kind": exc.kind}
    if exc.data is None:
        return {"kind": exc.kind}
    if isinstance(exc.data, list):
        return {"kind": exc.kind, "errors": exc.data}
    return {"kind": exc.kind, "detail": exc.data}


# -- the body -------------------------------------------------------------------------------

#: Python's own limit on the digits of an int parsed from text (sys.int_info).
MAX_DIGITS = 4300


class _Unfit:
    """A JSON number that cannot be represented as it was written: an integer of more than
    `MAX_DIGITS` digits, or a number that overflows a double or underflows to zero. Never
    echoed, never executed."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<a number that does not fit>"


_UNFIT = _Unfit()


def _parse_int(text: str) -> int | _Unfit:
    return _UNFIT if len(text.lstrip("-")) > MAX_DIGITS else int(text)


def _parse_float(text: str) -> float | _Unfit:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        return _UNFIT
    mantissa = text.lower().partition("e")[0]
    if value == 0.0 and any(c in "123456789" for c in mantissa):
        return _UNFIT  # a non-zero number below the smallest double
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def holds_unfit(value: Any) -> bool:
    """Whether `value` (parsed JSON) holds a number that does not fit, anywhere (iteratively:
    JSON may be deep)."""
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


def loads(body: bytes) -> Any:
    """The body as JSON; a number that does not fit is parsed as a marker `holds_unfit` finds.
    Raises ValueError (or RecursionError) for a body that is not JSON."""
    return json.loads(
        body, parse_constant=_reject_constant, parse_int=_parse_int, parse_float=_parse_float
    )


def request_problem(obj: Any) -> str | None:
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
        return f"unexpected member {clip(extra[0])!r}"
    return None


# -- rendering ------------------------------------------------------------------------------


def _dumps(content: Any) -> str:
    # ensure_ascii: a lone surrogate sent in a string (valid JSON) is echoed as an escape, not
    # as text UTF-8 cannot encode. `default=jsonable` converts what JSON has no type for
    # (timestamps and dates to ISO 8601, decimals, bytes) exactly as `jsonable` would, in C
    # speed for everything else (a preview's rows: ~10x faster than walking them in Python).
    return json.dumps(
        content, ensure_ascii=True, allow_nan=False, separators=(",", ":"), default=jsonable
    )


def render(content: Any, status_code: int = 200) -> Response:
    """`content` as an application/json response."""
    try:
        body = _dumps(content)
    except (ValueError, TypeError):
        # A NaN or infinity (JSON has none), or a key JSON cannot take: `jsonable` writes
        # them as "NaN" / "Infinity" / text.
        body = _dumps(jsonable(content))
    return Response(body, status_code=status_code, media_type="application/json")
