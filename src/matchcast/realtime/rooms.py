"""A room's ordering: its sockets get the room's events in id order, each once, with no hole.

Messages come from the broker in any order, some twice, some never (Redis PUB/SUB is at most
once, and two instances may publish out of order). A message ahead of a missing id waits
`gap_wait` seconds for it; then the missing ones are read from the log. What the log does not
have either (pruned, or never committed) is skipped, so one lost event never stalls a room.

Nothing here touches the database, the broker or the clock directly: the log reader, the clock
and the sockets are handed in, so a test drives a room with fakes of all three.

A room's sockets are *busy* (the room offers each frame to the socket's `Connection.offer`, which
queues it behind what the socket is still sending, or filters it) or *express*: idle, open and
writable, with a transport whose state changes the socket is told of (realtime/connection.py).
The room writes a frame's bytes to each express socket's transport itself, one call a socket, as
the barest fan-out does: `offer`'s checks were a microsecond a socket (`python -m bench.offer`).
A socket leaves the lane the moment its state changes (it pauses, closes, queues a frame), told
the last event id the lane wrote, and is offered the next frames again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Generic, Protocol, TypeVar

from matchcast.realtime.eventlog import StoredEvent
from matchcast.realtime.frames import Frame
from matchcast.realtime.recent import RecentEvents

log = logging.getLogger("matchcast.rooms")
CATCH_UP_BATCH = 500

ReadLog = Callable[[int, int], Awaitable[list[StoredEvent]]]  # (after id, limit) -> oldest first
Delivered = Callable[[int, int], None]  # (sockets reached, publish time in ns): for the metrics


class Receiver(Protocol):
    """A socket as a room sees it."""

    def offer(self, event_id: int, frame: Frame) -> None:
        """Queue one frame to send; never awaits, never raises (a slow socket closes itself)."""
        ...


R = TypeVar("R", bound=Receiver)


class Room(Generic[R]):
    __slots__ = (
        "ahead",
        "busy",
        "clock",
        "connections",
        "delivered",
        "express",
        "express_through",
        "gap_deadline",
        "gap_wait",
        "name",
        "next_id",
        "read_log",
        "ready",
        "recent",
        "task",
    )

    def __init__(
        self,
        name: str,
        read_log: ReadLog,
        gap_wait: float,
        clock: Callable[[], float] = time.monotonic,
        delivered: Delivered | None = None,
    ) -> None:
        self.name = name
        self.read_log = read_log
        self.gap_wait = gap_wait
        self.clock = clock
        self.delivered = delivered
        self.connections: set[R] = set()  # every socket in the room: busy or express
        self.busy: set[R] = set()  # offered each frame (Connection.offer)
        self.express: dict[R, Callable[[bytes], object]] = {}  # written each frame's bytes by the room
        self.express_through = 0  # the last event id written to the express sockets
        self.task: asyncio.Task[None] | None = None  # the hub's listener for this room
        self.ready = asyncio.Event()  # set once `next_id` is known: sockets may join
        self.next_id = 1  # the id this room must deliver next
        self.ahead: dict[int, tuple[str, int]] = {}  # id -> (frame, published_ns), arrived early
        self.gap_deadline: float | None = None
        self.recent = RecentEvents()  # the last events delivered, for resumes (realtime/recent.py)

    def start_at(self, next_id: int, recent: Iterable[tuple[int, Frame]] = ()) -> None:
        """Deliver from `next_id` on; `recent`: the stored events just before it, oldest first."""
        self.next_id = next_id
        for event_id, frame in recent:
            self.recent.add(event_id, frame)
        if not self.recent.holds(next_id - 1):
            self.recent.clear()  # it must run up to the newest delivered, or resumes would miss some
        self.ready.set()

    def add(self, conn: R) -> None:
        """A socket joins: busy until it says it is idle (`enter_express`)."""
        self.connections.add(conn)
        self.busy.add(conn)

    def discard(self, conn: R) -> None:
        self.connections.discard(conn)
        self.busy.discard(conn)
        self.express.pop(conn, None)

    def enter_express(self, conn: R, write: Callable[[bytes], object]) -> None:
        """From the next frame on, the room writes its bytes with `write` instead of offering it."""
        if conn in self.connections:  # not one that has left meanwhile
            self.busy.discard(conn)
            self.express[conn] = write

    def leave_express(self, conn: R) -> int:
        """Offered frames again from the next one; returns the last event id the lane wrote."""
        if self.express.pop(conn, None) is not None and conn in self.connections:
            self.busy.add(conn)
        return self.express_through

    def wait(self) -> float | None:
        """Seconds until a missing event is read from the log; None when nothing is missing."""
        if self.gap_deadline is None:
            return None
        return max(self.gap_deadline - self.clock(), 0.0)

    async def receive(self, event_id: int, frame: str | None, published_ns: int) -> None:
        """One message from the broker; `frame` None: too large for the broker, read from the log."""
        if event_id < self.next_id or event_id in self.ahead:
            return  # a duplicate: delivered already, or waiting its turn
        if frame is None:
            found = await self.read_log(event_id - 1, 1)
            if not found or found[0].id != event_id:
                return  # pruned already: the gap fill will skip it
            frame = found[0].frame
        self.ahead[event_id] = (frame, published_ns)
        self.deliver_ready()
        self._watch_gap()

    async def fill_gap(self) -> None:
        """The wait is over: read the missing events from the log, then deliver everything in order."""
        if not self.ahead:
            self.gap_deadline = None
            return
        upto = max(self.ahead)
        self._keep(await self.read_log(self.next_id - 1, upto - self.next_id + 1))
        self.deliver_ready()
        if self.ahead:  # still missing (pruned, or never committed): skip the hole
            self._skip_hole()
            self.deliver_ready()
        self.gap_deadline = None

    async def catch_up(self) -> None:
        """Deliver what was stored while the room had no subscription (the broker was down)."""
        while True:
            found = await self.read_log(self.next_id - 1, CATCH_UP_BATCH)
            self._keep(found)
            if found and self.next_id not in self.ahead:
                # Ids are numbered in commit order, so a stored event past a hole means the hole
                # was pruned while the room was away: skip it, or the same page comes back for ever.
                self._skip_hole()
            self.deliver_ready()
            if len(found) < CATCH_UP_BATCH:
                self._watch_gap()
                return

    def deliver_ready(self) -> None:
        """Hand every socket each event whose turn it is."""
        while self.next_id in self.ahead:
            event_id = self.next_id
            text, published_ns = self.ahead.pop(event_id)
            # Moved on before the sockets are served: one that enters the lane while it is
            # offered this event gets the lane's writes from the next (Connection._settle).
            self.next_id = event_id + 1
            frame = Frame(text)  # encoded once for every socket (realtime/frames.py)
            # Copies: a socket may move between the two while they are served (a write that
            # pauses its transport, an offer that empties a socket's queue).
            busy = list(self.busy)
            if self.express:
                self.express_through = event_id
                _write_each(list(self.express.values()), frame.wire)
            for conn in busy:
                conn.offer(event_id, frame)
            self.recent.add(event_id, frame)
            if self.delivered is not None:
                self.delivered(len(self.connections), published_ns)
        if not self.ahead:
            self.gap_deadline = None

    def _skip_hole(self) -> None:
        log.warning("%s: events %d..%d are not in the log; skipping", self.name, self.next_id, min(self.ahead) - 1)
        self.next_id = min(self.ahead)

    def _keep(self, found: list[StoredEvent]) -> None:
        now = time.time_ns()  # read from the log: published at least this late, for the latency metric
        for event in found:
            self.ahead.setdefault(event.id, (event.frame, now))

    def _watch_gap(self) -> None:
        if self.ahead and self.gap_deadline is None:
            self.gap_deadline = self.clock() + self.gap_wait


def _write_each(writes: Sequence[Callable[[bytes], object]], data: bytes) -> None:
    for write in writes:
        try:
            write(data)
        except RuntimeError:
            # uvloop refuses a write once the handle is closed and before connection_lost has
            # run; that socket leaves the lane with its connection_lost, the others still get it.
            pass
