"""A room's express lane (rooms.py, connection.py): idle sockets get a broadcast's bytes written to
their transport by the room, and leave the lane the moment anything changes, without a frame lost,
doubled or out of order.

The transport is a fake that records what is written and can pause like a real one: `write` keeps
the bytes (a transport always buffers what it is given) and, past its high-water mark, pauses and
calls the protocol back from inside the write, as uvloop does with `pause_writing`. The ASGI send
(used while paused) records the text too, so the client's view is the two in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from matchcast.realtime.connection import CONTROL, Connection
from matchcast.realtime.eventlog import StoredEvent
from matchcast.realtime.frames import Frame
from matchcast.realtime.ratelimit import TokenBucket
from matchcast.realtime.rooms import Room
from matchcast.settings import RateLimit
from tests.realtime.test_connection import unframe

ROOM = "match_1"


def text(event_id: int) -> str:
    return f'{{"type":"score_updated","id":{event_id},"data":{{}}}}'


class Client:
    """What the client receives, in order, whichever way it was sent."""

    def __init__(self) -> None:
        self.got: list[str] = []

    @property
    def ids(self) -> list[int]:
        return [int(t.split('"id":')[1].split(",")[0]) for t in self.got if '"id":' in t]


class FakeTransportWire:
    """A wire whose transport pauses after `high_water` writes until `resume()`, telling the socket."""

    def __init__(self, client: Client, high_water: int | None = None) -> None:
        self.client = client
        self.high_water = high_water
        self.buffered = 0
        self.paused = False
        self.closing = False
        self.changed: Callable[[], None] | None = None
        self.lane_writes = 0  # writes through the handed-out transport write (the room's lane)
        self.own_writes = 0  # writes through `write` / `write_all` (the connection's own)
        self.broken = False  # the handle is closed: the transport's write raises, as uvloop's does
        self.writable = asyncio.Event()
        self.writable.set()

    def _transport_write(self, data: bytes) -> None:
        if self.broken:
            raise RuntimeError("unable to perform operation: the handler is closed")
        self.client.got.append(unframe(data))
        self.buffered += 1
        if self.high_water is not None and self.buffered >= self.high_water and not self.paused:
            self.pause()

    def lane_write(self, data: bytes) -> None:
        self.lane_writes += 1
        self._transport_write(data)

    def pause(self) -> None:
        self.paused = True
        self.writable.clear()
        self._tell()

    def resume(self) -> None:
        self.buffered = 0
        self.paused = False
        self.writable.set()
        self._tell()

    def _tell(self) -> None:
        if self.changed is not None:
            self.changed()

    # -- the Wire protocol --
    def ready(self) -> bool:
        return not (self.paused or self.closing or self.broken)

    def write(self, frame: Frame) -> bool:
        if not self.ready():
            return False
        self.own_writes += 1
        self._transport_write(frame.wire)
        return True

    def write_all(self, frames: Sequence[Frame]) -> bool:
        if not self.ready():
            return False
        self.own_writes += 1
        for frame in frames:
            self._transport_write(frame.wire)
        return True

    def cut(self) -> None:
        self.closing = True
        self._tell()

    def writer(self, changed: Callable[[], None] | None) -> Callable[[bytes], object] | None:
        self.changed = changed
        return self.lane_write if changed is not None else None


class AsgiSocket:
    """The ASGI send beside the wire: like uvicorn's, it waits while the transport is paused."""

    def __init__(self, wire: FakeTransportWire) -> None:
        self.wire = wire
        self.closed: list[int] = []

    async def send_text(self, data: str) -> None:
        await self.wire.writable.wait()
        self.wire.client.got.append(data)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed.append(code)


async def no_log(after: int, limit: int) -> list[StoredEvent]:
    return []


def joined(room: Room[Connection], wire: FakeTransportWire, max_pending: int = 100) -> Connection:
    """A spectator's socket in `room`, not started yet (connection_established not sent)."""
    conn = Connection(
        AsgiSocket(wire),
        ROOM,
        "match",
        "spectator",
        None,
        max_pending,
        TokenBucket(RateLimit(100, 1.0)),
        room.discard,
        wire=wire,
    )
    room.add(conn)
    conn.join(room)
    return conn


def room_with(*wires: FakeTransportWire, max_pending: int = 100) -> tuple[Room[Connection], list[Connection]]:
    room: Room[Connection] = Room(ROOM, no_log, 0.2)
    room.start_at(1)
    conns = []
    for wire in wires:
        conn = joined(room, wire, max_pending)
        conn.start(after=0)
        conns.append(conn)
    return room, conns


async def publish(room: Room[Connection], *ids: int) -> None:
    for event_id in ids:
        await room.receive(event_id, text(event_id), 0)


async def test_an_idle_open_socket_is_written_by_the_room_and_not_offered() -> None:
    wire = FakeTransportWire(Client())
    room, [conn] = room_with(wire)
    assert conn.express and conn in room.express and conn not in room.busy
    await publish(room, 1, 2, 3)
    assert wire.client.ids == [1, 2, 3]
    assert (wire.lane_writes, wire.own_writes) == (3, 0)


async def test_a_socket_not_yet_started_is_offered_and_queues() -> None:
    wire = FakeTransportWire(Client())
    room: Room[Connection] = Room(ROOM, no_log, 0.2)
    room.start_at(1)
    conn = joined(room, wire)
    assert not conn.express  # joined, but connection_established is not sent yet
    await publish(room, 1, 2)
    assert wire.client.got == []
    conn.start(after=1, first=[Frame('{"type":"connection_established"}')])
    assert wire.client.got[0] == '{"type":"connection_established"}' and wire.client.ids == [2]
    assert conn.express  # everything sent: idle now
    await publish(room, 3)
    assert wire.client.ids == [2, 3] and wire.lane_writes == 1


async def test_a_socket_whose_snapshot_is_ahead_of_the_room_enters_the_lane_only_once_the_room_catches_up() -> None:
    # A join's snapshot read saw events 1-2 stored while the room has delivered none yet (they
    # are on their way through the broker): the socket starts after 2, idle, but the lane would
    # write it 1 and 2 again. A reconnect storm on SQLite doubled an event for 5-12 % of clients.
    wire = FakeTransportWire(Client())
    room: Room[Connection] = Room(ROOM, no_log, 0.2)
    room.start_at(1)
    conn = joined(room, wire)
    conn.start(after=2, first=[Frame('{"type":"connection_established"}')])
    assert not conn.express  # ahead of the room: offered, and it filters
    await publish(room, 1, 2)
    assert wire.client.ids == []
    assert conn.express  # the room has delivered what the socket had: the lane takes over
    await publish(room, 3, 4)
    assert wire.client.ids == [3, 4] and wire.lane_writes == 2


async def test_a_pause_inside_the_lanes_write_moves_the_socket_out_and_nothing_is_lost_or_doubled() -> None:
    paused = FakeTransportWire(Client(), high_water=2)
    other = FakeTransportWire(Client())
    room, [conn, _] = room_with(paused, other)
    await publish(room, 1, 2)  # the second write pauses the transport from inside the write
    assert not conn.express and conn in room.busy and conn.after == 2
    await publish(room, 3, 4)  # queued behind the pause
    assert paused.client.ids == [1, 2] and conn.writer is not None  # waiting on the paused transport
    paused.resume()  # the writer drains and the socket goes back to the lane
    await asyncio.wait_for(_until(lambda: conn.express), 5)
    await publish(room, 5)
    assert paused.client.ids == [1, 2, 3, 4, 5]
    assert other.client.ids == [1, 2, 3, 4, 5] and other.lane_writes == 5


async def test_a_control_frame_to_a_paused_express_socket_queues_and_takes_it_out_of_the_lane() -> None:
    wire = FakeTransportWire(Client())
    room, [conn] = room_with(wire)
    await publish(room, 1)
    wire.paused = True  # paused without the socket being told yet: offer finds out on its own
    wire.writable.clear()
    conn.offer(CONTROL, Frame('{"type":"viewers","data":{}}'))
    assert not conn.express and conn in room.busy
    await publish(room, 2)
    wire.resume()
    await asyncio.wait_for(_until(lambda: conn.express), 5)
    assert wire.client.got[1] == '{"type":"viewers","data":{}}' and wire.client.ids == [1, 2]


async def test_a_closing_socket_leaves_the_lane_and_gets_no_more_frames() -> None:
    wire = FakeTransportWire(Client())
    room, [conn] = room_with(wire)
    await publish(room, 1)
    conn.abort(4009)
    assert not conn.express and conn not in room.express
    await publish(room, 2)
    assert wire.client.ids == [1]
    assert conn.closer is not None
    await asyncio.wait_for(conn.closer, 5)


async def test_a_socket_that_left_its_room_never_comes_back_into_the_lane() -> None:
    wire = FakeTransportWire(Client(), high_water=1)
    room, [conn] = room_with(wire)
    await publish(room, 1)  # paused: out of the lane
    room.discard(conn)
    conn.part()
    assert wire.changed is None  # the wire no longer calls the connection back
    conn._settle()  # whatever else runs later
    wire.resume()
    assert conn not in room.express and conn not in room.busy and not room.connections
    await publish(room, 2)
    assert wire.client.ids == [1]


async def test_a_transport_that_raises_in_the_lane_does_not_stop_the_others() -> None:
    broken, fine = FakeTransportWire(Client()), FakeTransportWire(Client())
    room, _ = room_with(broken, fine)
    broken.broken = True  # its handle closed; connection_lost has not run yet
    await publish(room, 1)
    assert fine.client.ids == [1] and broken.client.ids == []


async def test_a_socket_whose_wire_cannot_tell_is_always_offered() -> None:
    class Untold(FakeTransportWire):
        def writer(self, changed: Callable[[], None] | None) -> Callable[[bytes], object] | None:
            return None

    wire = Untold(Client())
    room, [conn] = room_with(wire)
    assert not conn.express and conn in room.busy
    await publish(room, 1, 2)
    assert wire.client.ids == [1, 2] and (wire.lane_writes, wire.own_writes) == (0, 2)


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.001)  # the writer task runs in between: polled, bounded by the caller
