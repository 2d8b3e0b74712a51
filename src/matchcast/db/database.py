"""The database: connecting (SQLite in WAL mode, or PostgreSQL through asyncpg) and migrating."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import databases
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from databases.backends.sqlite import SQLitePool
from databases.core import DatabaseURL

from matchcast.db.backends import PreparedPostgresBackend, PreparedSQLiteBackend
from matchcast.db.compiled import CompiledCache, Prepared
from matchcast.db.inline_sqlite import InlineConnection

log = logging.getLogger("matchcast.db")
# What each driver raises when an insert breaks a unique constraint (databases passes them through).
UNIQUE_VIOLATIONS = (sqlite3.IntegrityError, asyncpg.UniqueViolationError)
MIGRATIONS = Path(__file__).parent / "migrations"
# Connections one process uses at most (SQLite: plus one for the writer): requests past it wait.
DEFAULT_POOL_SIZE = 10
BEGIN_IMMEDIATE, COMMIT, ROLLBACK = (Prepared(sa.text(sql)) for sql in ("BEGIN IMMEDIATE", "COMMIT", "ROLLBACK"))


def utcnow() -> datetime:
    """Naive UTC, the form every timestamp column stores."""
    return datetime.now(UTC).replace(tzinfo=None)


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


class ReusingSQLitePool(SQLitePool):
    """At most `size` SQLite connections in use, kept open between uses.

    databases' own SQLite pool opens a new aiosqlite connection, with a thread of its own and
    three files (the database, its WAL and its shared memory), on every acquire, without bound: a
    burst of 1000 requests made 1000 threads and 3000 open files, and requests failed once the
    process ran out of files. Here a request past `size` waits (in arrival order) for a connection
    to come back. Connections are kept between uses: opening one was over a third of the CPU of a
    score update. A connection given back inside a transaction (its ROLLBACK was cancelled) is
    closed, which rolls the transaction back. They are InlineConnections (db/inline_sqlite.py):
    statements run on the event loop's thread, without aiosqlite's thread per connection.

    One connection more is reserved for `writer`, the task holding the process's write lock
    (Database.write): tasks that hold a connection and then wait for that lock must never keep
    the lock's holder from getting one, or all would wait for ever.
    """

    def __init__(self, url: DatabaseURL, size: int = DEFAULT_POOL_SIZE, **options: Any) -> None:
        super().__init__(url, **options)
        self.size = size
        self.writer: asyncio.Task[Any] | None = None
        self._slots = asyncio.Semaphore(size)  # first come, first served
        self._reserved: InlineConnection | None = None  # the writer's, when it has one
        self._idle: list[InlineConnection] = []

    async def acquire(self) -> InlineConnection:
        reserved = self.writer is not None and self.writer is asyncio.current_task()
        if not reserved:
            await self._slots.acquire()
        try:
            connection = self._idle.pop() if self._idle else await self._open()
        except BaseException:
            if not reserved:
                self._slots.release()
            raise
        if reserved:
            assert self._reserved is None, "the writer holds one connection at a time (databases: one per task)"
            self._reserved = connection
        return connection

    async def fill(self) -> None:
        """Open every connection the pool may use, now: a process that runs out of files later
        (too many sockets) still has its database."""
        while len(self._idle) < self.size + 1:
            self._idle.append(await self._open())

    async def _open(self) -> InlineConnection:
        connection = InlineConnection.open(self._database, **self._options)
        # WAL's recommended setting: a commit is written to the WAL but not fsynced (checkpoints
        # are). A killed process loses nothing, a power cut may lose the last commits and never
        # corrupts. FULL's fsync on each commit (a score is two) was a fifth of an update's CPU.
        await connection.execute("PRAGMA synchronous=NORMAL")
        return connection

    async def release(self, connection: InlineConnection) -> None:
        try:
            if connection.reusable:
                self._idle.append(connection)
            else:
                await connection.close()
        finally:
            if connection is self._reserved:
                self._reserved = None
            else:
                self._slots.release()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.close()


async def keep_session(connection: asyncpg.Connection) -> None:
    """What asyncpg's pool does to a connection given back, besides rolling back a transaction
    left open (it always does that): nothing. Its default sends a reset query (unlock advisory
    locks, close cursors, UNLISTEN, RESET ALL), a second round trip for every query, while this
    application leaves no such session state behind (its LISTEN has a connection of its own)."""


class Database(databases.Database):
    """`databases.Database` plus `write()`, the one way services open a write transaction, and
    compiled SQL reused across executions (db/compiled.py)."""

    def __init__(self, url: str, pool_size: int = DEFAULT_POOL_SIZE) -> None:
        self.is_sqlite = url.startswith("sqlite")
        # A generous busy timeout lets writers of other processes (the command line) wait
        # instead of failing. asyncpg's pool, like ours, makes acquires past max_size wait.
        postgres = {"min_size": 1, "max_size": pool_size, "reset": keep_session}
        super().__init__(url, **({"timeout": 30} if self.is_sqlite else postgres))
        self._write_lock = asyncio.Lock()  # this process's writers queue here (SQLite)
        self.compiled = CompiledCache()
        self._sqlite_pool: ReusingSQLitePool | None = None
        # databases 0.9 has no option for these: its backend is replaced (db/backends.py)
        if self.is_sqlite:
            self._sqlite_pool = ReusingSQLitePool(self.url, pool_size, **self.options)
            self._backend = PreparedSQLiteBackend(self.url, self._sqlite_pool, **self.options)
        else:
            self._backend = PreparedPostgresBackend(self.url, **self.options)

    async def connect(self) -> None:
        await super().connect()
        if self.is_sqlite:
            await self.execute("PRAGMA journal_mode=WAL")

    async def open_pool(self) -> None:
        """SQLite: open all the pool's connections now (for a server; ReusingSQLitePool.fill)."""
        if self._sqlite_pool is not None:
            await self._sqlite_pool.fill()

    async def disconnect(self) -> None:
        await super().disconnect()
        if self.is_sqlite:
            assert self._sqlite_pool is not None
            await self._sqlite_pool.close()  # the kept connections and their threads

    # Statements go through the compiled cache; with `values`, databases changes the statement
    # itself (query.values(...)), so those are left as they are.
    async def fetch_all(self, query: Any, values: dict[str, Any] | None = None) -> list[Any]:
        return list(await super().fetch_all(self._cached(query, values), values))

    async def fetch_one(self, query: Any, values: dict[str, Any] | None = None) -> Any:
        return await super().fetch_one(self._cached(query, values), values)

    async def fetch_val(self, query: Any, values: dict[str, Any] | None = None, column: Any = 0) -> Any:
        return await super().fetch_val(self._cached(query, values), values, column)

    async def execute(self, query: Any, values: dict[str, Any] | None = None) -> Any:
        return await super().execute(self._cached(query, values), values)

    def _cached(self, query: Any, values: dict[str, Any] | None) -> Any:
        return self.compiled.prepare(query) if values is None else query

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
        async with self._write_lock, self._as_writer(), self.connection() as connection:
            await connection.execute(BEGIN_IMMEDIATE())
            try:
                yield
            except BaseException:
                await connection.execute(ROLLBACK())
                raise
            await connection.execute(COMMIT())

    async def write_one(self, query: Any) -> Any:
        """Run one writing statement and return its first row (UPDATE ... RETURNING).

        One statement is atomic by itself: no transaction around it. On SQLite it still queues
        on this process's write lock, because meeting another writer inside SQLite means its
        busy handler, which sleeps in steps of up to 100 ms.
        """
        if not self.is_sqlite:
            return await self.fetch_one(query)
        async with self._write_lock, self._as_writer():
            return await self.fetch_one(query)

    @asynccontextmanager
    async def _as_writer(self) -> AsyncIterator[None]:
        """The write lock's holder takes the pool's reserved connection (ReusingSQLitePool)."""
        assert self._sqlite_pool is not None
        self._sqlite_pool.writer = asyncio.current_task()
        try:
            yield
        finally:
            self._sqlite_pool.writer = None


@asynccontextmanager
async def connected(url: str, pool_size: int = DEFAULT_POOL_SIZE) -> AsyncIterator[Database]:
    """A connected Database for one piece of work (the command line, tests)."""
    db = Database(url, pool_size)
    await db.connect()
    try:
        yield db
    finally:
        await db.disconnect()


def sync_url(url: str) -> str:
    """The URL alembic's synchronous engine uses for the same database."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def upgrade(url: str, revision: str = "head") -> None:
    """Create or migrate the schema to `revision`. Blocking: call it in a thread from async code."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    command.upgrade(config, revision)
