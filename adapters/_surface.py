"""What the two HTTP servers (JSON-RPC, MCP over streamable HTTP) share: the bearer-token
check, what counts as a loopback host, and binding the port before uvicorn serves on it.

Transport wiring (Starlette routes, the MCP SDK, Host/Origin answers) stays in each server.
"""

from __future__ import annotations

import errno
import hmac
import ipaddress
import socket

from daedalus.app.errors import AppError

__all__ = ["INVALID_TOKEN", "NO_BEARER", "bearer_problem", "check_port", "is_loopback", "listen"]

#: What `bearer_problem` answers.
NO_BEARER = "no bearer"
INVALID_TOKEN = "invalid token"


def bearer_problem(authorization: str | None, token: str) -> str | None:
    """Why an `Authorization` header does not carry `token` as a bearer token (NO_BEARER: no
    `Bearer <credentials>` at all; INVALID_TOKEN: other credentials), else None."""
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials:
        return NO_BEARER
    # Constant time: the answer's timing does not tell how much of the token matched.
    if not hmac.compare_digest(
        credentials.encode("utf-8", "surrogateescape"), token.encode("utf-8", "surrogateescape")
    ):
        return INVALID_TOKEN
    return None


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses; a host name could resolve anywhere."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_port(port: int) -> None:
    """AppError invalid_argument for a port outside 0-65535 (0: any free port)."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise AppError(
            "invalid_argument",
            f"port {port} is out of range: use 1-65535 (or 0 for any free port)",
            {"field": "port"},
        )


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port and listening (as uvicorn binds one), to hand to
    `uvicorn.Server.run(sockets=...)`: the port actually bound is known before serving, and a
    failure is an AppError naming host:port (conflict: in use; forbidden: not permitted;
    invalid_argument: not an address of this machine)."""
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
