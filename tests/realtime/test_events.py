"""Server events end to end: organizer actions over the JSON API, disputes, ids per room."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from matchcast.protocol import tournament_room
from matchcast.realtime import eventlog
from tests.support.processes import wait_until
from tests.support.server import RunningServer


def bearer(server: RunningServer, user_id: int) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token(user_id)}"}


async def test_a_dispute_reaches_the_match_room_and_the_tournament_room(server: RunningServer) -> None:
    t, match = await server.factory.live_match()
    async with (
        server.client(f"/ws/match/{match.id}/", server.token(match.participant2_id)) as player,
        server.client(f"/ws/match/{match.id}/", server.guest_token()) as match_room,
        server.client(f"/ws/tournament/{t.id}/", server.token(t.organizer.user_id)) as tournament_room,
        httpx.AsyncClient(base_url=server.http, timeout=5) as http,
    ):
        for ws in (player, match_room, tournament_room):
            await ws.established()
        await player.send({"type": "report_dispute", "reason": "  the score was entered wrong  "})
        created = [await ws.recv_type("dispute_created") for ws in (match_room, tournament_room)]
        for frame in created:
            data = frame["data"]
            assert data["match_id"] == match.id and data["tournament_id"] == t.id
            assert data["reported_by_id"] == match.participant2_id
            assert data["reason"] == "the score was entered wrong"
            assert isinstance(data["dispute_id"], int) and data["created_at"].endswith("Z")
        assert created[0]["data"] == created[1]["data"]
        dispute_id = created[0]["data"]["dispute_id"]
        snapshot = (await http.get(f"/api/matches/{match.id}")).json()
        assert [d["id"] for d in snapshot["disputes"]] == [dispute_id]

        response = await http.post(
            f"/api/disputes/{dispute_id}/resolve",
            json={"resolution": "score stands"},
            headers=bearer(server, t.organizer.user_id),
        )
        assert response.status_code == 200 and response.json()["disputes"] == []
        for ws in (match_room, tournament_room):
            data = (await ws.recv_type("dispute_resolved"))["data"]
            assert data == {
                **data,
                "dispute_id": dispute_id,
                "resolution": "score stands",
                "resolved_by_id": t.organizer.user_id,
                "match_id": match.id,
                "tournament_id": t.id,
            }
        again = await http.post(
            f"/api/disputes/{dispute_id}/resolve",
            json={"resolution": "twice"},
            headers=bearer(server, t.organizer.user_id),
        )
        assert again.status_code == 409 and again.json()["error"]["code"] == "invalid_state"


async def test_completing_matches_advances_winners_and_schedules_the_next_round(server: RunningServer) -> None:
    t = await server.factory.seeded(4)
    semis = [await server.factory.match(i) for i in t.match_ids[:2]]
    final_id = semis[0].next_match_id
    async with (
        server.client(f"/ws/tournament/{t.id}/", server.guest_token()) as spectator,
        server.client(f"/ws/match/{final_id}/", server.guest_token()) as final_room,
        httpx.AsyncClient(base_url=server.http, timeout=5, headers=bearer(server, t.organizer.user_id)) as http,
    ):
        established = await spectator.established()
        await final_room.established()
        for semi in semis:
            assert (await http.post(f"/api/matches/{semi.id}/start")).status_code == 200
            score = {"participant1_score": 2, "participant2_score": 1}
            assert (await http.post(f"/api/matches/{semi.id}/score", json=score)).status_code == 200
            done = await http.post(f"/api/matches/{semi.id}/complete", json={})
            assert done.status_code == 200 and done.json()["winner_id"] == semi.participant1_id
        events = await spectator.events(9)
        scheduled = await final_room.recv_type("match_scheduled")
    types = [e["type"] for e in events]
    assert types == [
        "match_started",
        "score_updated",
        "match_completed",
        "bracket_updated",
        "match_started",
        "score_updated",
        "match_completed",
        "match_scheduled",
        "bracket_updated",
    ]
    ids = [e["id"] for e in events]
    assert ids == list(range(established["last_event_id"] + 1, established["last_event_id"] + 10))
    final = events[7]["data"]
    assert final["match_id"] == final_id and final["round"] == 2
    assert {final["participant1"]["id"], final["participant2"]["id"]} == {s.participant1_id for s in semis}
    assert scheduled["data"] == final
    completed = events[2]["data"]
    assert set(completed) >= {
        "match_id",
        "tournament_id",
        "winner_id",
        "participant1_score",
        "participant2_score",
        "completed_at",
    }
    bracket = events[8]["data"]["bracket"]
    assert bracket["rounds"][1]["matches"][0]["participant1"] is not None


async def test_ids_stay_contiguous_under_concurrent_publishers(server: RunningServer) -> None:
    t = await server.factory.seeded(16)
    live = []
    async with httpx.AsyncClient(base_url=server.http, timeout=10, headers=bearer(server, t.organizer.user_id)) as http:
        for match_id in t.match_ids[:8]:
            assert (await http.post(f"/api/matches/{match_id}/start")).status_code == 200
            live.append(match_id)
        async with server.client(f"/ws/tournament/{t.id}/", server.guest_token()) as spectator:
            start = (await spectator.established())["last_event_id"]

            async def hammer(match_id: int) -> None:
                for n in range(5):
                    response = await http.post(
                        f"/api/matches/{match_id}/score", json={"participant1_score": n, "participant2_score": 0}
                    )
                    assert response.status_code == 200

            await asyncio.gather(*(hammer(m) for m in live))
            frames: list[dict[str, Any]] = []

            def latest() -> dict[int, int]:
                return {f["data"]["match_id"]: f["data"]["participant1_score"] for f in frames}

            async def every_final_score() -> None:  # the last batching windows release them
                while latest() != {m: 4 for m in live}:
                    frames.extend(await spectator.events(1))

            await asyncio.wait_for(every_final_score(), 10)
            hub = server.realtime.hub
            await wait_until(lambda: hub.batcher.open_windows == 0, 5, "every batching window closed")
            stored = await eventlog.last_id(server.realtime.db, tournament_room(t.id))
    ids = [f["id"] for f in frames]
    assert ids == list(range(start + 1, start + 1 + len(ids)))
    assert ids[-1] == stored  # nothing stored after the final scores: no stale score follows them
    assert latest() == {m: 4 for m in live}  # every match's latest score arrived


async def test_events_are_one_encoded_text_per_room(server: RunningServer) -> None:
    """Two spectators of one room receive byte-identical frames."""
    _t, match = await server.factory.live_match()
    async with (
        server.client(f"/ws/match/{match.id}/", server.token(match.participant1_id)) as player,
        server.client(f"/ws/match/{match.id}/", server.guest_token()) as a,
        server.client(f"/ws/match/{match.id}/", server.guest_token()) as b,
    ):
        for ws in (player, a, b):
            await ws.established()
        await player.send({"type": "score_update", "participant1_score": 1, "participant2_score": 1})
        raw = []
        for ws in (a, b):
            while True:
                text = await asyncio.wait_for(ws.ws.recv(), 5)
                if '"score_updated"' in text:
                    raw.append(text)
                    break
    assert raw[0] == raw[1]
