"""Events larger than the broker carries: PostgreSQL NOTIFY takes less than 8000 bytes.

A frame too large travels as its id alone and the receiving instance reads it from the event log,
so a 256-player `bracket_updated` arrives whole, in order, on every stack.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from matchcast.services import matches
from tests.support.server import RunningServer, running_server

pytestmark = pytest.mark.timeout(120)
PLAYERS = 256
NOTIFY_LIMIT = 8000


@asynccontextmanager
async def other_instance(server: RunningServer) -> AsyncIterator[RunningServer]:
    """A second instance on the same database and broker (the same one on memory://)."""
    if not server.settings.shared_broadcast:
        yield server
        return
    async with running_server(server.settings) as other:
        yield other


async def test_a_256_player_bracket_update_arrives_whole(server: RunningServer) -> None:
    t = await server.factory.seeded(PLAYERS)
    first = next(
        m for m in await matches.matches_of(server.realtime.db, t.id) if m.round == 1 and m.status == matches.SCHEDULED
    )
    async with (
        other_instance(server) as watched,
        watched.client(f"/ws/tournament/{t.id}/", watched.guest_token()) as spectator,
    ):
        data = await spectator.established()
        expected = data["state"]["bracket"]
        organizer = t.organizer
        await matches.start_match(server.realtime.db, server.realtime.hub, organizer, first.id)
        await matches.update_score(server.realtime.db, server.realtime.hub, organizer, first.id, 2, 0)
        await matches.complete_match(server.realtime.db, server.realtime.hub, organizer, first.id)
        frames = await spectator.events(4, timeout=10)  # started, score, completed, bracket
    assert [f["id"] for f in frames] == list(range(data["last_event_id"] + 1, data["last_event_id"] + 5))
    bracket = frames[-1]
    assert bracket["type"] == "bracket_updated" and bracket["data"]["tournament_id"] == t.id
    assert len(json.dumps(bracket).encode()) > NOTIFY_LIMIT
    rounds = bracket["data"]["bracket"]["rounds"]
    assert len(rounds) == len(expected["rounds"]) == 8 and rounds != expected["rounds"]  # the winner moved on
