"""At start: the scores a killed process stored but never logged.

A score is stored at once and logged (then broadcast) when its batching window closes; a process
killed with `kill -9` inside the window leaves the match's stored score ahead of its room's log,
and a resuming client would never learn it. The next instance to start publishes the stored
score, so every match room's log ends at the match's stored score.

Only matches whose score has not changed for longer than any batching window are looked at: a
running instance's open window logs its own score, and must not be doubled.
"""

from __future__ import annotations

import json
from datetime import timedelta

import sqlalchemy as sa

from matchcast.db.database import Database, utcnow
from matchcast.db.tables import events as event_log
from matchcast.db.tables import matches
from matchcast.protocol import SCORE_UPDATED, match_room
from matchcast.services import events
from matchcast.services.publisher import Publisher

LIVE = "live"


async def logged_sequence(db: Database, match_id: int) -> int:
    """The `sequence` of the last score in the match room's log (0: none, or pruned)."""
    payload = await db.fetch_val(
        sa.select(event_log.c.payload)
        .where(event_log.c.room == match_room(match_id), event_log.c.type == SCORE_UPDATED)
        .order_by(event_log.c.id.desc())
        .limit(1)
    )
    return int(json.loads(payload)["sequence"]) if payload else 0


async def publish_unlogged_scores(db: Database, publisher: Publisher, quiet_for: timedelta) -> int:
    """Publish `score_updated` for each live match whose stored score is newer than its log's
    and untouched for `quiet_for`; returns how many."""
    rows = await db.fetch_all(
        matches.select()
        .where(matches.c.status == LIVE, matches.c.sequence > 0, matches.c.updated_at < utcnow() - quiet_for)
        .order_by(matches.c.id)
    )
    unlogged = [events.score_updated(row) for row in rows if row.sequence > await logged_sequence(db, row.id)]
    if unlogged:
        await publisher.publish(unlogged)
    return len(unlogged)
