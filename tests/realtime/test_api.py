"""The organizer JSON API, tokens, snapshots, health and metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from matchcast.security import verify_token
from matchcast.services import disputes
from tests.support.databases import dump
from tests.support.factories import PASSWORD
from tests.support.server import RunningServer


@pytest.fixture
async def http(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.http, timeout=5) as client:
        yield client


async def test_token_for_a_right_password(server: RunningServer, http: httpx.AsyncClient) -> None:
    user = await server.factory.user()
    response = await http.post("/api/token", json={"username": user.username, "password": PASSWORD})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer" and body["expires_in"] > 0
    assert verify_token(server.settings.jwt_secret, body["access_token"]).user_id == user.user_id


@pytest.mark.parametrize(
    "body, status",
    [
        ({"username": "nobody", "password": "whatever-password"}, 401),
        ({"username": "__USER__", "password": "wrong-password"}, 401),
        ({"username": "__USER__"}, 400),
        ({"username": 5, "password": "x"}, 400),
        ([1, 2], 400),
        ("not json", 400),
    ],
)
async def test_token_refusals(server: RunningServer, http: httpx.AsyncClient, body: object, status: int) -> None:
    user = await server.factory.user()
    if isinstance(body, dict) and body.get("username") == "__USER__":
        body = {**body, "username": user.username}
    if isinstance(body, str):
        response = await http.post("/api/token", content=body)
    else:
        response = await http.post("/api/token", json=body)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] and error["message"]


async def test_snapshots_match_the_websocket_state(server: RunningServer, http: httpx.AsyncClient) -> None:
    t, match = await server.factory.live_match()
    async with server.client(f"/ws/match/{match.id}/", server.guest_token()) as ws:
        state = (await ws.established())["state"]
    assert (await http.get(f"/api/matches/{match.id}")).json() == state
    async with server.client(f"/ws/tournament/{t.id}/", server.guest_token()) as ws:
        state = (await ws.established())["state"]
    assert (await http.get(f"/api/tournaments/{t.id}")).json() == state
    assert (await http.get("/api/matches/424242")).status_code == 404
    assert (await http.get("/api/tournaments/424242")).json()["error"]["code"] == "not_found"


async def test_action_errors_have_the_contract_statuses(server: RunningServer, http: httpx.AsyncClient) -> None:
    t = await server.factory.seeded(4)
    match = await server.factory.match(t.match_ids[0])
    organizer = {"Authorization": f"Bearer {server.token(t.organizer.user_id)}"}
    player = {"Authorization": f"Bearer {server.token(match.participant1_id)}"}
    before = await dump(server.realtime.db)
    cases = [
        ("/api/matches/{m}/start", None, {}, 401),
        ("/api/matches/{m}/start", {"Authorization": "Bearer nonsense"}, {}, 401),
        ("/api/matches/{m}/start", player, {}, 403),
        ("/api/matches/999999/start", organizer, {}, 404),
        ("/api/matches/{m}/score", organizer, {"participant1_score": 1, "participant2_score": 0}, 409),
        ("/api/matches/{m}/complete", organizer, {}, 409),
        ("/api/matches/{m}/score", organizer, {"participant1_score": -1, "participant2_score": 0}, 400),
        ("/api/matches/{m}/score", organizer, {"participant1_score": True, "participant2_score": 0}, 400),
        ("/api/matches/{m}/complete", organizer, {"winner_id": "x"}, 400),
        ("/api/disputes/999999/resolve", organizer, {"resolution": "ok"}, 404),
    ]
    for path, headers, body, status in cases:
        response = await http.post(path.format(m=match.id), json=body, headers=headers or {})
        assert response.status_code == status, (path, body, response.text)
        assert set(response.json()["error"]) == {"code", "message"}
    assert await dump(server.realtime.db) == before
    raw = await http.post(f"/api/matches/{match.id}/score", content=b"{not json", headers=organizer)
    assert raw.status_code == 400


async def test_completion_validates_the_winner(server: RunningServer, http: httpx.AsyncClient) -> None:
    t, match = await server.factory.live_match(players=4)
    organizer = {"Authorization": f"Bearer {server.token(t.organizer.user_id)}"}
    outsider = next(p.user_id for p in t.players if p.user_id not in (match.participant1_id, match.participant2_id))
    tied = await http.post(f"/api/matches/{match.id}/complete", json={}, headers=organizer)
    assert tied.status_code == 400 and "tied" in tied.json()["error"]["message"]
    wrong = await http.post(f"/api/matches/{match.id}/complete", json={"winner_id": outsider}, headers=organizer)
    assert wrong.status_code == 400
    right = await http.post(
        f"/api/matches/{match.id}/complete", json={"winner_id": match.participant2_id}, headers=organizer
    )
    assert right.status_code == 200 and right.json()["status"] == "completed"
    assert right.json()["winner_id"] == match.participant2_id


async def test_healthz_is_exactly_ok(server: RunningServer, http: httpx.AsyncClient) -> None:
    response = await http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broadcast": "ok"}


async def test_metrics_count_connections_frames_errors_and_closes(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    _t, match = await server.factory.live_match()
    async with (
        server.client(f"/ws/match/{match.id}/", server.guest_token()) as spectator,
        server.client(f"/ws/match/{match.id}/", server.token(match.participant1_id)) as player,
    ):
        await spectator.established()
        await player.established()
        await player.send({"type": "score_update", "participant1_score": 1, "participant2_score": 0})
        await spectator.recv_type("score_updated")
        await spectator.send("nonsense")
        await spectator.recv_type("error")
        text = (await http.get("/metrics")).text
        assert 'matchcast_connections{role="spectator",room_kind="match"} 1.0' in text
        assert 'matchcast_connections{role="participant",room_kind="match"} 1.0' in text
        assert 'matchcast_outbound_queue_depth{room_kind="match"}' in text
        assert 'matchcast_joins_total{role="spectator",room_kind="match"} 1.0' in text
        assert 'matchcast_joins_total{role="participant",room_kind="match"} 1.0' in text
    async with server.client("/ws/match/999999/", server.guest_token()) as ws:
        assert await ws.closed() == 4404
    text = (await http.get("/metrics")).text
    assert 'matchcast_errors_total{code="invalid_json"} 1.0' in text
    assert 'matchcast_closes_total{code="4404"} 1.0' in text
    assert "matchcast_frames_in_total 2.0" in text
    assert "matchcast_publish_to_send_seconds_bucket" in text
    frames_out = next(line for line in text.splitlines() if line.startswith("matchcast_frames_out_total"))
    assert float(frames_out.split()[1]) >= 2


async def test_the_token_from_the_login_endpoint_opens_the_players_socket(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    # End to end, no token minted by the test: log in over HTTP, score over the WebSocket.
    t, match = await server.factory.live_match()
    player = next(p for p in t.players if p.user_id == match.participant1_id)
    response = await http.post("/api/token", json={"username": player.username, "password": PASSWORD})
    token = response.json()["access_token"]
    async with (
        server.client(f"/ws/match/{match.id}/", token) as ws,
        server.client(f"/ws/match/{match.id}/", server.guest_token()) as spectator,
    ):
        assert (await ws.established())["role"] == "participant"
        await spectator.established()
        await ws.send({"type": "score_update", "participant1_score": 4, "participant2_score": 2})
        scored = await spectator.recv_type("score_updated")
        assert (scored["data"]["participant1_score"], scored["data"]["participant2_score"]) == (4, 2)


async def test_resolving_a_dispute_with_scores_completes_the_match(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    t, match = await server.factory.live_match()
    player = next(p for p in t.players if p.user_id == match.participant1_id)
    dispute = await disputes.report_dispute(server.realtime.db, server.factory.publisher, player, match.id, "lag")
    organizer = {"Authorization": f"Bearer {server.token(t.organizer.user_id)}"}
    path = f"/api/disputes/{dispute.id}/resolve"
    before = await dump(server.realtime.db)
    for body in (
        {"resolution": "B won", "participant1_score": 1, "participant2_score": 1},  # a tie
        {"resolution": "B won", "participant1_score": 0},  # one score
        {"resolution": "B won", "participant1_score": 0, "participant2_score": "1"},
        {"resolution": "B\x00won", "participant1_score": 0, "participant2_score": 1},
    ):
        refused = await http.post(path, json=body, headers=organizer)
        assert refused.status_code == 400, body
        assert refused.json()["error"]["code"] == "validation_error"
    assert await dump(server.realtime.db) == before
    resolved = await http.post(
        path, json={"resolution": "B won", "participant1_score": 0, "participant2_score": 1}, headers=organizer
    )
    assert resolved.status_code == 200, resolved.text
    snapshot = resolved.json()
    assert (snapshot["status"], snapshot["winner_id"], snapshot["disputes"]) == ("completed", match.participant2_id, [])
