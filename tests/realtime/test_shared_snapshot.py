"""Joins share one snapshot read per room while nothing happens in it (realtime/snapshots.py):
what a socket is told on joining must not change."""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack

import pytest

from matchcast.realtime.snapshots import SnapshotCache
from tests.support.server import RunningServer


async def test_a_join_after_an_event_sees_it_in_the_snapshot_or_right_after_it(server: RunningServer) -> None:
    _t, match = await server.factory.live_match()
    path = f"/ws/match/{match.id}/"
    async with (
        server.client(path, server.token(match.participant1_id)) as player,
        server.client(path, server.guest_token()) as early,
    ):
        await player.established()
        before = await early.established()
        assert before["state"]["participant1_score"] == 0
        await player.send({"type": "score_update", "participant1_score": 3, "participant2_score": 1})
        scored = await early.recv_type("score_updated")
        async with server.client(path, server.guest_token()) as late:
            after = await late.established()
            # Within the shared read's second the snapshot may be the earlier one: the event
            # the room delivered since then follows it at once, from the room's recent events.
            if after["last_event_id"] < scored["id"]:
                assert after == {**after, "last_event_id": before["last_event_id"], "state": before["state"]}
                assert await late.recv_type("score_updated") == scored
            else:
                assert (after["state"]["participant1_score"], after["state"]["participant2_score"]) == (3, 1)


async def test_a_shared_snapshot_older_than_the_room_is_brought_up_to_date_in_order(server: RunningServer) -> None:
    server.realtime.hub.snapshots.ttl = 60  # however slow this machine, the late joiner shares the early read
    _t, match = await server.factory.live_match()
    path = f"/ws/match/{match.id}/"
    async with (
        server.client(path, server.token(match.participant1_id)) as player,
        server.client(path, server.guest_token()) as early,
    ):
        await player.established()
        first = (await early.established())["last_event_id"]
        scored = []
        for n in range(1, 4):
            await player.send({"type": "score_update", "participant1_score": n, "participant2_score": 0})
            scored.append(await early.recv_type("score_updated"))
        async with server.client(path, server.guest_token()) as late:
            welcome = await late.established()
            await player.send({"type": "score_update", "participant1_score": 9, "participant2_score": 0})
            live = await early.recv_type("score_updated")
            got = [await late.recv_type("score_updated") for _ in range(live["id"] - welcome["last_event_id"])]
    assert welcome["last_event_id"] == first  # the snapshot read when `early` joined
    assert [f["id"] for f in got] == list(range(first + 1, live["id"] + 1))
    assert got == [*scored, live]


async def test_joins_at_once_get_one_consistent_snapshot_and_every_later_event(server: RunningServer) -> None:
    _t, match = await server.factory.live_match()
    path = f"/ws/match/{match.id}/"
    async with AsyncExitStack() as stack:
        player = await stack.enter_async_context(server.client(path, server.token(match.participant1_id)))
        await player.established()
        guests = [await stack.enter_async_context(server.client(path, server.guest_token())) for _ in range(8)]
        welcomes = await asyncio.gather(*(guest.established() for guest in guests))
        assert len({w["last_event_id"] for w in welcomes}) == 1
        assert all(w["state"] == welcomes[0]["state"] for w in welcomes)
        await player.send({"type": "score_update", "participant1_score": 2, "participant2_score": 0})
        for guest in guests:
            frame = await guest.recv_type("score_updated")
            assert frame["id"] == welcomes[0]["last_event_id"] + 1


async def test_the_cache_shares_a_read_within_its_ttl_and_drops_a_failed_one() -> None:
    cache = SnapshotCache(ttl=60)
    reads: list[int] = []

    async def read() -> tuple[int, dict[str, object]]:
        reads.append(1)
        await asyncio.sleep(0)
        return len(reads), {"n": len(reads)}

    together = await asyncio.gather(*(cache.get("match_1", read) for _ in range(5)))
    assert reads == [1] and all(r == (1, {"n": 1}) for r in together)
    assert await cache.get("match_1", read) == (1, {"n": 1})  # still shared: the ttl has not passed

    async def broken() -> tuple[int, dict[str, object]]:
        raise ConnectionError("database down")

    with pytest.raises(ConnectionError):
        await cache.get("match_2", broken)
    assert await cache.get("match_2", read) == (2, {"n": 2})  # not kept: retried
    cache.forget("match_1")
    assert await cache.get("match_1", read) == (3, {"n": 3})


async def test_the_cache_reads_again_once_the_ttl_has_passed() -> None:
    cache = SnapshotCache(ttl=0.05)
    reads: list[float] = []

    async def read() -> tuple[int, dict[str, object]]:
        reads.append(time.monotonic())
        return len(reads), {}

    assert await cache.get("match_1", read) == (1, {})
    while await cache.get("match_1", read) == (1, {}):  # bounded by the test's timeout
        await asyncio.sleep(0.01)
    assert reads[1] - reads[0] >= 0.05
