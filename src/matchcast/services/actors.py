"""Who is acting, and what they may do in a tournament or a match."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from matchcast import errors
from matchcast.db.compiled import Prepared
from matchcast.db.database import Database
from matchcast.db.tables import matches, registrations, tournaments, users
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


# -- joining a room: who is joining, and in what role, in one query (web/sockets.py) ------------


@dataclass(frozen=True)
class Standing:
    """Someone's place in a room: the role they join with (None: there is no such room) and
    whether they may watch it (a private tournament's rooms are for its own people)."""

    role: str | None
    may_watch: bool


NO_ROOM = Standing(None, False)

_USER = sa.bindparam("user_id", type_=sa.Integer)
_ROOM = sa.bindparam("room_id", type_=sa.Integer)
# Plain columns only: `databases` renders each result column to text on every fetch (its column
# maps), which for a label or an EXISTS means compiling it anew: most of the query's CPU.
_ACTOR = (users.c.id, users.c.username, users.c.is_staff, users.c.session_epoch)
_TOURNAMENT = (tournaments.c.organizer_id, tournaments.c.is_public, registrations.c.user_id)


def _with_registration(joined: sa.Join) -> sa.Join:
    """`joined` (users and a tournament) and the user's registration in it, if any."""
    registration = sa.and_(registrations.c.tournament_id == tournaments.c.id, registrations.c.user_id == users.c.id)
    return joined.outerjoin(registrations, registration)


# The user, and the room's tournament (NULLs when there is no such room), left-joined on the room's id.
USER_IN_MATCH = Prepared(
    sa.select(*_ACTOR, matches.c.participant1_id, matches.c.participant2_id, *_TOURNAMENT)
    .select_from(
        _with_registration(
            users.outerjoin(matches, matches.c.id == _ROOM).outerjoin(
                tournaments, tournaments.c.id == matches.c.tournament_id
            )
        )
    )
    .where(users.c.id == _USER)
)
USER_IN_TOURNAMENT = Prepared(
    sa.select(*_ACTOR, *_TOURNAMENT)
    .select_from(_with_registration(users.outerjoin(tournaments, tournaments.c.id == _ROOM)))
    .where(users.c.id == _USER)
)
PUBLIC_MATCH = Prepared(
    sa.select(tournaments.c.is_public)
    .select_from(matches.join(tournaments, tournaments.c.id == matches.c.tournament_id))
    .where(matches.c.id == _ROOM)
)
PUBLIC_TOURNAMENT = Prepared(sa.select(tournaments.c.is_public).where(tournaments.c.id == _ROOM))


async def user_in_room(
    db: Database, kind: str, room_id: int, user_id: int, epoch: int
) -> tuple[Actor, Standing] | None:
    """The user and their standing in match or tournament `room_id`; None as `load_actor` says
    (no such user, or `epoch` revoked). One query: a join storm of logged-in users costs one
    round trip each, and a revocation is seen on every join."""
    query = USER_IN_MATCH if kind == "match" else USER_IN_TOURNAMENT
    row = await db.fetch_one(query(user_id=user_id, room_id=room_id))
    if row is None or epoch != row.session_epoch:
        return None
    actor = Actor(row.id, row.username, bool(row.is_staff), row.session_epoch)
    if row.organizer_id is None:
        return actor, NO_ROOM
    registered = row.user_id is not None
    if is_organizer(actor, row):
        role = ORGANIZER
    elif kind == "match":
        role = PARTICIPANT if actor.user_id in (row.participant1_id, row.participant2_id) else SPECTATOR
    else:
        role = PARTICIPANT if registered else SPECTATOR
    return actor, Standing(role, bool(row.is_public) or role != SPECTATOR or registered)


async def guest_in_room(db: Database, kind: str, room_id: int) -> Standing:
    """A guest's standing in match or tournament `room_id`: a spectator, who may watch a public
    tournament's rooms only."""
    query = PUBLIC_MATCH if kind == "match" else PUBLIC_TOURNAMENT
    row = await db.fetch_one(query(room_id=room_id))
    return NO_ROOM if row is None else Standing(SPECTATOR, bool(row.is_public))
