import math
import random
from collections import Counter
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matchcast.services.formats.base import MIN_PLAYERS, PlannedMatch
from matchcast.services.formats.single_elimination import MAX_PLAYERS, SingleElimination, seed_order

plan = SingleElimination().plan

player_counts = st.integers(min_value=MIN_PLAYERS, max_value=MAX_PLAYERS)
fast = settings(max_examples=60, deadline=None, derandomize=True)


def ids_for(n: int) -> list[int]:
    return [1000 + seed for seed in range(1, n + 1)]


def by_round(planned: list[PlannedMatch]) -> dict[int, list[PlannedMatch]]:
    rounds: dict[int, list[PlannedMatch]] = {}
    for match in planned:
        rounds.setdefault(match.round, []).append(match)
    return rounds


@fast
@given(player_counts)
def test_every_player_is_placed_exactly_once(n: int) -> None:
    first_round = [m for m in plan(ids_for(n)) if m.round == 1]
    placed = Counter(p for m in first_round for p in (m.participant1_id, m.participant2_id) if p is not None)
    assert placed == Counter(ids_for(n))


@fast
@given(player_counts)
def test_byes_only_in_round_one_and_never_two_in_a_match(n: int) -> None:
    planned = plan(ids_for(n))
    for match in planned:
        players = [p for p in (match.participant1_id, match.participant2_id) if p is not None]
        if match.round == 1:
            assert players, f"round-1 match {match.position} holds two byes"
            assert match.is_bye == (len(players) == 1)
        else:
            assert not match.is_bye and players == []
    assert sum(m.is_bye for m in planned) == 2 ** math.ceil(math.log2(n)) - n


@fast
@given(player_counts)
def test_round_count_and_each_round_halves(n: int) -> None:
    rounds = by_round(plan(ids_for(n)))
    assert sorted(rounds) == list(range(1, math.ceil(math.log2(n)) + 1))
    assert len(rounds[1]) == 2 ** math.ceil(math.log2(n)) // 2
    for number in sorted(rounds)[1:]:
        assert len(rounds[number]) * 2 == len(rounds[number - 1])
        assert sorted(m.position for m in rounds[number]) == list(range(len(rounds[number])))
    assert len(rounds[max(rounds)]) == 1


@fast
@given(player_counts, st.randoms(use_true_random=False))
def test_random_winners_advance_to_exactly_one_champion(n: int, rnd: random.Random) -> None:
    planned = plan(ids_for(n))
    slots: dict[tuple[int, int], dict[int, int]] = {}
    champions = []
    for match in sorted(planned, key=lambda m: (m.round, m.position)):
        if match.round == 1:
            players = [match.participant1_id, match.participant2_id]
        else:
            filled = slots.get((match.round, match.position), {})
            assert sorted(filled) == [1, 2], f"match {match.round}/{match.position} got slots {filled}"
            players = [filled[1], filled[2]]
        winner = rnd.choice([p for p in players if p is not None])
        if match.round == max(m.round for m in planned):
            champions.append(winner)
            continue
        assert match.winner_to is not None
        target = slots.setdefault((match.winner_to.slot.round, match.winner_to.slot.position), {})
        assert match.winner_to.side not in target, "two winners sent to the same slot"
        target[match.winner_to.side] = winner
    assert len(champions) == 1 and champions[0] in ids_for(n)


@fast
@given(player_counts)
def test_top_two_seeds_meet_only_in_the_final(n: int) -> None:
    order = seed_order(2 ** math.ceil(math.log2(n)))
    half = len(order) // 2
    assert (1 in order[:half]) != (2 in order[:half])


def test_eight_players_seed_one_meets_seed_eight_first() -> None:
    planned = plan(ids_for(8))
    first_round = [(m.participant1_id, m.participant2_id) for m in planned if m.round == 1]
    assert first_round == [(1001, 1008), (1004, 1005), (1002, 1007), (1003, 1006)]
    assert not any(m.is_bye for m in planned)
    assert [
        (m.round, m.position, m.winner_to and m.winner_to.slot.position, m.winner_to and m.winner_to.side)
        for m in planned
        if m.round == 2
    ] == [
        (2, 0, 0, 1),
        (2, 1, 0, 2),
    ]


def test_five_players_byes_go_to_seeds_one_to_three() -> None:
    planned = plan(ids_for(5))
    byes = [m for m in planned if m.is_bye]
    # A bye holds exactly one player (test_byes_only_in_round_one_and_never_two_in_a_match).
    assert sorted(cast(int, m.participant1_id or m.participant2_id) for m in byes) == [1001, 1002, 1003]
    played = [m for m in planned if m.round == 1 and not m.is_bye]
    assert [(m.participant1_id, m.participant2_id) for m in played] == [(1004, 1005)]


def test_two_players_play_only_the_final() -> None:
    assert [(m.round, m.participant1_id, m.participant2_id, m.is_bye) for m in plan([7, 9])] == [(1, 7, 9, False)]


@pytest.mark.parametrize("player_ids", [[], [1], list(range(1, MAX_PLAYERS + 2)), [1, 2, 2]])
def test_bad_player_lists_are_refused(player_ids: list[int]) -> None:
    with pytest.raises(ValueError):
        plan(player_ids)
