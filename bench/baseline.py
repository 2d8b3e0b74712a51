"""The limit: the smallest server on matchcast's stack that fans one pre-encoded frame out to N sockets.

Same uvicorn options (`matchcast.server.config`: WebSocket implementation, sizes, no deflate,
uvloop), same `Server` class with the same GC tuning, Starlette WebSocket, same paths and frame
shapes as matchcast, so the load generator cannot tell them apart. What it leaves out is
everything matchcast does per event: no token check, no database, no broker, no event log, no
batching, no per-socket backlog or writer task. A `score_update` from any socket is encoded once
and sent to every socket of the room with plain sequential `await send_text()`.

    python -m bench.baseline --port 8765
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from bench.baseline_frames import score_frame, welcome
from matchcast.server import Server, config
from matchcast.settings import Settings

rooms: dict[int, set[WebSocket]] = {}


async def match_socket(websocket: WebSocket) -> None:
    match_id = int(websocket.path_params["id"])
    await websocket.accept()
    await websocket.send_text(welcome(match_id))
    room = rooms.setdefault(match_id, set())
    room.add(websocket)
    try:
        while True:
            text = await websocket.receive_text()
            message = json.loads(text)
            if message.get("type") == "score_update":
                frame = score_frame(match_id, message)  # encoded once ...
                for peer in list(room):  # ... and the same text to every socket
                    try:
                        await peer.send_text(frame)
                    except Exception:
                        room.discard(peer)
    except WebSocketDisconnect:
        pass
    finally:
        room.discard(websocket)


app = Starlette(
    routes=[WebSocketRoute("/ws/match/{id:int}/", match_socket), WebSocketRoute("/ws/match/{id:int}", match_socket)]
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--no-gc-tuning", action="store_true", help="leave the garbage collector as Python sets it")
    args = parser.parse_args()
    # As `matchcast serve` does: the GC tuner's summary is logged at INFO.
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.no_gc_tuning:
        from bench.untuned import WatchedServer  # the collector left alone, only watched

        gc.callbacks.append(WatchedServer.watch)
        WatchedServer(config(app, Settings(), args.host, args.port)).run()
        return
    Server(config(app, Settings(), args.host, args.port), tune_gc=True).run()


if __name__ == "__main__":
    main()
