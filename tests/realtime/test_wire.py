"""The two ways a frame reaches a real client (realtime/connection.py, web/wire.py): built once and
written to the transport, under uvicorn's wsproto and websockets-sansio protocols alike; and the
ASGI send, wherever the wire cannot apply (here: permessage-deflate negotiated, which needs each
frame compressed by the library). Order, the backlog bound (4009) and the close codes are the same
on every path, including the switch between them when a client stops reading for a while.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from matchcast.protocol import tournament_room
from matchcast.realtime import eventlog
from matchcast.settings import RateLimit
from matchcast.web.wire import ExpressWire, TransportWire, UvicornWire
from tests.support.databases import sqlite_url
from tests.support.factories import Tournament
from tests.support.server import Client, RunningServer, running_server, test_settings
from tests.web.helpers import organizer

pytestmark = pytest.mark.timeout(90)

# name: (uvicorn options, client compression, the wire every server-side socket must have)
PATHS: dict[str, tuple[dict[str, Any], str | None, type]] = {
    "default-wire": ({}, None, ExpressWire),  # matchcast.server's own (web/websocket_protocol.py)
    "wsproto-wire": ({"ws": "wsproto"}, None, UvicornWire),
    "sansio-wire": ({"ws": "websockets-sansio"}, None, UvicornWire),
    "deflate-asgi": ({"ws": "wsproto", "ws_per_message_deflate": True}, "deflate", TransportWire),
}


# The two paths; a client stopping and starting again is slow to set up (megabytes of brackets), so
# the pause and the 4009 run on matchcast's protocol and on the ASGI send, the 1012 on all four.
BOTH_PATHS = ["default-wire", "deflate-asgi"]


@pytest.fixture(params=list(PATHS))
def path(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def max_pending() -> int:
    return 64


@pytest.fixture
async def server(path: str, max_pending: int, tmp_path: Path) -> AsyncIterator[RunningServer]:
    options, _compression, _wire = PATHS[path]
    settings = test_settings(database_url=sqlite_url(tmp_path), max_pending=max_pending, rate_limit=RateLimit(1000, 1))
    async with running_server(settings, **options) as running:
        yield running


def compression(path: str) -> dict[str, Any]:
    """The client negotiates permessage-deflate where the path is about it."""
    return {"compression": PATHS[path][1], "max_size": None}


# Compressed brackets are too small to fill a client's buffers: the tests of a client that stops
# reading send plain frames on every path (a deflate-configured server still takes the ASGI send,
# its wire refuses frames whatever the client negotiates). No client pings: a pong waits behind
# megabytes the client has not read yet, and the client would give up on the server (1011).
UNCOMPRESSED: dict[str, Any] = {"compression": None, "max_size": None, "ping_interval": None}


def assert_wires(server: RunningServer, path: str) -> None:
    wires = {type(conn.wire) for conn in server.realtime.hub.connections()}
    assert wires == {PATHS[path][2]}, wires


def stalled_socket(server: RunningServer) -> socket.socket:
    """A TCP connection with a tiny receive buffer: a client that stops reading fills it at once."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.connect((server.host, server.port))
    return sock


async def cancel_first_round(server: RunningServer, t: Tournament, count: int) -> None:
    """The organizer cancels `count` first-round matches with the manage page's form."""
    async with organizer(server.http, t.organizer.username) as browser:
        for match_id in (await browser.match_ids(t.id, round=1))[:count]:
            # each sends the whole bracket (~50 KB): transports pause
            await browser.post(f"/organize/matches/{match_id}/cancel")


async def event_ids(client: Client, until: int) -> list[int]:
    seen: list[int] = []
    while not seen or seen[-1] < until:
        frame = await client.recv(10)
        if "id" in frame:
            seen.append(frame["id"])
    return seen


@pytest.mark.parametrize("path", BOTH_PATHS)
@pytest.mark.parametrize("max_pending", [2000])  # room for everything the paused client falls behind
async def test_a_client_that_pauses_then_reads_gets_every_event_once_in_order(server: RunningServer, path: str) -> None:
    t = await server.factory.seeded(256)
    url = f"{server.ws}/ws/tournament/{t.id}/?token={server.guest_token()}"
    sock = stalled_socket(server)
    async with (
        connect(url, sock=sock, max_queue=1, open_timeout=5, **UNCOMPRESSED) as paused_ws,
        server.client(f"/ws/tournament/{t.id}/", server.guest_token(), **UNCOMPRESSED) as steady,
    ):
        paused, steady_first = Client(paused_ws), await steady.established()
        first = (await paused.established())["last_event_id"]
        assert_wires(server, path)
        # The paused client's frames queue behind its full transport (the ASGI send waits there)
        # once its kernel buffers (up to 4 MB) are full, while the steady one keeps taking them
        # straight off the wire; then it reads them all.
        await cancel_first_round(server, t, 128)
        last = await eventlog.last_id(server.realtime.db, tournament_room(t.id))
        steady_ids = await event_ids(steady, last)
        assert any(conn.writer is not None for conn in server.realtime.hub.connections()), "never paused"
        # The steady one is idle: on matchcast's protocol its room writes to it directly (rooms.py).
        in_lane = [conn.express for conn in server.realtime.hub.connections()]
        assert in_lane.count(True) == (1 if path == "default-wire" else 0), in_lane
        paused_ids = await event_ids(paused, last)
    assert steady_first["last_event_id"] == first
    assert last > first + 128
    assert paused_ids == steady_ids == list(range(first + 1, last + 1))


@pytest.mark.parametrize("path", BOTH_PATHS)
async def test_a_client_that_does_not_read_is_closed_4009_and_the_others_are_not(
    server: RunningServer, path: str
) -> None:
    t = await server.factory.seeded(256)
    url = f"{server.ws}/ws/tournament/{t.id}/?token={server.guest_token()}"
    async with (
        connect(url, sock=stalled_socket(server), max_queue=1, open_timeout=5, **UNCOMPRESSED) as stalled_ws,
        server.client(f"/ws/tournament/{t.id}/", server.guest_token(), **UNCOMPRESSED) as healthy,
    ):
        stalled = Client(stalled_ws)
        await stalled.established()
        first = (await healthy.established())["last_event_id"]
        assert_wires(server, path)
        # max_pending is 64: the stalled client falls that far behind within the first round.
        async with organizer(server.http, t.organizer.username) as browser:
            for match_id in await browser.match_ids(t.id, round=1):
                await browser.post(f"/organize/matches/{match_id}/cancel")
                if any(conn.close_code == 4009 for conn in server.realtime.hub.connections()):
                    break
        assert any(conn.close_code == 4009 for conn in server.realtime.hub.connections()), "never closed"
        assert await stalled.closed(timeout=30) == 4009
        last = await eventlog.last_id(server.realtime.db, tournament_room(t.id))
        assert await event_ids(healthy, last) == list(range(first + 1, last + 1))
        assert not any(conn.closing for conn in server.realtime.hub.connections())


async def test_shutdown_sends_what_is_queued_then_closes_1012(server: RunningServer, path: str) -> None:
    _t, match = await server.factory.live_match()
    async with (
        server.client(f"/ws/match/{match.id}/", server.token(match.participant1_id), **compression(path)) as player,
        server.client(f"/ws/match/{match.id}/", server.guest_token(), **compression(path)) as spectator,
    ):
        await player.established()
        await spectator.established()
        assert_wires(server, path)
        await player.send({"type": "score_update", "participant1_score": 1, "participant2_score": 0})
        assert (await spectator.recv_type("score_updated"))["data"]["participant1_score"] == 1
        await player.send({"type": "ping", "timestamp": 7})
        assert (await player.recv_type("pong"))["timestamp"] == 7  # a per-socket frame, same path
        server.server.should_exit = True
        assert await spectator.closed(timeout=10) == 1012
        assert await player.closed(timeout=10) == 1012
