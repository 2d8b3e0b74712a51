"""Hostile clients: none of them can stall the server, grow it without bound or crash it."""

from __future__ import annotations

import asyncio
import json
import socket

import httpx
import pytest
from websockets.asyncio.client import connect

from matchcast.services import disputes, matches
from tests.support.databases import dump
from tests.support.processes import wait_until
from tests.support.server import RunningServer


async def test_resuming_clients_that_never_read_hold_no_database_connection(server: RunningServer) -> None:
    t, match = await server.factory.live_match()
    reporter = next(p for p in t.players if p.user_id == match.participant1_id)
    db, hub = server.realtime.db, server.realtime.hub
    for n in range(20):  # a log worth replaying: 40 events of some size
        dispute = await disputes.report_dispute(db, hub, reporter, match.id, "z" * 400 + str(n))
        await disputes.resolve_dispute(db, hub, t.organizer, dispute.id, "y" * 400)
    stalled = []
    try:
        for _ in range(12):  # more than the PostgreSQL pool holds
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
            sock.connect((server.host, server.port))
            url = f"{server.ws}/ws/tournament/{t.id}/?token={server.guest_token()}&last_event_id=0"
            stalled.append(await connect(url, sock=sock, max_queue=1, open_timeout=5).__aenter__())
        async with httpx.AsyncClient(base_url=server.http, timeout=3) as http:
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get(f"/api/matches/{match.id}")).status_code == 200
        async with server.client(f"/ws/match/{match.id}/", server.guest_token()) as ws:
            assert (await ws.established())["role"] == "spectator"
    finally:
        for connection in stalled:
            connection.transport.abort()


@pytest.mark.parametrize("overrides", [{"max_pending": 4}])
async def test_a_slow_consumer_leaves_its_room_even_if_it_never_reads_again(server: RunningServer) -> None:
    t = await server.factory.seeded(256)
    first_round = [m for m in await matches.matches_of(server.realtime.db, t.id) if m.round == 1]
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sock.connect((server.host, server.port))
    url = f"{server.ws}/ws/tournament/{t.id}/?token={server.guest_token()}"
    stalled = await connect(url, sock=sock, max_queue=1, open_timeout=5, max_size=None).__aenter__()
    try:
        for match in first_round:
            await matches.cancel_match(server.realtime.db, server.realtime.hub, t.organizer, match.id)
            await asyncio.sleep(0)  # the room's task hands the events on (SQLite's statements never yield)
            if any(c.closing for c in server.realtime.hub.connections()):
                break
        await wait_until(lambda: any(c.closing for c in server.realtime.hub.connections()), 10, "a socket closing")
        assert any(c.close_code == 4009 for c in server.realtime.hub.connections())
        # dropped after the close grace, though it never reads
        await wait_until(lambda: not list(server.realtime.hub.connections()), 10, "the slow consumer gone")
    finally:
        stalled.transport.abort()


async def test_deep_json_and_lone_surrogates_are_plain_validation_errors(server: RunningServer) -> None:
    _t, match = await server.factory.live_match()
    before = await dump(server.realtime.db)
    async with server.client(f"/ws/match/{match.id}/", server.token(match.participant1_id)) as ws:
        await ws.established()
        await ws.send("[" * 30_000 + "]" * 30_000)  # deeper than the parser recurses, under 64 KB
        assert (await ws.recv_type("error"))["data"]["code"] in ("invalid_json",)
        await ws.send('{"type": "report_dispute", "reason": "\\ud800 broken"}')
        assert (await ws.recv_type("error"))["data"]["code"] == "validation_error"
    async with httpx.AsyncClient(base_url=server.http, timeout=5) as http:
        response = await http.post("/api/token", content="[" * 30_000 + "]" * 30_000)
        assert response.status_code == 400
    assert await dump(server.realtime.db) == before


async def test_a_huge_body_is_refused_without_reading_it_all(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.http, timeout=10) as http:
        response = await http.post("/api/token", content=b"x" * (3 * 1024 * 1024))
    assert response.status_code == 413


async def test_ids_of_thousands_of_digits_are_unknown_not_errors(server: RunningServer) -> None:
    digits = "9" * 5000
    async with httpx.AsyncClient(base_url=server.http, timeout=5) as http:
        assert (await http.get(f"/api/matches/{digits}")).status_code == 404
        assert (await http.get(f"/matches/{digits}")).status_code == 404
    async with server.client(f"/ws/match/{digits}/", server.guest_token()) as ws:
        assert await ws.closed() == 4404


async def test_the_organizer_api_refuses_a_participant_score(server: RunningServer) -> None:
    _t, match = await server.factory.live_match()
    async with httpx.AsyncClient(base_url=server.http, timeout=5) as http:
        response = await http.post(
            f"/api/matches/{match.id}/score",
            json={"participant1_score": 9, "participant2_score": 0},
            headers={"Authorization": f"Bearer {server.token(match.participant1_id)}"},
        )
    assert response.status_code == 403 and json.loads(response.text)["error"]["code"] == "forbidden"
