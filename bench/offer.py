"""What matchcast's per-socket fan-out path costs beyond the write itself, in one process.

The fan-out scenario (bench/fanout.py) measures the whole server against picows; this isolates
the part of a delivered frame that is matchcast's Python: `Connection.offer` deciding the socket
is idle and open, and `UvicornWire.write` checking the protocol's state, against the same bytes
written straight to the same transports (what picows's baseline does per socket). N socket pairs
on uvloop; each round, a frame built once is offered to every connection, timed in CPU seconds of
this process; the rounds alternate between the two paths.

The protocol behind each wire is a stand-in holding only the state `UvicornWire` reads (close sent,
disconnected, flow control as matchcast's own `Writable`): building uvicorn's protocol needs a
server around it, and nothing else of it is on this path.

    python -m bench.offer --sockets 3000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import socket
import statistics
from typing import Any, cast

import uvloop

from matchcast.realtime.connection import Connection
from matchcast.realtime.frames import Frame
from matchcast.realtime.ratelimit import TokenBucket
from matchcast.settings import RateLimit
from matchcast.web.websocket_protocol import Writable
from matchcast.web.wire import UvicornWebSocket, UvicornWire

SCORE = '{"type":"score_updated","id":%d,"data":{"match_id":1,"participant1_score":3,"sequence":%d}}'


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
    """What `UvicornWire` reads of uvicorn's WebSocket protocol."""

    close_sent = False
    disconnected = False

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
    connections = set()
    for transport in transports:
        wire = UvicornWire(cast(UvicornWebSocket, ProtocolState()), transport)
        bucket = TokenBucket(RateLimit(10, 1.0))
        conn = Connection(WireOnly(), "match_1", "match", "spectator", None, 1000, bucket, lambda c: None, wire=wire)
        conn.start(after=0)
        connections.add(conn)
    per_socket: dict[str, list[float]] = {"offer": [], "write": []}
    event_id = sent = 0
    for n in range(2 * rounds):
        path = "offer" if n % 2 == 0 else "write"
        event_id += 1
        frame = Frame(SCORE % (event_id, event_id))
        data = frame.wire
        sent += len(data)
        await asyncio.sleep(0.005)  # the client ends read the last round's frames: pacing, not a wait
        started = cpu_seconds()
        if path == "offer":
            for conn in connections:
                conn.offer(event_id, frame)
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
    offer, write = statistics.median(per_socket["offer"]), statistics.median(per_socket["write"])
    return {
        "sockets": sockets,
        "rounds": rounds,
        "offer_us_per_socket": offer,
        "write_us_per_socket": write,
        "python_us_per_socket": offer - write,
        "sockets_that_got_every_frame": sum(1 for client in clients if client.received == sent),  # all of them
    }


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
