"""Tournaments: creation (format, best-of, Swiss rounds), registration of players, seeding."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from matchcast import errors
from matchcast.db.database import Database, utcnow
from matchcast.db.tables import registrations, tournaments, users
from matchcast.protocol import has_control_characters, is_int, is_utf8
from matchcast.services import formats, progression
from matchcast.services.actors import Actor, require_organizer
from matchcast.services.formats.base import MIN_PLAYERS
from matchcast.services.publisher import Publisher
from matchcast.services.snapshots import seeded_players, tournament_matches
from matchcast.services.users import insert_user, new_password_hash

DRAFT, RUNNING = "draft", "running"
MAX_NAME = 200
BEST_OF = (1, 3, 5, 7)
MAX_ROUNDS = 64  # Swiss; the exact bound (ceil(players / 2)) is checked at seeding


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
    db: Database,
    actor: Actor | None,
    name: Any,
    is_public: bool = True,
    best_of: Any = 1,
    format: Any = formats.DEFAULT,
    rounds: Any = None,
) -> int:
    if actor is None:
        raise errors.forbidden("log in to create a tournament")
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > MAX_NAME or not is_utf8(name):
        raise errors.invalid(f"name must be 1 to {MAX_NAME} characters")
    if has_control_characters(name):
        raise errors.invalid("name must not contain control characters")
    if best_of not in BEST_OF or not is_int(best_of):
        raise errors.invalid(f"best_of must be one of {', '.join(map(str, BEST_OF))}, got {best_of!r}"[:100])
    if not isinstance(format, str) or format not in formats.FORMATS:
        raise errors.invalid(f"format must be one of {', '.join(formats.FORMATS)}, got {format!r}"[:160])
    if rounds is not None and (format != formats.SWISS or not is_int(rounds) or not 1 <= rounds <= MAX_ROUNDS):
        raise errors.invalid(
            f"rounds is for Swiss tournaments only: 1 to {MAX_ROUNDS}, or leave it out, got {rounds!r}"[:120]
        )
    async with db.write():
        query = tournaments.insert().values(
            name=name.strip(),
            organizer_id=actor.user_id,
            is_public=bool(is_public),
            status=DRAFT,
            best_of=best_of,
            format=format,
            rounds=rounds,
            created_at=utcnow(),
        )
        return int(await db.fetch_val(query.returning(tournaments.c.id)))


registered_players = seeded_players


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
    most = formats.get(tournament.format).max_players
    if len(await registered_players(db, tournament.id)) >= most:
        raise errors.invalid_state(f"a {tournament.format.replace('_', ' ')} tournament holds at most {most} players")
    return tournament


async def _register(db: Database, tournament_id: int, user_id: int) -> None:
    await db.execute(registrations.insert().values(tournament_id=tournament_id, user_id=user_id, created_at=utcnow()))


async def seed_bracket(db: Database, publisher: Publisher, actor: Actor | None, tournament_id: Any) -> list[int]:
    """Create the format's matches for the registered players in seed order; byes pass at once.
    Returns the ids of the matches created."""
    async with db.write():
        tournament = await get_tournament(db, tournament_id, lock=True)
        require_organizer(actor, tournament)
        if tournament.status != DRAFT:
            raise errors.invalid_state("the bracket is already seeded")
        fmt = formats.get(tournament.format)
        players = [p.id for p in await registered_players(db, tournament.id)]
        if not MIN_PLAYERS <= len(players) <= fmt.max_players:
            raise errors.invalid_state(
                f"seeding needs {MIN_PLAYERS} to {fmt.max_players} players; {len(players)} registered"
            )
        rounds = _rounds(fmt, tournament.rounds, len(players))
        published = await progression.create(db, tournament.id, fmt.plan(players, rounds))
        await db.execute(
            tournaments.update().where(tournaments.c.id == tournament.id).values(status=RUNNING, rounds=rounds)
        )
        published += await progression.changed(db, tournament.id)
        ids = [row.id for row in await tournament_matches(db, tournament.id)]
    await publisher.publish(published)
    return ids


def _rounds(fmt: formats.TournamentFormat, chosen: int | None, players: int) -> int | None:
    """The rounds a Swiss tournament plays: the organizer's choice if it fits, else the default."""
    allowed = fmt.rounds_allowed(players)
    if allowed is None:
        return None
    if chosen is None:
        return formats.swiss_default_rounds(players)
    if chosen not in allowed:
        raise errors.invalid_state(
            f"{players} players can play 1 to {allowed[-1]} Swiss rounds without a rematch; the tournament asks for"
            f" {chosen}: register more players or create it with fewer rounds"
        )
    return chosen
