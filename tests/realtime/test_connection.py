"""connection.py alone: the per-socket writer, with a fake socket that can stop reading.

`FakeSocket.send_text` takes frames at once (so the writer runs eagerly, without a task) until the
test makes it stop reading; then it blocks on an asyncio.Event, as a send does on a client whose
TCP window is full, until the test lets it read again.

Every test runs on both paths a frame can take: the ASGI send alone (`asgi`: an SSE stream, another
server), and the pre-built frame written to the transport (`wire`), whose fake takes frames while
the socket reads and refuses them, as a paused transport does, once it stops.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence

import pytest

from matchcast.protocol import WS_1012_SERVICE_RESTART, WS_4004_HEARTBEAT_TIMEOUT, WS_4009_SLOW_CONSUMER
from matchcast.realtime import connection as connection_module
from matchcast.realtime.connection import CONTROL, Connection, Replay
from matchcast.realtime.frames import Frame
from matchcast.realtime.ratelimit import TokenBucket
from matchcast.settings import RateLimit

ESTABLISHED_TEXT = '{"type":"connection_established","data":{}}'
PING_TEXT = '{"type":"ping","timestamp":1}'
ESTABLISHED = Frame(ESTABLISHED_TEXT)
PING = Frame(PING_TEXT)


def text(event_id: int) -> str:
    return f'{{"type":"score_updated","id":{event_id},"data":{{}}}}'


def event(event_id: int) -> Frame:
    return Frame(text(event_id))


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.limit: int | None = None  # frames it takes in all before it stops reading; None: every one
        self.more = asyncio.Event()
        self.close_blocks = False  # a client that takes no close frame either
        self.close_released = asyncio.Event()
        self.close_codes: list[int] = []  # close() called with
        self.closed: list[int] = []  # close() returned for
        self.fail_sends = False

    def stop_reading(self) -> None:
        self.limit = len(self.sent)

    def read(self, frames: int | None = None) -> None:
        """Take `frames` more (None: every frame from now on)."""
        self.limit = None if frames is None or self.limit is None else self.limit + frames
        self.more.set()

    def release(self) -> None:
        self.read()
        self.close_released.set()

    async def send_text(self, data: str) -> None:
        if self.fail_sends:
            raise ConnectionResetError("peer went away")
        while self.limit is not None and len(self.sent) >= self.limit:
            self.more.clear()
            await self.more.wait()
        self.sent.append(data)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.close_codes.append(code)
        if self.close_blocks:
            await self.close_released.wait()
        self.closed.append(code)

    @property
    def reading(self) -> bool:
        return self.limit is None or len(self.sent) < self.limit


class AsgiOnly:
    """No transport to write to: every frame takes `send_text`. Cuts are recorded."""

    def __init__(self, socket: FakeSocket) -> None:
        self.socket = socket
        self.cuts = 0
        self.writes = 0

    def write(self, frame: Frame) -> bool:
        return False

    def write_all(self, frames: Sequence[Frame]) -> bool:
        return False

    def cut(self) -> None:
        self.cuts += 1

    def ready(self) -> bool:
        return False

    def writer(self, changed: Callable[[], None] | None) -> Callable[[bytes], object] | None:
        return None  # never in a room's express lane (tests/realtime/test_express.py has that)


class FakeWire(AsgiOnly):
    """A transport: takes the built frame while the client reads, refuses it (paused) once it stops."""

    def write(self, frame: Frame) -> bool:
        if self.socket.fail_sends or not self.socket.reading:
            return False
        self.socket.sent.append(unframe(frame.wire))
        self.writes += 1
        return True

    def write_all(self, frames: Sequence[Frame]) -> bool:
        """Like a transport, takes the whole batch while the client reads, however long."""
        if self.socket.fail_sends or not self.socket.reading:
            return False
        self.socket.sent.extend(unframe(frame.wire) for frame in frames)
        self.writes += 1
        return True


def unframe(wire: bytes) -> str:
    """The text of one unmasked, unfragmented text frame (what a client reads)."""
    assert wire[0] == 0x81 and not wire[1] & 0x80
    size, start = wire[1], 2
    if size == 126:
        size, start = int.from_bytes(wire[2:4], "big"), 4
    elif size == 127:
        size, start = int.from_bytes(wire[2:10], "big"), 10
    assert len(wire) == start + size
    return wire[start:].decode()


class Harness:
    def __init__(self, path: str) -> None:
        self.path = path
        self.made: list[tuple[Connection, FakeSocket]] = []
        self.left: list[Connection] = []
        self.wires: list[AsgiOnly] = []

    def __call__(self, max_pending: int = 8) -> tuple[Connection, FakeSocket]:
        socket = FakeSocket()
        wire = FakeWire(socket) if self.path == "wire" else AsgiOnly(socket)
        self.wires.append(wire)
        conn = Connection(
            socket,
            "match_1",
            "match",
            "spectator",
            None,
            max_pending,
            TokenBucket(RateLimit(20, 1.0)),
            self.left.append,
            wire,
        )
        self.made.append((conn, socket))
        return conn, socket

    async def finish(self) -> None:
        """Let every blocked socket go, and wait (bounded) for the writers and closers to end."""
        for _, socket in self.made:
            socket.release()
        tasks = [t for conn, _ in self.made for t in (conn.writer, conn.closer) if t is not None and not t.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        for task in tasks:
            task.cancel()


@pytest.fixture(params=["asgi", "wire"])
async def make(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    harness = Harness(request.param)
    yield harness
    await harness.finish()


async def until(predicate: Callable[[], bool], timeout: float = 1.0) -> None:
    """Yield to the loop until `predicate` holds (the writer task progressing); bounded."""

    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0)

    await asyncio.wait_for(poll(), timeout)


async def closed(conn: Connection) -> None:
    assert conn.closer is not None
    await asyncio.wait_for(asyncio.shield(conn.closer), 1.0)


# -- eager write and order --------------------------------------------------------------------


async def test_a_socket_that_reads_gets_each_frame_before_offer_returns(make: Harness) -> None:
    conn, socket = make()
    conn.start(after=0, first=[ESTABLISHED])
    assert socket.sent == [ESTABLISHED_TEXT]
    conn.offer(1, event(1))
    assert socket.sent == [ESTABLISHED_TEXT, text(1)]  # written eagerly: no task, no loop turn
    assert conn.writer is None
    assert not conn.draining
    assert conn.pending == 0
    assert make.wires[0].writes == (2 if make.path == "wire" else 0)  # the path under test was taken


async def test_a_frame_is_encoded_once_for_every_socket(make: Harness) -> None:
    sockets = [make() for _ in range(3)]
    for conn, _ in sockets:
        conn.start(after=0)
    frame = event(1)
    for conn, _ in sockets:
        conn.offer(1, frame)
    assert all(socket.sent == [text(1)] for _, socket in sockets)
    assert (frame._wire is not None) == (make.path == "wire")  # built only where a wire took it


async def test_nothing_is_written_before_start(make: Harness) -> None:
    conn, socket = make()
    conn.offer(1, event(1))
    conn.offer(CONTROL, PING)
    assert socket.sent == []
    assert conn.pending == 2
    conn.start(after=1, first=[ESTABLISHED, event(1)])  # the replay brought 1 too
    assert socket.sent == [ESTABLISHED_TEXT, text(1), PING_TEXT]  # `first` goes first; 1 not twice


async def test_events_at_or_below_after_are_skipped(make: Harness) -> None:
    conn, socket = make()
    for event_id in (3, 4, 5):  # live while the snapshot was read
        conn.offer(event_id, event(event_id))
    conn.start(after=4, first=[ESTABLISHED])  # the snapshot has everything up to 4
    conn.offer(4, event(4))  # a late duplicate
    conn.offer(5, event(5))
    conn.offer(6, event(6))
    assert socket.sent == [ESTABLISHED_TEXT, text(5), text(6)]
    assert conn.after == 6


async def test_control_frames_are_never_filtered(make: Harness) -> None:
    conn, socket = make()
    conn.start(after=10, first=[ESTABLISHED])
    conn.offer(11, event(11))
    conn.offer(CONTROL, PING)
    conn.offer(CONTROL, PING)
    conn.offer(11, event(11))
    assert socket.sent == [ESTABLISHED_TEXT, text(11), PING_TEXT, PING_TEXT]


async def test_a_socket_that_waits_gets_a_writer_and_later_frames_queue_in_order(make: Harness) -> None:
    conn, socket = make()
    conn.start(after=0, first=[ESTABLISHED])
    socket.stop_reading()
    conn.offer(1, event(1))
    assert conn.writer is not None  # blocked in send: the rest of the write goes on in a task
    conn.offer(2, event(2))
    conn.offer(CONTROL, PING)
    conn.offer(3, event(3))
    assert conn.pending == 3  # 1 is in flight
    writer = conn.writer
    socket.read()
    await asyncio.wait_for(writer, 1.0)
    assert socket.sent == [ESTABLISHED_TEXT, text(1), text(2), PING_TEXT, text(3)]
    assert conn.writer is None
    conn.offer(4, event(4))  # eager again
    assert socket.sent[-1] == text(4)


async def test_a_failed_send_stops_the_writer_and_drops_the_backlog(make: Harness) -> None:
    conn, socket = make()
    conn.start(after=0)
    socket.fail_sends = True
    conn.offer(1, event(1))
    assert conn.closing
    assert conn.pending == 0
    conn.offer(2, event(2))  # nothing is queued for a dead socket
    assert conn.pending == 0


# -- the backlog bound: 4009 ---------------------------------------------------------------------


async def test_a_client_that_does_not_read_is_closed_4009_past_max_pending(make: Harness) -> None:
    conn, socket = make(max_pending=4)
    conn.start(after=0, first=[ESTABLISHED])
    socket.stop_reading()
    conn.offer(1, event(1))  # in flight, blocked
    for event_id in range(2, 6):  # max_pending queued behind it
        conn.offer(event_id, event(event_id))
    assert not conn.closing
    assert conn.pending == 4
    conn.offer(6, event(6))  # one more: a slow consumer
    assert conn.closing
    assert conn.close_code == WS_4009_SLOW_CONSUMER
    assert conn.pending == 0  # its backlog dropped at once
    conn.offer(7, event(7))
    assert conn.pending == 0
    await closed(conn)
    assert socket.closed == [WS_4009_SLOW_CONSUMER]
    assert socket.sent == [ESTABLISHED_TEXT]  # the blocked send was cancelled, nothing more written
    assert make.left == []  # it took the close frame: the hub's endpoint sees it leave


async def test_a_slow_socket_does_not_hold_up_a_fast_one(make: Harness) -> None:
    slow, slow_socket = make(max_pending=4)
    fast, fast_socket = make(max_pending=4)
    for conn in (slow, fast):
        conn.start(after=0)
    slow_socket.stop_reading()
    for event_id in range(1, 101):  # the room's fan-out: offer() never awaits
        for conn in (slow, fast):
            conn.offer(event_id, event(event_id))
    assert fast_socket.sent == [text(i) for i in range(1, 101)]
    assert slow.close_code == WS_4009_SLOW_CONSUMER
    assert not fast.closing


class StoredLog:
    """The log a replay reads, counting what each read asked for."""

    def __init__(self, last: int) -> None:
        self.last = last
        self.limits: list[int] = []

    async def read(self, after: int, limit: int) -> list[tuple[int, Frame]]:
        self.limits.append(limit)
        return [(i, Frame(text(i))) for i in range(after + 1, min(after + limit, self.last) + 1)]


async def test_the_replay_is_read_a_page_at_a_time_then_live_frames_follow(make: Harness) -> None:
    conn, socket = make(max_pending=8)
    log = StoredLog(50)
    conn.offer(50, event(50))  # live, already in the replay: skipped
    conn.offer(51, event(51))  # live, waits behind the replay
    conn.start(after=50, first=[ESTABLISHED], replay=Replay(log.read, 0, 50, stall=1.0))
    await until(lambda: len(socket.sent) == 52)
    assert socket.sent == [ESTABLISHED_TEXT, *(text(i) for i in range(1, 52))]
    assert max(log.limits) <= 4  # half of max_pending at a time
    assert not conn.closing


@pytest.mark.parametrize("make", ["wire"], indirect=True)
async def test_on_the_wire_a_replays_pages_and_queued_live_frames_go_in_one_write_each(make: Harness) -> None:
    conn, socket = make(max_pending=64)
    log = StoredLog(40)
    for event_id in (39, 40, 41, 42):  # live while the replay is read: 39 and 40 are in it
        conn.offer(event_id, event(event_id))
    conn.offer(CONTROL, Frame("ping"))
    conn.start(after=40, first=[ESTABLISHED], replay=Replay(log.read, 0, 40, stall=1.0))
    await until(lambda: len(socket.sent) == 44)
    assert socket.sent == [ESTABLISHED_TEXT, *(text(i) for i in range(1, 41)), text(41), text(42), "ping"]
    # connection_established, the replay's page of 32 (half of max_pending), its page of 8, then
    # the live frames queued behind them: four writes for 44 frames.
    assert make.wires[0].writes == 4
    assert conn.after == 42 and conn.taken == 44


async def test_regression_a_client_that_does_not_take_its_replay_is_closed_4009_holding_at_most_max_pending(
    make: Harness,
) -> None:
    """Issue 16: the whole replay (up to 4 MB) sat in the backlog of a client that never read it,
    on top of max_pending, for as long as the client kept sending frames."""
    max_pending = 8
    conn, socket = make(max_pending=max_pending)
    socket.stop_reading()  # takes not even connection_established
    log = StoredLog(5000)
    conn.start(after=5000, first=[ESTABLISHED], replay=Replay(log.read, 0, 5000, stall=0.2))
    held = 0

    async def watch() -> None:
        nonlocal held
        while not conn.closing:
            held = max(held, conn.pending)
            await asyncio.sleep(0)

    await asyncio.wait_for(watch(), 2.0)
    assert conn.close_code == WS_4009_SLOW_CONSUMER
    assert held <= max_pending
    assert sum(log.limits) <= max_pending  # nothing more was read from the log
    assert conn.pending == 0  # released


async def test_a_slow_client_that_keeps_taking_its_replay_is_never_closed(make: Harness) -> None:
    conn, socket = make(max_pending=4)
    socket.stop_reading()
    conn.start(after=40, first=[ESTABLISHED], replay=Replay(StoredLog(40).read, 0, 40, stall=0.5))
    while len(socket.sent) < 41:
        socket.read(1)  # one frame at a time, each well within the stall
        await until(lambda: conn.pending < 4 or len(socket.sent) == 41)
    assert socket.sent[-1] == text(40)
    assert not conn.closing


async def test_regression_the_transport_is_cut_after_the_close_grace(
    make: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 16: a client closed 4009 that never read kept its TCP connection, fd and buffers."""
    monkeypatch.setattr(connection_module, "CLOSE_GRACE", 0.1)
    conn, socket = make()
    blocked = make.wires[-1]
    socket.close_blocks = True  # takes no close frame: cut right after the grace
    conn.abort(WS_4009_SLOW_CONSUMER)
    await until(lambda: blocked.cuts == 1, 2.0)
    conn2, _socket2 = make()
    closed = make.wires[-1]
    conn2.abort(WS_4009_SLOW_CONSUMER)  # the close frame went out; the client still may not read
    await until(lambda: closed.cuts == 1, 2.0)


# -- closing -----------------------------------------------------------------------------------


async def test_close_after_sending_sends_what_is_queued_then_closes(make: Harness) -> None:
    conn, socket = make()
    conn.start(after=0, first=[ESTABLISHED])
    socket.stop_reading()
    for event_id in (1, 2, 3):
        conn.offer(event_id, event(event_id))
    closing = asyncio.create_task(conn.close_after_sending(WS_1012_SERVICE_RESTART))
    await until(lambda: conn.closing)
    conn.offer(4, event(4))  # nothing new once closing
    socket.read()
    await asyncio.wait_for(closing, 1.0)
    assert socket.sent == [ESTABLISHED_TEXT, text(1), text(2), text(3)]
    assert socket.closed == [WS_1012_SERVICE_RESTART]
    assert conn.close_code == WS_1012_SERVICE_RESTART


async def test_close_after_sending_with_nothing_queued_closes_at_once(make: Harness) -> None:
    conn, socket = make()
    conn.start(after=0, first=[ESTABLISHED])
    await asyncio.wait_for(conn.close_after_sending(WS_1012_SERVICE_RESTART), 1.0)
    assert socket.closed == [WS_1012_SERVICE_RESTART]
    await asyncio.wait_for(conn.close_after_sending(WS_1012_SERVICE_RESTART), 1.0)  # once only
    assert socket.close_codes == [WS_1012_SERVICE_RESTART]


async def test_abort_with_drain_sends_the_answers_then_closes(make: Harness) -> None:
    conn, socket = make()
    conn.start(after=0, first=[ESTABLISHED])
    socket.stop_reading()
    conn.offer(CONTROL, PING)
    conn.offer(CONTROL, Frame('{"type":"error","data":{"code":"rate_limited","message":"slow down"}}'))
    conn.abort(WS_4004_HEARTBEAT_TIMEOUT, drain=True)
    conn.abort(WS_4009_SLOW_CONSUMER)  # a second close is ignored
    socket.read()
    await closed(conn)
    assert socket.sent[1] == PING_TEXT
    assert len(socket.sent) == 3
    assert socket.close_codes == [WS_4004_HEARTBEAT_TIMEOUT]


async def test_a_client_that_takes_no_close_frame_leaves_its_room_after_the_grace(
    make: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connection_module, "CLOSE_GRACE", 0.01)
    conn, socket = make()
    conn.start(after=0)
    socket.close_blocks = True
    conn.abort(WS_4009_SLOW_CONSUMER)
    await closed(conn)
    assert make.left == [conn]
    assert socket.closed == []


async def test_a_close_on_a_socket_already_closed_is_quiet(make: Harness) -> None:
    conn, socket = make()
    conn.start(after=0)

    async def gone(code: int = 1000, reason: str | None = None) -> None:
        raise RuntimeError('Cannot call "send" once a close message has been sent.')

    socket.close = gone  # type: ignore[method-assign]
    await asyncio.wait_for(conn.close(WS_1012_SERVICE_RESTART), 1.0)
    assert conn.closing
    assert make.left == []


async def test_regression_close_after_sending_lets_cancellation_through(make: Harness) -> None:
    """Defect 4: the close swallowed cancellation, so a shutdown's bound waited out CLOSE_GRACE."""
    conn, socket = make()
    conn.start(after=0, first=[ESTABLISHED])
    socket.stop_reading()
    socket.close_blocks = True  # and the close frame would wait behind the unread data too
    for event_id in (1, 2, 3):
        conn.offer(event_id, event(event_id))
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(conn.close_after_sending(WS_1012_SERVICE_RESTART), 0.2)
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, f"the 0.2 s bound took {elapsed:.1f} s"
