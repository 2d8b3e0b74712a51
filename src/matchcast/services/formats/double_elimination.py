"""Double elimination: a first loss drops a player into the losers bracket, a second ends their run.

For a bracket of S = 2^k slots the winners bracket is the single-elimination tree (k rounds, byes
to the top seeds). The losers bracket has 2(k-1) rounds: odd rounds pair the survivors among
themselves, even rounds meet the players just dropped from winners round i+1 (in reverse order,
so early opponents do not meet again at once). The grand final puts the winners-bracket champion
(side 1) against the losers-bracket champion (side 2); if side 2 wins, both have one loss and a
second grand final (the reset) decides.

Byes are known at seeding, so matches that would hold one player are marked byes and matches that
would hold nobody are not created at all: every created match other than a bye gets two players.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from matchcast.services.formats.base import (
    GRAND_FINAL,
    LOSERS,
    WINNERS,
    FollowUp,
    PlannedMatch,
    Played,
    Slot,
    Standing,
    Target,
    check_players,
)
from matchcast.services.formats.single_elimination import bracket_size, first_round, winner_target

MAX_PLAYERS = 256
GRAND_FINAL_SLOT = Slot(GRAND_FINAL, 1, 0)
RESET_SLOT = Slot(GRAND_FINAL, 2, 0)


def _losers_rounds(size: int) -> int:
    return 2 * (size.bit_length() - 2)


def _structure(players: Sequence[int]) -> list[PlannedMatch]:
    """Every match with its links, byes not yet pruned."""
    size = bracket_size(len(players))
    k = size.bit_length() - 1  # winners rounds
    lr = _losers_rounds(size)
    to_grand_final = Target(GRAND_FINAL_SLOT, 1)
    from_losers = Target(GRAND_FINAL_SLOT, 2)
    planned: list[PlannedMatch] = []
    for r in range(1, k + 1):
        count = size >> r
        pairs = first_round(players) if r == 1 else [(None, None)] * count
        for m, (p1, p2) in enumerate(pairs):
            if r == 1 and lr:
                loser_to: Target | None = Target(Slot(LOSERS, 1, m // 2), m % 2 + 1)
            elif lr:  # winners round r drops into losers round 2(r-1), reversed
                loser_to = Target(Slot(LOSERS, 2 * (r - 1), count - 1 - m), 2)
            else:  # two players: the winners final's loser is the losers bracket's champion
                loser_to = from_losers
            planned.append(
                PlannedMatch(
                    Slot(WINNERS, r, m),
                    p1,
                    p2,
                    winner_to=winner_target(WINNERS, r, m) if r < k else to_grand_final,
                    loser_to=loser_to,
                )
            )
    for r in range(1, lr + 1):
        count = size >> ((r + 1) // 2 + 1)
        for m in range(count):
            if r == lr:
                winner_to = from_losers
            elif r % 2:  # minor round: straight on to meet a dropped player
                winner_to = Target(Slot(LOSERS, r + 1, m), 1)
            else:
                winner_to = winner_target(LOSERS, r, m)
            planned.append(PlannedMatch(Slot(LOSERS, r, m), None, None, winner_to=winner_to))
    planned.append(PlannedMatch(GRAND_FINAL_SLOT, None, None))
    return planned


def _prune_byes(planned: list[PlannedMatch]) -> list[PlannedMatch]:
    """Count the players each match will really receive (links point forward, so one pass in
    link order): two is a match, one a bye, none is dropped with the links into it."""
    order = {WINNERS: 0, LOSERS: 1, GRAND_FINAL: 2}
    ordered = sorted(planned, key=lambda p: (order[p.slot.bracket], p.slot.round, p.slot.position))
    arriving: dict[Slot, int] = {}
    kept: dict[Slot, PlannedMatch] = {}
    for match in ordered:
        players = (
            arriving.get(match.slot, 0) + (match.participant1_id is not None) + (match.participant2_id is not None)
        )
        if players == 0:
            continue
        match = replace(match, is_bye=players == 1)
        kept[match.slot] = match
        if match.winner_to:
            arriving[match.winner_to.slot] = arriving.get(match.winner_to.slot, 0) + 1
        if match.loser_to and not match.is_bye:
            arriving[match.loser_to.slot] = arriving.get(match.loser_to.slot, 0) + 1
    return [
        replace(m, loser_to=m.loser_to if m.loser_to and not m.is_bye and m.loser_to.slot in kept else None)
        for m in kept.values()
    ]


class DoubleElimination:
    name = "double_elimination"
    max_players = MAX_PLAYERS
    has_standings = False

    def rounds_allowed(self, players: int) -> range | None:
        return None

    def plan(self, players: Sequence[int], rounds: int | None = None) -> list[PlannedMatch]:
        check_players(players, MAX_PLAYERS)
        return _prune_byes(_structure(players))

    def follow_up(
        self, players: Sequence[int], played: Sequence[Played], completed: Played, rounds: int | None
    ) -> FollowUp:
        if completed.status != "completed":
            return FollowUp()
        if completed.slot == RESET_SLOT:
            return FollowUp(finished=True)
        if completed.slot != GRAND_FINAL_SLOT:
            return FollowUp()
        if completed.winner_id == completed.participant1_id:  # the unbeaten player won
            return FollowUp(finished=True)
        reset = PlannedMatch(RESET_SLOT, completed.participant1_id, completed.participant2_id)
        return FollowUp(new_matches=[reset])

    def standings(self, players: Sequence[int], played: Sequence[Played]) -> list[Standing]:
        return []

    def round_name(self, slot: Slot, last_round: int) -> str:
        if slot.bracket == GRAND_FINAL:
            return "Grand final" if slot.round == 1 else "Grand final reset"
        side = "Winners" if slot.bracket == WINNERS else "Losers"
        return f"{side} final" if slot.round == last_round else f"{side} round {slot.round}"
