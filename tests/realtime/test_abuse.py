"""Hostile users (issue 16): what one client, or one user with many sockets, may hold or take.

A "stalled" client completes the handshake over a socket with a tiny receive buffer and then
never reads (its library stops reading once one frame is queued), but keeps sending pings so the
heartbeat never closes it: the server's writes block, as they do on a real client that stopped.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from types import SimpleNamespace
from typing import cast

import httpx
import pytest
import uvloop  # uvicorn[standard] installs it: what `matchcast serve` runs on
from starlette.websockets import WebSocket
from websockets.asyncio.client import ClientConnection, connect

from matchcast.db.tables import events
from matchcast.protocol import (
    WS_4008_RATE_LIMITED,
    WS_4009_SLOW_CONSUMER,
    WS_4029_TOO_MANY_CONNECTIONS,
    Event,
    tournament_room,
)
from matchcast.realtime import eventlog
from matchcast.realtime.connection import Connection
from matchcast.realtime.quotas import SharedBuckets
from matchcast.realtime.recent import RECENT_EVENTS
from matchcast.settings import RateLimit
from matchcast.web.wire import wire_of
from tests.support.server import RunningServer

STALL = {"max_pending": 32, "heartbeat_interval": 0.5, "heartbeat_timeout": 1.5}
PAD = "x" * 1800  # ~1.9 KB frames: 2000 of them are a replay just under the 4 MB bound


async def wait_for(predicate: Callable[[], bool], timeout: float) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.02)  # the poll interval, bounded by wait_for

    await asyncio.wait_for(poll(), timeout)


async def long_log(server: RunningServer, count: int = 2000) -> int:
    """A public tournament whose room's log holds `count` stored events of ~1.9 KB."""
    t = await server.factory.tournament()
    room = tournament_room(t.id)
    batch = [Event("tournament_updated", {"tournament_id": t.id, "pad": PAD}, (room,)) for _ in range(count)]
    await eventlog.store(server.realtime.db, batch)
    return t.id


@asynccontextmanager
async def stalled(server: RunningServer, path: str) -> AsyncIterator[ClientConnection]:
    """A client that never reads but pings every 0.2 s (within the heartbeat)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.connect((server.host, server.port))
    sep = "&" if "?" in path else "?"
    url = f"{server.ws}{path}{sep}token={server.guest_token()}"
    async with connect(
        url, sock=sock, max_queue=1, open_timeout=5, close_timeout=1, max_size=None, ping_interval=None
    ) as ws:

        async def ping() -> None:
            n = 0
            while True:
                n += 1
                await ws.send(json.dumps({"type": "ping", "timestamp": n}))
                await asyncio.sleep(0.2)  # the attacker's pace, not a wait

        pinger = asyncio.create_task(ping())
        try:
            yield ws
        finally:
            pinger.cancel()
            await asyncio.gather(pinger, return_exceptions=True)


def open_sockets(server: RunningServer) -> int:
    """Connections uvicorn still holds (their transport, fd and buffers)."""
    return len(server.server.server_state.connections)


def only_connection(server: RunningServer) -> Connection | None:
    found = list(server.realtime.hub.connections())
    return found[0] if found else None


@pytest.mark.timeout(60)
@pytest.mark.parametrize("overrides", [STALL])
async def test_regression_a_client_that_never_takes_its_replay_holds_at_most_max_pending_and_is_closed_4009(
    server: RunningServer,
) -> None:
    """Issue 16: the whole replay (~4 MB) was queued for a client that never read it, on top of
    MATCHCAST_MAX_PENDING, for as long as it kept pinging."""
    tournament_id = await long_log(server)
    async with stalled(server, f"/ws/tournament/{tournament_id}/?last_event_id=0"):
        await wait_for(lambda: only_connection(server) is not None, 10)
        conn = only_connection(server)
        assert conn is not None
        held = 0

        async def watch() -> None:
            nonlocal held
            while not conn.closing:
                held = max(held, conn.pending)
                await asyncio.sleep(0.01)

        await asyncio.wait_for(watch(), 30)
        assert conn.close_code == WS_4009_SLOW_CONSUMER
        assert held <= STALL["max_pending"], f"{held} frames queued for a client that reads nothing"
        assert conn.pending == 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("overrides", [{**STALL, "max_pending": 4096}])
async def test_regression_a_client_whose_whole_replay_is_queued_but_never_read_is_closed_4009(
    server: RunningServer,
) -> None:
    """Issue 16: with the replay all read (kernel buffers plus a backlog within max_pending) and a
    quiet room, nothing ever tripped the bound: the client held its frames while it pinged."""
    tournament_id = await long_log(server)
    async with stalled(server, f"/ws/tournament/{tournament_id}/?last_event_id=0"):
        await wait_for(lambda: only_connection(server) is not None, 10)
        conn = only_connection(server)
        assert conn is not None
        await wait_for(lambda: not conn.replaying and conn.pending > 0, 10)  # all read, some never taken
        await wait_for(lambda: conn.closing, 10)
        assert conn.close_code == WS_4009_SLOW_CONSUMER
        assert conn.pending == 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("overrides", [STALL])
async def test_regression_a_stalled_client_closed_4009_loses_its_tcp_connection(server: RunningServer) -> None:
    """Issue 16: after the 4009 the server kept the TCP connection (fd, task, kernel buffers)
    until the client left: now it is cut once the close had its grace."""
    tournament_id = await long_log(server)
    before = open_sockets(server)
    async with stalled(server, f"/ws/tournament/{tournament_id}/?last_event_id=0"):
        await wait_for(lambda: open_sockets(server) == before + 1, 10)
        await wait_for(lambda: only_connection(server) is not None, 10)
        conn = only_connection(server)
        assert conn is not None
        await wait_for(lambda: conn.closing, 30)
        # CLOSE_GRACE for the close frame, then (it cannot be written) the cut, plus slack
        await wait_for(lambda: open_sockets(server) == before, 15)


async def test_regression_partial_is_decided_without_reading_pruned_events(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 16: resuming from 0 read pages of the log only to find them pruned and answer partial."""
    t = await server.factory.tournament()
    room = tournament_room(t.id)
    db = server.realtime.db
    await eventlog.store(db, [Event("tournament_updated", {"n": n}, (room,)) for n in range(300)])
    await db.execute(events.delete().where(events.c.room == room, events.c.id <= 200))  # as retention does
    reads: list[int] = []  # the `after` of each read of the room's log
    read_after = eventlog.read_after

    async def counted(db_: object, room_: str, after: int, limit: int) -> list[eventlog.StoredEvent]:
        if room_ == room:
            reads.append(after)
        return await read_after(db, room_, after, limit)

    monkeypatch.setattr(eventlog, "read_after", counted)
    async with server.client(f"/ws/tournament/{t.id}/?last_event_id=0", server.guest_token()) as ws:
        established = await ws.established()
        assert established["replay"] == "partial"
        assert established["last_event_id"] == 300
    async with server.client(f"/ws/tournament/{t.id}/?last_event_id=290", server.guest_token()) as ws:
        established = await ws.established()
        assert established["replay"] == "complete"
        assert [e["id"] for e in await ws.events(10)] == list(range(291, 301))
    # The room's start reads its recent events (realtime/recent.py), which the complete resume
    # replays; nothing reads from the partial resume's point, whose events are pruned.
    assert reads and all(after >= 300 - RECENT_EVENTS for after in reads), reads


# -- sockets per user and per address (4029), rate per user -------------------------------------


@pytest.mark.parametrize("overrides", [{"max_sockets_per_user": 3, "max_sockets_per_address": 5}])
async def test_regression_sockets_per_user_and_per_address_are_capped_4029(server: RunningServer) -> None:
    """Issue 16: one guest opened 2000 sockets. Past the cap the handshake is closed 4029."""
    _t, match = await server.factory.live_match()
    path = f"/ws/match/{match.id}/"
    token = server.token(match.participant1_id)
    async with AsyncExitStack() as stack:
        for _ in range(3):
            await (await stack.enter_async_context(server.client(path, token))).established()
        async with server.client(path, token) as fourth:
            assert await fourth.closed() == WS_4029_TOO_MANY_CONNECTIONS
        for _ in range(2):  # two guests: the address's fifth socket
            await (await stack.enter_async_context(server.client(path, server.guest_token()))).established()
        async with server.client(path, server.guest_token()) as sixth:
            assert await sixth.closed() == WS_4029_TOO_MANY_CONNECTIONS
        async with httpx.AsyncClient(base_url=server.http, timeout=5) as http:
            refused = await http.get(f"/sse/matches/{match.id}", params={"token": server.guest_token()})
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
    # Closed sockets give their places back, and nothing is left counted.
    await wait_for(lambda: not server.realtime.hub.quota.users and not server.realtime.hub.quota.addresses, 5)
    async with server.client(path, token) as again:
        await again.established()


@pytest.mark.parametrize("overrides", [{"user_rate_limit": RateLimit(5, 10.0)}])
async def test_regression_the_rate_limit_is_shared_by_a_users_sockets(server: RunningServer) -> None:
    """Issue 16: one participant with 40 sockets had 40 times the per-socket rate."""
    _t, match = await server.factory.live_match()
    path = f"/ws/match/{match.id}/"
    token = server.token(match.participant1_id)
    async with AsyncExitStack() as stack:
        sockets = [await stack.enter_async_context(server.client(path, token)) for _ in range(3)]
        other = await stack.enter_async_context(server.client(path, server.token(match.participant2_id)))
        for ws in [*sockets, other]:
            await ws.established()
        answers = []
        for n in range(3):
            for ws in sockets:  # 9 frames, each socket well within its own 20/1s
                await ws.send({"type": "ping", "timestamp": n})
                answers.append((await ws.recv_type("pong", "error"))["type"])
        assert answers.count("pong") == 5 and answers.count("error") == 4
        await other.send({"type": "ping", "timestamp": 1})  # another user is not slowed down
        assert (await other.recv_type("pong", "error"))["type"] == "pong"
        flooder = sockets[0]
        for n in range(3):  # it had its 3 answers within 10 s (one above): the fourth refusal closes
            await flooder.send({"type": "ping", "timestamp": n})
        assert await flooder.closed() == WS_4008_RATE_LIMITED


def test_shared_buckets_forget_idle_users(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    buckets = SharedBuckets(RateLimit(2, 1.0))
    for n in range(1000):
        assert buckets.allow(f"address:{n}")
    now[0] += 1.0  # every bucket full again
    assert buckets.allow("user:1")
    assert list(buckets.buckets) == ["user:1"]
    assert buckets.allow("user:1") and not buckets.allow("user:1")


class Accepting(asyncio.Protocol):
    """A server side that only keeps its transport, as uvicorn's protocols do."""

    def __init__(self) -> None:
        self.transport: asyncio.BaseTransport | None = None
        self.lost = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()

    async def receive(self) -> None:
        """Stands for uvicorn's `receive`: a bound method of the protocol."""


def test_regression_the_transport_is_cut_under_uvloop() -> None:
    """`matchcast serve` runs on uvloop, whose transports are not asyncio's classes: the cut
    looked for asyncio.BaseTransport, found none, and did nothing (the tests' loop is asyncio's)."""

    async def scenario() -> None:
        accepting = Accepting()
        server = await asyncio.get_running_loop().create_server(lambda: accepting, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            await wait_for(lambda: accepting.transport is not None, 5)
            wire_of(cast(WebSocket, SimpleNamespace(_receive=accepting.receive))).cut()
            await asyncio.wait_for(accepting.lost.wait(), 5)
        finally:
            writer.transport.abort()
            server.close()

    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()
