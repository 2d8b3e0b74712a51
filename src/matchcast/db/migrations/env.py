"""Alembic environment: migrations run on a synchronous engine (sqlite3 or psycopg), one process
at a time.

Every worker of `matchcast serve --workers N`, and every instance started by a deploy, upgrades
the schema on start. Without a lock two of them ran the same migration at once on a new database:
SQLite's DDL is not transactional here, so one failed half-way ("duplicate column name") and
uvicorn's supervisor stopped the whole server. The lock is held for the whole run, and the
current revision is read only once it is held, so the second finds nothing left to do.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import context

from matchcast.db.tables import metadata

# pg_advisory_lock's key: any constant no other lock of this database uses ("matchcast" in ASCII).
POSTGRES_LOCK_KEY = 0x6D61746368636173


@contextmanager
def one_at_a_time(connection: sa.Connection) -> Iterator[None]:
    if connection.dialect.name == "postgresql":
        # A session lock, so it outlives the transaction alembic commits; released on unlock,
        # or when a killed process's connection ends.
        connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": POSTGRES_LOCK_KEY})
        connection.commit()  # alembic's own transaction must be the one that runs the migrations
        try:
            yield
        finally:
            connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": POSTGRES_LOCK_KEY})
            connection.commit()
        return
    database = connection.engine.url.database
    if not database or database == ":memory:":
        yield  # a private database: no other process can reach it
        return
    # A file beside the database, not the database itself: closing any descriptor of the database
    # would drop sqlite3's own POSIX locks on it in this process. flock's lock dies with the process.
    with open(database + ".migrations-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


config = context.config
url = config.get_main_option("sqlalchemy.url") or "sqlite:///./matchcast.db"
engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
with engine.connect() as connection, one_at_a_time(connection):
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
