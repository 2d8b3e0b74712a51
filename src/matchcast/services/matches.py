"""Match life: start, score, complete (the winner advances), cancel.

Each action validates, writes in one transaction, and after the commit hands its events to the
publisher. An action that does not fit the match's status is refused and changes nothing.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from matchcast import errors
from matchcast.db.compiled import Prepared
from matchcast.db.database import Database, utcnow
from matchcast.db.tables import disputes, matches, reports, tournaments
from matchcast.protocol import MAX_SCORE, SPECTATOR, is_int
from matchcast.services import events, progression
from matchcast.services.actors import Actor, match_role, require_organizer
from matchcast.services.publisher import Publisher

SCHEDULED, LIVE, COMPLETED, CANCELLED = "scheduled", "live", "completed", "cancelled"
# A report's life (services/results.py); here because ending a match sets its pending report aside.
PENDING, CONFIRMED, SET_ASIDE, REPLACED = "pending", "confirmed", "set_aside", "replaced"


def with_organizer() -> sa.Select[Any]:
    """A match row plus its tournament's `organizer_id` and `is_public`: what every permission
    check needs, in one query."""
    return sa.select(matches, tournaments.c.organizer_id, tournaments.c.is_public).join(
        tournaments, tournaments.c.id == matches.c.tournament_id
    )


async def locked_match(db: Database, match_id: Any) -> Any:
    """The match (with `organizer_id`), its row locked until the transaction ends."""
    if not is_int(match_id):
        raise errors.invalid("match id must be an integer")
    row = await db.fetch_one(with_organizer().where(matches.c.id == match_id).with_for_update(of=matches))
    if row is None:
        raise errors.not_found(f"match {match_id} does not exist")
    return row


RELOAD = Prepared(matches.select().where(matches.c.id == sa.bindparam("match_id", type_=sa.Integer)))


SEQUENCE = Prepared(sa.select(matches.c.sequence).where(matches.c.id == sa.bindparam("match_id", type_=sa.Integer)))


async def reload(db: Database, match_id: int) -> Any:
    return await db.fetch_one(RELOAD(match_id=match_id))


async def stored_sequence(db: Database, match_id: int) -> int | None:
    """The match's sequence alone: the log's freshness check reads it for every score it stores
    and needs the whole row only when the score is stale, which is rare."""
    value = await db.fetch_val(SEQUENCE(match_id=match_id))
    return None if value is None else int(value)


def validate_score(name: str, value: Any) -> int:
    if not is_int(value) or not 0 <= value <= MAX_SCORE:
        raise errors.invalid(f"{name} must be an integer from 0 to {MAX_SCORE}, got {value!r}"[:120])
    return int(value)


async def start_match(db: Database, publisher: Publisher, actor: Actor | None, match_id: Any) -> Any:
    async with db.write():
        match = await locked_match(db, match_id)
        require_organizer(actor, match)
        if match.status != SCHEDULED:
            raise errors.invalid_state(f"match {match.id} is {match.status}; only a scheduled match can start")
        if match.participant1_id is None or match.participant2_id is None:
            raise errors.invalid_state(f"match {match.id} is waiting for its players; finish the earlier round first")
        now = utcnow()
        await db.execute(
            matches.update().where(matches.c.id == match.id).values(status=LIVE, started_at=now, updated_at=now)
        )
        match = await reload(db, match.id)
    await publisher.publish([events.match_started(match)])
    return match


async def update_score(
    db: Database,
    publisher: Publisher,
    actor: Actor | None,
    match_id: Any,
    score1: Any,
    score2: Any,
    organizer_only: bool = False,
) -> Any:
    """Store a score at once (sequence + 1); the publisher may coalesce the broadcast.

    Participants report over WebSocket; `organizer_only` is for the organizer API.

    The hot path of the service, so it is one statement: an UPDATE whose WHERE holds every
    check (live, and the actor allowed), atomic on both databases. Only when it changes nothing
    does a second query find out why, to refuse with the right error.
    """
    score1 = validate_score("participant1_score", score1)
    score2 = validate_score("participant2_score", score2)
    if not is_int(match_id):
        raise errors.invalid("match id must be an integer")
    statement = _score_statement(actor, organizer_only)
    for _ in range(2):  # a refusal that no longer holds (the match just went live) is retried once
        match = (
            None
            if statement is None
            else await db.write_one(
                statement(
                    match_id=match_id,
                    user_id=actor.user_id if actor else None,
                    score1=score1,
                    score2=score2,
                    now=utcnow(),
                )
            )
        )
        if match is not None:
            await publisher.publish([events.score_updated(match)])
            return match
        await _refuse_score(db, actor, match_id, organizer_only, (score1, score2))
    raise errors.invalid_state(f"match {match_id} changed while the score was being stored; send it again")


# A running score fits the series: in best-of-N (N > 1) scores count games won, so neither side
# has more than ceil(N/2) and not both have it. In a best-of-1 match the running score is the one
# game's points, free until the result is reported. (Each bound parameter stands beside a column,
# so PostgreSQL knows its type.)
_NEEDED = (tournaments.c.best_of + 1) // 2
_FITS_BEST_OF = sa.exists().where(
    tournaments.c.id == matches.c.tournament_id,
    sa.or_(
        tournaments.c.best_of == 1,
        sa.and_(
            sa.bindparam("score1", type_=sa.Integer) <= _NEEDED,
            sa.bindparam("score2", type_=sa.Integer) <= _NEEDED,
            sa.bindparam("score1", type_=sa.Integer)
            < tournaments.c.best_of + 1 - sa.bindparam("score2", type_=sa.Integer),
        ),
    ),
)


def running_score_fits(best_of: int, score1: int, score2: int) -> bool:
    """`_FITS_BEST_OF` in Python, to say why an update was refused."""
    needed = (best_of + 1) // 2
    return best_of == 1 or (score1 <= needed and score2 <= needed and score1 + score2 < 2 * needed)


def _score_update(who: Any) -> Prepared:
    """The score UPDATE for a match that is live, whose series the score fits, and that `who` (a
    WHERE clause) may score."""
    return Prepared(
        matches.update()
        .where(matches.c.id == sa.bindparam("match_id", type_=sa.Integer), matches.c.status == LIVE, who, _FITS_BEST_OF)
        .values(
            participant1_score=sa.bindparam("score1", type_=sa.Integer),
            participant2_score=sa.bindparam("score2", type_=sa.Integer),
            sequence=matches.c.sequence + 1,
            updated_at=sa.bindparam("now", type_=matches.c.updated_at.type),
        )
        .returning(*matches.c)
    )


_ORGANIZER = sa.exists().where(
    tournaments.c.id == matches.c.tournament_id, tournaments.c.organizer_id == sa.bindparam("user_id", type_=sa.Integer)
)
_PLAYER = sa.or_(
    matches.c.participant1_id == sa.bindparam("user_id", type_=sa.Integer),
    matches.c.participant2_id == sa.bindparam("user_id", type_=sa.Integer),
)
SCORE_BY_STAFF = _score_update(sa.true())
SCORE_BY_ORGANIZER = _score_update(_ORGANIZER)
SCORE_BY_PLAYER_OR_ORGANIZER = _score_update(sa.or_(_PLAYER, _ORGANIZER))


def _score_statement(actor: Actor | None, organizer_only: bool) -> Prepared | None:
    """Which score UPDATE `actor` runs; None: nobody without an actor may score."""
    if actor is None:
        return None
    if actor.is_staff:
        return SCORE_BY_STAFF
    return SCORE_BY_ORGANIZER if organizer_only else SCORE_BY_PLAYER_OR_ORGANIZER


async def _refuse_score(
    db: Database, actor: Actor | None, match_id: int, organizer_only: bool, scores: tuple[int, int]
) -> None:
    """Raise what stopped a score update; return if nothing does any more."""
    match = await db.fetch_one(with_organizer().add_columns(tournaments.c.best_of).where(matches.c.id == match_id))
    if match is None:
        raise errors.not_found(f"match {match_id} does not exist")
    if organizer_only:
        require_organizer(actor, match)
    elif match_role(actor, match, match.organizer_id) == SPECTATOR:
        raise errors.forbidden("only the match's participants or the organizer may report scores")
    if match.status != LIVE:
        raise errors.invalid_state(f"match {match.id} is {match.status}; scores can change only while it is live")
    if not running_score_fits(match.best_of, *scores):
        needed = (match.best_of + 1) // 2
        raise errors.invalid(
            f"in a best-of-{match.best_of} match the scores count games won: each 0 to {needed}, not both"
            f" {needed}; got {scores[0]}\u2013{scores[1]}"
        )


def decide_winner(match: Any, winner_id: Any, best_of: int = 1) -> int:
    """Who won: named, or the higher score. In best-of-N (N > 1) the stored score must be a
    finished series (the winner has ceil(N/2) games) and a named winner must be its winner."""
    players = (match.participant1_id, match.participant2_id)
    if best_of > 1:
        needed = (best_of + 1) // 2
        scores = (match.participant1_score, match.participant2_score)
        if max(scores) != needed or min(scores) == needed:
            raise errors.invalid(
                f"in a best-of-{best_of} match the winner has {needed} games; the score is"
                f" {scores[0]}\u2013{scores[1]}: send the final score first"
            )
        decided = players[0] if scores[0] == needed else players[1]
        if winner_id is not None and winner_id != decided:
            raise errors.invalid(f"winner_id {winner_id!r} lost the series {scores[0]}\u2013{scores[1]}"[:120])
        return int(decided)
    if winner_id is None:
        if match.participant1_score == match.participant2_score:
            raise errors.invalid("the scores are tied: name the winner_id")
        return int(players[0] if match.participant1_score > match.participant2_score else players[1])
    if not is_int(winner_id) or winner_id not in players:
        raise errors.invalid(f"winner_id must be one of the match's players {list(players)}, got {winner_id!r}"[:160])
    return int(winner_id)


async def complete_match(
    db: Database, publisher: Publisher, actor: Actor | None, match_id: Any, winner_id: Any = None
) -> Any:
    async with db.write():
        match = await locked_match(db, match_id)
        require_organizer(actor, match)
        if match.status != LIVE:
            raise errors.invalid_state(f"match {match.id} is {match.status}; only a live match can be completed")
        best_of = await db.fetch_val(sa.select(tournaments.c.best_of).where(tournaments.c.id == match.tournament_id))
        winner = decide_winner(match, winner_id, best_of)
        match, published = await finish_match(db, match, winner, by=actor.user_id if actor else None)
    await publisher.publish(published)
    return match


async def finish_match(
    db: Database, match: Any, winner_id: int, scores: tuple[int, int] | None = None, by: int | None = None
) -> Any:
    """Complete a live match inside the caller's transaction, with `scores` if given: the pending
    report (if any) is set aside, open disputes are closed (the ruling is made: by `by`), the
    winner advances. Returns the match and the events, in order."""
    now = utcnow()
    values: dict[str, Any] = {"status": COMPLETED, "winner_id": winner_id, "completed_at": now, "updated_at": now}
    if scores is not None:
        values.update(participant1_score=scores[0], participant2_score=scores[1], sequence=matches.c.sequence + 1)
    await db.execute(matches.update().where(matches.c.id == match.id).values(**values))
    await set_aside_pending_report(db, match.id)
    closed = await _close_open_disputes(db, match.id, by)
    match = await reload(db, match.id)
    published = [*(events.dispute_resolved(d, match) for d in closed)]
    published += [events.match_completed(match), *await progression.advance(db, match)]
    published += await progression.changed(db, match.tournament_id)
    return match, published


async def cancel_match(db: Database, publisher: Publisher, actor: Actor | None, match_id: Any) -> Any:
    """Call a match off. Nobody advances from it; the organizer decides what happens next."""
    async with db.write():
        match = await locked_match(db, match_id)
        require_organizer(actor, match)
        if match.status not in (SCHEDULED, LIVE):
            raise errors.invalid_state(
                f"match {match.id} is {match.status}; only a scheduled or live match can be cancelled"
            )
        now = utcnow()
        await db.execute(matches.update().where(matches.c.id == match.id).values(status=CANCELLED, updated_at=now))
        await set_aside_pending_report(db, match.id)
        match = await reload(db, match.id)
        published = [events.match_cancelled(match), *await progression.advance(db, match)]
        published += await progression.changed(db, match.tournament_id)
    await publisher.publish(published)
    return match


async def _close_open_disputes(db: Database, match_id: int, by: int | None) -> list[Any]:
    open_ones = disputes.select().where(disputes.c.match_id == match_id, disputes.c.status == "open")
    rows = await db.fetch_all(open_ones)
    if rows:
        await db.execute(
            disputes.update()
            .where(disputes.c.id.in_([row.id for row in rows]))
            .values(
                status="resolved", resolution="closed: the match was completed", resolved_by_id=by, resolved_at=utcnow()
            )
        )
    return [await db.fetch_one(disputes.select().where(disputes.c.id == row.id)) for row in rows]


async def set_aside_pending_report(db: Database, match_id: int) -> None:
    """The match's pending report, if any, will never be confirmed (inside the caller's transaction)."""
    await db.execute(
        reports.update()
        .where(reports.c.match_id == match_id, reports.c.status == PENDING)
        .values(status=SET_ASIDE, closed_at=utcnow())
    )


async def matches_of(db: Database, tournament_id: int) -> list[Any]:
    query = sa.select(matches).where(matches.c.tournament_id == tournament_id)
    return list(await db.fetch_all(query.order_by(matches.c.round, matches.c.position)))
