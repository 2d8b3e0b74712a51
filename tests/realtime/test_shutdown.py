"""Graceful shutdown: pending score batches are flushed, then sockets close 1012."""

from __future__ import annotations

import pytest

from matchcast.settings import RateLimit
from tests.support.server import RunningServer


@pytest.mark.parametrize("overrides", [{"score_batch_window_ms": 5000, "rate_limit": RateLimit(100, 1)}])
async def test_shutdown_flushes_pending_scores_then_closes_1012(server: RunningServer) -> None:
    t, match = await server.factory.live_match()
    async with (
        server.client(f"/ws/match/{match.id}/", server.token(match.participant1_id)) as player,
        server.client(f"/ws/tournament/{t.id}/", server.guest_token()) as spectator,
    ):
        await player.established()
        await spectator.established()
        for n in (1, 2, 3):
            await player.send({"type": "score_update", "participant1_score": n, "participant2_score": 0})
        first = await spectator.recv_type("score_updated")
        await player.quiet(0.3)  # 2 and 3 are stored and wait for the 5 s window
        server.server.should_exit = True
        flushed = await spectator.recv_type("score_updated", timeout=3)
        assert await spectator.closed(timeout=5) == 1012
        assert await player.closed(timeout=5) == 1012
    assert first["data"]["participant1_score"] == 1
    assert flushed["data"]["participant1_score"] == 3 and flushed["data"]["sequence"] == 3
