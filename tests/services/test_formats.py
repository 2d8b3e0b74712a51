"""Every format, played to the end with random results over 2..64 players (hypothesis).

`play` places winners and losers by the planned links and asks the format what follows each
completion, exactly as the services do with rows; the database side is tested end to end in
tests/realtime/test_formats.py.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matchcast import errors
from matchcast.services.formats import FORMATS, get
from matchcast.services.formats.base import (
    GRAND_FINAL,
    LOSERS,
    WINNERS,
    PlannedMatch,
    Played,
    Slot,
    Standing,
    TournamentFormat,
)
from matchcast.services.formats.round_robin import circle_rounds
from matchcast.services.formats.swiss import default_rounds
from matchcast.services.results import validate_result

fast = settings(max_examples=40, deadline=None, derandomize=True)


@dataclass
class Tournament:
    players: list[int]
    matches: dict[Slot, Played]
    planned: dict[Slot, PlannedMatch]
    finished: bool
    order: list[Slot]  # completion order


def ids_for(n: int) -> list[int]:
    return [100 + seed for seed in range(1, n + 1)]


def play(fmt: TournamentFormat, n: int, rnd: random.Random, rounds: int | None = None, best_of: int = 1) -> Tournament:
    players = ids_for(n)
    t = Tournament(players, {}, {}, False, [])
    needed = (best_of + 1) // 2

    def place(slot: Slot, side: int, player: int) -> None:
        match = t.matches[slot]
        assert (match.participant1_id, match.participant2_id)[side - 1] is None, f"{slot} side {side} taken twice"
        if side == 1:
            t.matches[slot] = replace(match, participant1_id=player)
        else:
            t.matches[slot] = replace(match, participant2_id=player)
        settle(slot)

    def settle(slot: Slot) -> None:
        match = t.matches[slot]
        present = [p for p in (match.participant1_id, match.participant2_id) if p is not None]
        if match.is_bye and present and match.status == "scheduled":
            assert len(present) == 1, f"bye {slot} got two players"
            t.matches[slot] = replace(match, status="completed", winner_id=present[0])
            target = t.planned[slot].winner_to
            if target:
                place(target.slot, target.side, present[0])

    def create(planned: list[PlannedMatch]) -> None:
        for p in planned:
            assert p.slot not in t.matches, f"{p.slot} created twice"
            t.planned[p.slot] = p
            t.matches[p.slot] = Played(p.slot, p.participant1_id, p.participant2_id, is_bye=p.is_bye)
        for p in planned:
            settle(p.slot)

    create(fmt.plan(players, rounds))
    while not t.finished:
        ready = [
            m
            for m in t.matches.values()
            if m.status == "scheduled" and not m.is_bye and m.participant1_id and m.participant2_id
        ]
        assert ready, "stuck: nothing to play and the tournament is not over"
        match = rnd.choice(sorted(ready, key=lambda m: m.slot))
        loser_games = rnd.randrange(needed)
        first_wins = rnd.random() < 0.5
        scores = (needed, loser_games) if first_wins else (loser_games, needed)
        winner = match.participant1_id if first_wins else match.participant2_id
        done = replace(
            match, status="completed", winner_id=winner, participant1_score=scores[0], participant2_score=scores[1]
        )
        t.matches[match.slot] = done
        t.order.append(match.slot)
        planned = t.planned[match.slot]
        if planned.winner_to and done.winner_id:
            place(planned.winner_to.slot, planned.winner_to.side, done.winner_id)
        if planned.loser_to and done.loser_id:
            place(planned.loser_to.slot, planned.loser_to.side, done.loser_id)
        follow = fmt.follow_up(players, list(t.matches.values()), done, rounds)
        create(follow.new_matches)
        t.finished = follow.finished
    assert all(m.status == "completed" for m in t.matches.values()), "the tournament ended with matches unplayed"
    return t


def real(t: Tournament) -> list[Played]:
    return [m for m in t.matches.values() if not m.is_bye]


def losses(t: Tournament) -> Counter[int]:
    return Counter(m.loser_id for m in real(t) if m.loser_id is not None)


def every_player_placed(t: Tournament) -> None:
    seen = {p for m in t.matches.values() for p in (m.participant1_id, m.participant2_id) if p is not None}
    assert seen == set(t.players)


def standings_sum_up(t: Tournament, standings: list[Standing]) -> None:
    byes = sum(1 for m in t.matches.values() if m.is_bye)
    assert sorted(s.participant_id for s in standings) == sorted(t.players)
    assert sum(s.wins for s in standings) == sum(s.losses for s in standings) + byes == len(real(t)) + byes
    assert all(s.points == s.wins and s.played == s.wins + s.losses for s in standings)
    assert sum(s.game_difference for s in standings) == 0
    assert [s.points for s in standings] == sorted((s.points for s in standings), reverse=True)


players = st.integers(min_value=2, max_value=64)
best_of = st.sampled_from([1, 3, 5, 7])


@fast
@given(players, best_of, st.randoms(use_true_random=False))
def test_single_elimination_ends_with_one_unbeaten_player(n: int, bo: int, rnd: random.Random) -> None:
    t = play(get("single_elimination"), n, rnd, best_of=bo)
    every_player_placed(t)
    lost = losses(t)
    assert len(real(t)) == n - 1
    assert [p for p in t.players if lost[p] == 0] != [] and all(lost[p] <= 1 for p in t.players)
    assert sum(1 for p in t.players if lost[p] == 0) == 1


@fast
@given(players, best_of, st.randoms(use_true_random=False))
def test_double_elimination_champion_has_under_two_losses_everyone_else_two(
    n: int, bo: int, rnd: random.Random
) -> None:
    t = play(get("double_elimination"), n, rnd, best_of=bo)
    every_player_placed(t)
    lost = losses(t)
    champions = [p for p in t.players if lost[p] < 2]
    assert len(champions) == 1, f"players with under two losses: {champions}"
    assert all(lost[p] == 2 for p in t.players if p not in champions)
    reset = Slot(GRAND_FINAL, 2, 0)
    assert (reset in t.matches) == (lost[champions[0]] == 1), "a reset is played exactly when the champion lost once"
    assert t.order[-1] in (Slot(GRAND_FINAL, 1, 0), reset)
    # every first loss is in the winners bracket (or, with two players, the first grand final)
    for m in real(t):
        if m.slot.bracket == LOSERS:
            assert m.participant1_id and m.participant2_id


@fast
@given(players, st.randoms(use_true_random=False))
def test_double_elimination_links_point_forward_and_fill_each_side_once(n: int, rnd: random.Random) -> None:
    planned = get("double_elimination").plan(ids_for(n), None)
    slots = {p.slot for p in planned}
    into = Counter((t.slot, t.side) for p in planned for t in (p.winner_to, p.loser_to) if t is not None)
    assert all(count == 1 for count in into.values())
    assert all(slot in slots for slot, _ in into)
    for p in planned:
        if p.slot.bracket == WINNERS and p.slot.round == 1:
            continue
        arriving = sum(1 for side in (1, 2) if (p.slot, side) in into)
        assert arriving == (1 if p.is_bye else 2), f"{p.slot}: {arriving} arriving, bye={p.is_bye}"


@fast
@given(players, best_of, st.randoms(use_true_random=False))
def test_round_robin_plays_every_pair_exactly_once(n: int, bo: int, rnd: random.Random) -> None:
    fmt = get("round_robin")
    t = play(fmt, n, rnd, best_of=bo)
    pairs = Counter(frozenset((m.participant1_id, m.participant2_id)) for m in real(t))
    assert len(pairs) == n * (n - 1) // 2 and set(pairs.values()) == {1}
    for number in {m.slot.round for m in real(t)}:
        in_round = [p for m in real(t) if m.slot.round == number for p in (m.participant1_id, m.participant2_id)]
        assert len(in_round) == len(set(in_round)) >= n - 1
    standings_sum_up(t, fmt.standings(t.players, list(t.matches.values())))


@fast
@given(players, best_of, st.data())
def test_swiss_never_repeats_a_pairing_nor_gives_two_byes(n: int, bo: int, data: st.DataObject) -> None:
    fmt = get("swiss")
    allowed = fmt.rounds_allowed(n)
    assert allowed is not None and default_rounds(n) in allowed
    rounds = data.draw(st.sampled_from([default_rounds(n), allowed[-1]]))
    t = play(fmt, n, data.draw(st.randoms(use_true_random=False)), rounds=rounds, best_of=bo)
    every_player_placed(t)
    pairs = Counter(frozenset((m.participant1_id, m.participant2_id)) for m in real(t))
    assert set(pairs.values()) == {1}
    byes = Counter(m.participant1_id for m in t.matches.values() if m.is_bye)
    assert all(count == 1 for count in byes.values())
    assert max(m.slot.round for m in t.matches.values()) == rounds
    for number in range(1, rounds + 1):
        in_round = [
            p for m in t.matches.values() if m.slot.round == number for p in (m.participant1_id, m.participant2_id) if p
        ]
        assert sorted(in_round) == t.players
    standings_sum_up(t, fmt.standings(t.players, list(t.matches.values())))


def test_swiss_bye_goes_to_the_lowest_ranked_player_without_one() -> None:
    fmt = get("swiss")
    first = fmt.plan(ids_for(5), 3)
    assert [(m.participant1_id, m.participant2_id) for m in first] == [(101, 103), (102, 104), (105, None)]
    played = [
        Played(first[0].slot, 101, 103, 1, 0, 101, "completed"),
        Played(first[1].slot, 102, 104, 1, 0, 102, "completed"),
        Played(first[2].slot, 105, None, 0, 0, 105, "completed", is_bye=True),
    ]
    second = fmt.follow_up(ids_for(5), played, played[0], 3).new_matches
    # ranked: 101, 102, 105 (1 point each, by seed), 103, 104; 105 had the bye, so 104 gets it
    assert [(m.participant1_id, m.participant2_id) for m in second if m.is_bye] == [(104, None)]
    assert {frozenset((m.participant1_id, m.participant2_id)) for m in second if not m.is_bye} == {
        frozenset((101, 102)),
        frozenset((105, 103)),
    }


def test_round_robin_standings_break_ties_head_to_head_then_game_difference() -> None:
    fmt = get("round_robin")
    a, b, c, d = ids_for(4)
    played = [
        Played(Slot("main", 1, 0), a, b, 0, 3, b, "completed"),
        Played(Slot("main", 1, 1), c, d, 3, 0, c, "completed"),
        Played(Slot("main", 2, 0), a, c, 3, 2, a, "completed"),
        Played(Slot("main", 2, 1), b, d, 0, 3, d, "completed"),
        Played(Slot("main", 3, 0), a, d, 3, 0, a, "completed"),
        Played(Slot("main", 3, 1), b, c, 3, 0, b, "completed"),
    ]
    standings = fmt.standings([a, b, c, d], played)
    # a and b: 2 points each, b beat a; c and d: 1 point each, c beat d
    assert [s.participant_id for s in standings] == [b, a, c, d]
    assert standings[0].tiebreaks == {"head_to_head": 1, "game_difference": 3}


def test_circle_method_with_an_odd_count_rests_each_player_once() -> None:
    rounds = circle_rounds(ids_for(5))
    assert len(rounds) == 5
    resting = [set(ids_for(5)) - {p for pair in r for p in pair} for r in rounds]
    assert sorted(p for rest in resting for p in rest) == ids_for(5)


@pytest.mark.parametrize("name", sorted(FORMATS))
@pytest.mark.parametrize("players", [[], [1], [1, 2, 2]])
def test_bad_player_lists_are_refused(name: str, players: list[int]) -> None:
    with pytest.raises(ValueError):
        get(name).plan(players, None)


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_too_many_players_are_refused(name: str) -> None:
    fmt = get(name)
    with pytest.raises(ValueError):
        fmt.plan(list(range(1, fmt.max_players + 2)), None)


@given(st.sampled_from([1, 3, 5, 7]), st.integers(0, 9), st.integers(0, 9))
@settings(max_examples=300, deadline=None, derandomize=True)
def test_best_of_refuses_every_impossible_result(bo: int, s1: int, s2: int) -> None:
    needed = (bo + 1) // 2
    possible = max(s1, s2) == needed and min(s1, s2) < needed
    if possible:
        assert validate_result(bo, s1, s2) == (s1, s2)
    else:
        with pytest.raises(errors.DomainError):
            validate_result(bo, s1, s2)
