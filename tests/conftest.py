"""Every database test runs on SQLite and on PostgreSQL, each time on a fresh migrated database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from matchcast.db.database import Database, connected, upgrade
from matchcast.services.publisher import DiscardingPublisher
from tests.support.databases import fresh_postgres_database_sync, sqlite_url
from tests.support.factories import Factory


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = sqlite_url(tmp_path)
        upgrade(url)
        yield url
    else:
        with fresh_postgres_database_sync() as url:
            yield url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    async with connected(database_url) as database:
        yield database


@pytest.fixture
def publisher() -> DiscardingPublisher:
    return DiscardingPublisher()


@pytest.fixture
def factory(db: Database, publisher: DiscardingPublisher) -> Factory:
    return Factory(db, publisher)
