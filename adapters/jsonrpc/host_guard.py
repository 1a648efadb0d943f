"""Host and Origin checks of the JSON-RPC server (DNS rebinding): HTTP 421 for a Host that
does not name this server, 403 for a foreign Origin, each with a JSON-RPC error body (-32600,
kind `misdirected` or `forbidden_origin`). The rules are in the server's module docstring."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable

from daedalus.adapters.jsonrpc.protocol import INVALID_REQUEST, error, render
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from daedalus.app.clip import clip

__all__ = ["LOOPBACK_HOSTS", "HostOriginGuard", "normalize_hosts"]

#: Host names always allowed (with the server's port): the loopback names.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})


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
                f"allowed host {clip(raw)!r} must be a host name or an IP address, "
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
    body = error(INVALID_REQUEST, message, {"kind": kind, what: clip(value)})
    return render(body, status_code=status)


class HostOriginGuard:
    """ASGI middleware: HTTP 421 for a Host that is not this server, 403 for a foreign Origin."""

    def __init__(self, app: ASGIApp, allowed: frozenset[str], log: logging.Logger) -> None:
        self.app = app
        self.allowed = LOOPBACK_HOSTS | allowed
        self.log = log

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
                self.log.info("%s %s refused -> %d", scope["method"], path, refusal.status_code)
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)
