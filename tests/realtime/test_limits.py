"""Limits: frame size (1009), flooding (4008), slow consumers (4009), oversized handshakes."""

from __future__ import annotations

import asyncio
import socket

import pytest
from websockets.asyncio.client import connect

from matchcast.settings import RateLimit
from tests.support.databases import dump
from tests.support.server import Client, RunningServer
from tests.web.helpers import organizer


@pytest.mark.parametrize("overrides", [{"max_message_bytes": 1024}])
async def test_a_frame_over_the_limit_closes_1009(server: RunningServer) -> None:
    _t, match = await server.factory.live_match()
    async with server.client(f"/ws/match/{match.id}/", server.token(match.participant1_id)) as ws:
        await ws.established()
        await ws.send({"type": "report_dispute", "reason": "x" * 400})  # under the limit: fine
        await ws.recv_type("dispute_created")
        await ws.send({"type": "report_dispute", "reason": "y" * 2000})
        assert await ws.closed() == 1009
    state = await dump(server.realtime.db)
    assert [d["reason"] for d in state["disputes"]] == ["x" * 400]


@pytest.mark.parametrize("overrides", [{"rate_limit": RateLimit(3, 1)}])
async def test_persistent_flooding_closes_4008(server: RunningServer) -> None:
    _t, match = await server.factory.live_match()
    async with server.client(f"/ws/match/{match.id}/", server.guest_token()) as ws:
        await ws.established()
        for n in range(10):
            await ws.send({"type": "ping", "timestamp": n})
        pongs, errors = [], []
        code = None
        try:
            while True:
                frame = await ws.recv(3)
                if frame["type"] == "pong":
                    pongs.append(frame)
                elif frame["type"] == "error":
                    errors.append(frame["data"]["code"])
        except Exception:
            code = await ws.closed()
    assert len(pongs) == 3 and errors == ["rate_limited"] * 3
    assert code == 4008


@pytest.mark.parametrize("overrides", [{"rate_limit": RateLimit(2, 0.5)}])
async def test_a_client_within_the_rate_is_never_limited(server: RunningServer) -> None:
    _t, match = await server.factory.live_match()
    async with server.client(f"/ws/match/{match.id}/", server.guest_token()) as ws:
        await ws.established()
        for n in range(8):
            await ws.send({"type": "ping", "timestamp": n})
            assert (await ws.recv_type("pong", "error"))["type"] == "pong"
            await asyncio.sleep(0.26)  # pacing, not a wait: just under the 2-per-0.5 s rate under test


@pytest.mark.timeout(90)
@pytest.mark.parametrize("overrides", [{"max_pending": 8}])
async def test_a_client_that_does_not_read_is_closed_4009_and_nobody_waits(server: RunningServer) -> None:
    t = await server.factory.seeded(256)  # every cancellation sends the whole bracket (~50 KB)
    # A reader with a tiny receive buffer that stops reading: the server's socket fills up.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.connect((server.host, server.port))
    url = f"{server.ws}/ws/tournament/{t.id}/?token={server.guest_token()}"
    async with (
        connect(url, sock=sock, max_queue=1, open_timeout=5, max_size=None) as stalled_ws,
        server.client(f"/ws/tournament/{t.id}/", server.guest_token(), max_size=None) as healthy,
    ):
        stalled = Client(stalled_ws)
        await stalled.established()
        await healthy.established()
        async with organizer(server.http, t.organizer.username) as browser:
            for match_id in await browser.match_ids(t.id, round=1):
                await browser.post(f"/organize/matches/{match_id}/cancel")
                # the healthy spectator keeps up the whole time
                assert (await healthy.recv_type("bracket_updated", timeout=2))["data"]["tournament_id"] == t.id
                if any(c.closing for c in server.realtime.hub.connections()):
                    break
        assert any(c.close_code == 4009 for c in server.realtime.hub.connections()), "never closed"
        assert await stalled.closed(timeout=30) == 4009


async def test_an_oversized_handshake_is_refused_promptly(server: RunningServer) -> None:
    _t, match = await server.factory.live_match()
    reader, writer = await asyncio.open_connection(server.host, server.port)
    path = f"/ws/match/{match.id}/?token={'a' * 9000}"
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    status = int(status_line.split()[1])
    assert 400 <= status < 500, status_line
