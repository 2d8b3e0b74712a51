"""SQLite connections: at most the pool size in use (past it, acquirers wait), kept between uses,
never handed on inside a transaction, closed on disconnect; writers and readers never deadlock.

Connections are counted by the files the process has open on the database (each connection holds
the database file open), so the figures are the operating system's."""

from __future__ import annotations

import asyncio
import os
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from matchcast.db.database import Database, ReusingSQLitePool, connected, upgrade
from matchcast.db.tables import users
from tests.support.databases import sqlite_url

pytestmark = pytest.mark.timeout(30)


def open_connections(url: str) -> int:
    """How many times this process has the database file open: one per SQLite connection."""
    database = os.path.realpath(url.removeprefix("sqlite:///"))
    return sum(1 for fd in os.listdir("/proc/self/fd") if _target(fd) == database)


def _target(fd: str) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:  # closed meanwhile (the listing's own descriptor)
        return ""


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = sqlite_url(tmp_path)
    upgrade(url)
    return url


async def test_queries_and_transactions_reuse_kept_connections_on_the_event_loops_thread(url: str) -> None:
    threads = set(threading.enumerate())
    async with connected(url) as db:
        for _ in range(20):
            assert await db.fetch_val("SELECT 1") == 1
            async with db.write():
                await db.fetch_val(users.select().limit(1))
        assert 1 <= open_connections(url) <= 2  # a reader's and the writer's, each reused
        assert set(threading.enumerate()) == threads, "statements run on the event loop's thread"
    assert open_connections(url) == 0, "disconnect closes every kept connection"


async def test_readers_and_the_writer_commit_to_the_wal_without_an_fsync_each(url: str) -> None:
    async with connected(url) as db:
        assert await db.fetch_val("PRAGMA journal_mode") == "wal"
        async with db.write():
            assert await db.fetch_val("PRAGMA synchronous") == 1  # NORMAL
        together = asyncio.Barrier(3)

        async def read() -> Any:  # three connections held at once: three of the pool's
            async with db.connection():
                await together.wait()
                return await db.fetch_val("PRAGMA synchronous")

        assert await asyncio.wait_for(asyncio.gather(*(read() for _ in range(3))), 10) == [1, 1, 1]


async def test_concurrent_readers_get_connections_of_their_own(url: str) -> None:
    async with connected(url) as db:
        all_holding = asyncio.Barrier(8)

        async def read() -> None:
            async with db.connection() as connection:
                await connection.fetch_val("SELECT 1")
                await all_holding.wait()  # the 8 connections are in use at once

        await asyncio.wait_for(asyncio.gather(*(read() for _ in range(8))), 10)
        assert len(pool_of(db)._idle) == 8  # all kept: there are never more than the pool size


async def test_readers_past_the_pool_size_wait_for_a_connection_and_none_fails(url: str) -> None:
    async with connected(url, pool_size=3) as db:
        most = 0
        in_use = 0

        async def read() -> None:
            nonlocal most, in_use
            async with db.connection() as connection:
                in_use += 1
                most = max(most, in_use)
                await connection.fetch_val("SELECT 1")
                await asyncio.sleep(0.001)  # hold it a moment, so the others queue
                in_use -= 1

        await asyncio.wait_for(asyncio.gather(*(read() for _ in range(200))), 20)
        assert most == 3
        assert open_connections(url) == 3
        assert len(pool_of(db)._idle) == 3


async def test_writers_and_readers_holding_connections_never_deadlock_on_a_pool_of_two(database_url: str) -> None:
    # The hazard: every pooled connection held by tasks waiting for the write lock (a write
    # inside a connection block), while the lock's holder waits for a connection. The holder
    # takes the connection reserved for the writer instead.
    async with connected(database_url, pool_size=2) as db:
        count = 0

        async def write(n: int) -> None:
            nonlocal count
            async with db.write():
                await db.execute(
                    users.insert().values(
                        username=f"u{n}", password_hash="x", is_staff=False, created_at=datetime(2026, 1, 1)
                    )
                )
                count += 1

        async def read_then_write(n: int) -> None:
            async with db.connection():  # holds a pooled connection while it queues for the lock
                await db.fetch_val("SELECT count(*) FROM users")
                await write(n)

        async def write_one(n: int) -> None:
            await db.write_one(users.update().where(users.c.username == f"u{n}").values(is_staff=True))

        async def read() -> None:
            await db.fetch_all(users.select())

        work = [read_then_write(n) for n in range(40)]
        work += [write(100 + n) for n in range(40)] + [write_one(n) for n in range(40)] + [read() for _ in range(40)]
        await asyncio.wait_for(asyncio.gather(*work), 20)
        assert count == 80
        assert await db.fetch_val("SELECT count(*) FROM users") == 80


def pool_of(db: Database) -> ReusingSQLitePool:
    pool = db._sqlite_pool
    assert pool is not None
    return pool


async def test_a_connection_given_back_inside_a_transaction_is_closed_not_kept(url: str) -> None:
    async with connected(url) as db:
        pool = pool_of(db)
        connection = await pool.acquire()
        await connection.execute("BEGIN IMMEDIATE")
        await connection.execute(
            "INSERT INTO users (username, password_hash, is_staff, created_at) VALUES ('half', 'x', 0, '2026-01-01')"
        )
        await pool.release(connection)
        assert connection not in pool._idle
        # Closing rolled it back, and released the write lock: another writer goes ahead at once.
        async with db.write():
            assert await db.fetch_val(users.select().where(users.c.username == "half")) is None


async def test_a_server_opens_every_connection_at_start_and_never_more(url: str) -> None:
    # Opened while files are plenty: later, sockets may take every file the process may open.
    async with connected(url, pool_size=3) as db:
        await db.open_pool()
        assert open_connections(url) == 4  # the pool's 3 and the writer's

        async def read() -> None:
            async with db.connection() as connection:
                await connection.fetch_val("SELECT 1")
                await asyncio.sleep(0.001)  # hold it a moment, so the others queue

        async def write() -> None:
            async with db.write():
                await db.fetch_val("SELECT 1")

        await asyncio.wait_for(asyncio.gather(*(read() for _ in range(50)), *(write() for _ in range(10))), 20)
        assert open_connections(url) == 4
