"""Tournaments: creation, registration of players, seeding the bracket."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from matchcast import errors
from matchcast.db.database import Database, utcnow
from matchcast.db.tables import matches, registrations, tournaments, users
from matchcast.protocol import Event, has_control_characters, is_int, is_utf8
from matchcast.services import brackets, events
from matchcast.services.actors import Actor, require_organizer
from matchcast.services.matches import COMPLETED, SCHEDULED, advance_winner, reload
from matchcast.services.publisher import Publisher
from matchcast.services.snapshots import bracket
from matchcast.services.users import insert_user, new_password_hash, usernames

DRAFT, RUNNING = "draft", "running"
MAX_NAME = 200
BEST_OF = (1, 3, 5, 7)


async def get_tournament(db: Database, tournament_id: Any, lock: bool = False) -> Any:
    """The tournament's row; `lock` holds it until the transaction ends (PostgreSQL), so two
    concurrent registrations or seedings of one tournament run one after the other."""
    if not is_int(tournament_id):
        raise errors.invalid("tournament id must be an integer")
    query = tournaments.select().where(tournaments.c.id == tournament_id)
    row = await db.fetch_one(query.with_for_update() if lock else query)
    if row is None:
        raise errors.not_found(f"tournament {tournament_id} does not exist")
    return row


async def list_tournaments(db: Database, viewer: Actor | None = None) -> list[Any]:
    """Public tournaments, plus the private ones the viewer organizes (all of them for staff)."""
    query = tournaments.select().order_by(tournaments.c.id.desc())
    if viewer is None:
        query = query.where(tournaments.c.is_public.is_(True))
    elif not viewer.is_staff:
        query = query.where(sa.or_(tournaments.c.is_public.is_(True), tournaments.c.organizer_id == viewer.user_id))
    return list(await db.fetch_all(query))


async def create_tournament(
    db: Database, actor: Actor | None, name: Any, is_public: bool = True, best_of: Any = 1
) -> int:
    if actor is None:
        raise errors.forbidden("log in to create a tournament")
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > MAX_NAME or not is_utf8(name):
        raise errors.invalid(f"name must be 1 to {MAX_NAME} characters")
    if has_control_characters(name):
        raise errors.invalid("name must not contain control characters")
    if best_of not in BEST_OF or not is_int(best_of):
        raise errors.invalid(f"best_of must be one of {', '.join(map(str, BEST_OF))}, got {best_of!r}"[:100])
    async with db.write():
        query = tournaments.insert().values(
            name=name.strip(),
            organizer_id=actor.user_id,
            is_public=bool(is_public),
            status=DRAFT,
            best_of=best_of,
            created_at=utcnow(),
        )
        return int(await db.fetch_val(query.returning(tournaments.c.id)))


async def registered_players(db: Database, tournament_id: int) -> list[Any]:
    query = (
        sa.select(users.c.id, users.c.username, registrations.c.seed)
        .join(registrations, registrations.c.user_id == users.c.id)
        .where(registrations.c.tournament_id == tournament_id)
    )
    return list(await db.fetch_all(query.order_by(sa.func.coalesce(registrations.c.seed, 1 << 30), registrations.c.id)))


async def register_player(db: Database, actor: Actor | None, tournament_id: Any, user_id: Any) -> None:
    async with db.write():
        tournament = await _open_for_registration(db, actor, tournament_id)
        if not is_int(user_id) or await db.fetch_one(users.select().where(users.c.id == user_id)) is None:
            raise errors.not_found(f"user {user_id!r} does not exist"[:80])
        exists = await db.fetch_val(
            sa.select(sa.func.count())
            .select_from(registrations)
            .where(registrations.c.tournament_id == tournament.id, registrations.c.user_id == user_id)
        )
        if exists:
            raise errors.DomainError(errors.CONFLICT, f"user {user_id} is already registered")
        await _register(db, tournament.id, user_id)


async def register_new_player(
    db: Database, actor: Actor | None, tournament_id: Any, username: str, password: str
) -> int:
    """Create an account and register it in one transaction: a refused registration leaves no
    account behind. Returns the new user's id."""
    require_organizer(actor, await get_tournament(db, tournament_id))  # before paying for the hash
    password_hash = await new_password_hash(username, password)
    async with db.write():
        tournament = await _open_for_registration(db, actor, tournament_id)
        user_id = await insert_user(db, username, password_hash)
        await _register(db, tournament.id, user_id)
    return user_id


async def _open_for_registration(db: Database, actor: Actor | None, tournament_id: Any) -> Any:
    """The tournament, locked, if `actor` may register a player in it now."""
    tournament = await get_tournament(db, tournament_id, lock=True)
    require_organizer(actor, tournament)
    if tournament.status != DRAFT:
        raise errors.invalid_state("players can be registered only before the bracket is seeded")
    if len(await registered_players(db, tournament.id)) >= brackets.MAX_PLAYERS:
        raise errors.invalid_state(f"a tournament holds at most {brackets.MAX_PLAYERS} players")
    return tournament


async def _register(db: Database, tournament_id: int, user_id: int) -> None:
    await db.execute(registrations.insert().values(tournament_id=tournament_id, user_id=user_id, created_at=utcnow()))


async def seed_bracket(db: Database, publisher: Publisher, actor: Actor | None, tournament_id: Any) -> list[int]:
    """Create every match of the bracket in registration order; byes advance at once."""
    async with db.write():
        tournament = await get_tournament(db, tournament_id, lock=True)
        require_organizer(actor, tournament)
        if tournament.status != DRAFT:
            raise errors.invalid_state("the bracket is already seeded")
        players = [p.id for p in await registered_players(db, tournament.id)]
        if not brackets.MIN_PLAYERS <= len(players) <= brackets.MAX_PLAYERS:
            raise errors.invalid_state(
                f"seeding needs {brackets.MIN_PLAYERS} to {brackets.MAX_PLAYERS} players; {len(players)} registered"
            )
        ids = await _create_matches(db, tournament.id, brackets.plan(players))
        await db.execute(tournaments.update().where(tournaments.c.id == tournament.id).values(status=RUNNING))
        published = await _schedule_first_round(db, ids)
        published.append(events.bracket_updated(tournament.id, await bracket(db, tournament.id)))
    await publisher.publish(published)
    return ids


async def _create_matches(db: Database, tournament_id: int, planned: list[brackets.PlannedMatch]) -> list[int]:
    now = utcnow()
    slot_ids: dict[tuple[int, int], int] = {}
    # Last round first, so every match knows the id of the match its winner advances to.
    for p in sorted(planned, key=lambda m: (-m.round, m.position)):
        next_id = slot_ids.get((p.round + 1, p.next_position))
        query = matches.insert().values(
            tournament_id=tournament_id,
            round=p.round,
            position=p.position,
            participant1_id=p.participant1_id,
            participant2_id=p.participant2_id,
            participant1_score=0,
            participant2_score=0,
            sequence=0,
            status=SCHEDULED,
            is_bye=p.is_bye,
            next_match_id=next_id,
            next_slot=p.next_slot if next_id else None,
            created_at=now,
            updated_at=now,
        )
        slot_ids[(p.round, p.position)] = int(await db.fetch_val(query.returning(matches.c.id)))
    return [slot_ids[(p.round, p.position)] for p in planned]


async def _schedule_first_round(db: Database, match_ids: list[int]) -> list[Event]:
    published: list[Event] = []
    now = utcnow()
    for match_id in match_ids:
        match = await reload(db, match_id)
        if match.round != 1:
            continue
        if match.is_bye:
            winner = match.participant1_id or match.participant2_id
            await db.execute(
                matches.update()
                .where(matches.c.id == match_id)
                .values(status=COMPLETED, winner_id=winner, completed_at=now, updated_at=now)
            )
            published += await advance_winner(db, await reload(db, match_id))
        else:
            await db.execute(matches.update().where(matches.c.id == match_id).values(scheduled_at=now))
            match = await reload(db, match_id)
            names = await usernames(db, [match.participant1_id, match.participant2_id])
            published.append(events.match_scheduled(match, names))
    return published
