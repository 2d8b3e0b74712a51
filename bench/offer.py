"""What matchcast's per-socket fan-out path costs beyond the write itself, in one process.

The fan-out scenario (bench/fanout.py) measures the whole server against picows; this isolates
the part of a delivered frame that is matchcast's Python, on the two paths a broadcast takes: a
busy socket's (`Connection.offer` deciding the socket can take it now, `UvicornWire.write`
checking the protocol's state) and an idle socket's (its room's express lane writing the bytes
itself, realtime/rooms.py), against the same bytes written straight to the same transports (what
picows's baseline does per socket). N socket pairs on uvloop; each round, a frame built once goes
to every socket by one of the three, timed in CPU seconds of this process; the rounds rotate.

The protocol behind each wire is a stand-in holding only the state the wires read (close sent,
disconnected, flow control as matchcast's own `Writable`, the watcher): building uvicorn's
protocol needs a server around it, and nothing else of it is on this path.

    python -m bench.offer --sockets 3000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import socket
import statistics
from collections.abc import Callable
from typing import Any, cast

import uvloop

from matchcast.realtime.connection import Connection
from matchcast.realtime.eventlog import StoredEvent
from matchcast.realtime.frames import Frame
from matchcast.realtime.ratelimit import TokenBucket
from matchcast.realtime.rooms import Room
from matchcast.settings import RateLimit
from matchcast.web.websocket_protocol import Writable
from matchcast.web.wire import ExpressWire, UvicornWebSocket, UvicornWire

SCORE = '{"type":"score_updated","id":%d,"data":{"match_id":1,"participant1_score":3,"sequence":%d}}'


PATHS = ("offer", "lane", "write")


class ClientEnd(asyncio.Protocol):
    """Reads and counts, so no socket buffer fills over the rounds and every frame is seen to arrive."""

    def __init__(self) -> None:
        self.received = 0
        self.wanted: int | None = None
        self.arrived = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        self._check()

    def expect(self, total: int) -> None:
        self.wanted = total
        self._check()

    def _check(self) -> None:
        if self.wanted is not None and self.received >= self.wanted:
            self.arrived.set()


class ProtocolState:
    """What `UvicornWire` and `ExpressWire` use of uvicorn's WebSocket protocol and matchcast's."""

    close_sent = False
    disconnected = False
    watcher: Callable[[], None] | None = None

    def changed(self) -> None:
        pass  # nothing changes here

    def __init__(self) -> None:
        self.writable = Writable()


class WireOnly:
    """The ASGI side of a socket this bench never uses: every frame goes through the wire."""

    async def send_text(self, data: str) -> None:
        raise RuntimeError("bench.offer writes through the wire only; a frame fell back to the ASGI send")

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        pass


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(sockets: int, rounds: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    transports: list[Any] = []
    clients: list[ClientEnd] = []
    for _ in range(sockets):
        server_end, client_end = socket.socketpair()
        transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, server_end)
        _, client = await loop.connect_accepted_socket(ClientEnd, client_end)
        transports.append(transport)
        clients.append(client)
    # Two connections a transport: one offered each frame (a busy socket's path), one in a room's
    # express lane (an idle socket's, on matchcast's own protocol).
    offered: list[Connection] = []
    room: Room[Connection] = Room("match_1", no_log, 0.2)
    room.start_at(1)
    for transport in transports:
        conn = connection(UvicornWire(cast(UvicornWebSocket, ProtocolState()), transport))
        conn.start(after=0)
        offered.append(conn)
        express = connection(ExpressWire(cast(UvicornWebSocket, ProtocolState()), transport))
        room.add(express)
        express.join(room)
        express.start(after=0)
    if len(room.express) != sockets:
        raise RuntimeError(f"only {len(room.express)} of {sockets} sockets in the express lane")
    per_socket: dict[str, list[float]] = {path: [] for path in PATHS}
    event_id = room_id = sent = 0
    for n in range(len(PATHS) * rounds):
        path = PATHS[n % len(PATHS)]
        event_id += 1
        frame = Frame(SCORE % (event_id, event_id))
        data = frame.wire
        sent += len(data)
        await asyncio.sleep(0.005)  # the client ends read the last round's frames: pacing, not a wait
        started = cpu_seconds()
        if path == "offer":
            for conn in offered:
                conn.offer(event_id, frame)
        elif path == "lane":
            room_id += 1
            await room.receive(room_id, frame.text, 0)
        else:
            for transport in transports:
                transport.write(data)
        per_socket[path].append((cpu_seconds() - started) / sockets * 1e6)
    for client in clients:
        client.expect(sent)
    try:
        async with asyncio.timeout(10):  # the last round's frames reach the client ends
            for client in clients:
                await client.arrived.wait()
    except TimeoutError:
        pass  # reported below: the sockets that did not get every frame
    for transport in transports:
        transport.close()
    offer, lane, write = (statistics.median(per_socket[path]) for path in PATHS)
    return {
        "sockets": sockets,
        "rounds": rounds,
        "offer_us_per_socket": offer,
        "lane_us_per_socket": lane,
        "write_us_per_socket": write,
        "offer_python_us_per_socket": offer - write,
        "lane_python_us_per_socket": lane - write,
        "sockets_that_got_every_frame": sum(1 for client in clients if client.received == sent),  # all of them
    }


def connection(wire: UvicornWire) -> Connection:
    bucket = TokenBucket(RateLimit(10, 1.0))
    return Connection(WireOnly(), "match_1", "match", "spectator", None, 1000, bucket, lambda c: None, wire=wire)


async def no_log(after: int, limit: int) -> list[StoredEvent]:
    return []  # every event reaches the room in order: nothing is read


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sockets", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args(argv)
    result: dict[str, Any] = uvloop.run(measure(args.sockets, args.rounds))
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
