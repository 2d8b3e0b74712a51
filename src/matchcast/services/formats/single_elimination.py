"""Single elimination: one loss and you are out.

Players are seeded 1..n; the bracket has the next power of two of slots, the missing players are
byes, and byes go to the top seeds, so no first-round match holds two byes and no later round
holds any. Seed 1 meets seed 2 only in the final.
"""

from __future__ import annotations

from collections.abc import Sequence

from matchcast.services.formats.base import (
    MAIN,
    FollowUp,
    PlannedMatch,
    Played,
    Slot,
    Standing,
    Target,
    check_players,
)

MAX_PLAYERS = 256


def bracket_size(players: int) -> int:
    return 1 << (players - 1).bit_length()


def round_count(players: int) -> int:
    return bracket_size(players).bit_length() - 1


def seed_order(size: int) -> list[int]:
    """Seeds in slot order, e.g. size 8 -> [1, 8, 4, 5, 2, 7, 3, 6]."""
    order = [1]
    while len(order) < size:
        total = 2 * len(order) + 1
        order = [seed for s in order for seed in (s, total - s)]
    return order


def first_round(players: Sequence[int]) -> list[tuple[int | None, int | None]]:
    """The first round's pairs in slot order; None is a bye."""
    size = bracket_size(len(players))
    by_seed = {seed: players[seed - 1] for seed in range(1, len(players) + 1)}
    slots = [by_seed.get(seed) for seed in seed_order(size)]
    return [(slots[2 * i], slots[2 * i + 1]) for i in range(size // 2)]


def knockout_name(round_number: int, rounds: int) -> str:
    left = rounds - round_number
    return {0: "Final", 1: "Semifinals", 2: "Quarterfinals"}.get(left, f"Round {round_number}")


def winner_target(bracket: str, round_number: int, position: int) -> Target:
    """The next round's match in a knockout tree: positions 2k and 2k+1 meet at k."""
    return Target(Slot(bracket, round_number + 1, position // 2), position % 2 + 1)


class SingleElimination:
    name = "single_elimination"
    max_players = MAX_PLAYERS
    has_standings = False

    def rounds_allowed(self, players: int) -> range | None:
        return None

    def plan(self, players: Sequence[int], rounds: int | None = None) -> list[PlannedMatch]:
        check_players(players, MAX_PLAYERS)
        last = round_count(len(players))
        planned = []
        for round_number in range(1, last + 1):
            pairs = (
                first_round(players)
                if round_number == 1
                else [(None, None)] * (bracket_size(len(players)) >> round_number)
            )
            for position, (p1, p2) in enumerate(pairs):
                planned.append(
                    PlannedMatch(
                        Slot(MAIN, round_number, position),
                        p1,
                        p2,
                        is_bye=round_number == 1 and (p1 is None or p2 is None),
                        winner_to=winner_target(MAIN, round_number, position) if round_number < last else None,
                    )
                )
        return planned

    def follow_up(
        self, players: Sequence[int], played: Sequence[Played], completed: Played, rounds: int | None
    ) -> FollowUp:
        final = max(p.slot.round for p in played)
        return FollowUp(finished=completed.slot.round == final and completed.status == "completed")

    def standings(self, players: Sequence[int], played: Sequence[Played]) -> list[Standing]:
        return []

    def round_name(self, slot: Slot, last_round: int) -> str:
        return knockout_name(slot.round, last_round)
