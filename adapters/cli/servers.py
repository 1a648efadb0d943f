"""`daeda serve-api` and `daeda mcp`: the JSON-RPC and MCP servers over the same Application.

Their adapters are imported once the settings are read, so `daeda --help` stays fast."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Annotated

from cyclopts import Parameter
from daedalus.adapters.cli.options import Catalog, Debug, Engine, Out, Workspace, build_application
from daedalus.adapters.cli.output import run

from daedalus.app.errors import AppError

__all__ = ["mcp", "serve_api"]


def serve_api(
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    allow_host: Annotated[
        list[str] | None,
        Parameter(
            name="--allow-host",
            negative="",
            consume_multiple=False,
            help="A host name (or address) accepted in the Host and Origin headers besides "
            "127.0.0.1, localhost and [::1]; repeatable (also env DAEDA_ALLOW_HOSTS, "
            "comma-separated). Others get HTTP 421 (Host) or 403 (Origin).",
        ),
    ] = None,
    workspace: Workspace = None,
    catalog: Catalog = None,
    out: Out = None,
    debug: Debug = False,
) -> int:
    """Serve the JSON-RPC 2.0 control plane (POST /rpc, GET /health) with uvicorn.

    Methods that write or start work need `Authorization: Bearer <token>` (--token or env
    DAEDA_API_TOKEN); without a token the server refuses to bind beyond loopback. Once bound it
    prints `daeda serve-api: listening on http://HOST:PORT ...` on stderr.

    Exit codes: 5 for a port outside 0-65535 or a malformed --allow-host, 7 when HOST:PORT is
    already in use, 8 when binding is not permitted (or a public host without a token).

    Example: DAEDA_API_TOKEN=s3cret daeda serve-api --workspace demo --port 8000

    Parameters
    ----------
    host
        Interface to bind (default loopback).
    port
        TCP port, 1-65535; 0 takes any free port (the line printed at start names it).
    token
        Bearer token for write methods (default: env DAEDA_API_TOKEN).
    """

    def body() -> int:
        from daedalus.adapters.jsonrpc.server import serve

        if isinstance(port, bool) or not 0 <= port <= 65535:  # before anything is loaded
            raise AppError(
                "invalid_argument",
                f"port {port} is out of range: use 1-65535 (or 0 for any free port)",
                {"field": "port"},
            )
        hosts = [*(allow_host or ()), *os.environ.get("DAEDA_ALLOW_HOSTS", "").split(",")]
        application = build_application(workspace, catalog, out)
        with _forbidden():
            serve(
                application,
                host=host,
                port=port,
                token=token or os.environ.get("DAEDA_API_TOKEN") or None,
                allowed_hosts=[h for h in hosts if h.strip()],
            )
        return 0

    return run(body, debug, False)


@contextlib.contextmanager
def _forbidden() -> Iterator[None]:
    """A server's refusal to start (ValueError: a public host without a token) as `forbidden`."""
    try:
        yield
    except ValueError as exc:
        raise AppError("forbidden", str(exc)) from exc


def mcp(
    *,
    http: Annotated[bool, Parameter(negative="")] = False,
    host: str | None = None,
    port: int | None = None,
    token: str | None = None,
    workspace: Workspace = None,
    catalog: Catalog = None,
    out: Out = None,
    engine: Engine = None,
    debug: Debug = False,
) -> int:
    """Serve the MCP tools and resources over stdio (for agents; see the README to register it),
    or over streamable HTTP with --http (http://HOST:PORT/mcp).

    Over HTTP, with a token (--token or env DAEDA_MCP_TOKEN) every request needs
    `Authorization: Bearer <token>`, reads included; without one the server listens on loopback
    only and refuses the tools that write or start work (train_start, job_cancel).

    Examples:

      daeda mcp --workspace demo

      DAEDA_MCP_TOKEN=s3cret daeda mcp --http --port 8001 --workspace demo

    Parameters
    ----------
    http
        Serve streamable HTTP instead of stdio.
    host
        With --http: the interface to bind (default 127.0.0.1; beyond loopback needs a token).
    port
        With --http: the TCP port (default 8001).
    token
        With --http: the bearer token every request must carry (default: env DAEDA_MCP_TOKEN).
    """

    def body() -> int:
        import logging

        # stdout may carry the protocol: every log line goes to stderr.
        logging.basicConfig(
            stream=sys.stderr,
            level=logging.INFO,
            format="%(asctime)s %(name)s %(levelname)s %(message)s",
        )
        if not http and (host is not None or port is not None or token is not None):
            raise AppError(
                "invalid_argument",
                "--host, --port and --token apply to --http only (stdio needs none)",
                {"field": "http"},
            )
        application = build_application(workspace, catalog, out, engine=engine)
        # Imported once the settings are read, so `daeda --help` stays fast.
        from daedalus.adapters.mcp.server import DEFAULT_HTTP_PORT, TOKEN_ENV, run_http, run_stdio

        if not http:
            run_stdio(application)
            return 0
        with _forbidden():
            run_http(
                application,
                host=host or "127.0.0.1",
                port=DEFAULT_HTTP_PORT if port is None else port,
                token=token or os.environ.get(TOKEN_ENV) or None,
            )
        return 0

    return run(body, debug, False)
