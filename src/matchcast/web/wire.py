"""The socket's transport under uvicorn, for what ASGI cannot say: write a frame built once, and
drop a connection at once (realtime/connection.py's `Wire`).

ASGI makes every message one `send` per socket, framed per socket by the WebSocket library: a
broadcast to 5000 sockets built the same bytes 5000 times, which cost most of each frame's CPU
(docs/performance.md). uvicorn's WebSocket protocol objects (wsproto and websockets-sansio alike)
own both the `receive` callable the app gets and the transport, and keep the state that decides
whether a data frame may go out now: after the handshake, before a close frame, not paused by flow
control. Where any of that is not so, `write` says False and the frame takes the ASGI send, which
waits for the transport as it always did. Where the protocol object is not one of uvicorn's
(another server, a test client), nothing is written here and nothing is cut.

Under matchcast's own protocol (web/websocket_protocol.py), which says when its flow control or
close state changes, the wire also hands out the transport's write for the room's express lane
(`ExpressWire.writer`, realtime/rooms.py): uvicorn's own protocols cannot say, so theirs do not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from starlette.websockets import WebSocket
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.protocols.websockets.wsproto_impl import WSProtocol

from matchcast.realtime.connection import NO_WIRE, Wire
from matchcast.realtime.frames import Frame
from matchcast.web.websocket_protocol import WebSocketProtocol

# uvicorn's two sans-I/O implementations: the same flow-control and close state, by the same names.
UVICORN_PROTOCOLS = (WSProtocol, WebSocketsSansIOProtocol)
UvicornWebSocket = WSProtocol | WebSocketsSansIOProtocol


class TransportWire:
    """A transport we can cut but not write frames to as its protocol would (an unknown protocol)."""

    __slots__ = ("transport",)

    def __init__(self, transport: Any) -> None:
        self.transport = transport

    def write(self, frame: Frame) -> bool:
        return False

    def write_all(self, frames: Sequence[Frame]) -> bool:
        return False

    def ready(self) -> bool:
        return False

    def writer(self, changed: Callable[[], None] | None) -> Callable[[bytes], object] | None:
        return None

    def cut(self) -> None:
        # asyncio's abort() drops the buffers a plain close() waits to flush to a client that does
        # not read; uvloop's transports are not asyncio's classes, so it is looked up by name.
        abort = getattr(self.transport, "abort", None)
        if callable(abort):
            abort()


class UvicornWire(TransportWire):
    __slots__ = ("protocol",)

    def __init__(self, protocol: UvicornWebSocket, transport: Any) -> None:
        super().__init__(transport)
        self.protocol = protocol

    def write(self, frame: Frame) -> bool:
        if not self._open():
            return False
        self.transport.write(frame.wire)
        return True

    def write_all(self, frames: Sequence[Frame]) -> bool:
        if not self._open():
            return False
        self.transport.write(b"".join([frame.wire for frame in frames]))
        return True

    def ready(self) -> bool:
        return self._open()

    def _open(self) -> bool:
        """A data frame may go out now: not closing (the send raises as it should), not paused
        (the send waits for room)."""
        protocol = self.protocol
        if protocol.close_sent or protocol.disconnected or not protocol.writable.is_set():
            return False
        return not self.transport.is_closing()


class ExpressWire(UvicornWire):
    """Under matchcast's protocol, which calls back on every change of what `ready()` reads."""

    __slots__ = ()

    protocol: WebSocketProtocol

    def writer(self, changed: Callable[[], None] | None) -> Callable[[bytes], object] | None:
        self.protocol.watcher = changed
        return self.transport.write if changed is not None else None

    def cut(self) -> None:
        super().cut()
        self.protocol.changed()  # closing now: out of the lane before connection_lost comes


def wire_of(websocket: WebSocket) -> Wire:
    """The wire of an accepted socket: `UvicornWire` under uvicorn without compression, else less."""
    protocol = getattr(websocket._receive, "__self__", None)
    transport = getattr(protocol, "transport", None)
    if transport is None:
        return NO_WIRE
    if isinstance(protocol, UVICORN_PROTOCOLS) and writes_plain_frames(protocol):
        if isinstance(protocol, WebSocketProtocol):
            return ExpressWire(protocol, transport)
        return UvicornWire(protocol, transport)
    return TransportWire(transport)


def writes_plain_frames(protocol: UvicornWebSocket) -> bool:
    """Frames go out exactly as built: the handshake is done and permessage-deflate is off.

    With deflate configured, a client may negotiate it, and then every frame must be compressed
    (and RSV1 set) by the library: the frame built once would be wrong for it.
    """
    return protocol.handshake_complete and not protocol.config.ws_per_message_deflate
