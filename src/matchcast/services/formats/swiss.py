"""Swiss: a fixed number of rounds; each round pairs players with equal points where possible.

Round 1 pairs the top half of the seeds with the bottom half. Round k+1 is paired only when every
match of round k is done: with an odd count the lowest-ranked player without a bye gets one (a
win), then the others are paired by a maximum-weight perfect matching (networkx, Edmonds'
blossom) over the pairs that have not met, weighted to keep the points gap, then the rank gap,
small. Up to ceil(n/2) rounds a pairing without a rematch always exists (Dirac's theorem on the
graph of pairs not yet played), so the organizer may choose 1..ceil(n/2) rounds.
Standings: points, then Buchholz (the sum of the opponents' points), then game difference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import networkx as nx

from matchcast.services.formats.base import MAIN, FollowUp, PlannedMatch, Played, Slot, Standing, check_players
from matchcast.services.formats.standings import rank, records

MAX_PLAYERS = 128  # the pairing of the next round runs inside the completing transaction
POINTS_WEIGHT = 1 << 20  # one point of gap squared outweighs every rank gap of a round together
BASE_WEIGHT = 1 << 40  # keeps every weight positive


def default_rounds(players: int) -> int:
    return max(1, math.ceil(math.log2(players)))


def first_round(players: Sequence[int]) -> list[tuple[int, int | None]]:
    half = len(players) // 2
    pairs: list[tuple[int, int | None]] = [(players[i], players[i + half]) for i in range(half)]
    if len(players) % 2:
        pairs.append((players[-1], None))
    return pairs


def pair(
    ranked: Sequence[int], points: dict[int, int], met: set[frozenset[int]], had_bye: set[int]
) -> list[tuple[int, int | None]]:
    """The next round: `ranked` best first. Raises ValueError if no pairing without a rematch exists."""
    candidates: list[int | None] = [None]
    if len(ranked) % 2:
        candidates = [p for p in reversed(ranked) if p not in had_bye]
    for bye in candidates:
        rest = [p for p in ranked if p != bye]
        pairs = _perfect_matching(rest, points, met)
        if pairs is not None:
            return [*pairs, *([(bye, None)] if bye is not None else [])]
    raise ValueError("no pairing without a rematch exists")


def _perfect_matching(
    ranked: list[int], points: dict[int, int], met: set[frozenset[int]]
) -> list[tuple[int, int | None]] | None:
    place = {p: i for i, p in enumerate(ranked)}
    graph: nx.Graph[int] = nx.Graph()
    graph.add_nodes_from(ranked)
    for i, a in enumerate(ranked):
        for b in ranked[i + 1 :]:
            if frozenset((a, b)) not in met:
                gap = (points[a] - points[b]) ** 2 * POINTS_WEIGHT + (place[b] - place[a])
                graph.add_edge(a, b, weight=BASE_WEIGHT - gap)
    matching = nx.max_weight_matching(graph, maxcardinality=True)
    if 2 * len(matching) != len(ranked):
        return None
    pairs = [(a, b) if place[a] < place[b] else (b, a) for a, b in matching]
    return sorted(pairs, key=lambda pair: place[pair[0]])


class Swiss:
    name = "swiss"
    max_players = MAX_PLAYERS
    has_standings = True

    def rounds_allowed(self, players: int) -> range | None:
        return range(1, max(1, math.ceil(players / 2)) + 1)

    def plan(self, players: Sequence[int], rounds: int | None = None) -> list[PlannedMatch]:
        check_players(players, MAX_PLAYERS)
        return _round(1, first_round(players))

    def follow_up(
        self, players: Sequence[int], played: Sequence[Played], completed: Played, rounds: int | None
    ) -> FollowUp:
        current = completed.slot.round
        if not all(m.done for m in played if m.slot.round == current):
            return FollowUp()
        if any(m.slot.round > current for m in played):
            return FollowUp()  # already paired (a cancelled match of an old round, say)
        if current >= (rounds or default_rounds(len(players))):
            return FollowUp(finished=True)
        standing = self.standings(players, played)
        points = {s.participant_id: s.points for s in standing}
        met = {frozenset((m.participant1_id, m.participant2_id)) for m in played if not m.is_bye}
        had_bye = {m.participant1_id for m in played if m.is_bye and m.participant1_id is not None}
        pairs = pair([s.participant_id for s in standing], points, met, had_bye)  # type: ignore[arg-type]
        return FollowUp(new_matches=_round(current + 1, pairs))

    def standings(self, players: Sequence[int], played: Sequence[Played]) -> list[Standing]:
        table = records(players, played)

        def tiebreaks(player: int, level: list[int]) -> dict[str, int]:
            buchholz = sum(table[o].wins for o in table[player].opponents)
            return {"buchholz": buchholz, "game_difference": table[player].game_difference}

        return rank(players, table, tiebreaks)

    def round_name(self, slot: Slot, last_round: int) -> str:
        return f"Round {slot.round}"


def _round(number: int, pairs: Sequence[tuple[int, int | None]]) -> list[PlannedMatch]:
    return [PlannedMatch(Slot(MAIN, number, i), a, b, is_bye=b is None) for i, (a, b) in enumerate(pairs)]
