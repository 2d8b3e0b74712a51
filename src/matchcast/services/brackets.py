"""Single-elimination brackets: pure planning, no database.

Players are seeded 1..n; the bracket has the next power of two of slots, the missing players are
byes, and byes go to the top seeds, so no first-round match holds two byes and no later round
holds any. Seed 1 meets seed 2 only in the final.
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_PLAYERS = 2
MAX_PLAYERS = 256


@dataclass(frozen=True)
class PlannedMatch:
    round: int  # 1-based
    position: int  # 0-based within the round
    participant1_id: int | None
    participant2_id: int | None
    is_bye: bool

    @property
    def next_position(self) -> int:
        return self.position // 2

    @property
    def next_slot(self) -> int:
        return self.position % 2 + 1


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


def round_name(round_number: int, rounds: int) -> str:
    left = rounds - round_number
    return {0: "Final", 1: "Semifinals", 2: "Quarterfinals"}.get(left, f"Round {round_number}")


def plan(player_ids: list[int]) -> list[PlannedMatch]:
    """Every match of the bracket, round by round; `player_ids` is in seed order."""
    n = len(player_ids)
    if not MIN_PLAYERS <= n <= MAX_PLAYERS:
        raise ValueError(f"a bracket needs {MIN_PLAYERS} to {MAX_PLAYERS} players, got {n}")
    if len(set(player_ids)) != n:
        raise ValueError("a player can be seeded only once")
    size = bracket_size(n)
    by_seed = {seed: player_ids[seed - 1] for seed in range(1, n + 1)}
    slots = [by_seed.get(seed) for seed in seed_order(size)]
    planned = []
    for position in range(size // 2):
        p1, p2 = slots[2 * position], slots[2 * position + 1]
        planned.append(PlannedMatch(1, position, p1, p2, is_bye=p1 is None or p2 is None))
    for round_number in range(2, round_count(n) + 1):
        for position in range(size >> round_number):
            planned.append(PlannedMatch(round_number, position, None, None, is_bye=False))
    return planned
