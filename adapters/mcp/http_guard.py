"""The HTTP guard of the MCP server's streamable HTTP transport: Host and Origin on loopback
(the SDK's check: 421, 403), then the bearer token of every request (401)."""

from __future__ import annotations

from daedalus.adapters._surface import INVALID_TOKEN, NO_BEARER, bearer_problem
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["Guard", "loopback_security"]


def loopback_security(host: str) -> TransportSecuritySettings:
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


#: What a 401 says, by `bearer_problem`'s answer.
_AUTH_PROBLEMS = {
    NO_BEARER: "this server needs an 'Authorization: Bearer <token>' header",
    INVALID_TOKEN: "invalid token",
}


class Guard:
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
                problem = bearer_problem(request.headers.get("authorization"), self.token)
                if problem is not None:
                    challenge = 'Bearer realm="daedalus"'
                    if problem == INVALID_TOKEN:
                        challenge += ', error="invalid_token"'
                    refusal = JSONResponse(
                        {"error": "unauthorized", "message": _AUTH_PROBLEMS[problem]},
                        status_code=401,
                        headers={"WWW-Authenticate": challenge},
                    )
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)
