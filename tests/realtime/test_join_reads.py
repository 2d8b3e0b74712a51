"""What a join reads from the database: nothing for a guest once its room is known (web/guest_access.py
and the hub's shared snapshot), one query for a logged-in user, who is checked on every join."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from websockets.exceptions import ConnectionClosed

from matchcast.db.database import Database
from matchcast.db.tables import tournaments
from matchcast.protocol import SPECTATOR
from matchcast.services.actors import NO_ROOM, Standing
from matchcast.services.users import end_sessions
from matchcast.web.guest_access import GuestAccess
from tests.support.server import RunningServer


@contextmanager
def queries_of_new_tasks(db: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every use of `db` (each query takes a connection) by a task started inside the block: a
    join's (its ASGI task, the reads it starts), not the server's background tasks (webhook polls)."""
    old_tasks = asyncio.all_tasks()
    used: list[str] = []
    connection: Callable[[], Any] = db.connection

    def counting() -> Any:
        task = asyncio.current_task()
        if task not in old_tasks:
            used.append(repr(task.get_coro()) if task else "no task")
        return connection()

    monkeypatch.setattr(db, "connection", counting)
    try:
        yield used
    finally:
        monkeypatch.undo()


async def test_a_guest_join_uses_no_database_once_its_room_is_known(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    t, match = await server.factory.live_match()
    rt = server.realtime
    rt.guests.ttl = rt.hub.snapshots.ttl = 60  # the shared reads outlive this test's joins
    for path in (f"/ws/match/{match.id}/", f"/ws/tournament/{t.id}/"):
        async with server.client(path, server.guest_token()) as first:
            await first.established()  # reads the room's access and snapshot
            with queries_of_new_tasks(rt.db, monkeypatch) as used:
                async with server.client(path, server.guest_token()) as second:
                    assert (await second.established())["role"] == SPECTATOR
        assert used == [], path


async def test_a_users_join_is_one_query_and_a_revoked_token_is_refused_at_the_next(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    t, match = await server.factory.live_match()
    rt = server.realtime
    rt.hub.snapshots.ttl = 60
    path = f"/ws/match/{match.id}/"
    token = server.token(match.participant1_id)
    async with server.client(path, server.guest_token()) as guest:
        await guest.established()  # the room and its snapshot are read
        with queries_of_new_tasks(rt.db, monkeypatch) as used:
            async with server.client(path, token) as player:
                assert (await player.established())["role"] == "participant"
        assert len(used) == 1, used
        await end_sessions(rt.db, match.participant1_id)  # a logout
        async with server.client(path, token) as player:
            assert await player.closed() == 4001
        async with server.client(f"/ws/tournament/{t.id}/", token) as player:
            assert await player.closed() == 4001


async def test_guests_are_refused_soon_after_a_tournament_is_made_private(server: RunningServer) -> None:
    """Nothing in the application makes a tournament private; an operator may, in the database.
    Every join of a guest after the shared read's `ttl` sees it."""
    t, match = await server.factory.live_match()
    rt = server.realtime
    rt.guests.ttl = 0.3
    paths = (f"/ws/match/{match.id}/", f"/ws/tournament/{t.id}/")
    for path in paths:
        async with server.client(path, server.guest_token()) as guest:
            await guest.established()
    await rt.db.execute(sa.update(tournaments).where(tournaments.c.id == t.id).values(is_public=False))
    changed = asyncio.get_running_loop().time()

    async def refused(path: str) -> float:
        while True:  # admitted (by a read from before the change) until the close comes
            async with server.client(path, server.guest_token()) as guest:
                try:
                    assert (await guest.recv())["type"] == "connection_established"
                except ConnectionClosed as closed:
                    assert closed.rcvd is not None and closed.rcvd.code == 4003
                    return asyncio.get_running_loop().time()

    for path in paths:
        assert await asyncio.wait_for(refused(path), 5) - changed < rt.guests.ttl + 1.0
    async with server.client(paths[0], server.token(t.organizer.user_id)) as organizer:
        assert (await organizer.established())["role"] == "organizer"


WATCHER = Standing(SPECTATOR, True)


class Reads:
    def __init__(self, standing: Standing = WATCHER) -> None:
        self.count = 0
        self.standing = standing
        self.fail = False

    async def __call__(self) -> Standing:
        self.count += 1
        await asyncio.sleep(0)
        if self.fail:
            raise ConnectionError("database down")
        return self.standing


async def test_the_cache_shares_a_read_until_its_ttl_and_keeps_no_failure() -> None:
    now = [0.0]
    cache = GuestAccess(ttl=1, clock=lambda: now[0])
    reads = Reads()
    together = await asyncio.gather(*(cache.get("match_1", reads) for _ in range(5)))
    assert reads.count == 1 and together == [WATCHER] * 5
    now[0] = 0.99
    assert await cache.get("match_1", reads) == WATCHER and reads.count == 1

    now[0] = 1.0  # the read is a ttl old: the room is read again
    missing = Reads(NO_ROOM)
    assert await cache.get("match_1", missing) == NO_ROOM and missing.count == 1

    broken = Reads()
    broken.fail = True
    with pytest.raises(ConnectionError):
        await cache.get("match_2", broken)
    assert await cache.get("match_2", reads) == WATCHER and reads.count == 2


async def test_the_cache_forgets_its_oldest_rooms_past_its_bound() -> None:
    cache = GuestAccess(ttl=60, max_rooms=3)
    reads = Reads()
    for room in ("a", "b", "c", "d"):
        await cache.get(room, reads)
    assert reads.count == 4
    await cache.get("b", reads)
    await cache.get("a", reads)  # forgotten when "d" came: read again
    assert reads.count == 5
