"""A tournament moving on: matches created from a format's plan, players placed by the links the
plan set (where the winner goes, where the loser goes), byes passed through, what the format says
follows a completion (a Swiss round, a grand-final reset, the end), and the events for all of it.

Everything runs inside the caller's transaction, after the tournament row is locked: two matches
completed at once on two instances are placed one after the other, so the last completion of a
Swiss round always sees the others and pairs the next round exactly once.
"""

from __future__ import annotations

from typing import Any

from matchcast.db.database import Database, utcnow
from matchcast.db.tables import matches, tournaments
from matchcast.protocol import Event
from matchcast.services import events, formats
from matchcast.services.formats.base import PlannedMatch, Played, Slot
from matchcast.services.snapshots import bracket, seeded_players, standings, tournament_matches
from matchcast.services.users import usernames

SCHEDULED, COMPLETED = "scheduled", "completed"


async def lock_tournament(db: Database, tournament_id: int) -> Any:
    query = tournaments.select().where(tournaments.c.id == tournament_id)
    return await db.fetch_one(query.with_for_update())


async def create(db: Database, tournament_id: int, planned: list[PlannedMatch]) -> list[Event]:
    """Insert the planned matches, link them, then settle each: a bye passes its player on, a
    match with both players is scheduled (`match_scheduled`)."""
    now = utcnow()
    ids: dict[Slot, int] = {}
    for p in planned:
        query = matches.insert().values(
            tournament_id=tournament_id,
            bracket=p.slot.bracket,
            round=p.slot.round,
            position=p.slot.position,
            participant1_id=p.participant1_id,
            participant2_id=p.participant2_id,
            participant1_score=0,
            participant2_score=0,
            sequence=0,
            status=SCHEDULED,
            is_bye=p.is_bye,
            created_at=now,
            updated_at=now,
        )
        ids[p.slot] = int(await db.fetch_val(query.returning(matches.c.id)))
    for p in planned:
        links: dict[str, Any] = {}
        if p.winner_to:
            links.update(next_match_id=ids[p.winner_to.slot], next_slot=p.winner_to.side)
        if p.loser_to:
            links.update(loser_next_match_id=ids[p.loser_to.slot], loser_next_slot=p.loser_to.side)
        if links:
            await db.execute(matches.update().where(matches.c.id == ids[p.slot]).values(**links))
    published: list[Event] = []
    for p in planned:
        published += await _settle(db, ids[p.slot])
    return published


async def advance(db: Database, match: Any, players: list[int] | None = None) -> list[Event]:
    """After `match` was completed or cancelled: place its winner and loser, then whatever the
    format says follows. Returns the events in order."""
    tournament = await lock_tournament(db, match.tournament_id)
    published: list[Event] = []
    if match.status == COMPLETED and match.winner_id is not None:
        published += await _place(db, match.next_match_id, match.next_slot, match.winner_id)
        loser = Played.of(match).loser_id
        if loser is not None:
            published += await _place(db, match.loser_next_match_id, match.loser_next_slot, loser)
    fmt = formats.get(tournament.format)
    if players is None:
        players = [p.id for p in await seeded_players(db, tournament.id)]
    played = [Played.of(row) for row in await tournament_matches(db, tournament.id)]
    follow = fmt.follow_up(players, played, Played.of(match), tournament.rounds)
    published += await create(db, tournament.id, follow.new_matches)
    if follow.finished:
        await db.execute(tournaments.update().where(tournaments.c.id == tournament.id).values(status=COMPLETED))
    return published


async def changed(db: Database, tournament_id: int) -> list[Event]:
    """`bracket_updated`, and `standings_updated` for formats with standings: sent after every
    completion (and seeding, and cancelling) so a page redraws from them alone."""
    published = [events.bracket_updated(tournament_id, await bracket(db, tournament_id))]
    table = await standings(db, tournament_id)
    if table is not None:
        published.append(events.standings_updated(tournament_id, table))
    return published


async def _place(db: Database, match_id: int | None, side: int | None, player: int) -> list[Event]:
    if match_id is None:
        return []
    column = matches.c.participant1_id if side == 1 else matches.c.participant2_id
    await db.execute(matches.update().where(matches.c.id == match_id).values({column: player, "updated_at": utcnow()}))
    return await _settle(db, match_id)


async def _settle(db: Database, match_id: int) -> list[Event]:
    """A bye completes with its one player, who moves on; a match whose players are both known is
    scheduled."""
    match = await db.fetch_one(matches.select().where(matches.c.id == match_id))
    present = [p for p in (match.participant1_id, match.participant2_id) if p is not None]
    if match.status != SCHEDULED or match.scheduled_at is not None or not present:
        return []
    now = utcnow()
    if match.is_bye:
        await db.execute(
            matches.update()
            .where(matches.c.id == match_id)
            .values(status=COMPLETED, winner_id=present[0], completed_at=now, updated_at=now)
        )
        return await _place(db, match.next_match_id, match.next_slot, present[0])
    if len(present) < 2:
        return []
    await db.execute(matches.update().where(matches.c.id == match_id).values(scheduled_at=now))
    match = await db.fetch_one(matches.select().where(matches.c.id == match_id))
    return [events.match_scheduled(match, await usernames(db, present))]
