"""uvicorn's wsproto WebSocket protocol, cheaper per connection: a join storm is mostly this.

uvicorn hands a WebSocket upgrade over by writing the head httptools just parsed back into bytes,
which wsproto parses again with h11 and answers through h11: half of the protocol's CPU per join.
And every socket keeps, for its whole life, the h11 handshake machine, an asyncio.Queue and an
asyncio.Event (four deques of 64 slots) and a dict of 32 attributes: a fifth of an idle socket.

Here a well-formed upgrade (GET, Host, Upgrade: websocket, Connection: upgrade, version 13, a
key) is taken as httptools parsed it, and accepted with a 101 written here (RFC 6455, 4.2.2)
followed by wsproto's frame machine alone. Anything else (a malformed upgrade, a refusal before
accept, per-message deflate, an accept with headers) goes through wsproto exactly as in uvicorn:
the head is handed to it then. Per socket only what changes is an instance attribute; the rest
are class defaults. The line an accepted socket logs is DEBUG (uvicorn's is INFO, one a join):
the HTTP access log is off too, and /metrics counts sockets.

A client's small text frame arriving whole between messages (a participant's score) is
unmasked and decoded here too; anything else is parsed by wsproto (_took_text_frame).

It also tells the socket's wire (web/wire.py) whenever what decides if a data frame may go out
changes: flow control, a close sent or received, the connection lost. Its room then writes
broadcasts to the transport directly while nothing has changed (realtime/rooms.py).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import unquote

import wsproto
from uvicorn._types import ASGISendEvent, WebSocketEvent, WebSocketScope
from uvicorn.config import Config
from uvicorn.protocols.utils import ClientDisconnected, get_client_addr
from uvicorn.protocols.websockets.wsproto_impl import WebsocketBuffer, WSProtocol
from uvicorn.server import ServerState
from wsproto.connection import Connection, ConnectionState, ConnectionType

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455's, for Sec-WebSocket-Accept
# wsproto leaves these out of the request's headers (they are the handshake's own), and so do we.
HANDSHAKE_ONLY = (b"host", b"sec-websocket-extensions", b"sec-websocket-protocol")
# uvicorn's logger, whose records have their tokens redacted (logs.py): a refusal logs the URL.
log = logging.getLogger("uvicorn.error")


class Inbox:
    """The few methods of asyncio.Queue that WSProtocol uses, without its three deques."""

    __slots__ = ("items", "waiter")

    def __init__(self) -> None:
        self.items: list[WebSocketEvent] = []
        self.waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: WebSocketEvent) -> None:
        self.items.append(item)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def get(self) -> WebSocketEvent:
        while not self.items:  # one reader: the app's receive()
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        return self.items.pop(0)

    def empty(self) -> bool:
        return not self.items


class Writable:
    """The few methods of asyncio.Event that WSProtocol uses (flow control), its waiters made on demand."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = True
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> None:
        if self._set:
            return
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        await waiter


class WebSocketProtocol(WSProtocol):
    # What every connection starts with, shared until a connection changes it.
    handshake_complete = False
    _close_sent = False
    _disconnected = False
    watcher: Callable[[], None] | None = None  # told of every change below (web/wire.py)
    response_started = False
    read_paused = False
    close_timer = ping_timer = pong_timer = None
    close_timeout = 10.0
    pending_ping_payload = None
    ping_sent_at = last_ping_rtt = 0.0
    server: tuple[str, int | None] | None = None
    client: tuple[str, int] | None = None
    scheme: Literal["wss", "ws"] = "ws"
    head: tuple[str, bytes, list[tuple[bytes, bytes]]] | None = None  # the request, until accepted
    key = b""  # Sec-WebSocket-Key, when the upgrade is accepted here

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        # WSProtocol.__init__ without the per-connection copies of shared settings and constants.
        self.config = config
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.app_state = app_state
        self.connections = server_state.connections
        self.tasks = server_state.tasks
        self.default_headers = server_state.default_headers
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.queue = Inbox()  # type: ignore[assignment]
        self.writable = Writable()  # type: ignore[assignment]
        self.conn = None  # type: ignore[assignment]  # set when accepted, or when wsproto takes over
        self.buffer = WebsocketBuffer(config.ws_max_size)

    # Shared settings, read from the config rather than copied into every connection.
    logger = log
    root_path = property(lambda self: self.config.root_path)
    asgi_version = property(lambda self: self.config.asgi_version)
    ping_interval = property(lambda self: self.config.ws_ping_interval)
    ping_timeout = property(lambda self: self.config.ws_ping_timeout)

    # -- what the wire is told of: every change of what decides if a data frame may go out ------

    def changed(self) -> None:
        watcher = self.watcher
        if watcher is not None:
            watcher()

    @property
    def close_sent(self) -> bool:
        return self._close_sent

    @close_sent.setter
    def close_sent(self, value: bool) -> None:
        self._close_sent = value
        self.changed()

    @property
    def disconnected(self) -> bool:
        return self._disconnected

    @disconnected.setter
    def disconnected(self, value: bool) -> None:
        self._disconnected = value
        self.changed()

    def pause_writing(self) -> None:
        super().pause_writing()
        self.changed()

    def resume_writing(self) -> None:
        super().resume_writing()
        self.changed()

    def handle_close(self, event: wsproto.events.CloseConnection) -> None:
        super().handle_close(event)  # the close answered and the transport closing
        self.changed()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.watcher = None  # the last change: and no reference back to the socket's connection

    def upgrade(
        self,
        transport: asyncio.Transport,
        addresses: tuple[Any, Any, str],
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        """Take over `transport` from the HTTP protocol with the upgrade request it parsed;
        `addresses` (server, client, scheme) are the HTTP protocol's."""
        self.connections.add(self)
        self.transport = transport
        self.server, self.client, http_scheme = addresses
        self.scheme = "wss" if http_scheme == "https" else "ws"
        self.head = (method, target, headers)
        key = self._acceptable_key(method, headers)
        if key is None:
            self._hand_to_wsproto()  # it answers 400 or 426, as in uvicorn
            return
        self.key = key
        self._start_app(target, headers)

    def _acceptable_key(self, method: str, headers: list[tuple[bytes, bytes]]) -> bytes | None:
        """The Sec-WebSocket-Key of a well-formed upgrade that wsproto would accept without
        extensions; None for anything else (wsproto then decides)."""
        if method != "GET":
            return None
        found: dict[bytes, bytes] = {}
        for name, value in headers:
            if name in found:
                return None  # repeated handshake headers: wsproto's rules apply
            found[name] = value
        connection = found.get(b"connection", b"").lower()
        if b"upgrade" not in (token.strip() for token in connection.split(b",")):
            return None
        if found.get(b"upgrade", b"").lower() != b"websocket" or found.get(b"sec-websocket-version") != b"13":
            return None
        if b"host" not in found or (b"sec-websocket-extensions" in found and self.config.ws_per_message_deflate):
            return None
        return found.get(b"sec-websocket-key")

    def _start_app(self, target: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        # The scope uvicorn's handle_connect builds from wsproto's Request: Host first, the
        # handshake's own headers left out, names lower case (httptools gave them so).
        host = next(value for name, value in headers if name == b"host")
        raw_path, _, query_string = target.partition(b"?")
        subprotocols: list[str] = []
        for name, value in headers:
            if name == b"sec-websocket-protocol":
                subprotocols += [token.strip().decode("ascii") for token in value.split(b",") if token.strip()]
        root_path = self.config.root_path
        self.scope: WebSocketScope = {
            "type": "websocket",
            "asgi": {"version": self.config.asgi_version, "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": self.scheme,
            "server": self.server,
            "client": self.client,
            "root_path": root_path,
            "path": root_path + unquote(raw_path.decode("ascii")),
            "raw_path": root_path.encode("ascii") + raw_path,
            "query_string": query_string,
            "headers": [(b"host", host), *((n, v) for n, v in headers if n not in HANDSHAKE_ONLY)],
            "subprotocols": subprotocols,
            "state": self.app_state.copy(),
            "extensions": {"websocket.http.response": {}},
        }
        self.queue.put_nowait({"type": "websocket.connect"})
        task = self.loop.create_task(self.run_asgi())
        task.add_done_callback(self.on_task_complete)
        self.tasks.add(task)

    def _hand_to_wsproto(self) -> None:
        """From here on uvicorn's own handling: wsproto is given the request head, as uvicorn does."""
        if self.conn is not None or self.head is None:
            return
        method, target, headers = self.head
        self.conn = wsproto.WSConnection(connection_type=ConnectionType.SERVER)
        head = [method.encode(), b" ", target, b" HTTP/1.1\r\n"]
        for name, value in headers:
            head += [name, b": ", value, b"\r\n"]
        head.append(b"\r\n")
        if self.key:  # the app runs already: wsproto's Request event is not news to it
            self.conn.receive_data(b"".join(head))
            for _ in self.conn.events():
                pass
        else:
            super().data_received(b"".join(head))
        self.head = None

    def data_received(self, data: bytes) -> None:
        if self._took_text_frame(data):
            return
        self._hand_to_wsproto()  # data before our 101 (the client should not): wsproto judges it
        super().data_received(data)
        if self.watcher is not None and self.transport.is_closing():
            self.changed()  # a protocol error closed it

    def _took_text_frame(self, data: bytes) -> bool:
        """Take `data` if it is exactly one small, whole, masked text frame arriving between
        messages of an open socket accepted here: a participant's score, for one.

        wsproto's pure-Python frame and message decoders were 8-9 % of a score update's CPU
        (py-spy, docs/performance.md). Anything else, or wsproto in any state but idle, goes to
        wsproto (False): control frames, fragments, a larger or binary frame, several frames at
        once, text that is not UTF-8 (its 1007). Its state is read, never changed: a frame taken
        here leaves it exactly as it was, waiting for the next frame header.
        """
        size = len(data) - 6
        if not 0 <= size <= 125 or data[0] != 0x81 or data[1] != 0x80 | size:
            return False  # not FIN + text, masked, with a 7-bit length that is the whole of `data`
        conn: Any = self.conn  # None before the accept, WSConnection if wsproto accepted: neither applies
        if type(conn) is not Connection or self.close_sent or self.buffer.value is not None:
            return False
        try:
            proto = conn._proto
            decoder = proto._frame_decoder
            idle = (
                conn._state is ConnectionState.OPEN
                and not conn._events
                and not proto.extensions
                and decoder.header is None
                and not decoder.buffer.buffer
                and proto._message_decoder.opcode is None
            )
        except AttributeError:  # another wsproto inside: its own decoding, always
            return False
        if not idle or size > self.config.ws_max_size:
            return False
        mask = int.from_bytes((data[2:6] * ((size + 3) // 4))[:size], "big")
        try:
            text = (int.from_bytes(data[6:], "big") ^ mask).to_bytes(size, "big").decode("utf-8")
        except UnicodeDecodeError:
            return False  # wsproto closes it 1007
        self.queue.put_nowait({"type": "websocket.receive", "text": text})
        if not self.read_paused:  # as uvicorn's handle_message: one message in the inbox at a time
            self.read_paused = True
            self.transport.pause_reading()
        return True

    def shutdown(self) -> None:
        if not self.handshake_complete:
            self._hand_to_wsproto()
        super().shutdown()
        self.changed()

    def send_500_response(self) -> None:
        if not self.handshake_complete:
            self._hand_to_wsproto()
        super().send_500_response()

    async def send(self, message: ASGISendEvent) -> None:
        if self.conn is None:
            if self._accepts_here(message):
                await self._accept()
                return
            self._hand_to_wsproto()
        await super().send(message)

    def _accepts_here(self, message: ASGISendEvent) -> bool:
        """An accept wsproto would add nothing to: no subprotocol, no headers."""
        return (
            bool(self.key)
            and message["type"] == "websocket.accept"
            and not message.get("subprotocol")
            and not message.get("headers")
        )

    async def _accept(self) -> None:
        await self.writable.wait()
        if self.disconnected:
            raise ClientDisconnected()
        if self.transport.is_closing():
            return  # as in uvicorn: nothing written, and the disconnect follows
        if log.isEnabledFor(logging.DEBUG):
            log.debug('%s - "WebSocket %s" [accepted]', get_client_addr(self.scope), self.scope["path"])
        accept = base64.b64encode(hashlib.sha1(self.key + GUID).digest())
        response = [
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
            b"Sec-WebSocket-Accept: " + accept + b"\r\n",
        ]
        for name, value in self.default_headers:
            response += [name, b": ", value, b"\r\n"]
        response.append(b"\r\n")
        self.handshake_complete = True
        self.head = None
        self.conn = Connection(ConnectionType.SERVER)  # type: ignore[assignment]  # same methods
        self.transport.write(b"".join(response))
        self.start_keepalive()
