"""Client frames: ping/pong, and every error code of the contract; bad input changes nothing."""

from __future__ import annotations

import pytest

from matchcast.settings import RateLimit
from tests.support.databases import dump
from tests.support.server import RunningServer


async def test_ping_is_answered_with_pong(server: RunningServer) -> None:
    _t, match = await server.factory.live_match()
    async with server.client(f"/ws/match/{match.id}/", server.guest_token()) as ws:
        await ws.established()
        await ws.send({"type": "ping", "timestamp": 1234567})
        assert await ws.recv_type("pong") == {"type": "pong", "timestamp": 1234567}
        await ws.send({"type": "pong", "timestamp": 1})  # proves liveness, no answer
        assert [f for f in await ws.quiet(0.3) if f["type"] not in ("ping", "viewers")] == []


BAD_FRAMES = [
    ("not json", "invalid_json"),
    ("{", "invalid_json"),
    (b"\x00\x01binary", "invalid_json"),
    ("[1, 2]", "invalid_message"),
    ('"text"', "invalid_message"),
    ("{}", "invalid_message"),
    ('{"type": 5}', "invalid_message"),
    ('{"type": "subscribe"}', "unsupported_type"),
    ('{"type": "ping"}', "validation_error"),
    ('{"type": "ping", "timestamp": "12"}', "validation_error"),
    ('{"type": "score_update", "participant1_score": 1}', "validation_error"),
    ('{"type": "score_update", "participant1_score": true, "participant2_score": 0}', "validation_error"),
    ('{"type": "score_update", "participant1_score": 1.5, "participant2_score": 0}', "validation_error"),
    ('{"type": "score_update", "participant1_score": "3", "participant2_score": 0}', "validation_error"),
    ('{"type": "score_update", "participant1_score": -1, "participant2_score": 0}', "validation_error"),
    ('{"type": "score_update", "participant1_score": 1000001, "participant2_score": 0}', "validation_error"),
    ('{"type": "report_dispute", "reason": ""}', "validation_error"),
    ('{"type": "report_dispute", "reason": 7}', "validation_error"),
    ('{"type": "report_dispute", "reason": "' + "x" * 501 + '"}', "validation_error"),
]


@pytest.mark.parametrize("overrides", [{"rate_limit": RateLimit(100, 1)}])
async def test_bad_frames_are_answered_and_change_nothing(server: RunningServer) -> None:
    _t, match = await server.factory.live_match()
    before = await dump(server.realtime.db)
    async with server.client(f"/ws/match/{match.id}/", server.token(match.participant1_id)) as ws:
        await ws.established()
        for frame, code in BAD_FRAMES:
            await ws.send(frame)
            error = await ws.recv_type("error")
            assert error["data"]["code"] == code, frame
            assert error["data"]["message"]
        # still open and working
        await ws.send({"type": "ping", "timestamp": 1})
        assert (await ws.recv_type("pong"))["timestamp"] == 1
    assert await dump(server.realtime.db) == before


async def test_spectators_are_read_only(server: RunningServer) -> None:
    t, match = await server.factory.live_match(players=4)
    before = await dump(server.realtime.db)
    async with server.client(f"/ws/match/{match.id}/", server.guest_token()) as ws:
        await ws.established()
        await ws.send({"type": "score_update", "participant1_score": 1, "participant2_score": 0})
        assert (await ws.recv_type("error"))["data"]["code"] == "forbidden"
        await ws.send({"type": "report_dispute", "reason": "guest says no"})
        assert (await ws.recv_type("error"))["data"]["code"] == "forbidden"
    other = next(p for p in t.players if p.user_id not in (match.participant1_id, match.participant2_id))
    async with server.client(f"/ws/match/{match.id}/", server.token(other.user_id)) as ws:
        await ws.established()
        await ws.send({"type": "score_update", "participant1_score": 1, "participant2_score": 0})
        assert (await ws.recv_type("error"))["data"]["code"] == "forbidden"
    assert await dump(server.realtime.db) == before


async def test_score_update_outside_a_live_match_is_invalid_state(server: RunningServer) -> None:
    t = await server.factory.seeded(4)
    match = await server.factory.match(t.match_ids[0])
    assert match.status == "scheduled"
    before = await dump(server.realtime.db)
    async with server.client(f"/ws/match/{match.id}/", server.token(match.participant1_id)) as ws:
        await ws.established()
        await ws.send({"type": "score_update", "participant1_score": 1, "participant2_score": 0})
        assert (await ws.recv_type("error"))["data"]["code"] == "invalid_state"
    assert await dump(server.realtime.db) == before


async def test_score_update_in_a_tournament_room_is_refused(server: RunningServer) -> None:
    t, _match = await server.factory.live_match()
    async with server.client(f"/ws/tournament/{t.id}/", server.token(t.organizer.user_id)) as ws:
        await ws.established()
        await ws.send({"type": "score_update", "participant1_score": 1, "participant2_score": 0})
        assert (await ws.recv_type("error"))["data"]["code"] == "forbidden"
