"""Server heartbeat: a ping every interval, close 4004 after the timeout of silence."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.server import RunningServer

# A timeout well above the interval: under make test's four workers an in-process server's loop
# can stall for most of a second, and its next beat then finds a pong still unread (4004 seen).
pytestmark = pytest.mark.parametrize("overrides", [{"heartbeat_interval": 0.3, "heartbeat_timeout": 2.0}])


async def test_the_server_pings_every_interval(server: RunningServer) -> None:
    _t, match = await server.factory.live_match()
    async with server.client(f"/ws/match/{match.id}/", server.guest_token()) as ws:
        data = await ws.established()
        assert (data["heartbeat_interval"], data["heartbeat_timeout"]) == (0.3, 2.0)
        first = await ws.recv_type("ping", timeout=1)
        await ws.send({"type": "pong", "timestamp": first["timestamp"]})
        second = await ws.recv_type("ping", timeout=1)
        assert isinstance(first["timestamp"], int) and second["timestamp"] > first["timestamp"]
        assert set(first) == {"type", "timestamp"}


async def test_a_silent_client_is_closed_4004(server: RunningServer) -> None:
    _t, match = await server.factory.live_match()
    loop = asyncio.get_running_loop()
    began = loop.time()  # before the socket opens: the server counts silence from its opening
    async with server.client(f"/ws/match/{match.id}/", server.guest_token()) as ws:
        await ws.established()
        assert await ws.closed(timeout=5) == 4004
        assert 1.9 <= loop.time() - began <= 4.0


async def test_a_client_that_answers_pings_stays_open(server: RunningServer) -> None:
    _t, match = await server.factory.live_match()
    async with server.client(f"/ws/match/{match.id}/", server.guest_token()) as ws:
        await ws.established()
        loop = asyncio.get_running_loop()
        end = loop.time() + 3.0  # past the timeout: an answering client outlives it
        while loop.time() < end:
            ping = await ws.recv_type("ping", timeout=1)
            await ws.send({"type": "pong", "timestamp": ping["timestamp"]})
        await ws.send({"type": "ping", "timestamp": 7})
        assert (await ws.recv_type("pong"))["timestamp"] == 7
