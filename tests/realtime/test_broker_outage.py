"""Broker outages: a private Redis or PostgreSQL broker stops under two running instances and comes back.

While it is down the service keeps serving (actions are stored, their broadcast fails and is
logged) and /healthz says 503; when it is back the subscriptions return by themselves and every
client gets every stored event, in order, with no hole.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from typing import Any

import httpx
import pytest

from matchcast.db.database import connected
from matchcast.realtime import eventlog
from tests.support.databases import fresh_postgres_database
from tests.support.processes import PostgresCluster, RedisServer, wait_until
from tests.support.server import Client, RunningServer, running_server
from tests.support.server import test_settings as settings_with

pytestmark = pytest.mark.timeout(90)
OUTAGE = 2.0  # seconds the broker stays down
RECOVERY = 15.0  # seconds: the broker reconnects within 2 s, the hub resubscribes within 5 s


class PrivateBroker:
    """A broker this test may stop: its own redis-server, or the session's private PostgreSQL."""

    def __init__(self, kind: str, cluster: PostgresCluster) -> None:
        self.kind = kind
        self.redis = RedisServer() if kind == "redis" else None
        self.cluster = cluster

    @property
    def url(self) -> str:
        return self.redis.url if self.redis else f"postgres://postgres@127.0.0.1:{self.cluster.port}/postgres"

    async def start(self) -> None:
        if self.redis:
            await self.redis.start()
        elif not self.cluster.running():
            await asyncio.to_thread(self.cluster.start)

    async def stop(self) -> None:
        if self.redis:
            await self.redis.stop()
        else:
            await asyncio.to_thread(self.cluster.stop)


@pytest.fixture(params=["redis", "postgres"])
async def broker(request: pytest.FixtureRequest, postgres_outage: PostgresCluster) -> AsyncIterator[PrivateBroker]:
    broker = PrivateBroker(request.param, postgres_outage)
    await broker.start()
    try:
        yield broker
    finally:
        if broker.redis:
            await broker.redis.stop()


@asynccontextmanager
async def two_instances(broker_url: str) -> AsyncIterator[tuple[RunningServer, RunningServer]]:
    async with fresh_postgres_database() as database:
        settings = settings_with(
            broadcast_url=broker_url, database_url=database, channel_prefix="t" + uuid.uuid4().hex[:8] + "_"
        )
        async with running_server(settings) as a, running_server(settings) as b:
            yield a, b


async def health(server: RunningServer) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(timeout=5) as http:
        reply = await http.get(f"{server.http}/healthz")
    return reply.status_code, reply.json()


async def stored_last(server: RunningServer, room: str) -> int:
    async with connected(server.settings.database_url) as db:
        return await eventlog.last_id(db, room)


async def receive_through(client: Client, after: int, last: int) -> list[dict[str, Any]]:
    """The events after `after` up to `last`: each id once, in order."""
    frames = await client.events(last - after, timeout=RECOVERY)
    assert [f["id"] for f in frames] == list(range(after + 1, last + 1))
    return frames


async def test_the_service_survives_a_broker_outage_and_loses_nothing(
    broker: PrivateBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="matchcast.broker")
    async with two_instances(broker.url) as (a, b), AsyncExitStack() as stack:
        t, match = await a.factory.live_match()
        room, tournament_room = f"match_{match.id}", f"tournament_{t.id}"
        organizer = {"Authorization": f"Bearer {a.token(t.organizer.user_id)}"}
        player = await stack.enter_async_context(a.client(f"/ws/match/{match.id}/", a.token(match.participant1_id)))
        on_a = await stack.enter_async_context(a.client(f"/ws/match/{match.id}/", a.guest_token()))
        on_b = await stack.enter_async_context(b.client(f"/ws/match/{match.id}/", b.guest_token()))
        watcher = await stack.enter_async_context(b.client(f"/ws/tournament/{t.id}/", b.guest_token()))
        await player.established()
        start = {c: (await c.established())["last_event_id"] for c in (on_a, on_b, watcher)}
        await player.send({"type": "score_update", "participant1_score": 1, "participant2_score": 0})
        (live,) = await on_b.events(1)
        assert live["type"] == "score_updated" and live["id"] == start[on_b] + 1
        seen_by_b = live["id"]

        await broker.stop()
        down_since = time.monotonic()
        for server in (a, b):
            await wait_until(partial(_degraded, server), 10, "/healthz says the broadcast is down")
        status, report = await health(b)
        assert status == 503 and report["status"] == "degraded" and report["database"] == "ok"
        assert report["broadcast"].startswith("unavailable: "), report

        # Still serving: actions succeed and are stored; only their broadcast fails.
        await player.send({"type": "score_update", "participant1_score": 2, "participant2_score": 0})

        async def score_2_stored() -> bool:  # its own event in the log, before anything else is sent
            last: int = await eventlog.last_id(a.realtime.db, room)
            return last == int(seen_by_b) + 1

        await wait_until(score_2_stored, 5, "score 2 stored in the match room's log")
        await player.send({"type": "report_dispute", "reason": "the stream froze"})
        async with httpx.AsyncClient(timeout=5) as http:
            reply = await http.post(
                f"{b.http}/api/matches/{match.id}/score",
                headers=organizer,
                json={"participant1_score": 3, "participant2_score": 0},
            )
        assert reply.status_code == 200, reply.text
        assert not [f for f in await player.quiet(0.3) if f["type"] == "error"]
        # A client joining during the outage gets the snapshot and the replay from the log.
        late = await stack.enter_async_context(
            b.client(f"/ws/match/{match.id}/?last_event_id={seen_by_b}", b.guest_token())
        )
        late_data = await late.established()

        # A room nobody on A watched yet: joining it waits for no broker.
        async with a.client(f"/ws/tournament/{t.id}/", a.guest_token()) as newcomer:
            assert (await newcomer.established())["last_event_id"] == await stored_last(a, tournament_room)

        # Not a wait for anything: the outage the test is about lasts OUTAGE seconds, long enough
        # for each instance's reconnection attempts (0.2 s, 0.4 s, 0.8 s apart) to fail a few times.
        await asyncio.sleep(OUTAGE - (time.monotonic() - down_since))
        await broker.start()  # the same port
        for server in (a, b):
            await wait_until(partial(_healthy, server), RECOVERY, "/healthz ok again")
        assert await health(a) == (200, {"status": "ok", "database": "ok", "broadcast": "ok"})

        last = await stored_last(a, room)
        assert last >= start[on_a] + 4  # 3 scores and the dispute
        await receive_through(on_a, start[on_a], last)
        await receive_through(on_b, seen_by_b, last)
        await receive_through(watcher, start[watcher], await stored_last(a, tournament_room))
        await receive_through(late, seen_by_b, last)  # its replay, then what the catch-up adds
        assert late_data["last_event_id"] <= last

        # The subscriptions are back: a new event travels live between the instances.
        await player.send({"type": "score_update", "participant1_score": 4, "participant2_score": 0})
        (after,) = await on_b.events(1, timeout=5)
        assert after["id"] == last + 1 and after["data"]["participant1_score"] == 4

    async with two_instances(broker.url) as (a, _):
        pass  # and a fresh start on the restarted broker works
    assert any("connection lost" in r.getMessage() for r in caplog.records), caplog.text


async def _degraded(server: RunningServer) -> bool:
    status, report = await health(server)
    return status == 503 and report["broadcast"] != "ok"


async def _healthy(server: RunningServer) -> bool:
    return (await health(server))[0] == 200


async def test_a_server_starts_while_the_broker_is_down_and_connects_when_it_comes_up(
    broker: PrivateBroker,
) -> None:
    await broker.stop()
    async with two_instances(broker.url) as (a, b):
        status, report = await health(a)
        assert status == 503 and report["broadcast"].startswith("unavailable: "), report
        await broker.start()
        await wait_until(lambda: _healthy(a), RECOVERY, "/healthz ok once the broker is up")
        await wait_until(lambda: _healthy(b), RECOVERY, "/healthz ok once the broker is up")
        _t, match = await a.factory.live_match()
        async with (
            a.client(f"/ws/match/{match.id}/", a.token(match.participant1_id)) as player,
            b.client(f"/ws/match/{match.id}/", b.guest_token()) as spectator,
        ):
            await player.established()
            seen = (await spectator.established())["last_event_id"]
            await player.send({"type": "score_update", "participant1_score": 1, "participant2_score": 0})
            (frame,) = await spectator.events(1, timeout=5)
            assert frame["id"] == seen + 1 and frame["type"] == "score_updated"
