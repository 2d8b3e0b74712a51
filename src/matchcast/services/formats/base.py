"""What every tournament format is made of: planned matches, played matches, standings, and the
small interface a format implements. Pure: no database, no clock, so it is tested by properties.

A format plans matches as slots `(bracket, round, position)`; each planned match says where its
winner and where its loser go (another slot and side, or nowhere). The services create the rows,
place players as results come in and ask the format what follows a completion (new matches, the
end of the tournament). A fifth format is one module implementing `TournamentFormat`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

MAIN, WINNERS, LOSERS, GRAND_FINAL = "main", "winners", "losers", "grand_final"
BRACKETS = (MAIN, WINNERS, LOSERS, GRAND_FINAL)
MIN_PLAYERS = 2


@dataclass(frozen=True, order=True)
class Slot:
    """Where a match sits in its tournament; unique per tournament."""

    bracket: str
    round: int  # 1-based, within the bracket
    position: int  # 0-based, top to bottom within the round


@dataclass(frozen=True)
class Target:
    """A side of another match: where a winner or a loser goes."""

    slot: Slot
    side: int  # 1 or 2: participant1 or participant2


@dataclass(frozen=True)
class PlannedMatch:
    slot: Slot
    participant1_id: int | None
    participant2_id: int | None
    # One player only, ever: the match completes as soon as that player is placed (a bye).
    is_bye: bool = False
    winner_to: Target | None = None
    loser_to: Target | None = None

    @property
    def round(self) -> int:
        return self.slot.round

    @property
    def position(self) -> int:
        return self.slot.position


@dataclass(frozen=True)
class Played:
    """A match as the format sees it once created: its players and, if completed, its result."""

    slot: Slot
    participant1_id: int | None
    participant2_id: int | None
    participant1_score: int = 0
    participant2_score: int = 0
    winner_id: int | None = None
    status: str = "scheduled"  # scheduled | live | completed | cancelled
    is_bye: bool = False

    @property
    def done(self) -> bool:
        return self.status in ("completed", "cancelled")

    @property
    def loser_id(self) -> int | None:
        if self.winner_id is None or self.is_bye:
            return None
        return self.participant2_id if self.winner_id == self.participant1_id else self.participant1_id

    @classmethod
    def of(cls, row: Any) -> Played:
        """From a `matches` row."""
        return cls(
            Slot(row.bracket, row.round, row.position),
            row.participant1_id,
            row.participant2_id,
            row.participant1_score,
            row.participant2_score,
            row.winner_id,
            row.status,
            bool(row.is_bye),
        )


@dataclass(frozen=True)
class FollowUp:
    """What a completion leads to, beyond placing its winner and loser."""

    new_matches: list[PlannedMatch] = field(default_factory=list)
    finished: bool = False  # the tournament is over


@dataclass(frozen=True)
class Standing:
    participant_id: int
    played: int
    wins: int
    losses: int
    points: int
    game_difference: int
    tiebreaks: dict[str, int]


class TournamentFormat(Protocol):
    name: str
    max_players: int
    has_standings: bool

    def rounds_allowed(self, players: int) -> range | None:
        """Rounds an organizer may choose for this many players; None: the format fixes them."""

    def plan(self, players: Sequence[int], rounds: int | None) -> list[PlannedMatch]:
        """The matches created at seeding; `players` in seed order."""

    def follow_up(
        self, players: Sequence[int], played: Sequence[Played], completed: Played, rounds: int | None
    ) -> FollowUp:
        """After `completed` (also in `played`) is completed or cancelled: new matches, the end.
        `players` in seed order."""

    def standings(self, players: Sequence[int], played: Sequence[Played]) -> list[Standing]:
        """Rank order with the format's tiebreaks; [] for formats without standings."""

    def round_name(self, slot: Slot, last_round: int) -> str:
        """How the pages title the round `slot` is in; `last_round` is its bracket's last."""


def check_players(players: Sequence[int], most: int) -> None:
    n = len(players)
    if not MIN_PLAYERS <= n <= most:
        raise ValueError(f"this format needs {MIN_PLAYERS} to {most} players, got {n}")
    if len(set(players)) != n:
        raise ValueError("a player can be seeded only once")


def wins_needed(best_of: int) -> int:
    """Games the winner of a best-of-N series has won: ceil(N / 2)."""
    return math.ceil(best_of / 2)
