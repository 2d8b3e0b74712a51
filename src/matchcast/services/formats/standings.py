"""Standings: a point per win, then the format's tiebreaks (contract: "Formats")."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from matchcast.services.formats.base import Played, Standing


@dataclass
class Record:
    played: int = 0
    wins: int = 0
    losses: int = 0
    games_for: int = 0
    games_against: int = 0
    opponents: list[int] = field(default_factory=list)
    beaten: list[int] = field(default_factory=list)

    @property
    def game_difference(self) -> int:
        return self.games_for - self.games_against


def records(players: Sequence[int], played: Sequence[Played]) -> dict[int, Record]:
    """Each player's results over the completed matches; a bye is a win without an opponent."""
    table = {p: Record() for p in players}
    for match in played:
        if match.status != "completed" or match.winner_id not in table:
            continue
        winner = table[match.winner_id]
        winner.played += 1
        winner.wins += 1
        loser_id = match.loser_id
        if loser_id is None or loser_id not in table:
            continue
        loser = table[loser_id]
        loser.played += 1
        loser.losses += 1
        winner.opponents.append(loser_id)
        loser.opponents.append(match.winner_id)
        winner.beaten.append(loser_id)
        scores = {match.participant1_id: match.participant1_score, match.participant2_id: match.participant2_score}
        for player_id, record in ((match.winner_id, winner), (loser_id, loser)):
            record.games_for += scores[player_id]
            record.games_against += sum(scores.values()) - scores[player_id]
    return table


def rank(
    players: Sequence[int], table: dict[int, Record], tiebreaks: Callable[[int, list[int]], dict[str, int]]
) -> list[Standing]:
    """Order by points, then by the tiebreaks (computed among the players level on points, in
    their dict order), then by seed; `players` is in seed order."""
    seed = {p: i for i, p in enumerate(players)}
    level: dict[int, list[int]] = {}
    for p in players:
        level.setdefault(table[p].wins, []).append(p)
    standings = []
    for p in players:
        record = table[p]
        standings.append(
            Standing(
                participant_id=p,
                played=record.played,
                wins=record.wins,
                losses=record.losses,
                points=record.wins,
                game_difference=record.game_difference,
                tiebreaks=tiebreaks(p, level[record.wins]),
            )
        )
    return sorted(standings, key=lambda s: (-s.points, *(-v for v in s.tiebreaks.values()), seed[s.participant_id]))
