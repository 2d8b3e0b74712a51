"""Database outages: the PostgreSQL holding the data stops under a running server, then comes back.

While it is down requests fail with a clear error (JSON 503 `unavailable`, a WebSocket `error`
frame) and change nothing; when it is back the service works again without a restart.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from matchcast.db.database import connected, upgrade
from matchcast.realtime import eventlog
from tests.support.databases import create_postgres_database, drop_postgres_database, dump
from tests.support.processes import PostgresCluster, wait_until
from tests.support.server import RunningServer, running_server
from tests.support.server import test_settings as settings_with

pytestmark = pytest.mark.timeout(90)
RECOVERY = 15.0


@pytest.fixture
async def server(postgres_outage: PostgresCluster) -> AsyncIterator[RunningServer]:
    """A server whose database lives on the private cluster (memory:// broadcast)."""
    url = await create_postgres_database(postgres_outage.admin_url)
    try:
        await asyncio.to_thread(upgrade, url)
        settings = settings_with(database_url=url, channel_prefix="t" + uuid.uuid4().hex[:8] + "_")
        async with running_server(settings) as running:
            yield running
    finally:
        if not postgres_outage.running():
            postgres_outage.start()
        await drop_postgres_database(url, postgres_outage.admin_url)


async def request(server: RunningServer, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.request(method, server.http + path, **kwargs)


async def test_requests_fail_clearly_change_nothing_and_recover(
    server: RunningServer, postgres_outage: PostgresCluster
) -> None:
    t, match = await server.factory.live_match()
    organizer = {"Authorization": f"Bearer {server.token(t.organizer.user_id)}"}
    room = f"match_{match.id}"
    async with (
        server.client(f"/ws/match/{match.id}/", server.token(match.participant1_id)) as player,
        server.client(f"/ws/match/{match.id}/", server.guest_token()) as spectator,
    ):
        await player.established()
        seen = (await spectator.established())["last_event_id"]
        async with connected(server.settings.database_url) as db:
            before = await dump(db)

        await asyncio.to_thread(postgres_outage.stop)
        status, report = await health(server)
        assert status == 503 and report["status"] == "degraded" and report["broadcast"] == "ok"
        assert report["database"].startswith("unavailable: "), report

        reply = await request(
            server,
            "POST",
            f"/api/matches/{match.id}/score",
            headers=organizer,
            json={"participant1_score": 9, "participant2_score": 9},
        )
        assert reply.status_code == 503, reply.text
        assert reply.json()["error"]["code"] == "unavailable" and "database" in reply.json()["error"]["message"]
        assert (await request(server, "GET", f"/api/matches/{match.id}")).status_code == 503
        await player.send({"type": "score_update", "participant1_score": 9, "participant2_score": 9})
        error = await player.recv_type("error")
        assert error["data"]["message"]
        await player.send({"type": "ping", "timestamp": 1})
        assert (await player.recv_type("pong"))["timestamp"] == 1  # the socket stays open
        # A user cannot be welcomed without the database (a guest may be, for a second: the room's
        # access and snapshot are shared reads, web/guest_access.py and realtime/snapshots.py).
        async with server.client(f"/ws/match/{match.id}/", server.token(match.participant2_id)) as newcomer:
            assert await newcomer.closed() == 1011

        await asyncio.to_thread(postgres_outage.start)
        await wait_until(lambda: healthy(server), RECOVERY, "/healthz ok once the database is back")
        assert await health(server) == (200, {"status": "ok", "database": "ok", "broadcast": "ok"})
        async with connected(server.settings.database_url) as db:
            assert await dump(db) == before  # nothing half-written

        await player.send({"type": "score_update", "participant1_score": 1, "participant2_score": 0})
        (frame,) = await spectator.events(1)
        assert frame["id"] == seen + 1 and frame["data"]["participant1_score"] == 1
        reply = await request(
            server,
            "POST",
            f"/api/matches/{match.id}/score",
            headers=organizer,
            json={"participant1_score": 2, "participant2_score": 0},
        )
        assert reply.status_code == 200, reply.text
        async with connected(server.settings.database_url) as db:
            assert await eventlog.last_id(db, room) >= seen + 1


async def test_connections_killed_by_the_server_are_replaced(
    server: RunningServer, postgres_outage: PostgresCluster
) -> None:
    t, match = await server.factory.live_match()
    organizer = {"Authorization": f"Bearer {server.token(t.organizer.user_id)}"}
    database = server.settings.database_url.rsplit("/", 1)[1]
    async with connected(postgres_outage.admin_url) as admin:
        killed = await admin.fetch_val(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = :name", {"name": database}
        )
    assert killed >= 1
    reply = await request(
        server,
        "POST",
        f"/api/matches/{match.id}/score",
        headers=organizer,
        json={"participant1_score": 1, "participant2_score": 0},
    )
    assert reply.status_code in (200, 503), reply.text  # at worst the one request on a dead connection
    await wait_until(lambda: healthy(server), RECOVERY, "/healthz ok")
    reply = await request(
        server,
        "POST",
        f"/api/matches/{match.id}/score",
        headers=organizer,
        json={"participant1_score": 2, "participant2_score": 0},
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["participant1_score"] == 2


async def health(server: RunningServer) -> tuple[int, dict[str, Any]]:
    reply = await request(server, "GET", "/healthz")
    return reply.status_code, reply.json()


async def healthy(server: RunningServer) -> bool:
    return (await health(server))[0] == 200
