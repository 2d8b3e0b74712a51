"""Fresh databases for tests: a new PostgreSQL database per use, dropped afterwards, or a SQLite file.

The PostgreSQL server is the one of `MATCHCAST_TEST_POSTGRES_URL` (default: the local `test`
database, used only as the place to run CREATE/DROP DATABASE from).
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import asyncpg
import sqlalchemy as sa

from matchcast.db import tables
from matchcast.db.database import Database, upgrade

ADMIN_URL = os.environ.get("MATCHCAST_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
T = TypeVar("T")


def _url_with_database(admin_url: str, name: str) -> str:
    return admin_url.rsplit("/", 1)[0] + "/" + name


async def create_postgres_database(admin_url: str = ADMIN_URL, template: str | None = None) -> str:
    """Create a uniquely named database (empty, or a copy of `template`) and return its URL."""
    name = f"mc_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    finally:
        await conn.close()
    return _url_with_database(admin_url, name)


_templates: dict[str, str] = {}
_templates_lock = threading.Lock()


def migrated_template(admin_url: str = ADMIN_URL) -> str:
    """The name of a database migrated once per test process; copying it beats migrating each copy.

    Thread-safe and blocking. Dropped when the process exits.
    """
    with _templates_lock:
        if admin_url not in _templates:
            url = run_in_thread(lambda: create_postgres_database(admin_url))
            upgrade(url)
            _templates[admin_url] = url.rsplit("/", 1)[1]
            atexit.register(lambda: asyncio.run(drop_postgres_database(url, admin_url)))
        return _templates[admin_url]


async def drop_postgres_database(url: str, admin_url: str = ADMIN_URL) -> None:
    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(admin_url)
    try:
        # FORCE: a test that failed half-way may have left a pool connected.
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def connections_to(url: str, admin_url: str = ADMIN_URL) -> int:
    """How many backends are connected to the database of `url` now (pg_stat_activity)."""
    conn = await asyncpg.connect(admin_url)
    try:
        return int(
            await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = $1", url.rsplit("/", 1)[1])
        )
    finally:
        await conn.close()


@asynccontextmanager
async def fresh_postgres_database(migrate: bool = True, admin_url: str = ADMIN_URL) -> AsyncIterator[str]:
    """`async with fresh_postgres_database() as url:` a new (migrated) database, dropped on exit."""
    template = await asyncio.to_thread(migrated_template, admin_url) if migrate else None
    url = await create_postgres_database(admin_url, template)
    try:
        yield url
    finally:
        await drop_postgres_database(url, admin_url)


def run_in_thread(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion on its own loop in a worker thread.

    For sync fixtures: asyncio.run() on the main thread would replace the event loop that
    pytest-asyncio has set for the test.
    """
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = asyncio.run(make())
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return cast(T, result["value"])


@contextmanager
def fresh_postgres_database_sync(migrate: bool = True, admin_url: str = ADMIN_URL) -> Iterator[str]:
    """The same as `fresh_postgres_database`, for synchronous code (sync fixtures, subprocess tests)."""
    template = migrated_template(admin_url) if migrate else None
    url = run_in_thread(lambda: create_postgres_database(admin_url, template))
    try:
        yield url
    finally:
        run_in_thread(lambda: drop_postgres_database(url, admin_url))


def sqlite_url(directory: Path, name: str = "test.db") -> str:
    return f"sqlite:///{directory / name}"


async def dump(db: Database) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, in primary-key order: compare two dumps to prove nothing changed."""
    state = {}
    for table in tables.metadata.sorted_tables:
        query = sa.select(table).order_by(*table.primary_key.columns)
        state[table.name] = [dict(row._mapping) for row in await db.fetch_all(query)]
    return state
