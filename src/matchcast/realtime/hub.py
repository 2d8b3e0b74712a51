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
from matchcast.db.staleness import StaleChecks
from matchcast.protocol import (
    WS_1012_SERVICE_RESTART,
    WS_4004_HEARTBEAT_TIMEOUT,
    WS_4009_SLOW_CONSUMER,
    Event,
    encode,
    encode_ping,
)
from matchcast.realtime import eventlog
from matchcast.realtime.batching import ScoreBatcher, ScoreLedger
from matchcast.realtime.broker import Broker, Subscription
from matchcast.realtime.connection import CONTROL, Connection, ReadPage, Replay
from matchcast.realtime.frames import Frame
from matchcast.realtime.metrics import Metrics
from matchcast.realtime.quotas import SharedBuckets, SocketQuota
from matchcast.realtime.recent import RECENT_EVENTS
from matchcast.realtime.retention import run_pruner
from matchcast.realtime.rooms import Room
from matchcast.realtime.snapshots import Read, SnapshotCache
from matchcast.realtime.viewers import ViewerCounter
from matchcast.settings import Settings
from matchcast.ticks import sleep_to_tick

log = logging.getLogger("matchcast.hub")
RESUBSCRIBE_MIN, RESUBSCRIBE_MAX = 0.2, 5.0  # seconds between attempts while the broker is down
JOIN_TIMEOUT = 10.0  # seconds a socket waits for its room's broker subscription
MAX_REPLAY_BYTES = 4 * 1024 * 1024  # one resume holds at most this much in memory
SETTLE_SECONDS = 3.0  # at shutdown, for the last events to reach the sockets


class Hub:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        broker: Broker,
        metrics: Metrics,
        refresh: eventlog.Refresh,
        stale_check: StaleChecks | None = None,
    ) -> None:
        """`refresh` is the domain's: under the lock of an event's rooms, it rebuilds what
        concurrent actions may have made stale (a bracket, a score overtaken by a newer one);
        `stale_check`, the domain's too, lets the database judge that alone (eventlog.store)."""
        self.settings = settings
        self.db = db
        self.broker = broker
        self.metrics = metrics
        self.refresh = refresh
        self.stale_check = stale_check
        self.rooms: dict[str, Room[Connection]] = {}
        self.ledger = ScoreLedger()
        self.batcher = ScoreBatcher(settings.score_batch_window_ms, self.publish_now, self.ledger)
        self._publish_lock = asyncio.Lock()
        self._heartbeat: asyncio.Task[None] | None = None
        self._pruner: asyncio.Task[None] | None = None
        self.quota = SocketQuota(settings.max_sockets_per_user, settings.max_sockets_per_address)
        self.user_rate = SharedBuckets(settings.user_rate_limit)
        self.snapshots = SnapshotCache()
        self.viewers = ViewerCounter(broker, self, settings.viewers_interval_ms / 1000)
        metrics.watch_connections(self._connection_counts)

    async def start(self) -> None:
        self._heartbeat = asyncio.create_task(self._beat())
        self._pruner = asyncio.create_task(run_pruner(self.db, self.settings.event_retention))
        self.viewers.start()

    async def stop(self) -> None:
        """Graceful shutdown: flush pending scores, close every socket 1012."""
        await self.batcher.flush_all()
        await self._settle(SETTLE_SECONDS)
        closing = [
            asyncio.create_task(conn.close_after_sending(WS_1012_SERVICE_RESTART)) for conn in list(self.connections())
        ]
        try:
            # A client that does not read would hold its close for CLOSE_GRACE: past the bound it
            # is cut off, and the rest of the shutdown (the broker, the database) goes on.
            if closing:
                _, slow = await asyncio.wait(closing, timeout=SETTLE_SECONDS)
                for task in slow:
                    task.cancel()
                await asyncio.gather(*slow, return_exceptions=True)
        finally:
            # Cancelled first, so a stop cut off by its bound (server.py) still leaves nothing running.
            for running in [self._heartbeat, self._pruner, *(room.task for room in self.rooms.values())]:
                if running is not None:
                    running.cancel()
            self.rooms.clear()
            await self.viewers.stop()

    async def _settle(self, seconds: float) -> None:
        """Wait (a bounded time) until every room has handed its sockets all that is stored."""
        deadline = time.monotonic() + seconds
        for room in list(self.rooms.values()):
            last = await eventlog.last_id(self.db, room.name)
            while room.next_id <= last and time.monotonic() < deadline:  # noqa: ASYNC110 (shutdown only, bounded)
                await asyncio.sleep(0.01)

    # -- publishing (the services' Publisher) ---------------------------------------------

    async def publish(self, events: Sequence[Event]) -> None:
        await self.batcher.publish(events)

    async def publish_now(self, events: Sequence[Event]) -> None:
        # One publisher at a time in this process, so the broker sees each room's ids in order.
        async with self._publish_lock:
            # A window's pending score can be overtaken, while it waits for the lock, by another
            # send rebuilt to the newest by `refresh`; a match may have ended meanwhile.
            events = [event for event in events if not self.ledger.outdated(event)]
            if not events:
                return
            refreshed: list[Event] = []

            async def fresh(event: Event) -> Event:
                refreshed.append(await self.refresh(event))
                return refreshed[-1]

            stored = await eventlog.store(self.db, events, fresh, self.stale_check)
            # Nothing refreshed: the database found the events fresh and stored them as they were.
            self.ledger.record(refreshed or events)
            try:
                await self.broker.publish_all([(event.room, event.id, event.frame) for event in stored])
            except Exception:
                # Stored all the same: the next event's gap fill or a resume delivers them.
                log.exception("broadcast of %s failed", ", ".join(f"{event.room} {event.id}" for event in stored))

    # -- rooms --------------------------------------------------------------------------------

    async def join(self, conn: Connection) -> None:
        room = self.rooms.get(conn.room)
        if room is None:
            room = self.rooms[conn.room] = self._room(conn.room)
            room.task = asyncio.create_task(self._listen(room))
        room.add(conn)
        conn.join(room)
        # While the broker is down the room keeps retrying; the socket is told, not left waiting.
        await asyncio.wait_for(room.ready.wait(), JOIN_TIMEOUT)

    def _room(self, name: str) -> Room[Connection]:
        async def read_log(after: int, limit: int) -> list[eventlog.StoredEvent]:
            return await eventlog.read_after(self.db, name, after, limit)

        return Room(name, read_log, self.settings.gap_fill_wait_ms / 1000, delivered=self._delivered)

    def _delivered(self, sockets: int, published_ns: int) -> None:
        self.metrics.frames_out.inc(sockets)
        self.metrics.publish_latency.observe(max(0, time.time_ns() - published_ns) / 1e9)

    def leave(self, conn: Connection) -> None:
        room = self.rooms.get(conn.room)
        if room is None:
            return
        room.discard(conn)
        conn.part()
        if not room.connections:
            del self.rooms[conn.room]
            self.snapshots.forget(conn.room)
            if room.task is not None:
                room.task.cancel()

    async def establish(
        self,
        conn: Connection,
        snapshot: Callable[[], Awaitable[dict[str, Any]]],
        resume_from: int | None,
        welcome: dict[str, Any],
    ) -> None:
        """Subscribe, then read the last id and the snapshot (shared with the sockets joining within
        a second: realtime/snapshots.py) and the replay, then go live.

        The socket gets the snapshot as of its last id, then every event after it: those the room
        delivered before the socket was in it (a shared snapshot may be older than the room) and
        those asked for by `resume_from` come as a replay, from the room's recent events or the
        log; later ones come live.

        Nothing is written to the socket here: connection_established and the replay go through
        the connection's writer, so a client that does not read holds neither this task nor a
        database connection; the replay is read a page at a time as the client takes it.
        """
        await self.join(conn)

        async def read() -> Read:
            async with self.db.connection():
                return await eventlog.last_id(self.db, conn.room), await snapshot()

        room = self.rooms.get(conn.room)  # gone if the socket already left
        live_from = room.next_id if room is not None else 0  # the room offers it these from now on
        last, state = await (read() if room is None else self.snapshots.get(conn.room, read))
        status = "complete"
        replay_from = last
        if resume_from is not None and resume_from < last:
            from_recent = self._recent_replay_status(conn.room, resume_from, last)
            if from_recent is not None:
                status = from_recent
            else:  # older than the room's recent events: the log decides
                async with self.db.connection():
                    status = await self._replay_status(conn.room, resume_from, last)
            if status == "complete":
                replay_from = resume_from
        elif resume_from is not None:
            replay_from = resume_from  # it holds more than the snapshot says: no event twice
        data = {
            **welcome,
            "server_time": int(time.time() * 1000),
            "last_event_id": last,
            "replay": status,
            "viewers": self.viewers.total(conn.room),
            "state": state,
        }
        established = encode({"type": "connection_established", "data": data})
        until = max(last, live_from - 1)
        replay = None
        if replay_from < until:
            replay = Replay(self._page_reader(conn.room), replay_from, until, self.settings.heartbeat_timeout)
        conn.start(after=until, first=[Frame(established)], replay=replay)

    def _page_reader(self, name: str) -> ReadPage:
        """A replay's pages: from the room's recent events while they hold the next one (no query,
        and the frames already built), else from the log."""

        async def read(after: int, limit: int) -> list[tuple[int, Frame]]:
            room = self.rooms.get(name)
            if room is not None:
                held = room.recent.after(after, limit)
                if held:
                    return held
            return [(event.id, Frame(event.frame)) for event in await eventlog.read_after(self.db, name, after, limit)]

        return read

    def _recent_replay_status(self, name: str, after: int, last: int) -> str | None:
        """The resume's status when the room's recent events decide it without a query, else None.

        Held recent events are the log's, contiguous up to what the room delivered; anything newer
        was stored after them and cannot be pruned yet, and what is held fits MAX_REPLAY_BYTES.
        """
        if last - after > self.settings.max_replay_events:
            return "partial"
        room = self.rooms.get(name)
        if room is not None and room.recent.holds(after + 1):
            return "complete"
        return None

    async def _replay_status(self, room: str, after: int | None, last: int) -> str:
        """ "partial" when the events after `after` are pruned or too many, decided without reading them."""
        if after is None or after >= last:
            return "complete"
        if last - after > self.settings.max_replay_events:
            return "partial"  # too far behind: the snapshot is cheaper than the log
        oldest = await eventlog.oldest_id(self.db, room)
        if oldest is None or oldest > after + 1:
            return "partial"  # pruned by retention
        if await eventlog.payload_bytes(self.db, room, after, last) > MAX_REPLAY_BYTES:
            return "partial"  # huge events (whole brackets): the snapshot is smaller
        return "complete"

    async def _listen(self, room: Room[Connection]) -> None:
        """Hold the room's broker subscription; when the broker fails, subscribe again (with
        backoff) and catch up from the log, so the room's sockets miss nothing."""
        backoff = RESUBSCRIBE_MIN
        first = True
        while True:
            try:
                async with self.broker.subscribe(room.name) as subscription:
                    if first:
                        await self._start(room)
                        first = False
                    else:
                        self.metrics.broker_reconnects.inc()
                        log.info("%s: subscribed again; catching up from the log", room.name)
                        await room.catch_up()
                    backoff = RESUBSCRIBE_MIN
                    await self._pump(room, subscription)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s: broker subscription lost (%s); retrying in %.1fs", room.name, exc, backoff)
                if first:  # the broker is down: let sockets join now; the catch-up brings the rest
                    with contextlib.suppress(Exception):
                        room.start_at(await eventlog.last_id(self.db, room.name) + 1)
                        first = False
                if self.broker.health() == "ok":
                    await asyncio.sleep(backoff)
                else:  # back as soon as the broker is
                    await self.broker.wait_available(backoff)
                backoff = min(backoff * 2, RESUBSCRIBE_MAX)

    async def _start(self, room: Room[Connection]) -> None:
        """Start delivering after the last stored id, with the events before it as the room's
        recent ones: after a restart, everyone resuming replays them from memory."""
        async with self.db.connection():
            last = await eventlog.last_id(self.db, room.name)
            stored = await eventlog.read_after(self.db, room.name, max(0, last - RECENT_EVENTS), RECENT_EVENTS)
        room.start_at(last + 1, [(event.id, Frame(event.frame)) for event in stored if event.id <= last])

    @staticmethod
    async def _pump(room: Room[Connection], subscription: Subscription) -> None:
        while True:
            wait = room.wait()
            if wait is None:
                message = await subscription.get()
            else:
                try:
                    message = await asyncio.wait_for(subscription.get(), wait)
                except TimeoutError:
                    await room.fill_gap()
                    continue
            await room.receive(message.event_id, message.frame, message.published_ns)

    # -- heartbeat ------------------------------------------------------------------------------

    async def _beat(self) -> None:
        interval = self.settings.heartbeat_interval
        timeout = self.settings.heartbeat_timeout
        tick = min(interval, timeout / 4)
        last_ping = time.monotonic()
        while True:
            await sleep_to_tick(tick)
            now = time.monotonic()
            frame = None
            if now - last_ping >= interval - tick / 10:
                frame, last_ping = Frame(encode_ping(int(time.time() * 1000))), now
            sent = 0
            for conn in list(self.connections()):
                if now - conn.last_seen > timeout:
                    conn.abort(WS_4004_HEARTBEAT_TIMEOUT, drain=True)
                elif conn.stuck(now, timeout):  # pings sent, nothing read: a slow consumer
                    conn.abort(WS_4009_SLOW_CONSUMER)
                elif frame is not None:
                    conn.offer(CONTROL, frame)
                    sent += 1
            self.metrics.frames_out.inc(sent)

    # -- the audience (realtime/viewers.py) ---------------------------------------------------------

    def local_counts(self) -> dict[str, int]:
        return {name: len(room.connections) for name, room in self.rooms.items()}

    def tell_room(self, room: str, text: str) -> None:
        found = self.rooms.get(room)
        if found is None:
            return
        frame = Frame(text)
        for conn in found.connections:
            conn.offer(CONTROL, frame)
        self.metrics.frames_out.inc(len(found.connections))

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
