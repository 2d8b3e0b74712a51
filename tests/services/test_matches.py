import asyncio
from typing import Any

import pytest

from matchcast.db.database import Database
from matchcast.errors import FORBIDDEN, INVALID_STATE, NOT_FOUND, VALIDATION_ERROR
from matchcast.services import matches, tournaments
from matchcast.services.actors import Actor
from matchcast.services.matches import complete_match, start_match, update_score
from matchcast.services.publisher import DiscardingPublisher
from matchcast.services.snapshots import match_snapshot
from tests.services.checks import assert_event, refused
from tests.support.factories import Factory


def types(publisher: DiscardingPublisher, start: int = 0) -> list[str]:
    return [e.type for e in publisher.published[start:]]


async def play(
    db: Database,
    publisher: DiscardingPublisher,
    organizer: Actor,
    match_id: int,
    score1: int,
    score2: int,
    winner_id: int | None = None,
) -> Any:
    await start_match(db, publisher, organizer, match_id)
    await update_score(db, publisher, organizer, match_id, score1, score2)
    return await complete_match(db, publisher, organizer, match_id, winner_id)


async def test_full_four_player_flow(db: Database, factory: Factory, publisher: DiscardingPublisher) -> None:
    t = await factory.seeded(4)
    org, (s1, _, s3, s4) = t.organizer, t.players
    rows = {(r.round, r.position): r for r in await matches.matches_of(db, t.id)}
    semi1, semi2, final = rows[(1, 0)], rows[(1, 1)], rows[(2, 0)]
    assert (semi1.participant1_id, semi1.participant2_id) == (s1.user_id, s4.user_id)
    mark = len(publisher.published)

    started = await start_match(db, publisher, org, semi1.id)
    assert started.status == "live" and started.started_at is not None
    assert_event(publisher.published[-1], "match_started", t.id, semi1.id)
    scored = await update_score(db, publisher, s4, semi1.id, 1, 3)  # a participant may report
    assert (scored.participant1_score, scored.participant2_score, scored.sequence) == (1, 3, 1)
    data = assert_event(publisher.published[-1], "score_updated", t.id, semi1.id)
    assert (data["participant1_score"], data["participant2_score"], data["sequence"]) == (1, 3, 1)

    done = await complete_match(db, publisher, org, semi1.id)  # the scores decide: seed 4 wins
    assert (done.status, done.winner_id) == ("completed", s4.user_id) and done.completed_at is not None
    assert types(publisher, mark) == ["match_started", "score_updated", "match_completed", "bracket_updated"]
    data = assert_event(publisher.published[-2], "match_completed", t.id, semi1.id)
    assert (data["winner_id"], data["participant1_score"], data["participant2_score"]) == (s4.user_id, 1, 3)
    assert_event(publisher.published[-1], "bracket_updated", t.id)
    waiting = await matches.reload(db, final.id)
    assert (waiting.participant1_id, waiting.participant2_id, waiting.scheduled_at) == (s4.user_id, None, None)
    await refused(db, publisher, INVALID_STATE, start_match(db, publisher, org, final.id))

    mark = len(publisher.published)
    await play(db, publisher, org, semi2.id, 2, 2, winner_id=s3.user_id)
    assert types(publisher, mark) == [
        "match_started",
        "score_updated",
        "match_completed",
        "match_scheduled",
        "bracket_updated",
    ]
    data = assert_event(publisher.published[-2], "match_scheduled", t.id, final.id)
    assert data["participant1"] == {"id": s4.user_id, "name": s4.username}
    assert data["participant2"] == {"id": s3.user_id, "name": s3.username}
    assert data["round"] == 2
    ready = await matches.reload(db, final.id)
    assert (ready.participant1_id, ready.participant2_id, ready.status) == (s4.user_id, s3.user_id, "scheduled")
    assert (await tournaments.get_tournament(db, t.id)).status == "running"

    mark = len(publisher.published)
    champion = await play(db, publisher, org, final.id, 0, 5)
    assert champion.winner_id == s3.user_id
    assert types(publisher, mark) == ["match_started", "score_updated", "match_completed", "bracket_updated"]
    assert (await tournaments.get_tournament(db, t.id)).status == "completed"


@pytest.mark.parametrize("players", [5, 8])
async def test_playing_every_match_crowns_one_champion(
    db: Database, factory: Factory, publisher: DiscardingPublisher, players: int
) -> None:
    t = await factory.seeded(players)
    played = 0
    while (await tournaments.get_tournament(db, t.id)).status != "completed":
        ready = [
            m
            for m in await matches.matches_of(db, t.id)
            if m.status == "scheduled" and m.participant1_id and m.participant2_id
        ]
        assert ready, "the tournament is stuck: no match is ready to play"
        await play(db, publisher, t.organizer, ready[0].id, 1, 0)
        played += 1
    assert played == players - 1  # each played match knocks out one player; byes knock out nobody
    assert sum(m.is_bye for m in await matches.matches_of(db, t.id)) == 8 - players
    scheduled = [e for e in publisher.published if e.type == "match_scheduled"]
    assert len(scheduled) == players - 1  # every non-bye match is scheduled exactly once
    assert len({e.data["match_id"] for e in scheduled}) == len(scheduled)
    final = (await matches.matches_of(db, t.id))[-1]
    assert final.next_match_id is None and final.winner_id == t.players[0].user_id  # player 1 always won


async def test_sequence_increases_by_one_per_accepted_update(
    db: Database, factory: Factory, publisher: DiscardingPublisher
) -> None:
    t, match = await factory.live_match()
    for expected, (a, b) in enumerate([(1, 0), (1, 1), (2, 1), (2, 1)], start=1):
        row = await update_score(db, publisher, t.organizer, match.id, a, b)
        assert row.sequence == expected
    await refused(db, publisher, VALIDATION_ERROR, update_score(db, publisher, t.organizer, match.id, -1, 0))
    row = await update_score(db, publisher, t.players[0], match.id, 3, 1)
    assert row.sequence == 5
    assert [e.data["sequence"] for e in publisher.published if e.type == "score_updated"] == [1, 2, 3, 4, 5]


async def test_concurrent_score_updates_get_distinct_sequences(
    db: Database, factory: Factory, publisher: DiscardingPublisher
) -> None:
    t, match = await factory.live_match()
    rows = await asyncio.gather(*(update_score(db, publisher, t.organizer, match.id, i, 20 - i) for i in range(20)))
    assert sorted(r.sequence for r in rows) == list(range(1, 21))
    events = [e for e in publisher.published if e.type == "score_updated"]
    assert sorted(e.data["sequence"] for e in events) == list(range(1, 21))
    final = await matches.reload(db, match.id)
    assert final.sequence == 20
    last = max(rows, key=lambda r: r.sequence)
    assert (final.participant1_score, final.participant2_score) == (last.participant1_score, last.participant2_score)


async def test_bad_scores_are_refused(db: Database, factory: Factory, publisher: DiscardingPublisher) -> None:
    t, match = await factory.live_match()
    for bad in (-1, 1_000_001, True, False, 1.0, 2.5, "3", None):
        await refused(db, publisher, VALIDATION_ERROR, update_score(db, publisher, t.organizer, match.id, bad, 0))
        await refused(db, publisher, VALIDATION_ERROR, update_score(db, publisher, t.organizer, match.id, 0, bad))


async def test_score_limits_are_inclusive(db: Database, factory: Factory, publisher: DiscardingPublisher) -> None:
    t, match = await factory.live_match()
    row = await update_score(db, publisher, t.organizer, match.id, 0, 1_000_000)
    assert (row.participant1_score, row.participant2_score) == (0, 1_000_000)


async def test_scoring_needs_a_live_match(db: Database, factory: Factory, publisher: DiscardingPublisher) -> None:
    t = await factory.seeded(4)
    scheduled = (await matches.matches_of(db, t.id))[0]
    error = await refused(db, publisher, INVALID_STATE, update_score(db, publisher, t.organizer, scheduled.id, 1, 0))
    assert "scheduled" in error.message
    await play(db, publisher, t.organizer, scheduled.id, 1, 0)
    await refused(db, publisher, INVALID_STATE, update_score(db, publisher, t.organizer, scheduled.id, 2, 0))


async def test_spectators_and_other_players_cannot_score(
    db: Database, factory: Factory, publisher: DiscardingPublisher
) -> None:
    t = await factory.seeded(4)
    first, second = (await matches.matches_of(db, t.id))[:2]
    await start_match(db, publisher, t.organizer, first.id)
    outsider = await factory.user()
    other_match_player = next(p for p in t.players if p.user_id == second.participant1_id)
    for actor in (outsider, other_match_player, None):
        await refused(db, publisher, FORBIDDEN, update_score(db, publisher, actor, first.id, 1, 0))


async def test_only_the_organizer_or_staff_starts_and_completes(
    db: Database, factory: Factory, publisher: DiscardingPublisher
) -> None:
    t = await factory.seeded(2)
    match = (await matches.matches_of(db, t.id))[0]
    player, outsider, staff = t.players[0], await factory.user(), await factory.user(staff=True)
    for actor in (player, outsider, None):
        await refused(db, publisher, FORBIDDEN, start_match(db, publisher, actor, match.id))
    await start_match(db, publisher, staff, match.id)
    await update_score(db, publisher, player, match.id, 2, 0)
    for actor in (player, outsider, None):
        await refused(db, publisher, FORBIDDEN, complete_match(db, publisher, actor, match.id))
    assert (await complete_match(db, publisher, staff, match.id)).winner_id == player.user_id


async def test_completion_refusals_change_nothing(
    db: Database, factory: Factory, publisher: DiscardingPublisher
) -> None:
    t, match = await factory.live_match()
    org = t.organizer
    await update_score(db, publisher, org, match.id, 2, 2)
    error = await refused(db, publisher, VALIDATION_ERROR, complete_match(db, publisher, org, match.id))
    assert "winner_id" in error.message
    outsider = await factory.user()
    for winner in (outsider.user_id, 999_999, True, "1", float(match.participant1_id)):
        await refused(db, publisher, VALIDATION_ERROR, complete_match(db, publisher, org, match.id, winner))
    done = await complete_match(db, publisher, org, match.id, match.participant2_id)
    assert done.winner_id == match.participant2_id
    await refused(db, publisher, INVALID_STATE, complete_match(db, publisher, org, match.id, match.participant2_id))
    await refused(db, publisher, INVALID_STATE, start_match(db, publisher, org, match.id))


async def test_start_and_complete_need_the_right_status(
    db: Database, factory: Factory, publisher: DiscardingPublisher
) -> None:
    t = await factory.seeded(2)
    match = (await matches.matches_of(db, t.id))[0]
    org = t.organizer
    await refused(db, publisher, INVALID_STATE, complete_match(db, publisher, org, match.id, match.participant1_id))
    await start_match(db, publisher, org, match.id)
    await refused(db, publisher, INVALID_STATE, start_match(db, publisher, org, match.id))


async def test_unknown_or_malformed_match_ids(db: Database, factory: Factory, publisher: DiscardingPublisher) -> None:
    t = await factory.seeded(2)
    org = t.organizer
    await refused(db, publisher, NOT_FOUND, start_match(db, publisher, org, 999_999))
    await refused(db, publisher, NOT_FOUND, update_score(db, publisher, org, 999_999, 1, 0))
    await refused(db, publisher, NOT_FOUND, complete_match(db, publisher, org, 999_999))
    for bad in ("1", 1.0, True, None):
        await refused(db, publisher, VALIDATION_ERROR, start_match(db, publisher, org, bad))


async def test_cancel_match(db: Database, factory: Factory, publisher: DiscardingPublisher) -> None:
    t, match = await factory.live_match(4)
    player = next(p for p in t.players if p.user_id == match.participant1_id)
    await refused(db, publisher, FORBIDDEN, matches.cancel_match(db, publisher, player, match.id))
    cancelled = await matches.cancel_match(db, publisher, t.organizer, match.id)
    assert cancelled.status == "cancelled" and cancelled.winner_id is None
    assert_event(publisher.published[-2], "match_cancelled", t.id, match.id)
    assert_event(publisher.published[-1], "bracket_updated", t.id)
    await refused(db, publisher, INVALID_STATE, matches.cancel_match(db, publisher, t.organizer, match.id))
    await refused(db, publisher, INVALID_STATE, update_score(db, publisher, t.organizer, match.id, 1, 0))
    await refused(db, publisher, INVALID_STATE, start_match(db, publisher, t.organizer, match.id))
    final = (await matches.matches_of(db, t.id))[-1]
    assert (final.participant1_id, final.participant2_id) == (None, None)


async def test_match_snapshot(db: Database, factory: Factory, publisher: DiscardingPublisher) -> None:
    t, match = await factory.live_match()
    await update_score(db, publisher, t.organizer, match.id, 4, 2)
    snapshot = await match_snapshot(db, match.id)
    assert {
        "id",
        "tournament_id",
        "round",
        "status",
        "participant1",
        "participant2",
        "participant1_score",
        "participant2_score",
        "sequence",
        "winner_id",
        "disputes",
    } <= set(snapshot)
    assert (snapshot["status"], snapshot["sequence"], snapshot["participant1_score"]) == ("live", 1, 4)
    assert snapshot["participant1"] == {"id": t.players[0].user_id, "name": t.players[0].username}
    assert snapshot["disputes"] == []


async def test_concurrent_completions_schedule_the_next_match_once(
    db: Database, factory: Factory, publisher: DiscardingPublisher
) -> None:
    t = await factory.seeded(4)
    semi1, semi2, final = await matches.matches_of(db, t.id)
    for semi in (semi1, semi2):
        await start_match(db, publisher, t.organizer, semi.id)
        await update_score(db, publisher, t.organizer, semi.id, 1, 0)
    await asyncio.gather(*(complete_match(db, publisher, t.organizer, m.id) for m in (semi1, semi2)))
    ready = await matches.reload(db, final.id)
    assert (ready.participant1_id, ready.participant2_id) == (semi1.participant1_id, semi2.participant1_id)
    assert ready.scheduled_at is not None
    assert [e.data["match_id"] for e in publisher.published if e.type == "match_scheduled"][-1:] == [final.id]
    assert sum(e.type == "match_scheduled" and e.data["match_id"] == final.id for e in publisher.published) == 1
