"""Joins share one snapshot read per room while nothing happens in it (realtime/snapshots.py):
what a socket is told on joining must not change."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import pytest

from matchcast.realtime.snapshots import SnapshotCache
from tests.support.server import RunningServer


async def test_a_join_after_an_event_sees_it_in_the_snapshot_and_last_id(server: RunningServer) -> None:
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
        await early.recv_type("score_updated")  # delivered here: the room moved past the shared read
        async with server.client(path, server.guest_token()) as late:
            after = await late.established()
    assert after["last_event_id"] > before["last_event_id"]
    assert (after["state"]["participant1_score"], after["state"]["participant2_score"]) == (3, 1)


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


async def test_the_cache_shares_a_read_per_next_id_and_drops_a_failed_one() -> None:
    cache = SnapshotCache(ttl=60)
    reads: list[int] = []

    async def read() -> tuple[int, dict[str, object]]:
        reads.append(1)
        await asyncio.sleep(0)
        return len(reads), {"n": len(reads)}

    together = await asyncio.gather(*(cache.get("match_1", 5, read) for _ in range(5)))
    assert reads == [1] and all(r == (1, {"n": 1}) for r in together)
    assert await cache.get("match_1", 6, read) == (2, {"n": 2})  # an event was delivered: read again

    async def broken() -> tuple[int, dict[str, object]]:
        raise ConnectionError("database down")

    with pytest.raises(ConnectionError):
        await cache.get("match_2", 1, broken)
    assert await cache.get("match_2", 1, read) == (3, {"n": 3})  # not kept: retried
    cache.forget("match_1")
    assert await cache.get("match_1", 6, read) == (4, {"n": 4})
