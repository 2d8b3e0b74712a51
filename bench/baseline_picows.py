"""The limit of Python: a bare picows server (Cython framing on uvloop) that fans one pre-built frame out.

Same paths and frame shapes as matchcast and the uvicorn baseline (bench/baseline_frames.py), the
same event loop (uvloop), limits (64 KiB frames, no deflate, no protocol pings, the request-head
timeout) and GC tuning (matchcast's `GcTuner`). What it leaves out is everything matchcast does
per event, and every layer of ASGI: picows parses the frames in Cython and calls back with no
task per socket. A `score_update` from any socket is encoded once into one whole WebSocket frame
(server frames are not masked, so every socket gets the same bytes), and those bytes are written
to each socket's transport: the cheapest fan-out Python can do.

    python -m bench.baseline_picows --port 8765
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import signal
import struct
import sys

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

from bench.baseline_frames import score_frame, welcome
from matchcast.realtime.gc_tuning import GcTuner
from matchcast.settings import Settings

MATCH_PATH = re.compile(rb"/ws/match/(\d+)/?")
TEXT_FIN = 0x81  # FIN bit and the text opcode: a whole text frame

rooms: dict[int, set[WSTransport]] = {}


def text_frame(payload: bytes) -> bytes:
    """A whole unmasked text frame (RFC 6455 5.2), as a server sends it."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", TEXT_FIN, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", TEXT_FIN, 126, size)
    else:
        header = struct.pack("!BBQ", TEXT_FIN, 127, size)
    return header + payload


class MatchSocket(WSListener):
    def __init__(self, match_id: int) -> None:
        super().__init__()
        self.match_id = match_id
        self.room = rooms.setdefault(match_id, set())

    def on_ws_connected(self, transport: WSTransport) -> None:
        transport.send(WSMsgType.TEXT, welcome(self.match_id).encode())
        self.room.add(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            message = json.loads(frame.get_payload_as_utf8_text())
            if message.get("type") == "score_update":
                whole = text_frame(score_frame(self.match_id, message).encode())  # built once ...
                for peer in self.room:
                    peer.underlying_transport.write(whole)  # ... the same bytes to every socket
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.room.discard(transport)


def route(request: WSUpgradeRequest) -> MatchSocket | None:
    """The listener of a match path; anything else is answered 404."""
    found = MATCH_PATH.fullmatch(request.path.split(b"?", 1)[0])
    return MatchSocket(int(found.group(1))) if found else None


def open_sockets() -> int:
    return sum(len(room) for room in rooms.values())


async def serve(host: str, port: int, gc_tuning: bool) -> None:
    settings = Settings()
    server = await ws_create_server(
        route,
        host,
        port,
        websocket_handshake_timeout=settings.request_head_timeout,
        max_frame_size=settings.max_message_bytes,
        enable_auto_ping=False,
        use_aiofastnet=False,  # the loop's own transports: uvloop, as the other servers
        backlog=2048,  # as uvicorn's
    )
    tuner = GcTuner(open_sockets) if gc_tuning else None
    if tuner is not None:
        tuner.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    logging.getLogger("bench.baseline_picows").info("serving on %s:%d", host, port)
    await stopping.wait()
    if tuner is not None:
        tuner.stop()  # logs the collector's summary, which bench.run reads
    server.close()
    for room in rooms.values():
        for transport in list(room):
            transport.disconnect(graceful=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--no-gc-tuning", action="store_true", help="leave the garbage collector as Python sets it")
    args = parser.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # picows logs every connection at INFO; uvicorn's access log is off for the other servers too.
    logging.getLogger("picows").setLevel(logging.WARNING)
    uvloop.run(serve(args.host, args.port, not args.no_gc_tuning))


if __name__ == "__main__":
    main()
