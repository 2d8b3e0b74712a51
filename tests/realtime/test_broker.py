"""The broker (realtime/broker.py) on the real Redis and PostgreSQL: what broadcaster 0.3.1 gets wrong.

Concurrent subscribes and publishes on postgres://, frames too large for NOTIFY, and a lost
connection that must never leave a subscriber waiting (shared/dependencies.md §1).
"""

from __future__ import annotations

import asyncio
import inspect
import signal
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from matchcast.realtime.backends import RedisBackend
from matchcast.realtime.broadcast import BroadcastBroker
from matchcast.realtime.broker import BrokerUnavailable
from matchcast.services import matches
from tests.support.processes import PostgresCluster, RedisServer, wait_until
from tests.support.server import RunningServer

pytestmark = pytest.mark.timeout(60)
URLS = {
    "memory": "memory://",
    "redis": "redis://127.0.0.1:6379",
    "postgres": "postgres://postgres@127.0.0.1:5432/test",
}
PROMPTLY = 2.0  # seconds


async def connected_broker(url: str, **options: float) -> BroadcastBroker:
    broker = BroadcastBroker(url, "t" + uuid.uuid4().hex[:8] + "_", **options)
    await broker.connect()
    return broker


@pytest.fixture(params=list(URLS))
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[BroadcastBroker]:
    broker = await connected_broker(URLS[request.param])
    yield broker
    await broker.disconnect()


async def test_concurrent_subscribers_and_publishers_all_work(broker: BroadcastBroker) -> None:
    # broadcaster alone: 19 of 20 concurrent first subscribers die on postgres:// (§1.4).
    subscribed = asyncio.Event()
    ready = 0

    async def subscriber(channel: str) -> list[int]:
        nonlocal ready
        async with broker.subscribe(channel) as subscription:
            ready += 1
            if ready == 20:
                subscribed.set()
            return [(await asyncio.wait_for(subscription.get(), PROMPTLY)).event_id for _ in range(10)]

    channels = [f"room{n % 4}" for n in range(20)]  # 4 rooms, 5 subscribers each
    tasks = [asyncio.create_task(subscriber(channel)) for channel in channels]
    await asyncio.wait_for(subscribed.wait(), 10)
    # 40 concurrent publishes: one connection each for LISTEN and NOTIFY, one operation at a time.
    await asyncio.gather(*(broker.publish(f"room{room}", n, "{}") for n in range(1, 11) for room in range(4)))
    for received in await asyncio.gather(*tasks):
        assert sorted(received) == list(range(1, 11))


async def test_a_subscription_is_in_place_when_subscribe_returns(broker: BroadcastBroker) -> None:
    # The first event of a room is published right after its first socket joins; a SUBSCRIBE
    # still on its way to Redis would lose it for good (nothing later refills it).
    for n in range(20):
        async with broker.subscribe(f"fresh{n}") as subscription:
            await broker.publish(f"fresh{n}", 1, f'{{"n":{n}}}')
            assert (await asyncio.wait_for(subscription.get(), PROMPTLY)).event_id == 1


async def test_a_frame_too_large_for_the_broker_travels_as_its_id(broker: BroadcastBroker) -> None:
    large = '{"type": "bracket_updated", "data": "' + "x" * 20000 + '"}'
    async with broker.subscribe("big") as subscription:
        await broker.publish("big", 7, large)
        await broker.publish("big", 8, "{}")
        first, second = [await asyncio.wait_for(subscription.get(), PROMPTLY) for _ in range(2)]
    assert (first.event_id, second.event_id, second.frame) == (7, 8, "{}")
    assert first.frame == (None if broker.is_postgres else large)


async def test_events_published_together_arrive_in_order_on_their_channels(broker: BroadcastBroker) -> None:
    # A score is stored in its match's room and its tournament's, and both go out at once
    # (pipelined on Redis): each room sees its own ids in order, the large frame as its id.
    large = '{"type": "bracket_updated", "data": "' + "x" * 20000 + '"}'
    async with broker.subscribe("match") as match, broker.subscribe("tournament") as tournament:
        for n in range(1, 6):
            await broker.publish_all([("match", n, f'{{"n":{n}}}'), ("tournament", 10 + n, f'{{"t":{n}}}')])
        await broker.publish_all([("tournament", 16, large), ("match", 6, "{}"), ("tournament", 17, "{}")])
        await broker.publish_all([("match", 7, "{}")])
        await broker.publish_all([])
        got_match = [await asyncio.wait_for(match.get(), PROMPTLY) for _ in range(7)]
        got_tournament = [await asyncio.wait_for(tournament.get(), PROMPTLY) for _ in range(7)]
    assert [m.event_id for m in got_match] == [1, 2, 3, 4, 5, 6, 7]
    assert [m.frame for m in got_match[:5]] == [f'{{"n":{n}}}' for n in range(1, 6)]
    assert [m.event_id for m in got_tournament] == [11, 12, 13, 14, 15, 16, 17]
    assert got_tournament[5].frame == (None if broker.is_postgres else large)


@pytest.fixture
async def redis() -> AsyncIterator[RedisServer]:
    server = await RedisServer().start()
    yield server
    if server.process is not None:
        server.process.send_signal(signal.SIGCONT)
    await server.stop()


class PrivateServer:
    def __init__(self, redis: RedisServer | None, cluster: PostgresCluster | None) -> None:
        self.redis, self.cluster = redis, cluster

    @property
    def url(self) -> str:
        if self.redis is not None:
            return self.redis.url
        assert self.cluster is not None
        return f"postgres://postgres@127.0.0.1:{self.cluster.port}/postgres"

    async def stop(self) -> None:
        await (self.redis.stop() if self.redis else asyncio.to_thread(self.cluster.stop))  # type: ignore[union-attr]

    async def start(self) -> None:
        await (self.redis.start() if self.redis else asyncio.to_thread(self.cluster.start))  # type: ignore[union-attr]


@pytest.fixture(params=["redis", "postgres"])
async def private(request: pytest.FixtureRequest) -> AsyncIterator[PrivateServer]:
    if request.param == "redis":
        server = await RedisServer().start()
        try:
            yield PrivateServer(server, None)
        finally:
            await server.stop()
    else:
        cluster = request.getfixturevalue("postgres_outage")
        yield PrivateServer(None, cluster)


async def test_a_lost_connection_fails_subscribers_promptly_and_comes_back(private: PrivateServer) -> None:
    broker = await connected_broker(private.url)
    try:
        async with broker.subscribe("room") as subscription:
            get = subscription.get()
            waiting = asyncio.create_task(get)

            def suspended() -> bool:  # started, and so waiting: the next message is get()'s only await
                return inspect.getcoroutinestate(get) == inspect.CORO_SUSPENDED

            await wait_until(suspended, PROMPTLY, "get() waiting for a message")
            stopped = time.monotonic()
            await private.stop()
            with pytest.raises(BrokerUnavailable):
                await asyncio.wait_for(waiting, PROMPTLY)
            assert time.monotonic() - stopped < PROMPTLY
            with pytest.raises(BrokerUnavailable):
                await subscription.get()  # and every later one
        assert broker.health().startswith("unavailable: ")
        with pytest.raises(BrokerUnavailable):
            await broker.publish("room", 1, "{}")
        with pytest.raises(BrokerUnavailable):
            await broker.publish_all([("room", 1, "{}"), ("other", 1, "{}")])
        with pytest.raises(BrokerUnavailable):
            async with broker.subscribe("room"):
                pass

        await private.start()
        await wait_until(lambda: broker.health() == "ok", 10, "the broker reconnects by itself")
        async with broker.subscribe("room") as subscription:
            await broker.publish("room", 2, "{}")
            assert (await asyncio.wait_for(subscription.get(), PROMPTLY)).event_id == 2
    finally:
        await broker.disconnect()


async def test_a_broker_that_stops_answering_is_noticed(redis: RedisServer) -> None:
    # SIGSTOP: the TCP connection stays open and nothing comes back, as with a dead host.
    broker = await connected_broker(redis.url, ping_interval=0.2, pong_timeout=0.5)
    try:
        async with broker.subscribe("room") as subscription:
            assert redis.process is not None
            redis.process.send_signal(signal.SIGSTOP)
            with pytest.raises(BrokerUnavailable, match="PING"):
                await asyncio.wait_for(subscription.get(), 3)
            assert "PING" in broker.health()
            redis.process.send_signal(signal.SIGCONT)
        await wait_until(lambda: broker.health() == "ok", 10, "the broker reconnects by itself")
    finally:
        await broker.disconnect()


async def test_twenty_spectators_join_rooms_concurrently(server: RunningServer) -> None:
    t = await server.factory.seeded(8)
    first, second = [await server.factory.match(match_id) for match_id in t.match_ids[:2]]
    # 7 in the tournament room (the first start reaches them first), 13 in two match rooms
    rooms = [
        (f"/ws/tournament/{t.id}/", first.id)
        if n % 3 == 0
        else (f"/ws/match/{(first, second)[n % 2].id}/", (first, second)[n % 2].id)
        for n in range(20)
    ]
    joined = asyncio.Event()
    established: list[str] = []

    async def spectate(path: str) -> int:
        async with server.client(path, server.guest_token()) as ws:
            last = (await ws.established())["last_event_id"]
            established.append(path)
            await joined.wait()
            (frame,) = await ws.events(1, timeout=10)
            assert frame["id"] == last + 1 and frame["type"] == "match_started"
            return int(frame["data"]["match_id"])

    spectators = [asyncio.create_task(spectate(path)) for path, _ in rooms]
    # Every snapshot taken before the first start: a socket counted in its room may still be
    # reading its snapshot, which would then already show the start.
    await wait_until(lambda: len(established) == 20, 10, "20 spectators established")
    joined.set()
    for match in (first, second):
        await matches.start_match(server.realtime.db, server.realtime.hub, t.organizer, match.id)
    assert await asyncio.gather(*spectators) == [expected for _, expected in rooms]


async def test_a_room_closed_while_its_subscription_waits_for_redis_stops_listening(redis: RedisServer) -> None:
    # broadcaster's subscribe, cancelled half-way, fails with a KeyError in its clean-up; taken
    # for a broker failure, the room's listener used to subscribe again for ever.
    broker = await connected_broker(redis.url)
    attempts = 0

    async def listen() -> None:  # as the hub's room listener does
        nonlocal attempts
        while True:
            attempts += 1
            try:
                async with broker.subscribe("closing") as subscription:
                    await subscription.get()
            except BrokerUnavailable:
                await asyncio.sleep(0.05)  # the retry pause of a listener, as the hub's; not a wait for anything

    try:
        assert redis.process is not None
        redis.process.send_signal(signal.SIGSTOP)  # the SUBSCRIBE goes out; no confirmation comes
        task = asyncio.create_task(listen())

        def subscribe_sent() -> bool:  # redis-py counts a channel in once its SUBSCRIBE is written
            link = broker._link
            return link is not None and isinstance(link.backend, RedisBackend) and link.backend._pubsub.subscribed

        await wait_until(subscribe_sent, PROMPTLY, "the SUBSCRIBE sent, its confirmation awaited")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, PROMPTLY)
        assert attempts == 1
    finally:
        assert redis.process is not None
        redis.process.send_signal(signal.SIGCONT)
        await broker.disconnect()
