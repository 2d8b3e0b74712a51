"""Round robin: every pair of players meets once, in rounds, by the circle method.

Player 1 stays put while the others turn one place per round; with an odd count a phantom makes
the numbers even and whoever meets it sits the round out (no match is created for it).
Standings: points, then head-to-head among the players level on points, then game difference.
"""

from __future__ import annotations

from collections.abc import Sequence

from matchcast.services.formats.base import MAIN, FollowUp, PlannedMatch, Played, Slot, Standing, check_players
from matchcast.services.formats.standings import rank, records

MAX_PLAYERS = 64  # 2,016 matches, all scheduled at seeding


def circle_rounds(players: Sequence[int]) -> list[list[tuple[int, int]]]:
    """The pairings of every round; each pair once over all rounds."""
    ring: list[int | None] = [*players, None] if len(players) % 2 else list(players)
    n = len(ring)
    rounds = []
    for _ in range(n - 1):
        pairs = [(ring[i], ring[n - 1 - i]) for i in range(n // 2)]
        rounds.append([(a, b) for a, b in pairs if a is not None and b is not None])
        ring = [ring[0], ring[-1], *ring[1:-1]]
    return rounds


class RoundRobin:
    name = "round_robin"
    max_players = MAX_PLAYERS
    has_standings = True

    def rounds_allowed(self, players: int) -> range | None:
        return None

    def plan(self, players: Sequence[int], rounds: int | None = None) -> list[PlannedMatch]:
        check_players(players, MAX_PLAYERS)
        return [
            PlannedMatch(Slot(MAIN, number, position), a, b)
            for number, pairs in enumerate(circle_rounds(players), start=1)
            for position, (a, b) in enumerate(pairs)
        ]

    def follow_up(
        self, players: Sequence[int], played: Sequence[Played], completed: Played, rounds: int | None
    ) -> FollowUp:
        return FollowUp(finished=all(match.done for match in played))

    def standings(self, players: Sequence[int], played: Sequence[Played]) -> list[Standing]:
        table = records(players, played)

        def tiebreaks(player: int, level: list[int]) -> dict[str, int]:
            head_to_head = sum(1 for beaten in table[player].beaten if beaten in level)
            return {"head_to_head": head_to_head, "game_difference": table[player].game_difference}

        return rank(players, table, tiebreaks)

    def round_name(self, slot: Slot, last_round: int) -> str:
        return f"Round {slot.round}"
