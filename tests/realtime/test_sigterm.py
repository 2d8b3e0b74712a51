"""SIGTERM to a real `matchcast serve`: pending scores flushed and delivered, sockets closed 1012."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from tests.support.processes import ServerProcess, run_demo
from tests.support.server import TEST_SECRET


@pytest.mark.timeout(90)
async def test_sigterm_flushes_pending_scores_and_closes_1012(tmp_path: Path) -> None:
    env = {
        "MATCHCAST_DATABASE_URL": f"sqlite:///{tmp_path}/serve.db",
        "MATCHCAST_BROADCAST_URL": "memory://",
        "MATCHCAST_JWT_SECRET": TEST_SECRET,
        "MATCHCAST_SCORE_BATCH_WINDOW_MS": "5000",
        "MATCHCAST_RATE_LIMIT": "100/1s",
    }
    created = await run_demo(env)
    match = created["matches"][0]
    player = next(p for p in created["players"] if p["id"] == match["participant1_id"])
    server = await ServerProcess(env, log_dir=tmp_path).start()
    try:
        async with httpx.AsyncClient(base_url=server.http, timeout=5) as http:
            started = await http.post(
                f"/api/matches/{match['id']}/start",
                headers={"Authorization": f"Bearer {created['organizer']['token']}"},
            )
            assert started.status_code == 200, started.text
        async with (
            server.client(f"/ws/match/{match['id']}/", player["token"]) as participant,
            server.client(f"/ws/tournament/{created['tournament_id']}/", player["token"]) as spectator,
        ):
            await participant.established()
            await spectator.established()
            with pytest.raises(InvalidStatus):  # refused before accept: uvicorn logs its URL
                async with server.client(f"/ws/match/{match['id']}/", player["token"], origin="http://evil.example"):
                    pass
            async with httpx.AsyncClient(base_url=server.http, timeout=5) as http:
                metrics = (await http.get("/metrics")).text  # joins are counted there, not logged at INFO
            assert 'matchcast_joins_total{role="participant",room_kind="match"} 1.0' in metrics
            for n in (1, 2, 3):
                await participant.send({"type": "score_update", "participant1_score": n, "participant2_score": 0})
            assert (await spectator.recv_type("score_updated"))["data"]["participant1_score"] == 1
            await participant.quiet(0.3)  # 2 and 3 stored, held by the 5 s window
            server.process.send_signal(15)  # type: ignore[union-attr]
            flushed = await spectator.recv_type("score_updated", timeout=5)
            assert flushed["data"]["participant1_score"] == 3 and flushed["data"]["sequence"] == 3
            assert await spectator.closed(timeout=10) == 1012
            assert await participant.closed(timeout=10) == 1012
        # uvicorn re-raises the signal once shut down, so the exit status is "killed by SIGTERM".
        assert await asyncio.to_thread(server.process.wait, 20) in (0, -15)  # type: ignore[union-attr]
    finally:
        await server.stop()
    log = server.log()
    assert "token=***" in log and player["token"] not in log  # the refusal's URL, redacted
    assert f"open room=match_{match['id']}" not in log
    # A close the server chose is logged; the participant was closed 1012 by the restart.
    assert f"close room=match_{match['id']} role=participant user={player['id']} code=1012" in log
