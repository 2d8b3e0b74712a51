"""Who is acting, and what they may do in a tournament or a match."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from matchcast import errors
from matchcast.db.database import Database
from matchcast.db.tables import registrations, tournaments, users
from matchcast.protocol import ORGANIZER, PARTICIPANT, SPECTATOR


@dataclass(frozen=True)
class Actor:
    user_id: int
    username: str
    is_staff: bool
    session_epoch: int = 0  # users.session_epoch: tokens minted for this actor carry it


REVOKED = "unknown user, or the token was revoked by a logout or a password change: log in again for a new one"


async def load_actor(db: Database, user_id: int, epoch: int | None = None) -> Actor | None:
    """The user, or None when there is none, or when `epoch` (a token's) is not the user's
    current session epoch: a logout or a password change since revoked the token."""
    query = sa.select(users.c.id, users.c.username, users.c.is_staff, users.c.session_epoch)
    row = await db.fetch_one(query.where(users.c.id == user_id))
    if row is None or (epoch is not None and epoch != row.session_epoch):
        return None
    return Actor(row.id, row.username, bool(row.is_staff), row.session_epoch)


def is_organizer(actor: Actor | None, tournament: Any) -> bool:
    return actor is not None and (actor.is_staff or actor.user_id == tournament.organizer_id)


def require_organizer(actor: Actor | None, tournament: Any) -> None:
    if not is_organizer(actor, tournament):
        raise errors.forbidden("only the tournament's organizer or a staff user may do this")


async def tournament_role(db: Database, actor: Actor | None, tournament_id: int) -> str | None:
    """The role in a tournament room, or None when the tournament does not exist."""
    row = await db.fetch_one(sa.select(tournaments.c.organizer_id).where(tournaments.c.id == tournament_id))
    if row is None:
        return None
    if is_organizer(actor, row):
        return ORGANIZER
    if actor is not None and await is_registered(db, actor.user_id, tournament_id):
        return PARTICIPANT
    return SPECTATOR


async def is_registered(db: Database, user_id: int, tournament_id: int) -> bool:
    registered = await db.fetch_val(
        sa.select(sa.func.count())
        .select_from(registrations)
        .where(registrations.c.tournament_id == tournament_id, registrations.c.user_id == user_id)
    )
    return bool(registered)


async def may_watch(db: Database, actor: Actor | None, tournament: Any) -> bool:
    """Whether `actor` may read the tournament and its matches: anyone when it is public, else
    only its organizer, staff and its registered players (shared/spec/protocol.md)."""
    if tournament.is_public or is_organizer(actor, tournament):
        return True
    return actor is not None and await is_registered(db, actor.user_id, tournament.id)


async def may_watch_tournament(db: Database, actor: Actor | None, tournament_id: int) -> bool:
    """`may_watch` by id; False for a tournament that does not exist."""
    row = await db.fetch_one(tournaments.select().where(tournaments.c.id == tournament_id))
    return row is not None and await may_watch(db, actor, row)


def match_role(actor: Actor | None, match: Any, organizer_id: int) -> str:
    if actor is not None and (actor.is_staff or actor.user_id == organizer_id):
        return ORGANIZER
    if actor is not None and actor.user_id in (match.participant1_id, match.participant2_id):
        return PARTICIPANT
    return SPECTATOR
