"""services/results.py: every rule of the contract's "Results: report, confirm, dispute", on
SQLite and PostgreSQL; every refusal leaves the rows and the events as they were."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from matchcast.db.database import Database, utcnow
from matchcast.db.tables import reports
from matchcast.errors import FORBIDDEN, INVALID_STATE, VALIDATION_ERROR
from matchcast.services import matches, results
from matchcast.services.actors import Actor
from matchcast.services.disputes import report_dispute, resolve_dispute
from matchcast.services.publisher import DiscardingPublisher
from matchcast.services.snapshots import match_snapshot
from tests.services.checks import assert_event, refused
from tests.support.factories import Factory, Tournament

TIMEOUT = 600.0


async def live(factory: Factory, best_of: int = 1) -> tuple[Tournament, Any, Actor, Actor]:
    t, match = await factory.live_match(best_of=best_of)
    by_id = {p.user_id: p for p in t.players}
    return t, match, by_id[match.participant1_id], by_id[match.participant2_id]


def types(publisher: DiscardingPublisher, since: int = 0) -> list[str]:
    return [event.type for event in publisher.published[since:]]


async def test_a_report_is_pending_until_the_opponent_confirms(
    db: Database, factory: Factory, publisher: DiscardingPublisher
) -> None:
    t, match, a, b = await live(factory, best_of=3)
    [reported] = await results.report_result(db, publisher, a, match.id, 2, 1, TIMEOUT)
    data = assert_event(reported, "result_reported", t.id, match.id)
    assert (data["reported_by_id"], data["participant1_score"], data["participant2_score"]) == (a.user_id, 2, 1)
    pending = (await match_snapshot(db, match.id))["pending_report"]
    assert pending == {
        "report_id": data["report_id"],
        "reported_by_id": a.user_id,
        "participant1_score": 2,
        "participant2_score": 1,
        "confirm_by": data["confirm_by"],
    }
    assert (await factory.match(match.id)).status == matches.LIVE

    start = len(publisher.published)
    await results.confirm_result(db, publisher, b, match.id, data["report_id"])
    assert types(publisher, start) == ["result_confirmed", "match_completed", "bracket_updated"]
    confirmed = assert_event(publisher.published[start], "result_confirmed", t.id, match.id)
    assert (confirmed["report_id"], confirmed["by"]) == (data["report_id"], "opponent")
    completed = assert_event(publisher.published[start + 1], "match_completed", t.id, match.id)
    assert (completed["participant1_score"], completed["participant2_score"], completed["winner_id"]) == (
        2,
        1,
        a.user_id,
    )
    snapshot = await match_snapshot(db, match.id)
    assert (snapshot["status"], snapshot["pending_report"]) == ("completed", None)


async def test_the_same_result_from_the_opponent_is_agreement(
    db: Database, factory: Factory, publisher: DiscardingPublisher
) -> None:
    t, match, a, b = await live(factory)
    await results.report_result(db, publisher, a, match.id, 0, 1, TIMEOUT)
    published = await results.report_result(db, publisher, b, match.id, 0, 1, TIMEOUT)
    assert [event.type for event in published][:2] == ["result_confirmed", "match_completed"]
    assert assert_event(published[0], "result_confirmed", t.id, match.id)["by"] == "agreement"
    assert (await factory.match(match.id)).winner_id == b.user_id


async def test_a_conflicting_report_becomes_a_dispute(
    db: Database, factory: Factory, publisher: DiscardingPublisher
) -> None:
    t, match, a, b = await live(factory)
    await results.report_result(db, publisher, a, match.id, 1, 0, TIMEOUT)
    [created] = await results.report_result(db, publisher, b, match.id, 0, 1, TIMEOUT)
    data = assert_event(created, "dispute_created", t.id, match.id)
    assert data["reported_by_id"] == b.user_id
    assert "1\u20130" in data["reason"] and "0\u20131" in data["reason"], data["reason"]
    assert a.username in data["reason"] and b.username in data["reason"]
    snapshot = await match_snapshot(db, match.id)
    assert snapshot["pending_report"] is None
    assert [d["id"] for d in snapshot["disputes"]] == [data["dispute_id"]]


async def test_reporting_again_replaces_ones_own_pending_report(
    db: Database, factory: Factory, publisher: DiscardingPublisher
) -> None:
    _t, match, a, b = await live(factory, best_of=5)
    [first] = await results.report_result(db, publisher, a, match.id, 3, 1, TIMEOUT)
    [second] = await results.report_result(db, publisher, a, match.id, 3, 2, TIMEOUT)
    assert second.data["report_id"] != first.data["report_id"]
    assert (await match_snapshot(db, match.id))["pending_report"]["report_id"] == second.data["report_id"]
    # The replaced report can no longer be confirmed; the new one can.
    await refused(
        db, publisher, INVALID_STATE, results.confirm_result(db, publisher, b, match.id, first.data["report_id"])
    )
    await results.confirm_result(db, publisher, b, match.id, second.data["report_id"])
    assert (await factory.match(match.id)).participant2_score == 2


@pytest.mark.parametrize(
    ("best_of", "score1", "score2"),
    [
        (1, 1, 1),  # a tie decides nothing
        (1, 0, 0),
        (1, 2, 0),  # best of 1: the winner has exactly 1
        (3, 1, 0),  # best of 3: exactly 2
        (3, 3, 1),
        (3, 2, 2),
        (5, 2, 1),
        (7, 4, 4),
        (1, -1, 0),
        (1, True, 0),  # booleans are not integers
        (1, 1.0, 0),
        (1, "1", 0),
    ],
)
async def test_impossible_results_are_refused(
    db: Database, factory: Factory, publisher: DiscardingPublisher, best_of: int, score1: Any, score2: Any
) -> None:
    _, match, a, _ = await live(factory, best_of=best_of)
    report = results.report_result(db, publisher, a, match.id, score1, score2, TIMEOUT)
    await refused(db, publisher, VALIDATION_ERROR, report)


async def test_who_may_report_and_confirm(db: Database, factory: Factory, publisher: DiscardingPublisher) -> None:
    t, match, a, b = await live(factory)
    stranger = await factory.user()
    await refused(db, publisher, FORBIDDEN, results.report_result(db, publisher, stranger, match.id, 1, 0, TIMEOUT))
    await refused(db, publisher, FORBIDDEN, results.report_result(db, publisher, t.organizer, match.id, 1, 0, TIMEOUT))
    await refused(db, publisher, FORBIDDEN, results.report_result(db, publisher, None, match.id, 1, 0, TIMEOUT))
    [reported] = await results.report_result(db, publisher, a, match.id, 1, 0, TIMEOUT)
    report_id = reported.data["report_id"]
    await refused(db, publisher, FORBIDDEN, results.confirm_result(db, publisher, a, match.id, report_id))
    await refused(db, publisher, FORBIDDEN, results.confirm_result(db, publisher, stranger, match.id, report_id))
    await refused(db, publisher, INVALID_STATE, results.confirm_result(db, publisher, b, match.id, report_id + 1))
    await refused(db, publisher, VALIDATION_ERROR, results.confirm_result(db, publisher, b, match.id, "1"))


async def test_nothing_to_confirm_and_matches_that_are_not_live(
    db: Database, factory: Factory, publisher: DiscardingPublisher
) -> None:
    t, match, a, b = await live(factory)
    await refused(db, publisher, INVALID_STATE, results.confirm_result(db, publisher, b, match.id, 1))
    other = await factory.seeded(4)
    scheduled = await factory.match(other.match_ids[0])
    player = next(p for p in other.players if p.user_id == scheduled.participant1_id)
    await refused(
        db, publisher, INVALID_STATE, results.report_result(db, publisher, player, scheduled.id, 1, 0, TIMEOUT)
    )
    await matches.complete_match(db, publisher, t.organizer, match.id, a.user_id)
    await refused(db, publisher, INVALID_STATE, results.report_result(db, publisher, a, match.id, 1, 0, TIMEOUT))


async def test_a_dispute_sets_the_pending_report_aside_and_blocks_results(
    db: Database, factory: Factory, publisher: DiscardingPublisher
) -> None:
    _t, match, a, b = await live(factory)
    [reported] = await results.report_result(db, publisher, a, match.id, 1, 0, TIMEOUT)
    await report_dispute(db, publisher, b, match.id, "the last game was not played")
    assert (await match_snapshot(db, match.id))["pending_report"] is None
    report_id = reported.data["report_id"]
    await refused(db, publisher, INVALID_STATE, results.confirm_result(db, publisher, b, match.id, report_id))
    await refused(db, publisher, INVALID_STATE, results.report_result(db, publisher, a, match.id, 1, 0, TIMEOUT))
    # One open dispute per participant; the other participant may still open theirs.
    await refused(db, publisher, INVALID_STATE, report_dispute(db, publisher, b, match.id, "and another thing"))
    await report_dispute(db, publisher, a, match.id, "they left early")
    # Nothing comes due for the set-aside report.
    assert await results.confirm_due(db, publisher, utcnow() + timedelta(seconds=TIMEOUT + 1)) == 0


@pytest.mark.parametrize("text", ["bell\x07", "nul\x00here", "esc\x1b[2J", "c1\x85"])
async def test_control_characters_in_user_text_are_refused(
    db: Database, factory: Factory, publisher: DiscardingPublisher, text: str
) -> None:
    t, match, a, _ = await live(factory)
    await refused(db, publisher, VALIDATION_ERROR, report_dispute(db, publisher, a, match.id, text))
    dispute = await report_dispute(db, publisher, a, match.id, "line one\n\tline two")
    await refused(db, publisher, VALIDATION_ERROR, resolve_dispute(db, publisher, t.organizer, dispute.id, text))


async def test_the_deadline_confirms_once(db: Database, factory: Factory, publisher: DiscardingPublisher) -> None:
    t, match, a, _ = await live(factory)
    [reported] = await results.report_result(db, publisher, a, match.id, 1, 0, 30)
    assert await results.confirm_due(db, publisher) == 0  # not yet
    later = utcnow() + timedelta(seconds=31)
    # Two instances' timers at once: exactly one confirms.
    counts = await asyncio.gather(results.confirm_due(db, publisher, later), results.confirm_due(db, publisher, later))
    assert sorted(counts) == [0, 1]
    confirmed = [event for event in publisher.published if event.type == "result_confirmed"]
    assert len(confirmed) == 1
    data = assert_event(confirmed[0], "result_confirmed", t.id, match.id)
    assert (data["report_id"], data["by"]) == (reported.data["report_id"], "timeout")
    assert (await factory.match(match.id)).status == matches.COMPLETED
    assert await results.next_deadline(db) is None


async def test_next_deadline_is_the_nearest_pending_one(
    db: Database, factory: Factory, publisher: DiscardingPublisher
) -> None:
    _, first, a, _ = await live(factory)
    _, second, c, _ = await live(factory)
    await results.report_result(db, publisher, a, first.id, 1, 0, 300)
    await results.report_result(db, publisher, c, second.id, 1, 0, 60)
    nearest = await results.next_deadline(db)
    stored = await db.fetch_val(
        reports.select().with_only_columns(reports.c.confirm_by).where(reports.c.match_id == second.id)
    )
    assert nearest == stored


async def test_organizer_overrides(db: Database, factory: Factory, publisher: DiscardingPublisher) -> None:
    t, match, a, b = await live(factory, best_of=3)
    await results.report_result(db, publisher, a, match.id, 2, 0, TIMEOUT)
    # Completing the match sets the pending report aside: it never comes due.
    await matches.update_score(db, publisher, t.organizer, match.id, 1, 2)
    await matches.complete_match(db, publisher, t.organizer, match.id)
    assert (await match_snapshot(db, match.id))["pending_report"] is None
    assert await results.confirm_due(db, publisher, utcnow() + timedelta(seconds=TIMEOUT + 1)) == 0

    t, match, a, b = await live(factory, best_of=3)
    dispute = await report_dispute(db, publisher, a, match.id, "they used a banned character")
    await refused(
        db, publisher, VALIDATION_ERROR, resolve_dispute(db, publisher, t.organizer, dispute.id, "ruled", 2, 2)
    )
    await refused(
        db, publisher, VALIDATION_ERROR, resolve_dispute(db, publisher, t.organizer, dispute.id, "ruled", 2, None)
    )
    await refused(db, publisher, FORBIDDEN, resolve_dispute(db, publisher, a, dispute.id, "I win", 2, 0))
    start = len(publisher.published)
    await resolve_dispute(db, publisher, t.organizer, dispute.id, "replayed: B won", 1, 2)
    assert types(publisher, start) == ["dispute_resolved", "match_completed", "bracket_updated"]
    ended = await factory.match(match.id)
    assert (ended.status, ended.winner_id, ended.participant1_score, ended.participant2_score) == (
        "completed",
        b.user_id,
        1,
        2,
    )


async def test_resolving_without_scores_leaves_the_match_live(
    db: Database, factory: Factory, publisher: DiscardingPublisher
) -> None:
    t, match, a, b = await live(factory)
    dispute = await report_dispute(db, publisher, a, match.id, "connection dropped")
    await resolve_dispute(db, publisher, t.organizer, dispute.id, "play on")
    assert (await factory.match(match.id)).status == matches.LIVE
    [reported] = await results.report_result(db, publisher, b, match.id, 0, 1, TIMEOUT)  # the flow resumes
    assert reported.type == "result_reported"


async def test_completing_a_match_closes_its_other_open_disputes(
    db: Database, factory: Factory, publisher: DiscardingPublisher
) -> None:
    t, match, a, b = await live(factory)
    first = await report_dispute(db, publisher, a, match.id, "they paused the game")
    second = await report_dispute(db, publisher, b, match.id, "they used a bug")
    start = len(publisher.published)
    await resolve_dispute(db, publisher, t.organizer, first.id, "B wins the replay", 0, 1)
    assert types(publisher, start)[:3] == ["dispute_resolved", "dispute_resolved", "match_completed"]
    closed = assert_event(publisher.published[start + 1], "dispute_resolved", t.id, match.id)
    assert (closed["dispute_id"], closed["resolved_by_id"]) == (second.id, t.organizer.user_id)
    assert (await match_snapshot(db, match.id))["disputes"] == []
