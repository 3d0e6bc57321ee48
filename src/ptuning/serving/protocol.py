"""The HTTP/1.1 connection of `ptuning serve`: uvicorn's h11 protocol with a deadline on request
headers, which uvicorn itself does not have.

uvicorn times a connection out only between requests (its keep-alive timeout, armed after a
response); a connection that sends nothing, or half a request line or header block and then
nothing, would stay open for as long as the client likes. `header_timeout_protocol(seconds)` gives
a protocol class that closes such a connection `seconds` after it opened or after its last response
(a partial header gets a 408 first). The request body has its own deadline, in the app's
`BodyLimit` middleware.
"""

from __future__ import annotations

import asyncio
import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

# h11's limit on a request line plus headers (uvicorn's default too); a bigger one is a 400
MAX_HEADER_BYTES = 16 * 1024


class HeaderTimeoutProtocol(H11Protocol):
    """`H11Protocol` whose connections must deliver each request's headers within `header_timeout`
    seconds of opening or of the previous response."""

    header_timeout: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a request's headers arrived: its body has the app's deadline
            self._cancel_header_timer()

    def on_response_complete(self) -> None:
        # armed before uvicorn handles a pipelined request, whose headers then cancel it at once
        self._arm_header_timer()
        super().on_response_complete()

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_timed_out)

    def _cancel_header_timer(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _headers_timed_out(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
            return
        pending, _ = self.conn.trailing_data
        if pending and self.conn.their_state is h11.IDLE:  # half a request: say why before closing
            body = json.dumps(
                {"detail": f"the request headers did not arrive within {self.header_timeout:g} s"}
            ).encode()
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
                b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
        self.transport.close()


def header_timeout_protocol(seconds: float) -> type[HeaderTimeoutProtocol]:
    """A `HeaderTimeoutProtocol` class with its deadline set (uvicorn's `http=` takes a class)."""
    if seconds <= 0:
        raise ValueError(f"the header timeout must be > 0, got {seconds}")
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout": float(seconds)})
