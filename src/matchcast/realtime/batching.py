"""Score batching: per match, the leading update at once, then the latest one per window.

An update that arrives when no window is open goes out at once and opens a window; updates inside
the window replace each other, and the latest goes out when the window closes, which opens the
next window. So a continuous stream yields one `score_updated` per window and the last value
always arrives. `flush()` sends a pending update now (before `match_completed`, at shutdown).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from matchcast.protocol import Event

log = logging.getLogger("matchcast.batching")
Send = Callable[[Sequence[Event]], Coroutine[Any, Any, None]]


class _Window:
    __slots__ = ("pending", "timer")

    def __init__(self) -> None:
        self.pending: Event | None = None
        self.timer: asyncio.TimerHandle | None = None


class ScoreBatcher:
    def __init__(self, window_ms: int, send: Send) -> None:
        self._window = window_ms / 1000
        self._send = send
        self._windows: dict[int, _Window] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._sent: dict[int, int] = {}  # match id -> the last sequence broadcast

    async def submit(self, event: Event) -> None:
        match_id = int(event.data["match_id"])
        if event.data["sequence"] <= self._sent.get(match_id, 0):
            return  # overtaken by a newer score already sent (concurrent reporters)
        window = self._windows.get(match_id)
        if window is not None:
            # Concurrent updates can reach here out of order: keep the newest sequence.
            if window.pending is None or window.pending.data["sequence"] < event.data["sequence"]:
                window.pending = event
            return
        window = self._windows[match_id] = _Window()
        self._arm(match_id, window)
        self._sent[match_id] = event.data["sequence"]
        await self._send([event])

    def _arm(self, match_id: int, window: _Window) -> None:
        loop = asyncio.get_running_loop()
        window.timer = loop.call_later(self._window, self._window_closed, match_id)

    def _window_closed(self, match_id: int) -> None:
        window = self._windows.get(match_id)
        if window is None:
            return
        if window.pending is None:
            del self._windows[match_id]
            return
        event, window.pending = window.pending, None
        if event.data["sequence"] <= self._sent.get(match_id, 0):
            del self._windows[match_id]  # a newer score already went out with another event
            return
        self._sent[match_id] = event.data["sequence"]
        self._arm(match_id, window)  # the stream goes on: a new window after this send
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
        sent = self._sent.pop(match_id, 0)  # the match is over (or the server stops)
        if window is not None and window.pending is not None and window.pending.data["sequence"] > sent:
            await self._send([window.pending])

    def note_sent(self, match_id: int, sequence: int) -> None:
        """A score of `sequence` went out for `match_id` (rebuilt when stored): skip older ones."""
        if match_id in self._sent or match_id in self._windows:
            self._sent[match_id] = max(self._sent.get(match_id, 0), sequence)

    async def flush_all(self) -> None:
        for match_id in list(self._windows):
            await self.flush(match_id)

    @property
    def open_windows(self) -> int:
        return len(self._windows)
