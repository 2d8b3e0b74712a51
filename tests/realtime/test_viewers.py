"""realtime/viewers.py: counting, reports, expiry of a silent instance (with fakes), then real servers."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from matchcast.cli import EventLogPublisher
from matchcast.db.database import connected
from matchcast.realtime.broker import Subscription
from matchcast.realtime.viewers import CHANNEL, ROOMS_PER_MESSAGE, STALE_INTERVALS, ViewerCounter, viewers_frame
from matchcast.security import create_guest_token
from tests.support.databases import fresh_postgres_database
from tests.support.factories import Factory
from tests.support.processes import ServerProcess
from tests.support.server import TEST_SECRET, Client, RunningServer

INTERVAL = 2.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeBroker:
    def __init__(self) -> None:
        self.published: list[tuple[str, int, str]] = []

    async def connect(self) -> None: ...

    async def disconnect(self) -> None: ...

    async def publish(self, channel: str, event_id: int, frame: str) -> None:
        self.published.append((channel, event_id, frame))

    async def publish_all(self, events: Sequence[tuple[str, int, str]]) -> None:
        self.published.extend(events)

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[Subscription]:
        raise NotImplementedError  # the tests hand reports to hear() themselves

    def health(self) -> str:
        return "ok"

    async def wait_available(self, seconds: float) -> bool:
        return True


class FakeAudience:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.told: list[tuple[str, dict[str, Any]]] = []

    def local_counts(self) -> dict[str, int]:
        return dict(self.counts)

    def tell_room(self, room: str, frame: str) -> None:
        self.told.append((room, json.loads(frame)))


def counter() -> tuple[ViewerCounter, FakeBroker, FakeAudience, FakeClock]:
    broker, audience, clock = FakeBroker(), FakeAudience(), FakeClock()
    return ViewerCounter(broker, audience, INTERVAL, clock), broker, audience, clock


def report(instance: str, counts: dict[str, int], part: int = 0) -> str:
    return json.dumps({"instance": instance, "part": part, "counts": counts})


async def test_a_room_is_told_its_count_only_when_it_changes() -> None:
    viewers, broker, audience, _ = counter()
    audience.counts = {"match_1": 2}
    await viewers.tick()
    assert audience.told == [("match_1", {"type": "viewers", "data": {"room": "match_1", "count": 2}})]
    await viewers.tick()
    assert len(audience.told) == 1  # unchanged: nothing sent
    audience.counts = {"match_1": 3}
    await viewers.tick()
    assert audience.told[-1][1]["data"]["count"] == 3
    assert all(channel == CHANNEL for channel, _, _ in broker.published)


async def test_other_instances_add_up_and_a_silent_one_stops_counting() -> None:
    viewers, _, audience, clock = counter()
    audience.counts = {"match_1": 1}
    viewers.hear(report("other", {"match_1": 4, "match_2": 9}))
    assert viewers.total("match_1") == 5
    await viewers.tick()
    assert audience.told[-1][1]["data"] == {"room": "match_1", "count": 5}
    clock.now += STALE_INTERVALS * INTERVAL + 0.1  # "other" died: no report for three intervals
    await viewers.tick()
    assert audience.told[-1][1]["data"] == {"room": "match_1", "count": 1}
    assert viewers.others == {}


async def test_an_emptied_room_is_reported_as_zero_once() -> None:
    viewers, broker, audience, _ = counter()
    audience.counts = {"match_1": 2}
    await viewers.tick()
    audience.counts = {}
    await viewers.tick()
    await viewers.tick()
    sent = [json.loads(frame)["counts"] for _, _, frame in broker.published]
    assert sent == [{"match_1": 2}, {"match_1": 0}, {}]  # the last: a heartbeat, this instance lives


async def test_a_report_in_parts_is_put_together_and_replaced_by_the_next() -> None:
    viewers, broker, audience, _ = counter()
    audience.counts = {f"match_{i}": 1 for i in range(ROOMS_PER_MESSAGE + 5)}
    await viewers.tick()
    parts = [json.loads(frame) for _, _, frame in broker.published]
    assert [p["part"] for p in parts] == [0, 1]
    other, _, _, _ = counter()
    for frame in parts:
        other.hear(json.dumps({**frame, "instance": "first"}))
    assert sum(other.others["first"][1].values()) == ROOMS_PER_MESSAGE + 5
    other.hear(report("first", {"match_0": 7}))
    assert other.others["first"][1] == {"match_0": 7}


async def test_its_own_reports_are_not_counted_twice() -> None:
    viewers, broker, audience, _ = counter()
    audience.counts = {"match_1": 2}
    await viewers.tick()
    viewers.hear(broker.published[-1][2])
    assert viewers.total("match_1") == 2


def test_the_frame_is_the_contracts() -> None:
    assert json.loads(viewers_frame("tournament_3", 12)) == {
        "type": "viewers",
        "data": {"room": "tournament_3", "count": 12},
    }


async def next_count(client: Client, expected: int, timeout: float = 10) -> dict[str, Any]:
    """Viewers frames until one says `expected` (counts may pass through others on the way); that one."""

    async def wait() -> dict[str, Any]:
        while True:
            frame = await client.recv_type("viewers", timeout=timeout)
            if frame["data"]["count"] == expected:
                return frame

    return await asyncio.wait_for(wait(), timeout)


@pytest.mark.parametrize("overrides", [{"viewers_interval_ms": 100}])
async def test_sockets_of_a_room_are_told_how_many_watch(server: RunningServer) -> None:
    _, match = await server.factory.live_match()
    path = f"/ws/match/{match.id}/"
    async with server.client(path, server.guest_token()) as first:
        assert (await first.established())["viewers"] == 1
        async with server.client(path, server.guest_token()) as second:
            assert (await second.established())["viewers"] == 2
            await next_count(first, 2)
            # The count of 1 from before it joined may still be on its way (through Redis) to it.
            frame = await next_count(second, 2)
            assert frame == {"type": "viewers", "data": {"room": f"match_{match.id}", "count": 2}}
            assert "id" not in frame
        await next_count(first, 1)


@pytest.mark.timeout(90)
async def test_two_instances_count_together_and_a_killed_one_stops_counting(tmp_path: Path) -> None:
    interval = 0.2
    async with fresh_postgres_database() as url:
        env = {
            "MATCHCAST_DATABASE_URL": url,
            "MATCHCAST_BROADCAST_URL": "redis://127.0.0.1:6379",
            "MATCHCAST_JWT_SECRET": TEST_SECRET,
            "MATCHCAST_CHANNEL_PREFIX": "t" + uuid.uuid4().hex[:8] + "_",
            "MATCHCAST_VIEWERS_INTERVAL_MS": str(int(interval * 1000)),
        }
        a, b = ServerProcess(env, log_dir=tmp_path), ServerProcess(env, log_dir=tmp_path)
        try:
            await asyncio.gather(a.start(), b.start())
            async with connected(url) as db:
                _, match = await Factory(db, EventLogPublisher(db)).live_match()
            path = f"/ws/match/{match.id}/"
            guest = create_guest_token(TEST_SECRET, 600)
            async with AsyncExitStack() as stack:
                on_a = await stack.enter_async_context(a.client(path, guest))
                await on_a.established()
                on_b = [await stack.enter_async_context(b.client(path, guest)) for _ in range(3)]
                for client in on_b:
                    await client.established()
                await next_count(on_a, 4)
                await on_b[0].ws.close()
                await next_count(on_a, 3)
                assert b.process is not None
                b.process.kill()  # kill -9: no goodbye, its share must expire
                killed_at = time.monotonic()
                await next_count(on_a, 1)
                # Three intervals of silence, plus one tick to notice and the scheduling slack.
                assert time.monotonic() - killed_at < STALE_INTERVALS * interval + 2.0
        finally:
            await asyncio.gather(a.stop(), b.stop(), return_exceptions=True)
