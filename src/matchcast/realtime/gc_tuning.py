"""Keeping the cyclic garbage collector off the fan-out path.

Every open WebSocket holds a few hundred long-lived objects (protocol, parser, task, coroutine
frames). A full collection walks all of them: at 3k sockets that was a 150-200 ms pause about
once a second, most of a spectator's p99 (docs/performance.md). So what survives start-up is
moved to the permanent generation (`gc.freeze()`), and so is what survives any full collection
that took longer than `slow` (after a burst of connections, the new sockets): collections then
only walk what is young, and stay short whatever the number of sockets.

A burst of joins (a deploy's reconnect storm) does not wait for that: each look at the number of
sockets (every second) that finds `burst` or more new ones freezes at once, and the youngest
generation is collected every YOUNG_THRESHOLD allocations instead of CPython's 700. Otherwise a
joining socket's objects (about 80 tracked) were walked in gen0, again in gen1 and again in a full
collection before being frozen: at ~1 us an object, a third of a join's CPU (docs/performance.md).

Freezing costs nothing (it splices lists); its price is that reference cycles frozen while alive
are not reclaimed once they die. Measured, that is little: about one object per closed socket (2k
to 6k unreachable objects after 5k sockets closed), while collecting everything once is a pause
of 0.15 to 1.5 s. So it is done rarely: every `reclaim_every` seconds (if sockets closed at all),
everything is unfrozen, collected once and frozen again.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from typing import Any

from matchcast.ticks import sleep_to_tick

log = logging.getLogger("matchcast.gc")
SLOW_COLLECTION = 0.005  # seconds: a full collection slower than this freezes its survivors
WATCH_INTERVAL = 1.0  # seconds between looks at the number of open sockets
RECLAIM_EVERY = 6 * 3600.0  # seconds: bounds what dead frozen cycles can hold
JOIN_BURST = 100  # sockets joined between two looks that get their objects frozen at once
YOUNG_THRESHOLD = 10_000  # allocations between young collections (CPython's 700): fewer, longer (~5 ms)


class GcTuner:
    def __init__(
        self,
        connections: Callable[[], int],
        slow: float = SLOW_COLLECTION,
        reclaim_every: float = RECLAIM_EVERY,
        burst: int = JOIN_BURST,
    ) -> None:
        self.connections = connections
        self.slow = slow
        self.reclaim_every = reclaim_every
        self.burst = burst
        self._thresholds = gc.get_threshold()
        self.freezes = self.reclaims = self.full_collections = 0
        self.longest = self.total = 0.0  # seconds spent in full collections (reclaims apart)
        self.reclaim_time = 0.0
        self._reclaiming = False
        self._started = 0.0
        self._freeze_pending = False
        self._last_count = 0
        self._departed = 0  # sockets closed since the last reclaim (at least: counted per look)
        self._reclaimed_at = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Call once start-up is over: what exists now lives as long as the process."""
        self._loop = asyncio.get_running_loop()
        gc.collect()
        self._freeze()
        self._thresholds = gc.get_threshold()
        gc.set_threshold(YOUNG_THRESHOLD, *self._thresholds[1:])
        gc.callbacks.append(self._observe)
        self._task = self._loop.create_task(self._watch())

    def stop(self) -> None:
        if self._observe in gc.callbacks:
            gc.callbacks.remove(self._observe)
            gc.set_threshold(*self._thresholds)
        if self._task is not None:
            self._task.cancel()
            self._task = None
            log.info(
                "gc: %d full collections (longest %.1f ms, %.0f ms in all), %d freezes, %d reclaims (%.0f ms)",
                self.full_collections,
                self.longest * 1000,
                self.total * 1000,
                self.freezes,
                self.reclaims,
                self.reclaim_time * 1000,
            )

    def _observe(self, phase: str, info: dict[str, Any]) -> None:
        # Runs inside the collector, in whichever thread allocated: only measure and schedule here.
        if phase == "start":
            self._started = time.perf_counter()
            return
        if info["generation"] != 2 or self._reclaiming:
            return
        took = time.perf_counter() - self._started
        self.full_collections += 1
        self.total += took
        self.longest = max(self.longest, took)
        if took > self.slow and not self._freeze_pending and self._loop is not None:
            self._freeze_pending = True
            self._loop.call_soon_threadsafe(self._freeze)

    async def _watch(self) -> None:
        while True:
            await sleep_to_tick(WATCH_INTERVAL)
            self.check()

    def check(self) -> None:
        open_now = self.connections()
        self._departed += max(0, self._last_count - open_now)
        if open_now - self._last_count >= self.burst:
            self._freeze()  # the new sockets' objects, before the collector walks them again
        self._last_count = open_now
        if self._departed and time.monotonic() - self._reclaimed_at > self.reclaim_every:
            self.reclaim()

    def reclaim(self) -> None:
        started = time.perf_counter()
        self._reclaiming = True
        try:
            gc.unfreeze()
            freed = gc.collect()
        finally:
            self._reclaiming = False
        self._freeze()
        self.reclaims += 1
        self.reclaim_time += time.perf_counter() - started
        self._departed = 0
        self._reclaimed_at = time.monotonic()
        log.info("gc: reclaimed %d objects in %.0f ms", freed, (time.perf_counter() - started) * 1000)

    def _freeze(self) -> None:
        gc.freeze()
        self.freezes += 1
        self._freeze_pending = False
