"""Webhooks against a real receiver on loopback: signatures, order, retries, restarts, two
instances, and the address rule (SQLite and PostgreSQL through the `stack` fixture)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from matchcast.cli import EventLogPublisher
from matchcast.db.database import Database
from matchcast.protocol import tournament_room
from matchcast.realtime import eventlog
from matchcast.services import matches
from tests.support.databases import fresh_postgres_database
from tests.support.factories import Factory, Tournament
from tests.support.processes import wait_until
from tests.support.server import RunningServer, running_server, test_settings

pytestmark = pytest.mark.timeout(60)
FAST = {"webhook_allow_private": True, "webhook_max_sleep": 0.1, "webhook_timeout": 0.5}


@dataclass
class Receiver:
    """Records every request; fails the first `fail_first` with 500, hangs the first `hang_first`."""

    fail_first: int = 0
    hang_first: int = 0
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    accepted: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        self.requests.append((dict(request.headers), body))
        if len(self.requests) <= self.hang_first:
            await asyncio.sleep(5)  # longer than the sender's timeout: it gives up on us
        if len(self.requests) <= self.hang_first + self.fail_first:
            return Response(status_code=500)
        self.accepted.append(json.loads(body))
        return Response(status_code=204)


@asynccontextmanager
async def receiving(receiver: Receiver) -> AsyncIterator[Receiver]:
    app = Starlette(routes=[Route("/hook", receiver.endpoint, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        return bool(server.started)

    await wait_until(started, 10, "the webhook receiver listening")
    port = server.servers[0].sockets[0].getsockname()[1]
    receiver.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield receiver
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def add_webhook(server: RunningServer, t: Tournament, url: str, **more: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {server.token(t.organizer.user_id)}"}
    async with httpx.AsyncClient(base_url=server.http, timeout=5) as http:
        return await http.post(f"/api/tournaments/{t.id}/webhooks", json={"url": url, **more}, headers=headers)


async def play(db: Database, factory: Factory, t: Tournament) -> None:
    """Start, score and complete every playable first-round match: events for the webhook."""
    for match in await matches.matches_of(db, t.id):
        if match.round == 1 and match.status == matches.SCHEDULED:
            await matches.start_match(db, factory.publisher, t.organizer, match.id)
            await matches.update_score(db, factory.publisher, t.organizer, match.id, 2, 1)
            await matches.complete_match(db, factory.publisher, t.organizer, match.id)


async def logged_ids(db: Database, t: Tournament) -> list[int]:
    return [event.id for event in await eventlog.read_after(db, tournament_room(t.id), 0, 10_000)]


async def all_accepted(receiver: Receiver, db: Database, t: Tournament, timeout: float = 20) -> list[int]:
    """Wait until the receiver accepted every logged event; return the ids in the order accepted."""
    expected = await logged_ids(db, t)

    async def done() -> bool:
        return {body["id"] for body in receiver.accepted} >= set(expected)

    await wait_until(done, timeout, f"the receiver accepting events {expected[0]}..{expected[-1]}")
    return [body["id"] for body in receiver.accepted]


@pytest.mark.parametrize("overrides", [FAST])
async def test_every_event_once_in_order_and_signed(server: RunningServer) -> None:
    t = await server.factory.seeded(4)
    async with receiving(Receiver()) as receiver:
        created = await add_webhook(server, t, receiver.url)
        assert created.status_code == 201, created.text
        secret = created.json()["secret"]
        await play(server.realtime.db, server.factory, t)
        accepted = await all_accepted(receiver, server.realtime.db, t)
    assert accepted == await logged_ids(server.realtime.db, t)  # 1..K, each once, in order
    deliveries = set()
    for headers, body in receiver.requests:
        timestamp = headers["x-matchcast-timestamp"]
        expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
        assert headers["x-matchcast-signature"] == f"sha256={expected}"
        assert headers["x-matchcast-event"] == json.loads(body)["type"]
        deliveries.add(headers["x-matchcast-delivery"])
    assert len(deliveries) == len(receiver.requests)
    first = receiver.accepted[0]
    assert set(first) == {"id", "room", "type", "data"} and first["room"] == tournament_room(t.id)


@pytest.mark.parametrize("overrides", [FAST])
async def test_a_failing_then_a_slow_receiver_get_everything_in_order(server: RunningServer) -> None:
    t = await server.factory.seeded(2)
    async with receiving(Receiver(fail_first=2, hang_first=1)) as receiver:
        assert (await add_webhook(server, t, receiver.url)).status_code == 201
        await play(server.realtime.db, server.factory, t)
        # hang (0.5 s timeout) then 500, 500: retried after 1, 2 and 4 s.
        accepted = await all_accepted(receiver, server.realtime.db, t, timeout=30)
    assert accepted == await logged_ids(server.realtime.db, t)
    assert len(receiver.requests) == len(accepted) + 3


@pytest.mark.parametrize("overrides", [FAST])
async def test_the_state_is_listed_and_only_the_organizer_manages_webhooks(server: RunningServer) -> None:
    t = await server.factory.seeded(2)
    player = server.token(t.players[0].user_id)
    async with httpx.AsyncClient(base_url=server.http, timeout=5) as http:
        async with receiving(Receiver(fail_first=100)) as receiver:
            created = (await add_webhook(server, t, receiver.url, events=["match_completed"])).json()
            await play(server.realtime.db, server.factory, t)
            organizer = {"Authorization": f"Bearer {server.token(t.organizer.user_id)}"}

            async def failing() -> bool:
                listed = await http.get(f"/api/tournaments/{t.id}/webhooks", headers=organizer)
                return bool(listed.json()[0]["failing_since"])

            await wait_until(failing, 10, "the webhook's failure listed")
        [state] = (await http.get(f"/api/tournaments/{t.id}/webhooks", headers=organizer)).json()
        assert state["id"] == created["id"] and "secret" not in state
        logged = await eventlog.read_after(server.realtime.db, tournament_room(t.id), 0, 100)
        completed = next(event.id for event in logged if event.type == "match_completed")
        # The events it does not take are passed over; it waits at the first it takes.
        assert (state["events"], state["disabled"]) == (["match_completed"], False)
        assert state["last_delivered_event_id"] == completed - 1
        assert state["last_error"] == "HTTP 500"
        # Only match_completed was ever sent.
        assert {json.loads(body)["type"] for _, body in receiver.requests} == {"match_completed"}
        foreign = {"Authorization": f"Bearer {player}"}
        assert (await http.get(f"/api/tournaments/{t.id}/webhooks", headers=foreign)).status_code == 403
        assert (await http.delete(f"/api/webhooks/{created['id']}", headers=foreign)).status_code == 403
        assert (await http.delete(f"/api/webhooks/{created['id']}", headers=organizer)).status_code == 204
        assert (await http.get(f"/api/tournaments/{t.id}/webhooks", headers=organizer)).json() == []
        bad = await http.post(
            f"/api/tournaments/{t.id}/webhooks", json={"url": receiver.url, "events": ["nope"]}, headers=organizer
        )
        assert bad.status_code == 400


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "ftp://example.com/hook",
        "javascript:alert(1)",
    ],
)
async def test_private_and_odd_addresses_are_refused(server: RunningServer, url: str) -> None:
    t = await server.factory.seeded(2)
    refused = await add_webhook(server, t, url)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == "validation_error"


async def test_delivery_checks_the_address_again(stack: tuple[str, str]) -> None:
    broadcast, database = stack
    prefix = "t" + uuid.uuid4().hex[:8] + "_"
    base = test_settings(broadcast_url=broadcast, database_url=database, channel_prefix=prefix, **FAST)
    async with receiving(Receiver()) as receiver:
        async with running_server(base) as first:
            t = await first.factory.seeded(2)
            assert (await add_webhook(first, t, receiver.url)).status_code == 201
        delivered = len(receiver.requests)  # the seeding's events, while private addresses were allowed
        # The operator turns private addresses off (or the name now resolves to one).
        async with running_server(base.with_(webhook_allow_private=False)) as second:
            await play(second.realtime.db, second.factory, t)
            organizer = {"Authorization": f"Bearer {second.token(t.organizer.user_id)}"}
            async with httpx.AsyncClient(base_url=second.http, timeout=5) as http:

                async def refused() -> bool:
                    listed = (await http.get(f"/api/tournaments/{t.id}/webhooks", headers=organizer)).json()
                    return "not a public address" in (listed[0]["last_error"] or "")

                await wait_until(refused, 10, "the delivery refused by the address check")
        assert len(receiver.requests) == delivered


async def test_a_restart_mid_delivery_resumes_without_skipping(stack: tuple[str, str]) -> None:
    broadcast, database = stack
    prefix = "t" + uuid.uuid4().hex[:8] + "_"
    settings = test_settings(broadcast_url=broadcast, database_url=database, channel_prefix=prefix, **FAST)
    async with receiving(Receiver()) as receiver:
        async with running_server(settings) as first:
            t = await first.factory.seeded(4)
            assert (await add_webhook(first, t, receiver.url)).status_code == 201
            await play(first.realtime.db, first.factory, t)

            async def some() -> bool:
                return len(receiver.accepted) >= 3

            await wait_until(some, 10, "a few events delivered before the restart")
        # Down: more events are stored (by the command line, say) while nobody delivers.
        async with running_server(settings) as second:
            db = second.realtime.db
            organizer_publisher = EventLogPublisher(db)
            await play(db, Factory(db, organizer_publisher), t)  # the second round, now playable
            accepted = await all_accepted(receiver, db, t)
            assert sorted(set(accepted)) == await logged_ids(db, t)  # nothing skipped
    assert accepted == sorted(accepted)  # in order (an event may come twice: at least once)


async def test_two_instances_deliver_each_event_once() -> None:
    async with fresh_postgres_database(migrate=False) as database:
        prefix = "t" + uuid.uuid4().hex[:8] + "_"
        settings = test_settings(
            broadcast_url="redis://127.0.0.1:6379", database_url=database, channel_prefix=prefix, **FAST
        )
        async with receiving(Receiver()) as receiver:
            async with running_server(settings) as one, running_server(settings) as two:
                t = await one.factory.seeded(8)
                assert (await add_webhook(one, t, receiver.url)).status_code == 201
                await play(one.realtime.db, one.factory, t)  # the first round, on one instance
                await play(two.realtime.db, two.factory, t)  # the second, on the other
                accepted = await all_accepted(receiver, one.realtime.db, t)
                assert accepted == await logged_ids(one.realtime.db, t)
