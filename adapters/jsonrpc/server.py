"""JSON-RPC 2.0 over HTTP (Starlette + jsonrpcserver): every use case a method, OpenRPC discovery.

Routes: `POST /rpc` (one request or a batch) and `GET /health`. Each entry of USE_CASES is a
method named by its `UseCase.method` (`catalog.list`, `pipeline.train`, ...), and `rpc.discover`
returns the OpenRPC 1.2.6 document generated from the same table (`openrpc_document()`). The
wire format (error codes, ids, numbers that do not fit) is in `daedalus.adapters.jsonrpc.protocol`.

Params are an object (by name) or an array (by position, in the order `rpc.discover` lists
them). The application checks them against the use case's JSON schema
(`Application.request`); every invalid-params error names the field at fault in
`error.data.field`.

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

Messages quote at most 200 characters of any value a caller sent (a method name, a param
name, a path, a Host).

Each request logs one INFO line on `daedalus.adapters.jsonrpc.server`: the method names, the
HTTP status and the duration; never a body or a param.
"""

from __future__ import annotations

import asyncio
import copy
import difflib
import logging
import sys
import time
import warnings
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import uvicorn
from daedalus.adapters._surface import NO_BEARER, bearer_problem, check_port, is_loopback, listen
from daedalus.adapters.jsonrpc.host_guard import LOOPBACK_HOSTS, HostOriginGuard, normalize_hosts
from daedalus.adapters.jsonrpc.protocol import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    KIND_CODES,
    MAX_DIGITS,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    SERVER_ERROR,
    UNAUTHORIZED,
    app_error_data,
    error,
    holds_unfit,
    loads,
    openrpc_document,
    render,
    request_problem,
)
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from daedalus import __version__
from daedalus.app.application import USE_CASES, Application, UseCase
from daedalus.app.arguments import ArgumentsError
from daedalus.app.clip import clip
from daedalus.app.errors import AppError

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

#: The most requests one batch may hold.
MAX_BATCH = 100

#: Seconds a request's body may take to arrive in full (then HTTP 408 and the connection closes).
READ_TIMEOUT = 10.0

Method = Callable[..., Awaitable[Result]]


# -- methods ----------------------------------------------------------------------------------


def _invalid(message: str, field: str) -> Result:
    return Error(INVALID_PARAMS, message, {"kind": "invalid_argument", "field": field})


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
    problem = bearer_problem(authorization, token)
    if problem == NO_BEARER:
        return Error(
            UNAUTHORIZED,
            f"unauthorized: {method} needs an 'Authorization: Bearer <token>' header",
            data,
        )
    if problem is not None:
        return Error(UNAUTHORIZED, "unauthorized: invalid token", data)
    return None


def _params(case: UseCase, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The request's params by name (positional ones in the order of the case's params)."""
    if args:
        names = [p.name for p in case.params]
        if len(args) > len(names):
            raise ValueError(
                f"{case.method} takes at most {len(names)} positional param(s), got {len(args)}"
            )
        return dict(zip(names, args, strict=False))
    return dict(kwargs)


def _invalid_params(case: UseCase, exc: ArgumentsError, params: dict[str, Any]) -> Result:
    """The first violation the application found, as an invalid-params error."""
    first = exc.violations[0]
    if first.rule == "unknown":
        accepted = ", ".join(p.name for p in case.params) or "no params"
        field = clip(first.field or "params")
        return _invalid(f"unknown param {field!r} for {case.method} (it takes {accepted})", field)
    for field, value in params.items():
        if holds_unfit(value):
            return _invalid(
                f"{field} holds a number that does not fit: an integer of at most "
                f"{MAX_DIGITS} digits, or a number within a double's range",
                field,
            )
    field = first.field or "params"
    if first.rule == "missing":
        return _invalid(f"missing param {field!r} for {case.method}", field)
    return _invalid(first.sentence(), field)


def _use_case_method(application: Application, case: UseCase, token: str | None) -> Method:
    # `authorization` is positional-only so a param of any name lands in `kwargs`.
    async def method(authorization: str | None, /, *args: Any, **kwargs: Any) -> Result:
        # Everything is inside the try: jsonrpcserver would put an uncaught exception's text
        # in `error.data`, and a client has no use for our internals.
        try:
            if case.writes:
                refusal = _refuse(case.method, authorization, token)
                if refusal is not None:
                    return refusal
            try:
                params = _params(case, args, kwargs)
            except ValueError as exc:
                return _invalid(str(exc), "params")
            try:
                # The use cases block (files, DuckDB, Ray): keep the event loop free for others.
                # Answers should be JSON-ready already; what slips through (a datetime in
                # previewed rows, a NaN) is turned into JSON by `render`, as `jsonable` does.
                answer = await run_in_threadpool(application.request, case.name, params)
            except ArgumentsError as exc:
                return _invalid_params(case, exc, params)
            return Success(answer)
        except AppError as exc:
            return Error(KIND_CODES.get(exc.kind, SERVER_ERROR), exc.message, app_error_data(exc))
        except Exception:
            logger.exception("%s failed", case.method)
            return Error(INTERNAL_ERROR, "Internal error", {"kind": "internal"})

    return method


def _discover_method(document: dict[str, Any]) -> Method:
    async def method(_authorization: str | None, /, *args: Any, **kwargs: Any) -> Result:
        if args or kwargs:
            field = clip(next(iter(kwargs), "params"))
            return _invalid(f"rpc.discover takes no params, got {field!r}", field)
        return Success(document)

    return method


# -- requests ---------------------------------------------------------------------------------


async def _handle(
    obj: Any, methods: dict[str, Method], authorization: str | None
) -> dict[str, Any] | None:
    """The response to one request object, or None for a notification."""
    problem = request_problem(obj)
    if problem is not None:
        # The spec: an invalid request is answered, with a null id, even if it had no id.
        return error(
            INVALID_REQUEST, "Invalid request", {"kind": "invalid_request", "reason": problem}
        )
    name, notification, id_ = obj["method"], "id" not in obj, obj.get("id")
    if name not in methods:
        close = difflib.get_close_matches(name, list(methods), n=1)
        hint = f" — did you mean {close[0]}?" if close else ""
        response = error(
            METHOD_NOT_FOUND,
            f"Method not found: {clip(name)!r}{hint}",
            {"kind": "method_not_found", "method": clip(name)},
            id_,
        )
        return None if notification else response
    if "params" in obj and not isinstance(obj["params"], list | dict):
        response = error(
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
            response = render(
                error(
                    INVALID_REQUEST,
                    f"request body not received within {read_timeout:g} s",
                    {"kind": "timeout", "seconds": read_timeout},
                ),
                status_code=408,
            )
            response.headers["connection"] = "close"  # the rest of the body is never read
            return response
        if body is None:
            return render(
                error(
                    INVALID_REQUEST,
                    "request body too large",
                    {"kind": "invalid_request", "limit": max_body_bytes},
                ),
                status_code=413,
            )
        try:
            payload = loads(body)
        except (ValueError, RecursionError) as exc:
            return render(
                error(PARSE_ERROR, "Parse error", {"kind": "parse_error", "reason": clip(str(exc))})
            )
        authorization = request.headers.get("authorization")
        if isinstance(payload, list):
            if not payload or len(payload) > MAX_BATCH:
                reason = (
                    "empty batch"
                    if not payload
                    else f"a batch holds at most {MAX_BATCH} requests, got {len(payload)}"
                )
                return render(
                    error(
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
        return Response(status_code=204) if responses is None else render(responses)

    async def rpc(request: Request) -> Response:
        started = time.perf_counter()
        names: list[str] = []
        try:
            response = await respond(request, names)
        except ClientDisconnect:
            response = Response(status_code=400)  # nobody is left to read an answer
        except Exception:
            logger.exception("the rpc endpoint failed")
            response = render(error(INTERNAL_ERROR, "Internal error", {"kind": "internal"}))
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
        middleware=[Middleware(HostOriginGuard, allowed=allowed, log=logger)],
    )


# -- serving ----------------------------------------------------------------------------------


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
    if token is None and not is_loopback(host):
        raise ValueError(
            f"refusing to listen on {host} without an API token: set DAEDA_API_TOKEN, "
            "or listen on 127.0.0.1"
        )
    check_port(port)
    try:
        allowed = normalize_hosts(allowed_hosts)
    except ValueError as exc:
        raise AppError("invalid_argument", str(exc), {"field": "allow_host"}) from exc
    sock = listen(host, port)
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
