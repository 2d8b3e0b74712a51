"""PostgreSQL: a connection goes back to the pool without asyncpg's reset statements (database.py,
keep_session), yet a transaction left open is still rolled back."""

from __future__ import annotations

import asyncpg
import pytest

from matchcast.db.database import Database
from tests.support.databases import fresh_postgres_database

pytestmark = pytest.mark.timeout(60)


async def last_statement(url: str, pid: int) -> str:
    """What the pooled connection `pid` last sent, as the server saw it (from another connection)."""
    observer = await asyncpg.connect(url)
    try:
        return str(await observer.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1", pid))
    finally:
        await observer.close()


async def test_a_released_connection_sends_no_reset_statements() -> None:
    async with fresh_postgres_database(migrate=False) as url:
        db = Database(url, pool_size=1)
        await db.connect()
        try:
            pid = await db.fetch_val("SELECT pg_backend_pid()")
            assert await last_statement(url, pid) == "SELECT pg_backend_pid()"  # not RESET ALL and the rest
            assert await db.fetch_val("SELECT pg_backend_pid()") == pid  # the one connection, reused
        finally:
            await db.disconnect()


async def test_a_transaction_left_open_is_rolled_back_on_release() -> None:
    async with fresh_postgres_database(migrate=False) as url:
        db = Database(url, pool_size=1)
        await db.connect()
        try:
            await db.execute("CREATE TABLE t (n integer)")
            async with db.connection() as connection:
                raw = connection.raw_connection
                await raw.execute("BEGIN")
                await raw.execute("INSERT INTO t VALUES (1)")
            assert await db.fetch_val("SELECT count(*) FROM t") == 0
        finally:
            await db.disconnect()
