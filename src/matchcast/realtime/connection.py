"""One WebSocket seen from the hub: a bounded outbound backlog and a writer that drains it.

The hub hands every socket of a room the same `Frame` (realtime/frames.py) with `offer()`, which
never awaits, so one slow socket cannot slow anybody else. A socket with nothing queued ahead has
the frame's pre-built bytes written straight to its transport (`Wire`): no writer, no ASGI message,
no per-socket framing. Otherwise the writer starts eagerly: `offer()` runs it at once, and a
socket that can take the frame (nearly always) has it written before `offer()` returns, with no
task at all. Only a writer that has to wait (the client's TCP window is full) goes on in a task
of its own, while later frames queue behind it. The writer, too, puts a frame on the wire where
it can and falls back to the socket's ASGI `send_text` where it cannot (a paused or closing
transport, an SSE stream, a server the web layer does not know): one order, one bound, both paths.
A backlog over `max_pending` frames means the client does not read: it is closed 4009 and its
backlog dropped.

While a socket is idle (open, nothing queued or being written, no replay, its transport writable)
and its wire can tell it when that stops (`Wire.writer`), it sits in its room's express lane: the
room writes each broadcast's bytes to the transport itself and `offer` is not called at all
(realtime/rooms.py). Every change of state that could end idleness calls `_settle()`, which moves
the socket out of the lane (and its last id sent up to the lane's) before anything else is sent.

A resume's replay is read from the log a page at a time, each page only once the socket has room
for it within `max_pending`: a client that takes no replay frame for `stall` seconds is a slow
consumer too. After a server-side close the transport is cut (`Wire.cut`) once CLOSE_GRACE has passed,
so a client that never reads does not keep its file descriptor and kernel buffers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from matchcast.protocol import WS_1011_INTERNAL_ERROR, WS_4009_SLOW_CONSUMER
from matchcast.realtime.frames import Frame
from matchcast.realtime.ratelimit import TokenBucket

log = logging.getLogger("matchcast.connection")
CLOSE_GRACE = 5.0  # seconds a closing socket may take to take its last frames
CONTROL = 0  # the id given to ping/pong/error/connection_established frames: never filtered
REPLAY_PAGE = 200  # events read from the log at once for a replay (fewer when max_pending is small)
# (after, limit) -> [(id, frame)], oldest first: from the room's recent events or the log (hub.py)
ReadPage = Callable[[int, int], Awaitable[list[tuple[int, Frame]]]]


@dataclass(frozen=True)
class Replay:
    """The stored events `after` < id <= `until` to send before live ones, read with `read`."""

    read: ReadPage
    after: int
    until: int
    stall: float  # seconds the client may take no replay frame before it is a slow consumer


class Socket(Protocol):
    """What the writer needs of a WebSocket (Starlette's, or a test's fake)."""

    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


class Wire(Protocol):
    """The socket's transport, as the web layer reaches it (web/wire.py): the one seam for frames
    built once. Everything here must also work through `Socket` alone."""

    def write(self, frame: Frame) -> bool:
        """Put `frame.wire` on the transport now and say True; or say False, writing nothing, when
        it cannot now (paused by flow control, closing, no transport it knows)."""
        ...

    def write_all(self, frames: Sequence[Frame]) -> bool:
        """As `write`, for all of `frames` in one write to the transport (one system call, where a
        frame each would make one each), or for none of them."""
        ...

    def cut(self) -> None:
        """Drop the TCP connection at once, unsent data and all."""
        ...

    def ready(self) -> bool:
        """A data frame may go out now, as `write` would find."""
        ...

    def writer(self, changed: Callable[[], None] | None) -> Callable[[bytes], object] | None:
        """The transport's own write, for a room to put built frames on while `ready()`, with
        `changed` called whenever `ready()` may have turned (None stops the calls); or None
        when this wire cannot tell, and the socket is then always offered its frames."""
        ...


class Lane(Protocol):
    """The express lane of the socket's room (rooms.py)."""

    next_id: int  # the event the lane writes next

    def enter_express(self, conn: Any, write: Callable[[bytes], object]) -> None: ...

    def leave_express(self, conn: Any) -> int:
        """Out of the lane; the last event id the lane wrote."""
        ...


class NoWire:
    """A socket reached through `Socket` only: SSE streams, other servers, tests' fakes."""

    __slots__ = ()

    def write(self, frame: Frame) -> bool:
        return False

    def write_all(self, frames: Sequence[Frame]) -> bool:
        return False

    def cut(self) -> None:
        pass

    def ready(self) -> bool:
        return False

    def writer(self, changed: Callable[[], None] | None) -> Callable[[bytes], object] | None:
        return None


NO_WIRE = NoWire()


class Connection:
    __slots__ = (
        "__weakref__",
        "after",
        "backlog",
        "bucket",
        "close_code",
        "closer",
        "closing",
        "draining",
        "express",
        "express_write",
        "feeder",
        "lane",
        "last_seen",
        "leave",
        "max_pending",
        "open",
        "opened_at",
        "replay",
        "replaying",
        "role",
        "room",
        "room_freed",
        "room_kind",
        "stuck_since",
        "taken",
        "taken_seen",
        "user_id",
        "websocket",
        "wire",
        "writer",
    )

    def __init__(
        self,
        websocket: Socket,
        room: str,
        room_kind: str,
        role: str,
        user_id: int | None,
        max_pending: int,
        bucket: TokenBucket,
        leave: Callable[[Connection], None],
        wire: Wire = NO_WIRE,
    ) -> None:
        self.websocket = websocket
        self.room = room
        self.room_kind = room_kind
        self.role = role
        self.user_id = user_id
        self.max_pending = max_pending
        self.bucket = bucket
        self.leave = leave  # takes the socket out of its room (the hub's)
        self.wire = wire  # the transport, for pre-built frames and for cutting (the web layer's)
        self.backlog: deque[tuple[int, Frame]] = deque()  # live frames, after the replay
        self.replay: deque[Frame] = deque()  # connection_established, then the replay's current page
        self.replaying = False  # pages of the replay are still to come: live frames wait
        self.feeder: asyncio.Task[None] | None = None  # reads the replay's pages
        self.room_freed: asyncio.Future[None] | None = None  # the feeder waits on it for room
        self.taken = 0  # frames the client took; the heartbeat watches it move (stuck())
        self.taken_seen = 0
        self.stuck_since: float | None = None
        self.writer: asyncio.Task[None] | None = None  # a writer that had to wait
        self.draining = False  # a writer is running (eagerly, or in `writer`)
        self.after = 0  # events with an id at most this were already sent (or replayed)
        self.open = False  # False while connection_established and the replay are being sent
        self.closing = False
        self.close_code: int | None = None
        self.closer: asyncio.Task[None] | None = None  # the close started by abort(), kept from the GC
        self.last_seen = time.monotonic()
        self.opened_at = self.last_seen
        self.lane: Lane | None = None  # the room's express lane, while the socket is in the room
        self.express = False  # in the lane: the room writes its frames, `offer` is not called
        self.express_write: Callable[[bytes], object] | None = None  # the wire's, once in a room

    def join(self, lane: Lane) -> None:
        """The socket is in a room (the hub's join): it may use the room's lane once idle."""
        self.lane = lane
        self.express_write = self.wire.writer(self._settle)
        self._settle()

    def part(self) -> None:
        """The socket left its room (the hub's leave): no lane, and the wire stops calling back."""
        self.lane = None
        if self.express_write is not None:
            self.wire.writer(None)
            self.express_write = None
        self.express = False

    def _settle(self) -> None:
        """Into the room's lane if the socket is idle now, out of it if it is not."""
        lane, write = self.lane, self.express_write
        if lane is None or write is None:
            return
        idle = (
            self.open
            and not (self.closing or self.draining or self.replaying or self.backlog or self.replay)
            and self.wire.ready()
            # A snapshot can be ahead of the room (its events stored, still on their way through
            # the broker): the lane would write those again. Offered until the room catches up.
            and self.after < lane.next_id
        )
        if idle == self.express:
            return
        self.express = idle
        if idle:
            lane.enter_express(self, write)
        else:
            self.after = max(self.after, lane.leave_express(self))

    def offer(self, event_id: int, frame: Frame) -> None:
        """Send or queue one frame for this socket; never awaits."""
        if self.closing:
            return
        if self.open and not self.draining and not self.replaying and not self.backlog and not self.replay:
            # Nothing ahead of it (nearly always): straight onto the transport, no writer at all.
            if event_id != CONTROL and event_id <= self.after:
                if event_id == self.after:  # the room has caught up with the snapshot
                    self._settle()
                return  # already in the snapshot or the replay
            if self.wire.write(frame):
                self.taken += 1
                if event_id != CONTROL:
                    self.after = event_id
                    if not self.express:  # the room skipped past the snapshot (a pruned hole)
                        self._settle()
                return
        if self.pending >= self.max_pending:
            self.abort(WS_4009_SLOW_CONSUMER)
            return
        self.backlog.append((event_id, frame))
        if self.express:
            self._settle()  # out of the lane before the room's next frame: it goes behind this one
        if self.open and not self.draining:
            self._write()

    def start(self, after: int, first: Sequence[Frame] = (), replay: Replay | None = None) -> None:
        """Send `first` (connection_established), then `replay`, then live events after `after`.

        The replay counts against `max_pending` like live frames: it is read a page at a time
        as the client takes it, so a client that does not read holds at most `max_pending` frames.
        """
        self.replay.extend(first)
        self.after = after
        self.open = True
        if replay is not None and replay.after < replay.until:
            self.replaying = True
            self.feeder = asyncio.get_running_loop().create_task(self._feed(replay))
        if (self.replay or self.backlog) and not self.draining and not self.closing:
            self._write()
        self._settle()

    async def _feed(self, replay: Replay) -> None:
        page = max(1, min(REPLAY_PAGE, self.max_pending // 2))
        after = replay.after
        try:
            while after < replay.until and not self.closing:
                if self.pending + page > self.max_pending and not await self._room_for(page, replay.stall):
                    log.info("room=%s: client took no replay frame in %.0fs; closing 4009", self.room, replay.stall)
                    self.abort(WS_4009_SLOW_CONSUMER)
                    return
                rows = await replay.read(after, min(page, replay.until - after))
                if not rows or rows[0][0] != after + 1:
                    # Pruned since the resume was judged complete: a new resume will say "partial".
                    self.abort(WS_1011_INTERNAL_ERROR)
                    return
                self.replay.extend(frame for event_id, frame in rows if event_id <= replay.until)
                after = rows[-1][0]
                if not self.draining and not self.closing:
                    self._write()
        except Exception:  # the database went away mid-replay: the client resumes again
            log.warning("room=%s: replay failed", self.room, exc_info=True)
            self.abort(WS_1011_INTERNAL_ERROR)
        finally:
            self.feeder = None
            if self.replaying:
                self.replaying = False
                if not self.draining and not self.closing and self.backlog:
                    self._write()
            self._settle()

    async def _room_for(self, frames: int, stall: float) -> bool:
        """Wait until `frames` more fit within `max_pending`; False if the client took nothing for `stall` s."""
        while self.pending + frames > self.max_pending:
            before = self.pending
            self.room_freed = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(self.room_freed, stall)
            except TimeoutError:
                if self.pending >= before:
                    return False
            finally:
                self.room_freed = None
            if self.closing:
                return False
        return True

    def _taken(self) -> None:
        """One frame left the backlog: wake a feeder waiting for room."""
        freed = self.room_freed
        if freed is not None and not freed.done():
            freed.set_result(None)

    def _write(self) -> None:
        """Run the writer now, up to its first wait; only if it has to wait, in a task.

        A task per socket per frame cost a fifth of every frame's CPU, and without the GC tuning
        its survivors made full collections run during the fan-out (docs/performance.md).
        """
        self.draining = True
        writer = self._drain()
        try:
            waiting_for = writer.send(None)
        except StopIteration:
            return  # everything written; _drain reset `draining`
        self.writer = asyncio.get_running_loop().create_task(_resume(writer, waiting_for))

    async def _drain(self) -> None:
        wire = self.wire
        try:
            while True:
                if self.replay:  # connection_established and the replay go before live frames
                    if len(self.replay) > 1 and wire.write_all(self.replay):
                        # A replay's page in one write: a resuming client's frames cost one
                        # system call, not one each (a reconnect storm is thousands of them).
                        self.taken += len(self.replay)
                        self.replay.clear()
                        self._taken()
                        continue
                    frame = self.replay.popleft()
                    self._taken()
                    if not wire.write(frame):
                        await self.websocket.send_text(frame.text)
                    self.taken += 1
                    continue
                if self.replaying or not self.backlog:
                    break  # the feeder starts the writer again with its next page
                if len(self.backlog) > 1 and self._write_backlog(wire):
                    continue
                event_id, frame = self.backlog.popleft()
                self._taken()
                if event_id != CONTROL:
                    if event_id <= self.after:
                        continue  # already in the snapshot or the replay
                    self.after = event_id
                if not wire.write(frame):
                    await self.websocket.send_text(frame.text)
                self.taken += 1
        except Exception:  # the peer went away mid-send; the endpoint's receive loop sees it too
            self.closing = True
            self._drop()
        finally:
            self.writer = None
            self.draining = False
            self._settle()

    def _write_backlog(self, wire: Wire) -> bool:
        """Every queued live frame not already sent, in one write; False (nothing changed) if the
        wire cannot take them now."""
        fresh = [(event_id, frame) for event_id, frame in self.backlog if event_id == CONTROL or event_id > self.after]
        if not fresh or not wire.write_all([frame for _, frame in fresh]):
            return False
        self.backlog.clear()
        self._taken()
        self.after = max(self.after, *(event_id for event_id, _ in fresh))
        self.taken += len(fresh)
        return True

    def abort(self, code: int, drain: bool = False) -> None:
        """Close from synchronous code (the hub's fan-out, the heartbeat, the rate limit).

        With `drain`, frames already queued (answers to the client) go out before the close;
        without, they are dropped (a slow consumer would never take them).
        """
        if self.closing:
            return
        self.closing = True
        self.close_code = code
        self._settle()
        if self.feeder is not None and self.feeder is not asyncio.current_task():
            self.feeder.cancel()
        self.replaying = False
        if not drain:
            self._drop()
            if self.writer is not None:
                self.writer.cancel()  # it may be blocked on a client that does not read
        self.closer = asyncio.create_task(self._close_after(code))

    async def close_after_sending(self, code: int) -> None:
        """Send what is queued, then close (graceful shutdown)."""
        if self.closing:
            return
        self.closing = True
        self.close_code = code
        self._settle()
        await self._close_after(code)

    async def _close_after(self, code: int) -> None:
        writer = self.writer
        if writer is not None:
            # A client that does not read would hold the writer for ever: give it a while. The
            # writer's own end (failed, cancelled by abort()) is not ours to raise; our own
            # cancellation (a shutdown's bound) goes on up.
            _, pending = await asyncio.wait({writer}, timeout=CLOSE_GRACE)
            for task in pending:
                task.cancel()
        await self.close(code)

    async def close(self, code: int) -> None:
        self.closing = True
        self.close_code = self.close_code or code
        self._settle()
        self._drop()
        try:
            # The close frame waits behind unread data, like any frame; past the grace the socket
            # leaves its room at once (nothing more is queued for it).
            await asyncio.wait_for(self.websocket.close(code), CLOSE_GRACE)
        except TimeoutError:
            log.info("room=%s: client took no close frame in %.0fs; dropped", self.room, CLOSE_GRACE)
            self.leave(self)
            self.wire.cut()
            return
        except Exception:  # already closed by the peer
            return
        # A closed transport still holds its unsent data (and the fd) until the client reads it,
        # which a client that stopped reading never does: cut it once the close had its grace.
        asyncio.get_running_loop().call_later(CLOSE_GRACE, self.wire.cut)

    def gone(self) -> None:
        """The client left: release what was queued for it at once (a replay's page too)."""
        self.closing = True
        self._settle()
        self._drop()

    def _drop(self) -> None:
        """Release what was queued (the replay's page too) and stop reading more of the replay."""
        self.backlog.clear()
        self.replay.clear()
        self.replaying = False
        self._taken()

    def stuck(self, now: float, timeout: float) -> bool:
        """True when a writer has waited on the client for `timeout` seconds without it taking a frame.

        The backlog bound only trips when more frames come; a client that stopped reading in a
        quiet room (or once its whole replay was queued) would hold its backlog for ever.
        """
        if self.writer is None or self.taken != self.taken_seen:
            self.taken_seen = self.taken
            self.stuck_since = None
            return False
        if self.stuck_since is None:
            self.stuck_since = now
        return now - self.stuck_since >= timeout

    @property
    def pending(self) -> int:
        return len(self.backlog) + len(self.replay)


class _Yield:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, Any, Any]:
        return (yield self.value)


async def _resume(coroutine: Coroutine[Any, Any, None], waiting_for: Any) -> None:
    """Go on with `coroutine`, started outside any task, from the point where it yielded `waiting_for`.

    The task running this hands each yielded future to the event loop exactly as if it ran
    `coroutine` itself, and throws cancellation (or any error) into it at the point it waits.
    """
    while True:
        try:
            sent = await _Yield(waiting_for)
        except BaseException as error:  # cancellation included: the coroutine gets to clean up
            try:
                waiting_for = coroutine.throw(error)
            except StopIteration:
                return
            continue
        try:
            waiting_for = coroutine.send(sent)
        except StopIteration:
            return
