"""The HTTP app's pure ASGI middleware, run before a route reads the body: `Answers` (counts the
5xx answers and turns an unexpected exception into a JSON 500), `BodyLimit` (413 for a body too
large, 408 for one that is not in within its deadline) and `Guard` (allowed Host headers, the admin
token, JSON bodies only)."""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import time
from typing import TYPE_CHECKING

from starlette.exceptions import HTTPException

from .responses import error_response
from .settings import normal_host

if TYPE_CHECKING:
    from .settings import ServeSettings


class Answers:
    """Pure ASGI middleware, outermost: counts the answers with a 5xx status in `counts`
    (`answered_5xx`; `internal_errors` for the 500s of an exception no handler took, which it answers
    itself as JSON, so that the count and the body are the server's own)."""

    def __init__(self, app, counts: dict[str, int]) -> None:
        self.app = app
        self.counts = counts
        self.counts.setdefault("answered_5xx", 0)
        self.counts.setdefault("internal_errors", 0)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def counting_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if message["status"] >= 500:
                    self.counts["answered_5xx"] += 1
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        except Exception:
            logging.getLogger("ptuning.serve").exception("%s %s failed", scope["method"], scope["path"])
            self.counts["internal_errors"] += 1
            if started:  # half an answer is out: uvicorn closes the connection
                raise
            await error_response(500, "internal server error; the server log has the details")(
                scope, receive, counting_send
            )


class BodyLimit:
    """Pure ASGI middleware: 413 for request bodies over `limit` bytes, before they are buffered;
    408 (and the connection closed) for a body not complete `timeout` seconds after its request's
    headers came, however it trickles in (a stalled or slow-loris client)."""

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
        deadline = time.monotonic() + self.timeout  # the headers are in: the body's clock starts
        received = 0
        started = False
        complete = False

        async def limited_receive():
            nonlocal received, complete
            if complete:  # after the body: only the disconnect message is left to wait for
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise TooLarge(408, f"the request body did not arrive within {self.timeout:g} s") from None
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
        # the rest of the body is not read: close the connection rather than wait for it
        response = error_response(
            status, detail or f"request body larger than {self.limit} bytes", {"connection": "close"}
        )
        await response(scope, receive, send)


class TooLarge(HTTPException):
    """Raised from `receive`: FastAPI passes HTTP exceptions of its body reading through (413, 408)."""


ADMIN_PATH = re.compile(r"^/v1/tasks/[^/]+/?$")


# RFC 9110 Host: a registered name or IPv4 address, or an IPv6 address in brackets, then an
# optional port. Anything else (userinfo "a@b", a bracket left open, a bare IPv6, a second port)
# is no host name of this server, whatever it contains.
HOST_HEADER = re.compile(
    r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9._~-]+))(?::(?P<port>[0-9]{1,5}))?"
)


def host_of(header: str) -> str | None:
    """The host part of a Host header (`name`, `name:port`, `[v6]`, `[v6]:port`), normalized; None
    for a header that is not of that form."""
    match = HOST_HEADER.fullmatch(header.strip())
    if match is None or (match["port"] is not None and int(match["port"]) > 65535):
        return None
    return normal_host(match["v6"] or match["name"])


def has_token(headers: dict[bytes, bytes], token: bytes) -> bool:
    """Whether the headers carry `Authorization: Bearer <token>` (compared in constant time)."""
    scheme, _, given = headers.get(b"authorization", b"").partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), token)


def is_admin(headers: dict[bytes, bytes], settings: ServeSettings) -> bool:
    """Whether a request may use the admin routes (and see the admin view of GET /v1/tasks)."""
    if not settings.admin_enabled:
        return False
    return not settings.admin_token or has_token(headers, settings.admin_token.encode())


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
            if host is None or host not in allowed:
                return await error_response(
                    400, "invalid Host header; this server answers only its own host names"
                )(scope, receive, send)
        method = scope["method"]
        if method in ("POST", "PUT", "PATCH", "DELETE") and ADMIN_PATH.match(scope["path"]):
            if not self.settings.admin_enabled:
                return await error_response(403, "adding and removing tasks is disabled on this server")(
                    scope, receive, send
                )
            if self.token is not None and not has_token(headers, self.token):
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
