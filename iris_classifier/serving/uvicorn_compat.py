"""Every use of uvicorn's internals, in one place, for the uvicorn private_apis.py names (the HTTP server of BentoML's
worker): a bound on each request's head (request line and headers), in bytes and in time.

uvicorn's httptools protocol, the one BentoML's worker runs, reads a request's head without any limit: a
header line of several megabytes is read whole and answered 200, and a connection that sends its head a
byte at a time (or nothing at all) is held open for ever (its keep-alive timeout only starts after a
response). h11, uvicorn's other protocol, bounds the head at 16 KiB, but is pure Python and slower. BentoML
builds `uvicorn.Config` itself with no way to pass a protocol class, so `install_bounded_protocol` points
uvicorn's "auto" protocol (the default) at `BoundedHttpToolsProtocol`, which:
- answers 431 with a JSON error once a head passes `max_head_bytes` (at most one read, ~256 KiB with
  uvloop, is taken in beyond it);
- answers 408 when a head is not complete `head_timeout` seconds after the connection opened or the head's
  first byte came (slow-loris); a connection that sends nothing at all is closed then. An idle keep-alive
  connection is still closed by uvicorn's own `timeout_keep_alive` (5 s).
After a refusal the connection is closed the way nginx does ("lingering close"): the answer is sent, the
sending side shut, and what the client still sends is read and dropped (for at most LINGER_SECONDS), so a
client still sending its oversized head reads the answer instead of a connection reset.
Upstream: not reported as of 2026-12 (uvicorn's discussions list header limits for httptools as wanted).
Tests that fail when upstream bounds the head itself, so this can go: tests/service/test_limits.py
`test_uvicorn_own_httptools_protocol_still_reads_any_head` and `..._still_waits_for_a_head_forever`.
"""

from __future__ import annotations

import asyncio
import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from iris_classifier.serving.private_apis import BOUNDED_REQUEST_HEAD

PINNED_UVICORN = BOUNDED_REQUEST_HEAD.written_for
LINGER_SECONDS = 2.0
# Where uvicorn looks up the protocol class of `http="auto"` (Config.load: HTTP_PROTOCOLS.get(self.http)).
AUTO_PROTOCOL = "auto"


def _answer(status: int, reason: str, error: str) -> bytes:
    body = json.dumps({"error": error}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a size and a time limit on every request's head."""

    max_head_bytes = 32 * 1024
    head_timeout = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._reading_head = True
        self._refused = False
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = self.loop.call_later(self.head_timeout, self._head_too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering after a refusal: dropped
        if not self._reading_head:
            super().data_received(data)
            return
        self._head_bytes += len(data)
        super().data_received(data)  # may complete the head: on_headers_complete ends the count
        if self._reading_head and self._head_bytes > self.max_head_bytes and not self._refused:
            self._refuse(
                431,
                "Request Header Fields Too Large",
                f"the request line and headers are larger than the limit of {self.max_head_bytes} bytes",
            )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_head = True
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_too_slow)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._head_bytes = 0
        self._stop_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_head = True  # what comes next on this connection is the next request's head
        if self.cycle is not None and self.cycle.response_complete and self._head_timer is None:
            # answered before its body was all in (an early 503 or 413): uvicorn armed its keep-alive timer at the
            # answer, and the body's late bytes cancelled it; this one closes the connection if it then stays idle
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_too_slow)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._head_bytes = 0  # bytes of a pipelined head were counted already; an idle connection starts afresh

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._refused or self.transport.is_closing():
            return
        if self._reading_head and self._head_bytes:
            self._refuse(408, "Request Timeout", f"the request's headers did not arrive within {self.head_timeout:g} s")
        elif self._reading_head and (self.cycle is None or self.cycle.response_complete):
            self.transport.close()  # nothing sent at all since the connection opened (or since its last answer)

    def _refuse(self, status: int, reason: str, error: str) -> None:
        self._stop_head_timer()
        self._refused = True
        self.transport.write(_answer(status, reason, error))
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()


def install_bounded_protocol(*, max_head_bytes: int, head_timeout: float) -> None:
    """Make uvicorn's default ("auto") HTTP protocol the bounded one (call it before the server starts)."""
    import uvicorn.config

    BoundedHttpToolsProtocol.max_head_bytes = max_head_bytes
    BoundedHttpToolsProtocol.head_timeout = head_timeout
    uvicorn.config.HTTP_PROTOCOLS[AUTO_PROTOCOL] = f"{__name__}:BoundedHttpToolsProtocol"


def installed_protocol() -> str:
    import uvicorn.config

    return uvicorn.config.HTTP_PROTOCOLS[AUTO_PROTOCOL]
