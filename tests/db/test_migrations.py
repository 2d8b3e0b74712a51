from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from matchcast.db.database import MIGRATIONS, sync_url, upgrade
from matchcast.db.tables import metadata
from tests.support.databases import fresh_postgres_database_sync, sqlite_url


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield sqlite_url(tmp_path, "empty.db")
    else:
        with fresh_postgres_database_sync(migrate=False) as url:
            yield url


def head_revision() -> str | None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()


def inspect(url: str) -> tuple[set[str], str | None, list[Any]]:
    engine = sa.create_engine(sync_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection)
            tables = set(sa.inspect(connection).get_table_names())
            return tables, context.get_current_revision(), compare_metadata(context, metadata)
    finally:
        engine.dispose()


def test_upgrade_creates_every_table_and_is_idempotent(empty_url: str) -> None:
    assert inspect(empty_url)[0] == set()
    upgrade(empty_url)
    first = inspect(empty_url)
    upgrade(empty_url)
    assert inspect(empty_url) == first
    tables, revision, differences = first
    assert tables == set(metadata.tables) | {"alembic_version"}
    assert revision == head_revision()
    assert differences == [], f"the migrations and tables.py disagree: {differences}"


def test_upgrade_keeps_existing_rows(database_url: str) -> None:
    engine = sa.create_engine(sync_url(database_url), poolclass=sa.pool.NullPool)
    users = metadata.tables["users"]
    with engine.begin() as connection:
        connection.execute(
            users.insert().values(username="kept", password_hash="x", is_staff=False, created_at=sa.func.now())
        )
    upgrade(database_url)
    with engine.connect() as connection:
        assert connection.execute(sa.select(users.c.username)).scalars().all() == ["kept"]
    engine.dispose()
