"""SQLite connections are kept between uses, never handed on inside a transaction, closed on disconnect."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from matchcast.db.database import ReusingSQLitePool, connected, upgrade
from matchcast.db.tables import users
from tests.support.databases import sqlite_url

pytestmark = pytest.mark.timeout(30)


def sqlite_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if "_connection_worker_thread" in t.name}


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = sqlite_url(tmp_path)
    upgrade(url)
    return url


async def test_queries_and_transactions_reuse_kept_connections(url: str) -> None:
    before = sqlite_threads()
    async with connected(url) as db:
        for _ in range(20):
            assert await db.fetch_val("SELECT 1") == 1
            async with db.write():
                await db.fetch_val(users.select().limit(1))
        opened = sqlite_threads() - before
        assert 1 <= len(opened) <= ReusingSQLitePool.KEEP
        assert all(thread.daemon for thread in opened)

    def join_all() -> None:
        for thread in opened:
            thread.join(5)

    await asyncio.wait_for(asyncio.to_thread(join_all), 10)
    assert not sqlite_threads() & opened, "disconnect closes every kept connection"


async def test_concurrent_readers_get_connections_of_their_own(url: str) -> None:
    async with connected(url) as db:
        all_holding = asyncio.Barrier(8)

        async def read() -> None:
            async with db.connection() as connection:
                await connection.fetch_val("SELECT 1")
                await all_holding.wait()  # the 8 connections are in use at once

        await asyncio.wait_for(asyncio.gather(*(read() for _ in range(8))), 10)
        assert len(db._backend._pool._idle) == ReusingSQLitePool.KEEP  # the rest were closed


async def test_a_connection_given_back_inside_a_transaction_is_closed_not_kept(url: str) -> None:
    async with connected(url) as db:
        pool = db._backend._pool
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
