"""Results on the players' word: a participant reports, the opponent confirms or disputes.

The rules are the contract's ("Results: report, confirm, dispute"). A match has at most one
pending report; it is confirmed by the opponent, by the same result reported by the opponent,
or by its deadline (`confirm_by`), and set aside by a dispute, a conflicting report or the
organizer. Confirming stores the reported scores and completes the match. Every change happens
under the match's row lock, and a report is claimed by `status = 'pending'` in the same
transaction, so a deadline passes once however many instances watch it.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from matchcast import errors
from matchcast.db.database import Database, utcnow
from matchcast.db.tables import disputes, reports, tournaments
from matchcast.protocol import Event, is_int
from matchcast.services import events
from matchcast.services.matches import (
    CONFIRMED,
    LIVE,
    PENDING,
    REPLACED,
    SET_ASIDE,
    finish_match,
    locked_match,
    validate_score,
)
from matchcast.services.publisher import Publisher
from matchcast.services.users import usernames

BY_OPPONENT, BY_AGREEMENT, BY_TIMEOUT = "opponent", "agreement", "timeout"
DUE_BATCH = 100  # reports confirmed per pass of the deadline timer


def validate_result(best_of: int, score1: Any, score2: Any) -> tuple[int, int]:
    """A final result: it decides the match, and its winner won exactly ceil(best_of / 2) games."""
    score1 = validate_score("participant1_score", score1)
    score2 = validate_score("participant2_score", score2)
    if score1 == score2:
        raise errors.invalid(f"a result must decide the match: {score1}\u2013{score2} is a tie")
    needed = math.ceil(best_of / 2)
    if max(score1, score2) != needed:
        raise errors.invalid(
            f"in a best-of-{best_of} match the winner has exactly {needed} (games won), got {score1}\u2013{score2}"
        )
    return score1, score2


async def best_of(db: Database, tournament_id: int) -> int:
    return int(await db.fetch_val(sa.select(tournaments.c.best_of).where(tournaments.c.id == tournament_id)))


async def pending_report(db: Database, match_id: int) -> Any:
    query = reports.select().where(reports.c.match_id == match_id, reports.c.status == PENDING)
    return await db.fetch_one(query.order_by(reports.c.id.desc()))


async def has_open_dispute(db: Database, match_id: int, reported_by_id: int | None = None) -> bool:
    query = sa.select(sa.func.count()).select_from(disputes).where(disputes.c.match_id == match_id)
    query = query.where(disputes.c.status == "open")
    if reported_by_id is not None:
        query = query.where(disputes.c.reported_by_id == reported_by_id)
    return bool(await db.fetch_val(query))


async def _participant_match(db: Database, actor: Any, match_id: Any, action: str) -> Any:
    """The locked match, if `actor` is one of its participants and no dispute of it is open."""
    match = await locked_match(db, match_id)
    if actor is None or actor.user_id not in (match.participant1_id, match.participant2_id):
        raise errors.forbidden(f"only the match's participants may {action}")
    if match.status != LIVE:
        raise errors.invalid_state(f"match {match.id} is {match.status}; results are reported while it is live")
    if await has_open_dispute(db, match.id):
        raise errors.invalid_state(f"a dispute of match {match.id} is open: the organizer decides its result")
    return match


async def report_result(
    db: Database, publisher: Publisher, actor: Any, match_id: Any, score1: Any, score2: Any, confirm_timeout: float
) -> list[Event]:
    """A participant's claim of the final result; returns the events it caused."""
    validate_score("participant1_score", score1)
    validate_score("participant2_score", score2)
    async with db.write():
        match = await _participant_match(db, actor, match_id, "report a result")
        scores = validate_result(await best_of(db, match.tournament_id), score1, score2)
        pending = await pending_report(db, match.id)
        if pending is None or pending.reported_by_id == actor.user_id:
            if pending is not None:  # the reporter corrects themselves: a new report and deadline
                await _close(db, pending.id, REPLACED)
            report = await _insert(db, match.id, actor.user_id, scores, confirm_timeout)
            published = [events.result_reported(report, match)]
        elif (pending.participant1_score, pending.participant2_score) == scores:
            published = await _confirm(db, match, pending, BY_AGREEMENT)
        else:
            published = [await _conflict(db, match, pending, actor.user_id, scores)]
    await publisher.publish(published)
    return published


async def confirm_result(db: Database, publisher: Publisher, actor: Any, match_id: Any, report_id: Any) -> list[Event]:
    if not is_int(report_id):
        raise errors.invalid(f"report_id must be an integer, got {report_id!r}"[:80])
    async with db.write():
        match = await _participant_match(db, actor, match_id, "confirm a result")
        pending = await pending_report(db, match.id)
        if pending is None or pending.id != report_id:
            current = "no report is pending" if pending is None else f"the pending report is {pending.id}"
            raise errors.invalid_state(f"report {report_id} is not pending for match {match.id}; {current}")
        if pending.reported_by_id == actor.user_id:
            raise errors.forbidden("you made this report: your opponent confirms it (or it confirms at its deadline)")
        published = await _confirm(db, match, pending, BY_OPPONENT)
    await publisher.publish(published)
    return published


async def confirm_due(db: Database, publisher: Publisher, now: datetime | None = None) -> int:
    """Confirm the pending reports whose deadline has passed; return how many this call confirmed.

    Each is claimed in its own transaction under its match's lock: another instance doing the
    same finds it no longer pending and leaves it.
    """
    now = now or utcnow()
    query = sa.select(reports.c.id, reports.c.match_id).where(reports.c.status == PENDING, reports.c.confirm_by <= now)
    due = await db.fetch_all(query.order_by(reports.c.confirm_by).limit(DUE_BATCH))
    confirmed = 0
    for row in due:
        async with db.write():
            match = await locked_match(db, row.match_id)
            report = await db.fetch_one(reports.select().where(reports.c.id == row.id, reports.c.status == PENDING))
            if report is None:
                continue  # claimed meanwhile (another instance, the opponent, the organizer)
            if match.status != LIVE:  # ended without setting it aside: it must not come due again
                await _close(db, report.id, SET_ASIDE)
                continue
            published = await _confirm(db, match, report, BY_TIMEOUT)
        await publisher.publish(published)
        confirmed += 1
    return confirmed


async def next_deadline(db: Database) -> datetime | None:
    value = await db.fetch_val(sa.select(sa.func.min(reports.c.confirm_by)).where(reports.c.status == PENDING))
    return value if isinstance(value, datetime) or value is None else datetime.fromisoformat(str(value))


async def _insert(db: Database, match_id: int, user_id: int, scores: tuple[int, int], wait: float) -> Any:
    now = utcnow()
    query = reports.insert().values(
        match_id=match_id,
        reported_by_id=user_id,
        participant1_score=scores[0],
        participant2_score=scores[1],
        status=PENDING,
        confirm_by=now + timedelta(seconds=wait),
        created_at=now,
    )
    report_id = await db.fetch_val(query.returning(reports.c.id))
    return await db.fetch_one(reports.select().where(reports.c.id == report_id))


async def _close(db: Database, report_id: int, status: str, confirmed_by: str | None = None) -> Any:
    values = {"status": status, "closed_at": utcnow(), "confirmed_by": confirmed_by}
    await db.execute(reports.update().where(reports.c.id == report_id).values(**values))
    return await db.fetch_one(reports.select().where(reports.c.id == report_id))


async def _confirm(db: Database, match: Any, pending: Any, how: str) -> list[Event]:
    report = await _close(db, pending.id, CONFIRMED, how)
    scores = (report.participant1_score, report.participant2_score)
    winner = match.participant1_id if scores[0] > scores[1] else match.participant2_id
    match, completion = await finish_match(db, match, winner, scores)
    return [events.result_confirmed(report, match), *completion]


async def _conflict(db: Database, match: Any, pending: Any, user_id: int, scores: tuple[int, int]) -> Event:
    """A second report with another result: the pending one is set aside, and the organizer decides."""
    await _close(db, pending.id, SET_ASIDE)
    names = await usernames(db, [pending.reported_by_id, user_id])
    first = (
        f"{names.get(pending.reported_by_id)} reported {pending.participant1_score}\u2013{pending.participant2_score}"
    )
    reason = f"conflicting results: {first}, {names.get(user_id)} reported {scores[0]}\u2013{scores[1]}"
    query = disputes.insert().values(
        match_id=match.id, reported_by_id=user_id, reason=reason, status="open", created_at=utcnow()
    )
    dispute_id = await db.fetch_val(query.returning(disputes.c.id))
    dispute = await db.fetch_one(disputes.select().where(disputes.c.id == dispute_id))
    return events.dispute_created(dispute, match)
