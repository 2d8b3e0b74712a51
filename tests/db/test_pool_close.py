"""A shutdown never waits for ever on a PostgreSQL connection nobody gives back."""

from __future__ import annotations

import asyncio

import pytest

from matchcast.db import backends
from matchcast.db.database import Database
from tests.support.databases import connections_to, fresh_postgres_database

pytestmark = pytest.mark.timeout(30)


async def test_disconnect_closes_a_connection_still_held_after_the_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "POOL_CLOSE_GRACE", 0.5)
    async with fresh_postgres_database() as url:
        db = Database(url)
        await db.connect()
        held = db.connection()
        await held.__aenter__()  # acquired from the pool and never released (a task cut off mid-query)
        assert await held.fetch_val("SELECT 1") == 1
        await asyncio.wait_for(db.disconnect(), 10)  # asyncpg's Pool.close alone waits for ever here
        assert await connections_to(url) == 0
