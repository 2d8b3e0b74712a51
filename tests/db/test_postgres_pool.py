"""PostgreSQL connections given back to the pool get no reset query (asyncpg's default: a second
round trip after every query); asyncpg still rolls back a transaction left open (pool.py)."""

from __future__ import annotations

import asyncpg
import pytest

from matchcast.db.database import connected
from tests.support.databases import fresh_postgres_database

pytestmark = pytest.mark.timeout(30)
MARKER = "SELECT 1 AS given_back_as_it_was"


async def test_a_connection_given_back_gets_no_reset_query() -> None:
    async with fresh_postgres_database(migrate=False) as url, connected(url, pool_size=1) as db:
        await db.fetch_val(MARKER)
        admin = await asyncpg.connect(url)
        try:
            # The pool's one connection, idle: its last statement would be the reset (RESET ALL; ...).
            last = await admin.fetchval(
                "SELECT query FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND state = 'idle'"
            )
        finally:
            await admin.close()
    assert last == MARKER
