"""The HTTP app's pure ASGI middleware, run before a route reads the body: `BodyLimit` (413 for a
body too large, 408 for one that stalls) and `Guard` (allowed Host headers, the admin token, JSON
bodies only)."""

from __future__ import annotations

import asyncio
import hmac
import re
from typing import TYPE_CHECKING

from starlette.exceptions import HTTPException

from .responses import error_response

if TYPE_CHECKING:
    from .app import ServeSettings


class BodyLimit:
    """Pure ASGI middleware: 413 for request bodies over `limit` bytes, before they are buffered;
    408 for a body that stops arriving for `timeout` seconds (a stalled or slow-loris client)."""

    def __init__(self, app, limit: int, timeout: float = 30.0) -> None:
        self.app = app
        self.limit = limit
        self.timeout = timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await self._refuse(scope, receive, send)
        received = 0
        started = False
        complete = False

        async def limited_receive():
            nonlocal received, complete
            if complete:  # after the body: only the disconnect message is left to wait for
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.timeout)
            except TimeoutError:
                raise TooLarge(408, f"the request body stalled for {self.timeout:g} s") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise TooLarge(413, f"request body larger than {self.limit} bytes")
                complete = not message.get("more_body", False)
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except TooLarge as exc:
            if not started:
                await self._refuse(scope, receive, send, exc.status_code, exc.detail)

    async def _refuse(self, scope, receive, send, status: int = 413, detail: str = "") -> None:
        response = error_response(status, detail or f"request body larger than {self.limit} bytes")
        await response(scope, receive, send)


class TooLarge(HTTPException):
    """Raised from `receive`: FastAPI passes HTTP exceptions of its body reading through (413, 408)."""


ADMIN_PATH = re.compile(r"^/v1/tasks/[^/]+/?$")


def normal_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def host_of(header: str) -> str:
    """The host part of a Host header: `name`, `name:port`, `[v6]`, `[v6]:port`."""
    header = header.strip()
    if header.startswith("["):
        header = header[1 : header.find("]")] if "]" in header else header
    elif header.count(":") == 1:
        header = header.split(":", 1)[0]
    return normal_host(header)


class Guard:
    """Pure ASGI middleware, before any body is read: the Host header must be an allowed one (400;
    DNS rebinding), admin routes need the bearer token (403 disabled, 401 without it), and request
    bodies must be JSON (415; so a browser's form or text/plain POST, which needs no CORS
    preflight, never reaches a route)."""

    def __init__(self, app, settings: ServeSettings) -> None:
        self.app = app
        self.settings = settings
        self.token = settings.admin_token.encode() if settings.admin_token else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        allowed = self.settings.allowed_hosts
        if "*" not in allowed:
            host = host_of(headers.get(b"host", b"").decode("latin-1"))
            if host not in allowed:
                return await error_response(
                    400, "invalid Host header; this server answers only its own host names"
                )(scope, receive, send)
        method = scope["method"]
        if method in ("POST", "PUT", "PATCH", "DELETE") and ADMIN_PATH.match(scope["path"]):
            if not self.settings.admin_enabled:
                return await error_response(403, "adding and removing tasks is disabled on this server")(
                    scope, receive, send
                )
            if self.token is not None:
                scheme, _, given = headers.get(b"authorization", b"").partition(b" ")
                if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.token):
                    return await error_response(
                        401,
                        "adding and removing tasks needs the header 'Authorization: Bearer <admin token>'",
                        {"WWW-Authenticate": "Bearer"},
                    )(scope, receive, send)
        if method in ("POST", "PUT", "PATCH"):
            kind = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
            if kind != b"application/json":
                return await error_response(
                    415, "the request body must be JSON (content-type: application/json)"
                )(scope, receive, send)
        return await self.app(scope, receive, send)
