"""The database: connecting (SQLite in WAL mode, or PostgreSQL through asyncpg) and migrating."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import databases
from alembic import command
from alembic.config import Config

log = logging.getLogger("matchcast.db")
# What each driver raises when an insert breaks a unique constraint (databases passes them through).
UNIQUE_VIOLATIONS = (sqlite3.IntegrityError, asyncpg.UniqueViolationError)
MIGRATIONS = Path(__file__).parent / "migrations"


def utcnow() -> datetime:
    """Naive UTC, the form every timestamp column stores."""
    return datetime.now(UTC).replace(tzinfo=None)


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


class Database(databases.Database):
    """`databases.Database` plus `write()`, the one way services open a write transaction."""

    def __init__(self, url: str) -> None:
        self.is_sqlite = url.startswith("sqlite")
        # aiosqlite opens a connection per query; a generous busy timeout lets writers of
        # other processes (the command line) wait instead of failing.
        super().__init__(url, **({"timeout": 30} if self.is_sqlite else {"min_size": 1, "max_size": 10}))
        self._write_lock: asyncio.Lock | None = None

    async def connect(self) -> None:
        await super().connect()
        if self.is_sqlite:
            await self.execute("PRAGMA journal_mode=WAL")

    @asynccontextmanager
    async def write(self) -> AsyncIterator[None]:
        """A write transaction.

        PostgreSQL: a plain transaction; services lock the rows they change (SELECT ... FOR UPDATE).
        SQLite has no row locks, and a deferred transaction that reads and then writes fails at
        once with "database is locked" when another writer got in between, whatever the busy
        timeout. So writers take the write lock up front (BEGIN IMMEDIATE, which does wait for the
        busy timeout, so other processes queue too) after queueing on a lock of this process.
        """
        if not self.is_sqlite:
            async with self.transaction():
                yield
            return
        if self._write_lock is None:
            self._write_lock = asyncio.Lock()
        async with self._write_lock, self.connection() as connection:
            await connection.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                await connection.execute("ROLLBACK")
                raise
            await connection.execute("COMMIT")

@asynccontextmanager
async def connected(url: str) -> AsyncIterator[Database]:
    """A connected Database for one piece of work (the command line, tests)."""
    db = Database(url)
    await db.connect()
    try:
        yield db
    finally:
        await db.disconnect()


def sync_url(url: str) -> str:
    """The URL alembic's synchronous engine uses for the same database."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def upgrade(url: str, revision: str = "head") -> None:
    """Create or migrate the schema to `revision`. Blocking: call it in a thread from async code."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    command.upgrade(config, revision)
