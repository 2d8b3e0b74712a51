"""The confirmation deadline: one timer per process for the nearest pending report.

It sleeps until the earliest `confirm_by` in the database (any instance's report), confirms what
is due (services/results.confirm_due claims each report under its match's lock, so two instances
never confirm one twice), and sleeps again. A report made here wakes it at once (it is the
publisher the services are handed, passing events on to the hub); one made on another instance
is found at the latest `MAX_SLEEP` later, if that instance's own timer did not take it first.
A restart finds the overdue ones at start-up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from matchcast.db.database import Database, utcnow
from matchcast.protocol import RESULT_REPORTED, Event
from matchcast.services import results
from matchcast.services.publisher import Publisher
from matchcast.ticks import until_next_tick

log = logging.getLogger("matchcast.deadlines")
MAX_SLEEP = 30.0  # seconds: how late a report of a vanished instance may be found
RETRY = 2.0  # seconds after a failure (the database is down)


class DeadlineTimer:
    def __init__(self, db: Database, publisher: Publisher, max_sleep: float = MAX_SLEEP) -> None:
        self.db = db
        self.publisher = publisher
        self.max_sleep = max_sleep
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def publish(self, events: Sequence[Event]) -> None:
        """Pass the events on; a new report may be due before the one the timer sleeps for."""
        await self.publisher.publish(events)
        if any(event.type == RESULT_REPORTED for event in events):
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await results.confirm_due(self.db, self)
                wait = await self._until_next()
            except Exception:
                log.exception("confirming due results failed; retrying in %.0fs", RETRY)
                wait = RETRY
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except TimeoutError:
                pass

    async def _until_next(self) -> float:
        deadline = await results.next_deadline(self.db)
        if deadline is None:
            return until_next_tick(self.max_sleep)
        return min(max((deadline - utcnow()).total_seconds(), 0.0), self.max_sleep)
