"""Each format through the services on SQLite and PostgreSQL: seeding, every completion's events
in order, the progression the format promises, standings, best-of-N checks, refusals."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import pytest

from matchcast.db.database import Database
from matchcast.errors import INVALID_STATE, VALIDATION_ERROR
from matchcast.services import matches, tournaments
from matchcast.services.matches import complete_match, start_match, update_score
from matchcast.services.publisher import DiscardingPublisher
from matchcast.services.snapshots import tournament_snapshot
from tests.services.checks import assert_event, refused
from tests.support.factories import Factory, Tournament


def scheduled_ready(rows: list[Any]) -> list[Any]:
    return [m for m in rows if m.status == "scheduled" and m.participant1_id and m.participant2_id and not m.is_bye]


async def play_out(
    db: Database, publisher: DiscardingPublisher, t: Tournament, rnd: random.Random, best_of: int = 1
) -> list[Any]:
    """Play every match as it becomes ready, checking each completion's events; returns the rows."""
    needed = (best_of + 1) // 2
    snapshot = await tournament_snapshot(db, t.id)
    for _ in range(500):
        ready = scheduled_ready(await matches.matches_of(db, t.id))
        if not ready:
            break
        match = rnd.choice(ready)
        await start_match(db, publisher, t.organizer, match.id)
        first_wins = rnd.random() < 0.5
        loser = rnd.randrange(needed)
        scores = (needed, loser) if first_wins else (loser, needed)
        await update_score(db, publisher, t.organizer, match.id, *scores)
        mark = len(publisher.published)
        done = await complete_match(db, publisher, t.organizer, match.id)
        published = publisher.published[mark:]
        kinds = [e.type for e in published]
        assert kinds[0] == "match_completed", kinds
        assert_event(published[0], "match_completed", t.id, match.id)
        middle = kinds[1 : kinds.index("bracket_updated")]
        assert set(middle) <= {"match_scheduled"}, kinds
        for event in published[1 : 1 + len(middle)]:
            data = assert_event(event, "match_scheduled", t.id, event.data["match_id"])
            assert data["participant1"] and data["participant2"]
        if snapshot["format"] in ("round_robin", "swiss"):
            assert kinds[-2:] == ["bracket_updated", "standings_updated"], kinds
            assert_event(published[-1], "standings_updated", t.id)
        else:
            assert kinds[-1] == "bracket_updated", kinds
        assert done.winner_id in (match.participant1_id, match.participant2_id)
    rows = await matches.matches_of(db, t.id)
    assert all(m.status == "completed" for m in rows), "matches left unplayed"
    return rows


def losses(rows: list[Any]) -> Counter[int]:
    lost: Counter[int] = Counter()
    for m in rows:
        if not m.is_bye:
            lost[m.participant2_id if m.winner_id == m.participant1_id else m.participant1_id] += 1
    return lost


@pytest.mark.parametrize("players", [2, 3, 5, 8])
async def test_double_elimination_played_to_its_champion(
    db: Database, factory: Factory, publisher: DiscardingPublisher, players: int
) -> None:
    t = await factory.seeded(players, format="double_elimination", best_of=3)
    snapshot = await tournament_snapshot(db, t.id)
    assert snapshot["format"] == "double_elimination" and snapshot["best_of"] == 3
    assert {m["bracket"] for m in snapshot["matches"]} <= {"winners", "losers", "grand_final"}
    assert snapshot["bracket"]["grand_final"][0]["name"] == "Grand final"
    rows = await play_out(db, publisher, t, random.Random(players), best_of=3)
    lost = losses(rows)
    ids = [p.user_id for p in t.players]
    champions = [p for p in ids if lost[p] < 2]
    assert len(champions) == 1 and all(lost[p] == 2 for p in ids if p not in champions)
    final = await tournament_snapshot(db, t.id)
    assert final["status"] == "completed"
    assert (len(final["bracket"]["grand_final"]) == 2) == (lost[champions[0]] == 1)


async def test_grand_final_reset_when_the_losers_bracket_player_wins(
    db: Database, factory: Factory, publisher: DiscardingPublisher
) -> None:
    t = await factory.seeded(2, format="double_elimination")
    a, b = (p.user_id for p in t.players)
    first = next(m for m in await matches.matches_of(db, t.id) if m.bracket == "winners")
    await start_match(db, publisher, t.organizer, first.id)
    await update_score(db, publisher, t.organizer, first.id, 1, 0)
    await complete_match(db, publisher, t.organizer, first.id)  # b drops to the grand final's side 2
    grand = next(m for m in await matches.matches_of(db, t.id) if m.bracket == "grand_final")
    assert (grand.participant1_id, grand.participant2_id, grand.status) == (a, b, "scheduled")
    await start_match(db, publisher, t.organizer, grand.id)
    await update_score(db, publisher, t.organizer, grand.id, 0, 1)
    mark = len(publisher.published)
    await complete_match(db, publisher, t.organizer, grand.id)
    kinds = [e.type for e in publisher.published[mark:]]
    assert kinds == ["match_completed", "match_scheduled", "bracket_updated"]
    reset = next(m for m in await matches.matches_of(db, t.id) if m.bracket == "grand_final" and m.round == 2)
    assert (reset.participant1_id, reset.participant2_id) == (a, b)
    assert (await tournaments.get_tournament(db, t.id)).status == "running"
    await start_match(db, publisher, t.organizer, reset.id)
    await update_score(db, publisher, t.organizer, reset.id, 0, 1)
    await complete_match(db, publisher, t.organizer, reset.id)
    assert (await tournaments.get_tournament(db, t.id)).status == "completed"


@pytest.mark.parametrize("players", [2, 5, 6])
async def test_round_robin_every_pair_once_and_standings(
    db: Database, factory: Factory, publisher: DiscardingPublisher, players: int
) -> None:
    mark = len(publisher.published)
    t = await factory.seeded(players, format="round_robin")
    kinds = [e.type for e in publisher.published[mark:]]
    pairs = players * (players - 1) // 2
    assert kinds == ["match_scheduled"] * pairs + ["bracket_updated", "standings_updated"]
    rows = await play_out(db, publisher, t, random.Random(players))
    met = Counter(frozenset((m.participant1_id, m.participant2_id)) for m in rows)
    assert len(met) == pairs and set(met.values()) == {1}
    final = await tournament_snapshot(db, t.id)
    assert final["status"] == "completed"
    table = final["standings"]
    assert [row["rank"] for row in table] == list(range(1, players + 1))
    assert sum(row["wins"] for row in table) == sum(row["losses"] for row in table) == pairs
    assert set(table[0]) == {
        "rank",
        "participant",
        "played",
        "wins",
        "losses",
        "points",
        "game_difference",
        "tiebreaks",
    }
    assert set(table[0]["tiebreaks"]) == {"head_to_head", "game_difference"}


@pytest.mark.parametrize(("players", "rounds"), [(2, None), (5, None), (6, 3), (7, 4)])
async def test_swiss_pairs_each_round_when_the_last_ends(
    db: Database, factory: Factory, publisher: DiscardingPublisher, players: int, rounds: int | None
) -> None:
    t = await factory.seeded(players, format="swiss", rounds=rounds, best_of=5)
    snapshot = await tournament_snapshot(db, t.id)
    expected_rounds = snapshot["rounds"]
    assert expected_rounds == (rounds or max(1, (players - 1).bit_length()))
    assert {m["round"] for m in snapshot["matches"]} == {1}
    rows = await play_out(db, publisher, t, random.Random(players), best_of=5)
    assert max(m.round for m in rows) == expected_rounds
    real = [m for m in rows if not m.is_bye]
    assert len({frozenset((m.participant1_id, m.participant2_id)) for m in real}) == len(real)
    byes = Counter(m.participant1_id for m in rows if m.is_bye)
    assert all(n == 1 for n in byes.values()) and len(byes) == (expected_rounds if players % 2 else 0)
    final = await tournament_snapshot(db, t.id)
    assert final["status"] == "completed"
    assert set(final["standings"][0]["tiebreaks"]) == {"buchholz", "game_difference"}
    assert sum(row["points"] for row in final["standings"]) == len(real) + len(byes)


async def test_swiss_rounds_beyond_what_the_players_allow_are_refused_at_seeding(
    db: Database, factory: Factory, publisher: DiscardingPublisher
) -> None:
    t = await factory.tournament(4, format="swiss", rounds=3)
    error = await refused(db, publisher, INVALID_STATE, tournaments.seed_bracket(db, publisher, t.organizer, t.id))
    assert "1 to 2 Swiss rounds" in error.message


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"format": "knockout"}, "format must be one of"),
        ({"format": ["swiss"]}, "format must be one of"),
        ({"format": "round_robin", "rounds": 3}, "rounds is for Swiss"),
        ({"format": "swiss", "rounds": 0}, "rounds is for Swiss"),
        ({"format": "swiss", "rounds": True}, "rounds is for Swiss"),
        ({"format": "swiss", "rounds": "3"}, "rounds is for Swiss"),
    ],
)
async def test_bad_formats_and_rounds_are_refused(
    db: Database, factory: Factory, publisher: DiscardingPublisher, kwargs: dict[str, Any], needle: str
) -> None:
    organizer = await factory.user()
    error = await refused(
        db, publisher, VALIDATION_ERROR, tournaments.create_tournament(db, organizer, "Cup", True, 1, **kwargs)
    )
    assert needle in error.message


async def test_round_robin_holds_at_most_64_players(
    db: Database, factory: Factory, publisher: DiscardingPublisher
) -> None:
    t = await factory.tournament(64, format="round_robin")
    extra = await factory.user()
    error = await refused(
        db, publisher, INVALID_STATE, tournaments.register_player(db, t.organizer, t.id, extra.user_id)
    )
    assert "at most 64" in error.message


@pytest.mark.parametrize(("score1", "score2"), [(3, 0), (2, 2), (0, 4), (3, 3)])
async def test_best_of_3_running_scores_beyond_the_series_are_refused(
    db: Database, factory: Factory, publisher: DiscardingPublisher, score1: int, score2: int
) -> None:
    t, match = await factory.live_match(2, best_of=3)
    for actor in (t.organizer, t.players[0]):
        error = await refused(
            db, publisher, VALIDATION_ERROR, update_score(db, publisher, actor, match.id, score1, score2)
        )
        assert "best-of-3" in error.message


async def test_best_of_3_completion_needs_a_finished_series(
    db: Database, factory: Factory, publisher: DiscardingPublisher
) -> None:
    t, match = await factory.live_match(2, best_of=3)
    await update_score(db, publisher, t.organizer, match.id, 1, 1)
    for winner in (None, t.players[0].user_id):
        await refused(db, publisher, VALIDATION_ERROR, complete_match(db, publisher, t.organizer, match.id, winner))
    await update_score(db, publisher, t.organizer, match.id, 1, 2)
    await refused(
        db, publisher, VALIDATION_ERROR, complete_match(db, publisher, t.organizer, match.id, t.players[0].user_id)
    )
    done = await complete_match(db, publisher, t.organizer, match.id)
    assert done.winner_id == match.participant2_id


async def test_best_of_1_running_scores_are_the_games_points(
    db: Database, factory: Factory, publisher: DiscardingPublisher
) -> None:
    t, match = await factory.live_match(2)
    scored = await update_score(db, publisher, t.players[1], match.id, 7, 12)
    assert (scored.participant1_score, scored.participant2_score) == (7, 12)


async def complete_at_once(db: Database, publisher: DiscardingPublisher, t: Tournament, ids: list[int]) -> None:
    """Start and score the matches, then complete them all concurrently (separate connections and
    transactions on PostgreSQL): what two organizers, or two confirmations, do at the same moment."""
    for match_id in ids:
        await start_match(db, publisher, t.organizer, match_id)
        await update_score(db, publisher, t.organizer, match_id, 1, 0)
    await asyncio.gather(*(complete_match(db, publisher, t.organizer, match_id) for match_id in ids))


async def test_a_swiss_round_completed_at_once_is_paired_exactly_once(
    db: Database, factory: Factory, publisher: DiscardingPublisher
) -> None:
    t = await factory.seeded(8, format="swiss", rounds=2)
    first = [m.id for m in scheduled_ready(await matches.matches_of(db, t.id))]
    assert len(first) == 4
    await complete_at_once(db, publisher, t, first)
    second = [m for m in await matches.matches_of(db, t.id) if m.round == 2]
    assert len(second) == 4, [(m.id, m.participant1_id, m.participant2_id) for m in second]
    paired = [p for m in second for p in (m.participant1_id, m.participant2_id)]
    assert sorted(paired) == sorted(p.user_id for p in t.players)
    scheduled = [e.data["match_id"] for e in publisher.published if e.type == "match_scheduled"]
    assert sorted(scheduled[4:]) == sorted(m.id for m in second)  # once each, after round 1's four


async def test_two_winners_bracket_losses_at_once_both_reach_the_losers_bracket(
    db: Database, factory: Factory, publisher: DiscardingPublisher
) -> None:
    t = await factory.seeded(4, format="double_elimination")
    first = [m for m in scheduled_ready(await matches.matches_of(db, t.id))]
    await complete_at_once(db, publisher, t, [m.id for m in first])
    (dropped,) = [m for m in await matches.matches_of(db, t.id) if m.bracket == "losers" and m.round == 1]
    assert {dropped.participant1_id, dropped.participant2_id} == {m.participant2_id for m in first}
    assert dropped.scheduled_at is not None
    scheduled = [e.data["match_id"] for e in publisher.published if e.type == "match_scheduled"]
    assert scheduled.count(dropped.id) == 1
