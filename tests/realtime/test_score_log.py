"""The log's scores of a match never repeat or go back, however the batcher's sends interleave.

Driven at the hub, on a real database (SQLite and PostgreSQL) and the memory broker, so the
interleaving is exact instead of left to timing.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from matchcast.db.database import Database, connected
from matchcast.db.staleness import NEVER_STALE, StaleCheck
from matchcast.protocol import SCORE_UPDATED, Event, match_room, tournament_room
from matchcast.realtime import eventlog
from matchcast.realtime.broadcast import BroadcastBroker
from matchcast.realtime.hub import Hub
from matchcast.realtime.metrics import Metrics
from matchcast.services import events, freshness, matches
from tests.support.factories import Factory
from tests.support.server import test_settings as settings_for_tests

pytestmark = pytest.mark.timeout(30)


@asynccontextmanager
async def hub_on(db: Database, refresh: eventlog.Refresh | None = None) -> AsyncIterator[Hub]:
    """A hub as app.py wires it, on `db`, with a memory broker of its own (and `refresh`, if given)."""
    broker = BroadcastBroker("memory://")
    await broker.connect()
    try:
        refresh = refresh or functools.partial(freshness.refresh, db)
        yield Hub(settings_for_tests(), db, broker, Metrics(), refresh, freshness.stale_check)
    finally:
        await broker.disconnect()


@pytest.fixture
async def hub(db: Database) -> AsyncIterator[Hub]:
    async with hub_on(db) as hub:
        yield hub


async def logged_sequences(db: Database, match_id: int) -> list[int]:
    stored = await eventlog.read_after(db, match_room(match_id), 0, 100)
    return [json.loads(e.frame)["data"]["sequence"] for e in stored if e.type == SCORE_UPDATED]


async def test_a_send_overtaken_by_a_rebuilt_one_is_not_stored_again(db: Database, factory: Factory, hub: Hub) -> None:
    t, match = await factory.live_match()
    player = t.players[0]
    # The window's send of score 1 waits for the lock while score 2 is committed and pending:
    first = await matches.update_score(db, factory.publisher, player, match.id, 1, 0)
    second = await matches.update_score(db, factory.publisher, player, match.id, 2, 0)
    await hub.publish_now([events.score_updated(first)])  # rebuilt to score 2, the newest stored
    await hub.publish_now([events.score_updated(second)])  # then the pending 2: already in the log
    await hub.publish_now([events.score_updated(first)])  # and an old one: never goes back
    assert await logged_sequences(db, match.id) == [second.sequence]

    third = await matches.update_score(db, factory.publisher, player, match.id, 3, 0)
    await hub.publish_now([events.score_updated(third)])
    assert await logged_sequences(db, match.id) == [second.sequence, third.sequence]


async def test_no_score_of_a_match_is_stored_after_its_end(db: Database, factory: Factory, hub: Hub) -> None:
    t, match = await factory.live_match()
    scored = await matches.update_score(db, factory.publisher, t.organizer, match.id, 2, 1)
    await hub.publish_now([events.score_updated(scored)])
    late = await matches.update_score(db, factory.publisher, t.organizer, match.id, 3, 1)
    await matches.cancel_match(db, hub, t.organizer, match.id)
    await hub.publish_now([events.score_updated(late)])  # a send still in flight when the match ended
    stored = await eventlog.read_after(db, match_room(match.id), 0, 100)
    assert [event.type for event in stored] == [SCORE_UPDATED, "match_cancelled"]


async def test_postgres_judges_a_score_in_the_database_and_refreshes_only_a_stale_one(
    db: Database, factory: Factory, database_url: str
) -> None:
    """PostgreSQL stores a score in one statement (matchcast_log_event) that checks its sequence
    under the rooms' lock; only a stale one comes back to `refresh`, its numbering undone.
    SQLite refreshes every score, as before."""
    refreshed: list[int] = []

    async def counting_refresh(event: Event) -> Event:
        refreshed.append(event.data["sequence"])
        return await freshness.refresh(db, event)

    async with hub_on(db, counting_refresh) as hub:
        t, match = await factory.live_match()
        player = t.players[0]
        first = await matches.update_score(db, factory.publisher, player, match.id, 1, 0)
        second = await matches.update_score(db, factory.publisher, player, match.id, 2, 0)
        await hub.publish_now([events.score_updated(first)])  # stale: rebuilt to the stored second
        third = await matches.update_score(db, factory.publisher, player, match.id, 3, 0)
        await hub.publish_now([events.score_updated(third)])  # fresh
    assert await logged_sequences(db, match.id) == [second.sequence, third.sequence]
    for room in (match_room(match.id), tournament_room(t.id)):  # no id skipped by the stale attempt
        assert [event.id for event in await eventlog.read_after(db, room, 0, 100)] == [1, 2]
    if database_url.startswith("sqlite"):
        assert refreshed == [first.sequence, third.sequence]
    else:
        assert refreshed == [first.sequence]


async def test_two_instances_logging_one_match_s_scores_at_once_never_log_one_going_back(
    db: Database, factory: Factory, database_url: str
) -> None:
    """Two instances (two pools, two hubs) store and log one match's scores at the same time: on
    PostgreSQL their counter locks and stale checks really interleave. Ids stay contiguous in both
    rooms and the log's scores never go back, ending on the last one stored."""
    t, match = await factory.live_match()
    player = t.players[0]
    async with connected(database_url) as other_db, hub_on(db) as one, hub_on(other_db) as two:

        async def report(instance: int, hub: Hub, database: Database) -> None:
            for n in range(15):
                scored = await matches.update_score(database, factory.publisher, player, match.id, 2 * n + instance, 0)
                await hub.publish_now([events.score_updated(scored)])

        await asyncio.gather(report(0, one, db), report(1, two, other_db))
    sequences = await logged_sequences(db, match.id)
    assert sequences == sorted(sequences) and sequences[-1] == 30, sequences
    for room in (match_room(match.id), tournament_room(t.id)):
        ids = [event.id for event in await eventlog.read_after(db, room, 0, 100)]
        assert ids == list(range(1, len(ids) + 1))


async def test_an_event_that_cannot_go_stale_is_logged_in_every_room_it_names(db: Database) -> None:
    """The one-statement path (PostgreSQL) numbers each room by one; an event naming a room twice
    takes the ordinary path. Either way each (event, room) gets the room's next id."""

    def never(event: Event) -> StaleCheck | None:
        return NEVER_STALE

    first = await eventlog.store(db, [Event("tournament_updated", {"n": 1}, ("r1", "r2"))], None, never)
    twice = await eventlog.store(db, [Event("tournament_updated", {"n": 2}, ("r1", "r1"))], None, never)
    assert [(e.room, e.id) for e in first] == [("r1", 1), ("r2", 1)]
    assert [(e.room, e.id) for e in twice] == [("r1", 2), ("r1", 3)]
    assert [json.loads(e.frame)["id"] for e in first + twice] == [1, 1, 2, 3]
