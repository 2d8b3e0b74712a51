"""Limits on request heads: their size (the app measures it) and the time they take to arrive
(the server's HTTP protocol times them).

The contract answers a handshake whose request line or headers reach 8 KB with an HTTP 4xx,
promptly. uvicorn's wsproto implementation accepts such requests, so the app measures them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from matchcast.web.websocket_protocol import WebSocketProtocol

MAX_REQUEST_HEAD = 8 * 1024
DEFAULT_HEAD_TIMEOUT = 10.0
BODY = b"Request line and headers must be under 8 KB; pass a shorter token.\n"


class RequestHeadLimit:
    def __init__(self, app: ASGIApp, limit: int = MAX_REQUEST_HEAD) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and self._size(scope) >= self.limit:
            prefix = "websocket.http." if scope["type"] == "websocket" else "http."
            headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(BODY)).encode())]
            await send({"type": prefix + "response.start", "status": 431, "headers": headers})
            await send({"type": prefix + "response.body", "body": BODY})
            return
        await self.app(scope, receive, send)

    @staticmethod
    def _size(scope: Scope) -> int:
        line = len(scope.get("raw_path") or scope["path"].encode()) + len(scope.get("query_string", b""))
        return line + sum(len(name) + len(value) + 4 for name, value in scope.get("headers", []))


class HeadTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing a connection whose request head is not complete
    `head_timeout` seconds after the connection (or the request's first byte) arrived.

    uvicorn times only the idle wait between requests, and any byte received stops that clock:
    a client sending half a request held its connection and file for ever (Kludex/uvicorn#157),
    and enough of them denied every other client. The clock stops
    once the head is complete, so slow bodies, long responses, SSE streams and WebSockets (whose
    upgrade is a complete head) are never cut. Timed before the app sees anything: middleware
    only runs once the head is parsed.
    """

    _head_timer: asyncio.TimerHandle | None = None
    _head_started = False  # some of the request head arrived: it is told why it is closed

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any], _loop: Any = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        # server.Config carries it; a plain uvicorn Config gets the default.
        self.head_timeout: float = getattr(config, "request_head_timeout", DEFAULT_HEAD_TIMEOUT)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head_timer()

    def data_received(self, data: bytes) -> None:
        self._head_started = True
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._start_head_timer()  # a later request on a kept-alive connection: its own clock

    def on_headers_complete(self) -> None:
        self._stop_head_timer()
        self._head_started = False
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self) -> None:
        """Hand the upgrade to the WebSocket protocol as parsed (web/websocket_protocol.py)."""
        if not isinstance(self.ws_protocol_class, type) or not issubclass(self.ws_protocol_class, WebSocketProtocol):
            super().handle_websocket_upgrade()
            return
        self.connections.discard(self)
        protocol = self.ws_protocol_class(config=self.config, server_state=self.server_state, app_state=self.app_state)
        assert self.scheme is not None
        protocol.upgrade(
            self.transport, (self.server, self.client, self.scheme), self.scope["method"], self.url, self.headers
        )
        self.transport.set_protocol(protocol)
        self.parser = None  # type: ignore[assignment]  # it refers back to this protocol: no cycle left to collect

    def _start_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        answering = self.cycle is not None and not self.cycle.response_complete
        if self._head_started and not answering:  # 408 would break a response being written
            body = f"Request head not complete within {self.head_timeout:g} s; send the whole head at once.\n"
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body.encode())
            )
        self.transport.close()
