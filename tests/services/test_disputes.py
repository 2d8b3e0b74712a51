from typing import Any

from matchcast.db.database import Database
from matchcast.errors import FORBIDDEN, INVALID_STATE, NOT_FOUND, VALIDATION_ERROR
from matchcast.services import matches
from matchcast.services.actors import Actor
from matchcast.services.disputes import report_dispute, resolve_dispute
from matchcast.services.publisher import DiscardingPublisher
from matchcast.services.snapshots import match_snapshot
from tests.services.checks import assert_event, refused
from tests.support.factories import Factory, Tournament


async def live_with_players(factory: Factory) -> tuple[Tournament, Any, Actor, Actor]:
    t, match = await factory.live_match()
    by_id = {p.user_id: p for p in t.players}
    return t, match, by_id[match.participant1_id], by_id[match.participant2_id]


async def test_report_and_resolve(db: Database, factory: Factory, publisher: DiscardingPublisher) -> None:
    t, match, p1, _ = await live_with_players(factory)
    dispute = await report_dispute(db, publisher, p1, match.id, "  they lagged on purpose  ")
    assert (dispute.status, dispute.reason, dispute.reported_by_id) == ("open", "they lagged on purpose", p1.user_id)
    data = assert_event(publisher.published[-1], "dispute_created", t.id, match.id)
    assert (data["dispute_id"], data["reported_by_id"], data["reason"]) == (
        dispute.id,
        p1.user_id,
        "they lagged on purpose",
    )
    assert [d["id"] for d in (await match_snapshot(db, match.id))["disputes"]] == [dispute.id]

    resolved = await resolve_dispute(db, publisher, t.organizer, dispute.id, "replay the last round")
    assert (resolved.status, resolved.resolution, resolved.resolved_by_id) == (
        "resolved",
        "replay the last round",
        t.organizer.user_id,
    )
    data = assert_event(publisher.published[-1], "dispute_resolved", t.id, match.id)
    assert (data["dispute_id"], data["resolution"], data["resolved_by_id"]) == (
        dispute.id,
        "replay the last round",
        t.organizer.user_id,
    )
    assert (await match_snapshot(db, match.id))["disputes"] == []
    assert (await matches.reload(db, match.id)).status == "live"  # a dispute does not stop the match


async def test_both_participants_may_report_even_after_completion(
    db: Database, factory: Factory, publisher: DiscardingPublisher
) -> None:
    t, match, p1, p2 = await live_with_players(factory)
    await matches.update_score(db, publisher, t.organizer, match.id, 1, 0)
    await matches.complete_match(db, publisher, t.organizer, match.id)
    first = await report_dispute(db, publisher, p1, match.id, "score was 2-0")
    second = await report_dispute(db, publisher, p2, match.id, "no, it was 0-1")
    assert second.id != first.id


async def test_only_participants_report(db: Database, factory: Factory, publisher: DiscardingPublisher) -> None:
    t, match, _, _ = await live_with_players(factory)
    outsider, staff = await factory.user(), await factory.user(staff=True)
    for actor in (outsider, t.organizer, staff, None):
        await refused(db, publisher, FORBIDDEN, report_dispute(db, publisher, actor, match.id, "unfair"))


async def test_bad_reasons_are_refused(db: Database, factory: Factory, publisher: DiscardingPublisher) -> None:
    _, match, p1, _ = await live_with_players(factory)
    for reason in ("", "   ", "x" * 501, None, 5):
        await refused(db, publisher, VALIDATION_ERROR, report_dispute(db, publisher, p1, match.id, reason))


async def test_report_on_unknown_or_cancelled_match(
    db: Database, factory: Factory, publisher: DiscardingPublisher
) -> None:
    t, match, p1, _ = await live_with_players(factory)
    await refused(db, publisher, NOT_FOUND, report_dispute(db, publisher, p1, 999_999, "unfair"))
    await matches.cancel_match(db, publisher, t.organizer, match.id)
    await refused(db, publisher, INVALID_STATE, report_dispute(db, publisher, p1, match.id, "unfair"))


async def test_resolve_refusals_change_nothing(db: Database, factory: Factory, publisher: DiscardingPublisher) -> None:
    t, match, p1, p2 = await live_with_players(factory)
    dispute = await report_dispute(db, publisher, p1, match.id, "unfair")
    for actor in (p1, p2, await factory.user(), None):
        await refused(db, publisher, FORBIDDEN, resolve_dispute(db, publisher, actor, dispute.id, "no"))
    for resolution in ("", " ", "x" * 501, None):
        await refused(
            db, publisher, VALIDATION_ERROR, resolve_dispute(db, publisher, t.organizer, dispute.id, resolution)
        )
    await refused(db, publisher, NOT_FOUND, resolve_dispute(db, publisher, t.organizer, 999_999, "ok"))
    await refused(db, publisher, VALIDATION_ERROR, resolve_dispute(db, publisher, t.organizer, "1", "ok"))
    staff = await factory.user(staff=True)
    await resolve_dispute(db, publisher, staff, dispute.id, "upheld")
    error = await refused(
        db, publisher, INVALID_STATE, resolve_dispute(db, publisher, t.organizer, dispute.id, "again")
    )
    assert "already resolved" in error.message
