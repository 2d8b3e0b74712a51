"""The hub: rooms over the broker, ordered delivery, local fan-out, heartbeat.

Guarantees:
- publish(): every event is stored in the log of each of its rooms (contiguous ids) before it
  is broadcast; score events pass the batching window first.
- One broker subscription per room per process, however many sockets watch the room.
- Each room hands its sockets the events in id order, each once: a message that arrives ahead of
  a missing id waits `gap_fill_wait_ms` for it, then the missing ones are read from the log.
- A socket joining a room gets `connection_established` (snapshot and last id), then the stored
  events it asked to resume, then live events, with no gap and no duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

from matchcast.db.database import Database
from matchcast.protocol import (
    BRACKET_UPDATED,
    MATCH_CANCELLED,
    MATCH_COMPLETED,
    SCORE_UPDATED,
    WS_1012_SERVICE_RESTART,
    WS_4004_HEARTBEAT_TIMEOUT,
    Event,
    encode,
    encode_ping,
)
from matchcast.realtime import eventlog
from matchcast.realtime.batching import ScoreBatcher
from matchcast.realtime.broker import Broker, BrokerMessage, Subscription
from matchcast.realtime.connection import CONTROL, Connection
from matchcast.realtime.metrics import Metrics
from matchcast.realtime.retention import run_pruner
from matchcast.services import events as services_events
from matchcast.services.matches import reload
from matchcast.services.snapshots import bracket
from matchcast.settings import Settings

log = logging.getLogger("matchcast.hub")
RESUBSCRIBE_MIN, RESUBSCRIBE_MAX = 0.2, 5.0  # seconds between attempts while the broker is down
CATCH_UP_BATCH = 500
JOIN_TIMEOUT = 10.0  # seconds a socket waits for its room's broker subscription
REPLAY_PAGE = 500
MAX_REPLAY_BYTES = 4 * 1024 * 1024  # one resume holds at most this much in memory
SETTLE_SECONDS = 3.0  # at shutdown, for the last events to reach the sockets
MAX_REMEMBERED_MATCHES = 10_000  # matches whose newest stored score the hub keeps (live ones, in practice)


class Room:
    __slots__ = ("ahead", "connections", "gap_deadline", "name", "next_id", "ready", "task")

    def __init__(self, name: str) -> None:
        self.name = name
        self.connections: set[Connection] = set()
        self.task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()
        self.next_id = 1  # the id this room must deliver next
        self.ahead: dict[int, tuple[str, int]] = {}  # id -> (frame, published_ns), arrived early
        self.gap_deadline: float | None = None


class Hub:
    def __init__(self, settings: Settings, db: Database, broker: Broker, metrics: Metrics) -> None:
        self.settings = settings
        self.db = db
        self.broker = broker
        self.metrics = metrics
        self.rooms: dict[str, Room] = {}
        self.batcher = ScoreBatcher(settings.score_batch_window_ms, self.publish_now)
        self._publish_lock = asyncio.Lock()
        self._stored_scores: dict[int, int] = {}  # match id -> the newest score sequence this process stored
        self._heartbeat: asyncio.Task[None] | None = None
        self._pruner: asyncio.Task[None] | None = None
        metrics.watch_connections(self._connection_counts)

    async def start(self) -> None:
        self._heartbeat = asyncio.create_task(self._beat())
        self._pruner = asyncio.create_task(run_pruner(self.db, self.settings.event_retention))

    async def stop(self) -> None:
        """Graceful shutdown: flush pending scores, close every socket 1012."""
        await self.batcher.flush_all()
        await self._settle(SETTLE_SECONDS)
        closing = [conn.close_after_sending(WS_1012_SERVICE_RESTART) for conn in list(self.connections())]
        await asyncio.wait_for(asyncio.gather(*closing, return_exceptions=True), SETTLE_SECONDS)
        for task in [self._heartbeat, self._pruner, *(room.task for room in self.rooms.values())]:
            if task is not None:
                task.cancel()
        self.rooms.clear()

    async def _settle(self, seconds: float) -> None:
        """Wait (a bounded time) until every room has handed its sockets all that is stored."""
        deadline = time.monotonic() + seconds
        for room in list(self.rooms.values()):
            last = await eventlog.last_id(self.db, room.name)
            while room.next_id <= last and time.monotonic() < deadline:  # noqa: ASYNC110 (shutdown only, bounded)
                await asyncio.sleep(0.01)

    # -- publishing (the services' Publisher) ---------------------------------------------

    async def publish(self, events: Sequence[Event]) -> None:
        immediate: list[Event] = []
        for event in events:
            if event.type == SCORE_UPDATED:
                await self.batcher.submit(event)
            else:
                if event.type == MATCH_COMPLETED:
                    await self.batcher.flush(int(event.data["match_id"]))
                immediate.append(event)
        if immediate:
            await self.publish_now(immediate)

    async def publish_now(self, events: Sequence[Event]) -> None:
        # One publisher at a time in this process, so the broker sees each room's ids in order.
        async with self._publish_lock:
            events = [event for event in events if not self._stored_already(event)]
            if not events:
                return
            refreshed: list[Event] = []

            async def fresh(event: Event) -> Event:
                refreshed.append(await self._fresh(event))
                return refreshed[-1]

            stored = await eventlog.store(self.db, events, fresh)
            self._remember(refreshed)
            for event in stored:
                try:
                    await self.broker.publish(event.room, event.id, event.frame)
                except Exception:
                    # Stored all the same: the next event's gap fill or a resume delivers it.
                    log.exception("broadcast of %s %d failed", event.room, event.id)

    def _stored_already(self, event: Event) -> bool:
        """A score this process stored already, or an older one: a window's pending score can be
        overtaken while it waits for the lock by another send rebuilt to the newest (`_fresh`)."""
        if event.type != SCORE_UPDATED:
            return False
        return bool(event.data["sequence"] <= self._stored_scores.get(int(event.data["match_id"]), 0))

    def _remember(self, stored: Sequence[Event]) -> None:
        for event in stored:
            if event.type == SCORE_UPDATED:
                match_id = int(event.data["match_id"])
                # Re-inserted, so the dict is in order of use: the oldest goes first past the bound
                # (a match that ended on another instance, say; only a send still in flight needs it).
                newest = max(self._stored_scores.pop(match_id, 0), event.data["sequence"])
                self._stored_scores[match_id] = newest
                if len(self._stored_scores) > MAX_REMEMBERED_MATCHES:
                    del self._stored_scores[next(iter(self._stored_scores))]
            elif event.type in (MATCH_COMPLETED, MATCH_CANCELLED):
                self._stored_scores.pop(int(event.data["match_id"]), None)  # no score follows

    async def _fresh(self, event: Event) -> Event:
        """Under the lock of its rooms, rebuild what concurrent actions may have made stale.

        A bracket is rebuilt. A score older than the match's stored one (another reporter, maybe
        on another instance, got in between) is replaced by the stored one, so the log's scores
        never go back; the batcher then skips its own copies of what this one already carries.
        """
        if event.type == BRACKET_UPDATED:
            tournament_id = int(event.data["tournament_id"])
            data = {"tournament_id": tournament_id, "bracket": await bracket(self.db, tournament_id)}
            return Event(event.type, data, event.rooms)
        if event.type == SCORE_UPDATED:
            match = await reload(self.db, int(event.data["match_id"]))
            if match is not None and match.sequence > event.data["sequence"]:
                self.batcher.note_sent(match.id, match.sequence)
                return services_events.score_updated(match)
        return event

    # -- rooms --------------------------------------------------------------------------------

    async def join(self, conn: Connection) -> None:
        room = self.rooms.get(conn.room)
        if room is None:
            room = self.rooms[conn.room] = Room(conn.room)
            room.task = asyncio.create_task(self._listen(room))
        room.connections.add(conn)
        # While the broker is down the room keeps retrying; the socket is told, not left waiting.
        await asyncio.wait_for(room.ready.wait(), JOIN_TIMEOUT)

    def leave(self, conn: Connection) -> None:
        room = self.rooms.get(conn.room)
        if room is None:
            return
        room.connections.discard(conn)
        if not room.connections:
            del self.rooms[conn.room]
            if room.task is not None:
                room.task.cancel()

    async def establish(
        self,
        conn: Connection,
        snapshot: Callable[[], Awaitable[dict[str, Any]]],
        resume_from: int | None,
        welcome: dict[str, Any],
    ) -> None:
        """Subscribe, then read the last id, the snapshot and the replay, then go live.

        Nothing is written to the socket here: connection_established and the replay go through
        the connection's writer, so a client that does not read holds neither this task nor a
        database connection.
        """
        await self.join(conn)
        async with self.db.connection():
            last = await eventlog.last_id(self.db, conn.room)
            state = await snapshot()
            replay, status = await self._replay(conn.room, resume_from, last)
        data = {
            **welcome,
            "server_time": int(time.time() * 1000),
            "last_event_id": last,
            "replay": status,
            "state": state,
        }
        established = encode({"type": "connection_established", "data": data})
        conn.start(after=last, first=[established, *(event.frame for event in replay)])

    async def _replay(self, room: str, after: int | None, last: int) -> tuple[list[eventlog.StoredEvent], str]:
        """The stored events after `after`, or "partial" when they are pruned or too many."""
        if after is None or after >= last:
            return [], "complete"
        if last - after > self.settings.max_replay_events:
            return [], "partial"  # too far behind: the snapshot is cheaper than the log
        events: list[eventlog.StoredEvent] = []
        size = 0
        while len(events) < last - after:
            page = await eventlog.read_after(self.db, room, after + len(events), min(REPLAY_PAGE, last - after))
            if not page or page[0].id != after + len(events) + 1:
                return [], "partial"  # pruned by retention
            events += [event for event in page if event.id <= last]
            size += sum(len(event.frame) for event in page)
            if size > MAX_REPLAY_BYTES:
                return [], "partial"  # huge events (whole brackets): the snapshot is smaller
            if page[-1].id >= last:
                break
        return events, "complete"

    async def _listen(self, room: Room) -> None:
        """Hold the room's broker subscription; when the broker fails, subscribe again (with
        backoff) and catch up from the log, so the room's sockets miss nothing."""
        backoff = RESUBSCRIBE_MIN
        first = True
        while True:
            try:
                async with self.broker.subscribe(room.name) as subscription:
                    if first:
                        room.next_id = await eventlog.last_id(self.db, room.name) + 1
                        room.ready.set()
                        first = False
                    else:
                        self.metrics.broker_reconnects.inc()
                        log.info("%s: subscribed again; catching up from the log", room.name)
                        await self._catch_up(room)
                    backoff = RESUBSCRIBE_MIN
                    await self._pump(room, subscription)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s: broker subscription lost (%s); retrying in %.1fs", room.name, exc, backoff)
                if first:  # the broker is down: let sockets join now; the catch-up brings the rest
                    with contextlib.suppress(Exception):
                        room.next_id = await eventlog.last_id(self.db, room.name) + 1
                        room.ready.set()
                        first = False
                if self.broker.health() == "ok":
                    await asyncio.sleep(backoff)
                else:  # back as soon as the broker is
                    await self.broker.wait_available(backoff)
                backoff = min(backoff * 2, RESUBSCRIBE_MAX)

    async def _pump(self, room: Room, subscription: Subscription) -> None:
        while True:
            if room.gap_deadline is None:
                message = await subscription.get()
            else:
                wait = room.gap_deadline - time.monotonic()
                try:
                    message = await asyncio.wait_for(subscription.get(), max(wait, 0))
                except TimeoutError:
                    await self._fill_gap(room)
                    continue
            await self._receive(room, message)

    async def _catch_up(self, room: Room) -> None:
        """Deliver what was stored while the subscription was down."""
        while True:
            found = await eventlog.read_after(self.db, room.name, room.next_id - 1, CATCH_UP_BATCH)
            now = time.time_ns()
            for event in found:
                room.ahead.setdefault(event.id, (event.frame, now))
            self._deliver_ready(room)
            if len(found) < CATCH_UP_BATCH:
                if room.ahead and room.gap_deadline is None:
                    room.gap_deadline = time.monotonic() + self.settings.gap_fill_wait_ms / 1000
                return

    async def _receive(self, room: Room, message: BrokerMessage) -> None:
        if message.event_id < room.next_id or message.event_id in room.ahead:
            return  # a duplicate: already delivered
        frame = message.frame
        if frame is None:  # too large for the broker: read it from the log
            found = await eventlog.read_after(self.db, room.name, message.event_id - 1, 1)
            if not found or found[0].id != message.event_id:
                return  # pruned already: the gap fill will skip it
            frame = found[0].frame
        room.ahead[message.event_id] = (frame, message.published_ns)
        self._deliver_ready(room)
        if room.ahead and room.gap_deadline is None:
            room.gap_deadline = time.monotonic() + self.settings.gap_fill_wait_ms / 1000

    async def _fill_gap(self, room: Room) -> None:
        """Read the missing events from the log, then deliver everything in order."""
        upto = max(room.ahead)
        found = await eventlog.read_after(self.db, room.name, room.next_id - 1, upto - room.next_id + 1)
        now = time.time_ns()
        for event in found:
            room.ahead.setdefault(event.id, (event.frame, now))
        self._deliver_ready(room)
        if room.ahead:  # still missing (pruned, or never committed): skip the hole
            log.warning("%s: events %d..%d are not in the log; skipping", room.name, room.next_id, min(room.ahead) - 1)
            room.next_id = min(room.ahead)
            self._deliver_ready(room)
        room.gap_deadline = None

    def _deliver_ready(self, room: Room) -> None:
        while room.next_id in room.ahead:
            frame, published_ns = room.ahead.pop(room.next_id)
            for conn in room.connections:
                conn.offer(room.next_id, frame)
            self.metrics.frames_out.inc(len(room.connections))
            self.metrics.publish_latency.observe(max(0, time.time_ns() - published_ns) / 1e9)
            room.next_id += 1
        if not room.ahead:
            room.gap_deadline = None

    # -- heartbeat ------------------------------------------------------------------------------

    async def _beat(self) -> None:
        interval = self.settings.heartbeat_interval
        timeout = self.settings.heartbeat_timeout
        tick = min(interval, timeout / 4)
        last_ping = time.monotonic()
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            frame = None
            if now - last_ping >= interval - tick / 10:
                frame, last_ping = encode_ping(int(time.time() * 1000)), now
            sent = 0
            for conn in list(self.connections()):
                if now - conn.last_seen > timeout:
                    conn.abort(WS_4004_HEARTBEAT_TIMEOUT, drain=True)
                elif frame is not None:
                    conn.offer(CONTROL, frame)
                    sent += 1
            self.metrics.frames_out.inc(sent)

    def connections(self) -> Iterator[Connection]:
        for room in list(self.rooms.values()):
            yield from room.connections

    def _connection_counts(self) -> list[tuple[str, str, int, int]]:
        counts: dict[tuple[str, str], list[int]] = {}
        for conn in self.connections():
            entry = counts.setdefault((conn.room_kind, conn.role), [0, 0])
            entry[0] += 1
            entry[1] += conn.pending
        return [(kind, role, n, pending) for (kind, role), (n, pending) in counts.items()]
