"""Snapshots stay small whatever users write: every user text is capped at the door, and a
participant cannot pile up open disputes (one open dispute per participant per match), however
many they send and however fast; on both databases."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from matchcast import errors
from matchcast.db.database import Database
from matchcast.protocol import MAX_REASON_CHARS
from matchcast.services import snapshots, tournaments, users, webhooks
from matchcast.services.disputes import report_dispute, resolve_dispute
from matchcast.services.publisher import DiscardingPublisher
from tests.services.checks import refused
from tests.support.factories import PASSWORD, Factory

ATTEMPTS = 2000
AT_ONCE = 50  # attempts in flight together, as from many sockets of one participant
LONGEST_REASON = "x" * MAX_REASON_CHARS
# A match snapshot with two open disputes of the longest reason, names of the longest length and
# a pending report is ~2 KB; 4 KB leaves room for the fields yet fails at a third dispute's worth.
MATCH_SNAPSHOT_BYTES = 4096


def size(state: Any) -> int:
    return len(json.dumps(state).encode())


async def attempts(make: Callable[[], Awaitable[Any]], count: int) -> list[Any]:
    results: list[Any] = []
    for start in range(0, count, AT_ONCE):
        batch = [make() for _ in range(min(AT_ONCE, count - start))]
        results += await asyncio.gather(*batch, return_exceptions=True)
    return results


async def test_2000_dispute_attempts_by_one_participant_leave_the_snapshots_small(
    db: Database, factory: Factory, publisher: DiscardingPublisher
) -> None:
    t, match = await factory.live_match()
    by_id = {p.user_id: p for p in t.players}
    p1, p2 = by_id[match.participant1_id], by_id[match.participant2_id]

    results = await attempts(lambda: report_dispute(db, publisher, p1, match.id, LONGEST_REASON), ATTEMPTS)
    accepted = [r for r in results if not isinstance(r, BaseException)]
    refusals = [r for r in results if isinstance(r, errors.DomainError) and r.code == errors.INVALID_STATE]
    assert (len(accepted), len(refusals)) == (1, ATTEMPTS - 1), [r for r in results if isinstance(r, Exception)][:3]
    await report_dispute(db, publisher, p2, match.id, LONGEST_REASON)  # the opponent's own one

    state = await snapshots.match_snapshot(db, match.id)
    assert len(state["disputes"]) == 2
    assert size(state) <= MATCH_SNAPSHOT_BYTES, size(state)
    tournament_state = await snapshots.tournament_snapshot(db, t.id)
    assert size(tournament_state) <= 2 * MATCH_SNAPSHOT_BYTES + 2048, size(tournament_state)

    # Resolved disputes leave the snapshot: a new one is again the only open one of its reporter.
    await resolve_dispute(db, publisher, t.organizer, accepted[0].id, "replay the last round")
    results = await attempts(lambda: report_dispute(db, publisher, p1, match.id, LONGEST_REASON), AT_ONCE)
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert len((await snapshots.match_snapshot(db, match.id))["disputes"]) == 2


TOO_LONG = 1  # characters over each cap


@pytest.mark.parametrize(
    "field,cap",
    [
        ("tournament name", tournaments.MAX_NAME),
        ("username", 50),
        ("reason", MAX_REASON_CHARS),
        ("resolution", MAX_REASON_CHARS),
        ("webhook url", webhooks.MAX_URL),
    ],
)
async def test_every_user_text_is_capped_at_the_door(
    db: Database, factory: Factory, publisher: DiscardingPublisher, field: str, cap: int
) -> None:
    t, match = await factory.live_match()
    p1 = next(p for p in t.players if p.user_id == match.participant1_id)
    dispute = await report_dispute(db, publisher, p1, match.id, "lag")
    url = "http://127.0.0.1/"

    def attempt(length: int) -> Awaitable[Any]:
        text = "a" * length
        if field == "tournament name":
            return tournaments.create_tournament(db, t.organizer, text)
        if field == "username":
            return users.create_user(db, text, PASSWORD)
        if field == "reason":
            return report_dispute(db, publisher, t.players[1 - t.players.index(p1)], match.id, text)
        if field == "resolution":
            return resolve_dispute(db, publisher, t.organizer, dispute.id, text)
        return webhooks.create_webhook(db, t.organizer, t.id, url + "a" * (length - len(url)), None, True)

    error = await refused(db, publisher, errors.VALIDATION_ERROR, attempt(cap + TOO_LONG))
    assert str(cap) in error.message, error.message  # the error names the limit
    await attempt(cap)  # the longest allowed text is taken
