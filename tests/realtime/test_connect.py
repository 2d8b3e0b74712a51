"""Connecting: authentication, roles, snapshots, unknown rooms, origins."""

from __future__ import annotations

import pytest
from websockets.exceptions import InvalidStatus

from matchcast.security import create_token
from tests.support.server import RunningServer


async def test_match_room_welcomes_a_participant_with_the_snapshot(server: RunningServer) -> None:
    _t, match = await server.factory.live_match()
    player = match.participant1_id
    async with server.client(f"/ws/match/{match.id}/", server.token(player)) as ws:
        data = await ws.established()
    assert data["room"] == f"match_{match.id}"
    assert data["user_id"] == player and data["role"] == "participant"
    assert data["heartbeat_interval"] == server.settings.heartbeat_interval
    assert data["heartbeat_timeout"] == server.settings.heartbeat_timeout
    assert isinstance(data["server_time"], int) and isinstance(data["last_event_id"], int)
    state = data["state"]
    for key in (
        "id",
        "tournament_id",
        "round",
        "status",
        "participant1",
        "participant2",
        "participant1_score",
        "participant2_score",
        "sequence",
        "winner_id",
        "disputes",
    ):
        assert key in state
    assert state["status"] == "live" and state["participant1"]["id"] == player
    # match_scheduled and match_started were stored in the room's log already
    assert data["last_event_id"] == 2


@pytest.mark.parametrize("path", ["/ws/match/{m}/", "/ws/match/{m}", "/ws/tournament/{t}/", "/ws/tournament/{t}"])
async def test_both_paths_with_and_without_slash(server: RunningServer, path: str) -> None:
    t, match = await server.factory.live_match()
    async with server.client(path.format(m=match.id, t=t.id), server.guest_token()) as ws:
        data = await ws.established()
    assert data["role"] == "spectator" and data["user_id"] is None


async def test_roles_are_resolved_from_the_database(server: RunningServer) -> None:
    t, match = await server.factory.live_match(players=4)
    staff = await server.factory.user(staff=True)
    outsider = await server.factory.user()
    other_player = next(p for p in t.players if p.user_id not in (match.participant1_id, match.participant2_id))
    cases = [
        (f"/ws/match/{match.id}/", t.organizer.user_id, "organizer"),
        (f"/ws/match/{match.id}/", staff.user_id, "organizer"),
        (f"/ws/match/{match.id}/", match.participant2_id, "participant"),
        (f"/ws/match/{match.id}/", other_player.user_id, "spectator"),
        (f"/ws/match/{match.id}/", outsider.user_id, "spectator"),
        (f"/ws/tournament/{t.id}/", other_player.user_id, "participant"),
        (f"/ws/tournament/{t.id}/", t.organizer.user_id, "organizer"),
        (f"/ws/tournament/{t.id}/", outsider.user_id, "spectator"),
    ]
    for path, user_id, role in cases:
        async with server.client(path, server.token(user_id)) as ws:
            assert (await ws.established())["role"] == role, (path, user_id)


async def test_tournament_snapshot_has_matches_and_bracket(server: RunningServer) -> None:
    t = await server.factory.seeded(8)
    async with server.client(f"/ws/tournament/{t.id}/", server.guest_token()) as ws:
        data = await ws.established()
    state = data["state"]
    assert state["id"] == t.id and state["name"] and state["status"] == "running"
    assert len(state["matches"]) == 7 and len(state["bracket"]["rounds"]) == 3
    assert data["last_event_id"] == 5  # 4 x match_scheduled + bracket_updated


async def test_authorization_header_is_accepted(server: RunningServer) -> None:
    t, match = await server.factory.live_match()
    headers = {"Authorization": f"Bearer {server.token(t.organizer.user_id)}"}
    async with server.client(f"/ws/match/{match.id}/", additional_headers=headers) as ws:
        assert (await ws.established())["role"] == "organizer"


@pytest.mark.parametrize(
    "token",
    [
        None,
        "",
        "garbage",
        "a.b.c",
        "expired",
        "wrong-secret",
        "unknown-user",
        "bad-subject",
        "no-exp",
    ],
)
async def test_bad_tokens_close_4001_after_accept(server: RunningServer, token: str | None) -> None:
    _t, match = await server.factory.live_match()
    secret = server.settings.jwt_secret
    forged = {
        "expired": create_token(secret, str(match.participant1_id), -10),
        "wrong-secret": create_token("another-secret-of-enough-length", str(match.participant1_id), 60),
        "unknown-user": create_token(secret, "987654", 60),
        "bad-subject": create_token(secret, "admin", 60),
    }
    if token == "no-exp":
        from jose import jwt

        token = jwt.encode({"sub": str(match.participant1_id)}, secret, algorithm="HS256")
    token = forged.get(token or "", token)
    async with server.client(f"/ws/match/{match.id}/", token) as ws:
        assert await ws.closed() == 4001


@pytest.mark.parametrize("path", ["/ws/match/999999/", "/ws/tournament/999999/", "/ws/match/99999999999999999999/"])
async def test_unknown_room_closes_4404(server: RunningServer, path: str) -> None:
    async with server.client(path, server.guest_token()) as ws:
        assert await ws.closed() == 4404


async def test_foreign_origin_is_refused_with_403_before_accept(server: RunningServer) -> None:
    _t, match = await server.factory.live_match()
    with pytest.raises(InvalidStatus) as refused:
        async with server.client(f"/ws/match/{match.id}/", server.guest_token(), origin="http://evil.example"):
            pass
    assert refused.value.response.status_code == 403
    own = f"http://{server.host}:{server.port}"
    async with server.client(f"/ws/match/{match.id}/", server.guest_token(), origin=own) as ws:
        assert (await ws.established())["role"] == "spectator"
