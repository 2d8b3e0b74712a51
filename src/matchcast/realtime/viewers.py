"""Viewer counts: how many sockets watch a room, on every instance together.

Each process counts its own sockets per room (the hub's rooms already hold them: a connect or a
disconnect costs nothing here). Once per interval it publishes those counts on one broker
channel, and hears the other instances' reports on it; an instance not heard from for three
intervals (it died) no longer counts. Then each local room whose total changed gets one
`viewers` frame, encoded once for all its sockets. So the cost grows with the rooms and the
instances, per interval, never with the sockets per event.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Protocol

from matchcast.protocol import encode
from matchcast.realtime.broker import Broker
from matchcast.ticks import sleep_to_tick

log = logging.getLogger("matchcast.viewers")
CHANNEL = "viewers"
STALE_INTERVALS = 3  # an instance silent this many intervals stops counting
ROOMS_PER_MESSAGE = 150  # keeps a report well under PostgreSQL's NOTIFY limit (8000 bytes)
RETRY = 1.0
STOP_GRACE = 1.0  # seconds; the last UNSUBSCRIBE is a courtesy: the broker's disconnect, next, ends it


class Audience(Protocol):
    """The hub as the counter sees it."""

    def local_counts(self) -> dict[str, int]:
        """Sockets per room in this process (rooms with none may be left out)."""
        ...

    def tell_room(self, room: str, frame: str) -> None:
        """Offer a control frame to every socket of `room` in this process; never awaits."""
        ...


def viewers_frame(room: str, count: int) -> str:
    return encode({"type": "viewers", "data": {"room": room, "count": count}})


class ViewerCounter:
    def __init__(
        self, broker: Broker, audience: Audience, interval: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.broker = broker
        self.audience = audience
        self.interval = interval
        self.clock = clock
        self.instance = uuid.uuid4().hex
        self.others: dict[str, tuple[float, dict[str, int]]] = {}  # instance -> (heard at, counts)
        self.sent: dict[str, int] = {}  # room -> the count its sockets were last told
        self.reported: set[str] = set()  # rooms this process reported non-zero last time
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        if self.interval <= 0:
            return  # counting off: no reports, no frames; joins see this instance's count only
        self._tasks = [asyncio.create_task(self._report_loop()), asyncio.create_task(self._listen_loop())]

    async def stop(self) -> None:
        """Stop counting; bounded, so a broker that stopped answering cannot hold up a shutdown."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, slow = await asyncio.wait(self._tasks, timeout=STOP_GRACE)
            if slow:
                log.info("viewer counting still unsubscribing after %gs; the broker's disconnect ends it", STOP_GRACE)

    def total(self, room: str, local: int | None = None) -> int:
        """The room's count on every live instance (this one's from `local`, or counted now)."""
        if local is None:
            local = self.audience.local_counts().get(room, 0)
        fresh = self.clock() - STALE_INTERVALS * self.interval
        return local + sum(counts.get(room, 0) for heard, counts in self.others.values() if heard >= fresh)

    def hear(self, message: str) -> None:
        report = json.loads(message)
        if not isinstance(report, dict) or report.get("instance") == self.instance:
            return
        instance, part, counts = str(report["instance"]), int(report["part"]), report["counts"]
        known = {} if part == 0 else self.others.get(instance, (0.0, {}))[1]  # part 0 starts a new report
        known.update({str(room): int(n) for room, n in counts.items()})
        self.others[instance] = (self.clock(), known)

    async def tick(self) -> None:
        """Report this instance's counts, then tell each local room whose total changed."""
        local = self.audience.local_counts()
        counts = {room: n for room, n in local.items() if n > 0}
        # Rooms that emptied since the last report are reported as 0 once, so others drop them now.
        report = {**dict.fromkeys(self.reported - counts.keys(), 0), **counts}
        self.reported = set(counts)
        for part, chunk in enumerate(_chunks(report)):
            message = encode({"instance": self.instance, "part": part, "counts": chunk})
            await self.broker.publish(CHANNEL, 0, message)
        self._forget_stale()
        for room, n in counts.items():
            total = self.total(room, n)
            if self.sent.get(room) != total:
                self.sent[room] = total
                self.audience.tell_room(room, viewers_frame(room, total))
        for room in self.sent.keys() - counts.keys():
            del self.sent[room]  # nobody here to tell

    def _forget_stale(self) -> None:
        fresh = self.clock() - STALE_INTERVALS * self.interval
        for instance in [i for i, (heard, _) in self.others.items() if heard < fresh]:
            del self.others[instance]

    async def _report_loop(self) -> None:
        while True:
            await sleep_to_tick(self.interval)
            try:
                await self.tick()
            except Exception as exc:  # the broker is down: the next tick tries again
                log.debug("viewer count report failed: %s", exc)

    async def _listen_loop(self) -> None:
        while True:
            try:
                async with self.broker.subscribe(CHANNEL) as subscription:
                    while True:
                        message = await subscription.get()
                        if message.frame is None:
                            continue
                        try:
                            self.hear(message.frame)
                        except (ValueError, KeyError, TypeError, AttributeError) as exc:
                            log.warning("ignored a malformed viewer count report: %s", exc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("viewer count subscription lost: %s", exc)
                await self.broker.wait_available(RETRY)
                await asyncio.sleep(RETRY / 5)


def _chunks(counts: dict[str, int]) -> Iterator[dict[str, int]]:
    rooms = sorted(counts)
    for start in range(0, max(len(rooms), 1), ROOMS_PER_MESSAGE):
        yield {room: counts[room] for room in rooms[start : start + ROOMS_PER_MESSAGE]}
