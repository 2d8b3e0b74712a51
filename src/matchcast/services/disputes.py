"""Disputes: reported by a match's participants, resolved by the organizer."""

from __future__ import annotations

from typing import Any

from matchcast import errors
from matchcast.db.database import Database, utcnow
from matchcast.db.tables import disputes
from matchcast.protocol import MAX_REASON_CHARS, Event, has_control_characters, is_int, is_utf8
from matchcast.services import events
from matchcast.services.actors import Actor, require_organizer
from matchcast.services.matches import LIVE, finish_match, locked_match, set_aside_pending_report
from matchcast.services.publisher import Publisher
from matchcast.services.results import best_of, has_open_dispute, validate_result


def validate_text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_REASON_CHARS or not is_utf8(value):
        raise errors.invalid(f"{name} must be 1 to {MAX_REASON_CHARS} characters")
    if has_control_characters(value):
        raise errors.invalid(f"{name} must not contain control characters (newlines and tabs are fine)")
    return value.strip()


async def report_dispute(db: Database, publisher: Publisher, actor: Actor | None, match_id: Any, reason: Any) -> Any:
    reason = validate_text("reason", reason)
    async with db.write():
        match = await locked_match(db, match_id)
        if actor is None or actor.user_id not in (match.participant1_id, match.participant2_id):
            raise errors.forbidden("only the match's participants may report a dispute")
        if match.status == "cancelled":
            raise errors.invalid_state(f"match {match.id} is cancelled; there is nothing to dispute")
        if await has_open_dispute(db, match.id, actor.user_id):
            raise errors.invalid_state("your dispute of this match is still open: the organizer will resolve it")
        await set_aside_pending_report(db, match.id)
        query = disputes.insert().values(
            match_id=match.id, reported_by_id=actor.user_id, reason=reason, status="open", created_at=utcnow()
        )
        dispute_id = await db.fetch_val(query.returning(disputes.c.id))
        dispute = await db.fetch_one(disputes.select().where(disputes.c.id == dispute_id))
    await publisher.publish([events.dispute_created(dispute, match)])
    return dispute


async def resolve_dispute(
    db: Database,
    publisher: Publisher,
    actor: Actor | None,
    dispute_id: Any,
    resolution: Any,
    score1: Any = None,
    score2: Any = None,
) -> Any:
    """Close a dispute; with both scores, the match completes with them (the organizer's ruling)."""
    resolution = validate_text("resolution", resolution)
    if not is_int(dispute_id):
        raise errors.invalid("dispute id must be an integer")
    if (score1 is None) != (score2 is None):
        raise errors.invalid("give both participant1_score and participant2_score, or neither")
    async with db.write():
        dispute = await db.fetch_one(disputes.select().where(disputes.c.id == dispute_id).with_for_update())
        if dispute is None:
            raise errors.not_found(f"dispute {dispute_id} does not exist")
        match = await locked_match(db, dispute.match_id)
        require_organizer(actor, match)
        if dispute.status != "open":
            raise errors.invalid_state(f"dispute {dispute.id} is already resolved")
        completion: list[Event] = []
        if score1 is not None:
            if match.status != LIVE:
                raise errors.invalid_state(f"match {match.id} is {match.status}; only a live match takes a final score")
            scores = validate_result(await best_of(db, match.tournament_id), score1, score2)
            winner = match.participant1_id if scores[0] > scores[1] else match.participant2_id
        await db.execute(
            disputes.update()
            .where(disputes.c.id == dispute.id)
            .values(
                status="resolved",
                resolution=resolution,
                resolved_by_id=actor.user_id if actor else None,
                resolved_at=utcnow(),
            )
        )
        dispute = await db.fetch_one(disputes.select().where(disputes.c.id == dispute.id))
        if score1 is not None:
            match, completion = await finish_match(db, match, winner, scores, actor.user_id if actor else None)
    await publisher.publish([events.dispute_resolved(dispute, match), *completion])
    return dispute
