"""Realtime tests: a real server per test on a fresh database, for each broadcast+database stack.

MATCHCAST_TEST_STACKS picks the stacks (comma-separated); the default runs them all. Tests of
several instances and of broker outages need a shared broker: they run on the selected stacks that
have one (`shared_stack`), or on both such stacks when only memory-sqlite is selected.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support.databases import fresh_postgres_database, sqlite_url
from tests.support.processes import PostgresCluster
from tests.support.server import RunningServer, running_server, test_settings

STACKS = {
    "memory-sqlite": ("memory://", "sqlite"),
    "redis-postgres": ("redis://127.0.0.1:6379", "postgresql"),
    "postgres-postgres": ("postgres://postgres@127.0.0.1:5432/test", "postgresql"),
}
SELECTED = [s.strip() for s in os.environ.get("MATCHCAST_TEST_STACKS", ",".join(STACKS)).split(",") if s.strip()]

SHARED_STACKS = [s for s in SELECTED if STACKS[s][0] != "memory://"] or [s for s in STACKS if s != "memory-sqlite"]


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


@pytest.fixture(params=SHARED_STACKS)
def shared_stack(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(broadcast URL, stack name) of a stack whose broker several processes share."""
    return STACKS[request.param][0], request.param


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster of this test session alone, which outage tests stop and start again."""
    cluster = PostgresCluster().init()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture
def postgres_outage(private_postgres: PostgresCluster) -> Iterator[PostgresCluster]:
    """The private cluster, running at the start of the test and again at its end."""
    if not private_postgres.running():
        private_postgres.start()
    yield private_postgres
    if not private_postgres.running():
        private_postgres.start()
