"""Quick builders of users, tournaments and seeded brackets through the real services.

Users are inserted with one precomputed password hash (argon2 costs ~0.1 s a hash); everything
else goes through `matchcast.services`, so a seeded bracket is exactly what production makes.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from matchcast.db.database import Database, utcnow
from matchcast.db.tables import users
from matchcast.security import hash_password
from matchcast.services import matches, tournaments
from matchcast.services.actors import Actor
from matchcast.services.publisher import DiscardingPublisher, Publisher

PASSWORD = "correct-horse-battery"


@cache
def password_hash() -> str:
    return hash_password(PASSWORD)


@dataclass
class Tournament:
    id: int
    organizer: Actor
    players: list[Actor]
    match_ids: list[int] = field(default_factory=list)


class Factory:
    def __init__(self, db: Database, publisher: Publisher | None = None) -> None:
        self.db = db
        self.publisher = publisher if publisher is not None else DiscardingPublisher()
        self._suffix = secrets.token_hex(3)
        self._numbers = itertools.count(1)

    async def user(self, username: str | None = None, *, staff: bool = False) -> Actor:
        """A user whose password is PASSWORD."""
        username = username or f"user{next(self._numbers)}-{self._suffix}"
        query = users.insert().values(
            username=username, password_hash=password_hash(), is_staff=staff, created_at=utcnow()
        )
        user_id = int(await self.db.fetch_val(query.returning(users.c.id)))
        return Actor(user_id, username, staff)

    async def tournament(
        self,
        players: int = 0,
        *,
        organizer: Actor | None = None,
        public: bool = True,
        name: str = "Test Cup",
        best_of: int = 1,
        format: str = "single_elimination",
        rounds: int | None = None,
    ) -> Tournament:
        """A draft tournament with `players` registered (seeds in registration order)."""
        organizer = organizer or await self.user()
        tournament_id = await tournaments.create_tournament(
            self.db, organizer, name, public, best_of, format=format, rounds=rounds
        )
        registered = []
        for _ in range(players):
            player = await self.user()
            await tournaments.register_player(self.db, organizer, tournament_id, player.user_id)
            registered.append(player)
        return Tournament(tournament_id, organizer, registered)

    async def seeded(
        self,
        players: int = 8,
        *,
        organizer: Actor | None = None,
        best_of: int = 1,
        public: bool = True,
        format: str = "single_elimination",
        rounds: int | None = None,
    ) -> Tournament:
        """A tournament with its bracket seeded: first-round matches scheduled, byes advanced."""
        tournament = await self.tournament(
            players, organizer=organizer, best_of=best_of, public=public, format=format, rounds=rounds
        )
        tournament.match_ids = await tournaments.seed_bracket(
            self.db, self.publisher, tournament.organizer, tournament.id
        )
        return tournament

    async def live_match(self, players: int = 2, best_of: int = 1) -> tuple[Tournament, Any]:
        """A seeded tournament and its first playable first-round match, started."""
        tournament = await self.seeded(players, best_of=best_of)
        first = next(
            m
            for m in await matches.matches_of(self.db, tournament.id)
            if m.round == 1 and m.status == matches.SCHEDULED
        )
        match = await matches.start_match(self.db, self.publisher, tournament.organizer, first.id)
        return tournament, match

    async def match(self, match_id: int) -> Any:
        return await matches.reload(self.db, match_id)
