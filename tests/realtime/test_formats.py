"""A whole small tournament of each format over the WebSocket, on every stack (SQLite and
PostgreSQL): the organizer seeds and starts matches, the players report and confirm best-of-3
results on their match sockets, and a spectator of the tournament room receives every event of
the room's log, in order, with each completion followed by exactly the progression the contract
names (match_scheduled for each match whose players became known, bracket_updated, then
standings_updated in round robin and Swiss)."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from matchcast.protocol import tournament_room
from matchcast.realtime import eventlog
from matchcast.services import matches, tournaments
from matchcast.services.actors import Actor
from tests.support.server import RunningServer

pytestmark = pytest.mark.timeout(120)
BEST_OF = 3


async def play_match(server: RunningServer, organizer: Actor, match: Any, rnd: random.Random) -> None:
    """Start `match`; its players report and confirm a best-of-3 result over their sockets."""
    await matches.start_match(server.realtime.db, server.realtime.publisher, organizer, match.id)
    path = f"/ws/match/{match.id}/"
    a, b = match.participant1_id, match.participant2_id
    async with server.client(path, server.token(a)) as player_a, server.client(path, server.token(b)) as player_b:
        await player_a.established()
        await player_b.established()
        # A result that is no finished best-of-3 series is refused, in words, and changes nothing.
        await player_a.send({"type": "report_result", "participant1_score": 3, "participant2_score": 1})
        error = await player_a.recv_type("error")
        assert error["data"]["code"] == "validation_error" and "best-of-3" in error["data"]["message"]
        scores = (2, rnd.randrange(2)) if rnd.random() < 0.5 else (rnd.randrange(2), 2)
        await player_a.send({"type": "report_result", "participant1_score": scores[0], "participant2_score": scores[1]})
        reported = await player_b.recv_type("result_reported")
        await player_b.send({"type": "confirm_result", "report_id": reported["data"]["report_id"]})
        completed = await player_b.recv_type("match_completed")
        assert completed["data"]["winner_id"] == (a if scores[0] == 2 else b)


async def play_tournament(
    server: RunningServer, format: str, players: int, seed: int
) -> tuple[Any, list[dict[str, Any]]]:
    """Seed and play to the end; returns the tournament and the spectator's events."""
    db = server.realtime.db
    t = await server.factory.tournament(players, format=format, best_of=BEST_OF)
    rnd = random.Random(seed)
    async with server.client(f"/ws/tournament/{t.id}/", server.guest_token()) as spectator:
        assert (await spectator.established())["last_event_id"] == 0
        await tournaments.seed_bracket(db, server.realtime.publisher, t.organizer, t.id)
        for _ in range(100):
            ready = [
                m
                for m in await matches.matches_of(db, t.id)
                if m.status == "scheduled" and m.participant1_id and m.participant2_id and not m.is_bye
            ]
            if not ready:
                break
            await play_match(server, t.organizer, rnd.choice(ready), rnd)
        logged = await eventlog.read_after(db, tournament_room(t.id), 0, 10_000)
        received = await spectator.events(len(logged))
    assert [(e["id"], e["type"]) for e in received] == [(e.id, e.type) for e in logged]
    assert [e["id"] for e in received] == list(range(1, len(logged) + 1))
    final = await tournaments.get_tournament(db, t.id)
    assert final.status == "completed"
    assert all(m.status == "completed" for m in await matches.matches_of(db, t.id))
    return final, received


def check_progression(events: list[dict[str, Any]], with_standings: bool) -> None:
    """Seeding and every completion end with bracket_updated (+ standings_updated); between a
    match_completed and its bracket_updated only match_scheduled; every started match was
    scheduled first, to the spectator too."""
    tail = ["bracket_updated", "standings_updated"] if with_standings else ["bracket_updated"]
    types = [e["type"] for e in events]
    scheduled: set[int] = set()
    i = 0
    while i < len(types):
        kind, data = types[i], events[i]["data"]
        if kind == "match_scheduled":
            assert data["participant1"] and data["participant2"]
            scheduled.add(data["match_id"])
        elif kind == "match_started":
            assert data["match_id"] in scheduled, f"match {data['match_id']} started before match_scheduled"
        elif kind == "match_completed":
            j = i + 1
            while types[j] == "match_scheduled":
                scheduled.add(events[j]["data"]["match_id"])
                j += 1
            assert types[j : j + len(tail)] == tail, types[i : j + len(tail)]
            i = j + len(tail)
            continue
        i += 1
    assert types[-len(tail) :] == tail
    if with_standings:
        assert len([t for t in types if t == "standings_updated"]) == types.count("match_completed") + 1


async def test_double_elimination_over_the_websocket(server: RunningServer) -> None:
    _t, events = await play_tournament(server, "double_elimination", 4, seed=1)
    check_progression(events, with_standings=False)
    bracket = events[-1]["data"]["bracket"]
    assert bracket["format"] == "double_elimination"
    assert [len(r["matches"]) for r in bracket["rounds"]] == [2, 1]
    assert [len(r["matches"]) for r in bracket["losers"]] == [1, 1]
    lost: Counter[int] = Counter()
    for section in ("rounds", "losers", "grand_final"):
        for column in bracket[section]:
            for m in column["matches"]:
                players = {m["participant1"]["id"], m["participant2"]["id"]}
                lost.update(players - {m["winner_id"]})
    # the champion lost none (absent here) or one (then a reset was played); the others two each
    assert sorted(lost.values()) in ([2, 2, 2], [1, 2, 2, 2])
    assert (sorted(lost.values()) == [1, 2, 2, 2]) == (len(bracket["grand_final"]) == 2)


async def test_round_robin_over_the_websocket(server: RunningServer) -> None:
    _t, events = await play_tournament(server, "round_robin", 3, seed=2)
    check_progression(events, with_standings=True)
    assert [e["type"] for e in events].count("match_completed") == 3
    standings = events[-1]["data"]["standings"]
    assert [row["rank"] for row in standings] == [1, 2, 3]
    assert sum(row["wins"] for row in standings) == 3 and all(row["played"] == 2 for row in standings)


async def test_swiss_over_the_websocket(server: RunningServer) -> None:
    t, events = await play_tournament(server, "swiss", 5, seed=3)
    check_progression(events, with_standings=True)
    assert t.rounds == 3
    rounds = events[-2]["data"]["bracket"]["rounds"]
    assert [r["round"] for r in rounds] == [1, 2, 3]
    byes = Counter(m["participant1"]["id"] for r in rounds for m in r["matches"] if m["is_bye"])
    assert len(byes) == 3 and set(byes.values()) == {1}
    standings = events[-1]["data"]["standings"]
    assert sum(row["points"] for row in standings) == 3 * 2 + 3  # two matches and a bye per round
