"""Score batching: per match, the leading update at once, then the latest one per window.

An update that arrives when no window is open goes out at once and opens a window; updates inside
the window replace each other, and the latest goes out when the window closes, which opens the
next window. So a continuous stream yields one `score_updated` per window and the last value
always arrives. An event that ends a match (`match_completed`, `match_cancelled`) sends the
match's pending update first, and no score of that match goes out after it.

A window's timer is armed only once an update waits in it: a lone score (the usual pace of a
match, one every few seconds) opens a window that simply runs out, and the loop is not woken
100 ms later for nothing (a wakeup costs ~190 us of CPU here: matchcast/ticks.py).

`ScoreLedger` is the one owner of "which score went out last": the hub records what it stored,
and both the batcher and the hub skip what is older.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from matchcast.protocol import MATCH_CANCELLED, MATCH_COMPLETED, SCORE_UPDATED, Event

log = logging.getLogger("matchcast.batching")
Send = Callable[[Sequence[Event]], Coroutine[Any, Any, None]]
Schedule = Callable[[float, Callable[[], None]], asyncio.TimerHandle | Any]  # loop.call_later, or a fake clock's
Clock = Callable[[], float]  # loop.time, or a fake clock's: the clock `Schedule` counts on
MATCH_ENDS = (MATCH_COMPLETED, MATCH_CANCELLED)
ENDED = 2**63  # the ledger's mark for a match that has ended: every score of it is old
MAX_REMEMBERED_MATCHES = 10_000  # matches the ledger keeps (live ones, in practice)


def _match_id(event: Event) -> int:
    return int(event.data["match_id"])


class ScoreLedger:
    """Per match, the newest score sequence this process stored, or that the match ended.

    Bounded: past `limit` matches, the least recently stored goes (a match that ended on another
    instance, say; only a send still in flight needs it).
    """

    def __init__(self, limit: int = MAX_REMEMBERED_MATCHES) -> None:
        self._newest: dict[int, int] = {}  # in order of use: the oldest first
        self._limit = limit

    def outdated(self, event: Event) -> bool:
        """A score no newer than one already stored, or of a match that has ended."""
        return event.type == SCORE_UPDATED and event.data["sequence"] <= self._newest.get(_match_id(event), 0)

    def record(self, stored: Sequence[Event]) -> None:
        for event in stored:
            if event.type == SCORE_UPDATED:
                self._set(_match_id(event), max(self._newest.get(_match_id(event), 0), event.data["sequence"]))
            elif event.type in MATCH_ENDS:
                self._set(_match_id(event), ENDED)

    def _set(self, match_id: int, value: int) -> None:
        self._newest.pop(match_id, None)  # re-inserted: the dict stays in order of use
        self._newest[match_id] = value
        if len(self._newest) > self._limit:
            del self._newest[next(iter(self._newest))]

    def __len__(self) -> int:
        return len(self._newest)


class _Window:
    __slots__ = ("closes_at", "pending", "timer")

    def __init__(self, closes_at: float) -> None:
        self.closes_at = closes_at
        self.pending: Event | None = None
        self.timer: Any = None  # armed while an update is pending

    def ran_out(self, now: float) -> bool:
        """Closed by the clock alone: its time is up and nothing waits in it."""
        return self.timer is None and now >= self.closes_at


class ScoreBatcher:
    def __init__(
        self,
        window_ms: int,
        send: Send,
        ledger: ScoreLedger,
        schedule: Schedule | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._window = window_ms / 1000
        self._send = send
        self.ledger = ledger
        self._schedule = schedule
        self._clock = clock
        # Per match, in the order the windows opened, so in order of `closes_at`: the ones that
        # ran out are dropped from the front (`_drop_run_out`).
        self._windows: dict[int, _Window] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    async def publish(self, events: Sequence[Event]) -> None:
        """Send `events` in order: scores through their match's window, the rest at once, an
        event that ends a match after the match's pending score."""
        immediate: list[Event] = []
        for event in events:
            if event.type == SCORE_UPDATED:
                await self.submit(event)
                continue
            if event.type in MATCH_ENDS:
                await self.flush(_match_id(event))
            immediate.append(event)
        if immediate:
            await self._send(immediate)

    async def submit(self, event: Event) -> None:
        if self.ledger.outdated(event):
            return  # overtaken by a newer score already stored (concurrent reporters), or the match ended
        match_id = _match_id(event)
        now = self._now()
        self._drop_run_out(now)
        window = self._windows.get(match_id)
        if window is not None and not window.ran_out(now):
            # Concurrent updates can reach here out of order: keep the newest sequence.
            if window.pending is None or window.pending.data["sequence"] < event.data["sequence"]:
                window.pending = event
            if window.timer is None:
                self._arm(match_id, window, now)
            return
        self._open(match_id, now)
        await self._send([event])

    def _open(self, match_id: int, now: float) -> None:
        self._windows.pop(match_id, None)  # to the back: the order stays the order of closes_at
        self._windows[match_id] = _Window(now + self._window)

    def _arm(self, match_id: int, window: _Window, now: float) -> None:
        schedule = self._schedule or asyncio.get_running_loop().call_later
        window.timer = schedule(window.closes_at - now, lambda: self._window_closed(match_id))

    def _drop_run_out(self, now: float) -> None:
        while self._windows:
            match_id, window = next(iter(self._windows.items()))
            if not window.ran_out(now):
                return
            del self._windows[match_id]

    def _window_closed(self, match_id: int) -> None:
        window = self._windows.get(match_id)
        if window is None:
            return
        window.timer = None
        event, window.pending = window.pending, None
        if event is None or self.ledger.outdated(event):
            del self._windows[match_id]  # flushed, or a newer score went out meanwhile: closed
            return
        self._open(match_id, self._now())  # the stream goes on: a new window after this send
        task = asyncio.create_task(self._send([event]))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("sending a batched score failed", exc_info=task.exception())

    async def flush(self, match_id: int) -> None:
        """Send the pending update of `match_id` now and close its window."""
        window = self._windows.pop(match_id, None)
        if window is not None and window.timer is not None:
            window.timer.cancel()
        if self._tasks:  # a window's send still in flight goes first
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if window is not None and window.pending is not None and not self.ledger.outdated(window.pending):
            await self._send([window.pending])

    async def flush_all(self) -> None:
        for match_id in list(self._windows):
            await self.flush(match_id)

    @property
    def open_windows(self) -> int:
        now = self._now()
        return sum(not window.ran_out(now) for window in self._windows.values())
