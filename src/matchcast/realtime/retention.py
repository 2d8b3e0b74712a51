"""Retention: events older than MATCHCAST_EVENT_RETENTION are pruned from the log.

Deletes run in small batches with a pause between them, so a large backlog never holds the
database (or, on SQLite, this process's write lock) for long, and the event loop keeps serving.
The room counters are kept: ids never restart, so a resume from a pruned id is "partial".
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import sqlalchemy as sa

from matchcast.db.database import Database, utcnow
from matchcast.db.tables import events
from matchcast.ticks import sleep_to_tick

log = logging.getLogger("matchcast.retention")
BATCH = 1000
PAUSE = 0.05  # seconds between batches


async def prune(db: Database, retention_seconds: float) -> int:
    """Delete every event older than the retention; return how many."""
    cutoff = utcnow() - timedelta(seconds=retention_seconds)
    total = 0
    while True:
        doomed = sa.select(events.c.room, events.c.id).where(events.c.created_at < cutoff).limit(BATCH)
        query = events.delete().where(sa.tuple_(events.c.room, events.c.id).in_(doomed)).returning(events.c.id)
        async with db.write():
            deleted = len(await db.fetch_all(query))
        total += deleted
        if deleted < BATCH:
            return total
        await asyncio.sleep(PAUSE)


async def run_pruner(db: Database, retention_seconds: float) -> None:
    """Prune now and then for ever (cancel the task to stop)."""
    interval = max(1.0, min(retention_seconds / 10, 300.0))
    while True:
        try:
            pruned = await prune(db, retention_seconds)
            if pruned:
                log.info("pruned %d events older than %ss", pruned, retention_seconds)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("pruning the event log failed; will retry", exc_info=True)
        await sleep_to_tick(interval)
