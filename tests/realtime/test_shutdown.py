"""Graceful shutdown: pending score batches are flushed, then sockets close 1012; and the way back in
(no new socket into a dying server, a listen queue that takes a reconnect storm)."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from matchcast.server import LISTEN_BACKLOG
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


async def test_regression_no_new_connection_gets_in_while_the_hub_closes_sockets_1012(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 17 (bench/storm.py): the server kept listening while the hub closed its sockets 1012;
    clients reconnecting at once got into the dying server, were held for the graceful timeout
    and then cancelled, and shutdowns took 10-30 s."""
    hub = server.realtime.hub
    closing, go_on = asyncio.Event(), asyncio.Event()
    stop = hub.stop

    async def gated_stop() -> None:  # the hub's stop, held at its start until the test has looked
        closing.set()
        await go_on.wait()
        await stop()

    monkeypatch.setattr(hub, "stop", gated_stop)
    _t, match = await server.factory.live_match()
    async with server.client(f"/ws/match/{match.id}/", server.guest_token()) as spectator:
        await spectator.established()
        server.server.should_exit = True
        await asyncio.wait_for(closing.wait(), 10)
        with pytest.raises(OSError):
            async with server.client(f"/ws/match/{match.id}/", server.guest_token()) as late:
                await late.established()
        go_on.set()
        assert await spectator.closed(timeout=10) == 1012


SOMAXCONN = int(Path("/proc/sys/net/core/somaxconn").read_text())  # the kernel's cap on any backlog


def listen_backlog(port: int) -> int:
    """The listening socket's accept queue size, as the kernel reports it (`ss`: Send-Q)."""
    lines = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return int(lines.split()[2])


async def test_regression_the_listen_queue_takes_a_reconnect_storm(server: RunningServer) -> None:
    """Issue 17 (bench/storm.py): with uvicorn's backlog of 2048, a 10k reconnect storm had
    thousands of SYNs dropped, each client then waiting for TCP's retransmission (1 s, 3 s)."""
    assert listen_backlog(server.port) == min(LISTEN_BACKLOG, SOMAXCONN) > 2048
