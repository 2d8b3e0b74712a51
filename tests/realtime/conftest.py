"""Realtime tests: a real server per test on a fresh database, for each broadcast+database stack.

MATCHCAST_TEST_STACKS picks the stacks (comma-separated); the default runs them all.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.databases import fresh_postgres_database, sqlite_url
from tests.support.server import RunningServer, running_server, test_settings

STACKS = {
    "memory-sqlite": ("memory://", "sqlite"),
    "redis-postgres": ("redis://127.0.0.1:6379", "postgresql"),
    "postgres-postgres": ("postgres://postgres@127.0.0.1:5432/test", "postgresql"),
}
SELECTED = [s.strip() for s in os.environ.get("MATCHCAST_TEST_STACKS", "memory-sqlite").split(",") if s.strip()]


@pytest.fixture(params=SELECTED)
async def stack(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    broadcast, database = STACKS[request.param]
    if database == "sqlite":
        yield broadcast, sqlite_url(tmp_path)
    else:
        async with fresh_postgres_database(migrate=False) as url:
            yield broadcast, url


@pytest.fixture
def overrides() -> dict[str, object]:
    """Settings a test module or test changes (override this fixture)."""
    return {}


@pytest.fixture
async def server(stack: tuple[str, str], overrides: dict[str, object]) -> AsyncIterator[RunningServer]:
    broadcast, database = stack
    prefix = "t" + uuid.uuid4().hex[:8] + "_"  # other test runs may share this Redis/PostgreSQL
    settings = test_settings(broadcast_url=broadcast, database_url=database, channel_prefix=prefix, **overrides)
    async with running_server(settings) as running:
        yield running
