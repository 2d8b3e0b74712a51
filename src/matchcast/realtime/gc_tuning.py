"""Keeping the cyclic garbage collector off the fan-out path.

Every open WebSocket holds a few hundred long-lived objects (protocol, parser, task, frames). A
full collection walks all of them: at 3k sockets that was a 150-200 ms pause about once a second,
most of a spectator's p99 (docs/performance.md). Objects that survive start-up, or a burst of
connections, are moved to the permanent generation with `gc.freeze()`, so collections only walk
what is young. Freezing costs nothing (it splices lists); its price is that frozen reference
cycles are not reclaimed once they die, so after many departures, or every `reclaim_every`
seconds, everything is unfrozen, collected once (one pause) and frozen again.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger("matchcast.gc")
WATCH_INTERVAL = 1.0  # seconds between looks at the heap
FREEZE_AFTER = 20_000  # unfrozen long-lived objects (about 100 connections) that trigger a freeze
RECLAIM_EVERY = 600.0  # seconds: bounds what dead frozen cycles can hold


class GcTuner:
    def __init__(
        self, connections: Callable[[], int], interval: float = WATCH_INTERVAL,
        freeze_after: int = FREEZE_AFTER, reclaim_every: float = RECLAIM_EVERY,
    ) -> None:
        self.connections = connections
        self.interval = interval
        self.freeze_after = freeze_after
        self.reclaim_every = reclaim_every
        self.freezes = 0
        self.reclaims = 0
        self._peak = 0  # most connections open since the last reclaim
        self._reclaimed_at = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Call once start-up is over: what exists now lives as long as the process."""
        gc.collect()
        self._freeze()
        self._task = asyncio.get_running_loop().create_task(self._watch())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.check()

    def check(self) -> None:
        now, open_now = time.monotonic(), self.connections()
        self._peak = max(self._peak, open_now)
        if self._peak - open_now > max(100, self._peak // 2) or now - self._reclaimed_at > self.reclaim_every:
            self.reclaim()
        elif len(gc.get_objects(generation=2)) >= self.freeze_after:
            # Survivors of a connection burst: cheap to count, since frozen objects are not listed.
            self._freeze()

    def reclaim(self) -> None:
        started = time.perf_counter()
        gc.unfreeze()
        freed = gc.collect()
        self._freeze()
        self.reclaims += 1
        self._peak = self.connections()
        self._reclaimed_at = time.monotonic()
        log.info("gc: reclaimed %d objects in %.0f ms", freed, (time.perf_counter() - started) * 1000)

    def _freeze(self) -> None:
        gc.collect(1)  # the young garbage first, so it is not frozen with the survivors
        gc.freeze()
        self.freezes += 1
