"""SQLite on the event loop's thread: a statement that meets another connection's lock waits for
it in a thread, with the busy timeout, while the loop goes on serving; nothing is left half done."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from matchcast.db.database import Database, connected, upgrade
from matchcast.db.inline_sqlite import InlineConnection
from matchcast.db.tables import users
from tests.support.databases import sqlite_url

pytestmark = pytest.mark.timeout(30)
NEW_USER = users.insert().values(username="new", password_hash="x", is_staff=False, created_at=datetime(2026, 1, 1))


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = sqlite_url(tmp_path)
    upgrade(url)
    return url


@pytest.fixture
def other_writer(url: str) -> Iterator[sqlite3.Connection]:
    """A connection of its own, as another process's would be, to hold the write lock."""
    other = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False)
    yield other
    other.close()


async def count_users(db: Database) -> int:
    return int(await db.fetch_val("SELECT count(*) FROM users"))


async def test_a_write_waits_in_a_thread_for_another_writers_lock_while_the_loop_serves(
    url: str, other_writer: sqlite3.Connection
) -> None:
    async with connected(url) as db:
        other_writer.execute("BEGIN IMMEDIATE")
        write = asyncio.create_task(db.write_one(NEW_USER))
        # The loop is free: readers are answered (WAL) while the write waits for the lock.
        for _ in range(20):
            assert await asyncio.wait_for(count_users(db), 5) == 0
        assert not write.done()
        other_writer.execute("COMMIT")
        await asyncio.wait_for(write, 10)
        assert await count_users(db) == 1


async def test_a_write_still_locked_at_the_busy_timeout_fails_changes_nothing_and_the_connection_serves_on(
    url: str, other_writer: sqlite3.Connection
) -> None:
    connection = InlineConnection.open(url.removeprefix("sqlite:///"), timeout=0.2)
    other_writer.execute("BEGIN IMMEDIATE")
    try:
        insert = "INSERT INTO users (username, password_hash, is_staff, created_at) VALUES ('x', 'x', 0, '2026-01-01')"
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            await asyncio.wait_for(connection.execute(insert), 10)
        assert connection.reusable
        other_writer.execute("ROLLBACK")
        async with connection.execute("SELECT count(*) FROM users") as cursor:
            assert await cursor.fetchall() == [(0,)]
        await connection.execute(insert)  # the lock is free: at once, on the loop's thread
        async with connection.execute("SELECT username FROM users") as cursor:
            assert [row async for row in cursor] == [("x",)]
    finally:
        await connection.close()


async def test_a_caller_cancelled_while_its_statement_waits_leaves_no_connection_in_use(
    url: str, other_writer: sqlite3.Connection
) -> None:
    async with connected(url, pool_size=1) as db:
        pool = db._sqlite_pool
        assert pool is not None
        await db.open_pool()
        other_writer.execute("BEGIN IMMEDIATE")
        idle = list(pool._idle)
        write = asyncio.create_task(db.execute(NEW_USER))  # outside the write lock: waits for SQLite's
        while not [c for c in idle if c not in pool._idle and c.waiting]:
            await asyncio.sleep(0.01)
        [waiting] = [c for c in idle if c not in pool._idle]
        write.cancel()
        other_writer.execute("COMMIT")
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(write, 10)
        # The statement ran in its thread; its connection was closed once it ended, not handed on.
        assert waiting not in pool._idle and not waiting.reusable
        assert await asyncio.wait_for(count_users(db), 10) == 1
