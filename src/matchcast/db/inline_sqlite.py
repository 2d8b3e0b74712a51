"""SQLite connections whose statements run on the event loop's thread.

aiosqlite runs every call in a thread of its connection, and `databases` makes three calls per
statement (execute, fetch, close the cursor): three hand-overs to that thread and back, each
70-100 µs of CPU (queue, futex, the loop's wake-up), while SQLite answers this application's
statements (indexed, a few rows) in 1-10 µs. A score update is six statements: the hand-overs
were over a third of its CPU (docs/performance.md, "SQLite on the event loop's thread").

`InlineConnection` is the part of aiosqlite's `Connection` that `databases`' SQLite backend and
the pool (db/database.py) use, over a `sqlite3.Connection` called directly. Its busy timeout is
zero: a statement that finds the database locked by another process (the command line, another
worker) fails at once, having changed nothing, and runs again in a worker thread with the
configured busy timeout. So the event loop never waits on another process's lock; writers of
this process queue on Database.write's lock before they reach SQLite. In WAL mode readers never
wait for a lock.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Iterable
from typing import Any, TypeVar

T = TypeVar("T")
FETCH_CHUNK = 64  # rows a cursor iterates at a time


def is_busy(error: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY or one of its extended codes: another connection holds the lock."""
    return error.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY


class InlineConnection:
    """One SQLite connection, used by one task at a time (the pool's rule)."""

    def __init__(self, raw: sqlite3.Connection, busy_timeout: float) -> None:
        self._raw = raw
        self._busy_timeout_ms = int(busy_timeout * 1000)
        self._waiting_call: asyncio.Future[Any] | None = None  # a call gone to a thread, until it ends

    @classmethod
    def open(cls, database: str, timeout: float = 5.0, **options: Any) -> InlineConnection:
        """`timeout`: how long a statement may wait for another process's lock (in a thread)."""
        raw = sqlite3.connect(database, timeout=0, isolation_level=None, check_same_thread=False, **options)
        return cls(raw, timeout)

    @property
    def waiting(self) -> bool:
        """A call runs in a thread (waiting for a lock); its caller may have been cancelled."""
        return self._waiting_call is not None

    @property
    def reusable(self) -> bool:
        """Open, outside a transaction, and no call left in a thread by a cancelled task."""
        try:
            return not self.waiting and not self._raw.in_transaction
        except sqlite3.ProgrammingError:  # closed
            return False

    def execute(self, sql: str, parameters: Iterable[Any] = ()) -> _PendingCursor:
        """A cursor that has run `sql`: await it, or use it in `async with` (closed at the end)."""
        return _PendingCursor(self._execute(sql, parameters))

    def cursor(self) -> _PendingCursor:
        return _PendingCursor(self._cursor())

    async def close(self) -> None:
        if self._waiting_call is not None:  # its caller was cancelled: the thread still uses it
            await asyncio.wait([self._waiting_call])
        self._raw.close()  # an open transaction is rolled back

    async def _execute(self, sql: str, parameters: Iterable[Any]) -> InlineCursor:
        cursor = await self._cursor()
        return await cursor.execute(sql, parameters)

    async def _cursor(self) -> InlineCursor:
        return InlineCursor(self, self._raw.cursor())

    async def run(self, call: Callable[..., T], *args: Any) -> T:
        """`call(*args)` now; if the database is locked by another connection, again in a thread
        that waits up to the busy timeout for it."""
        try:
            return call(*args)
        except sqlite3.OperationalError as error:
            if not is_busy(error) or self._busy_timeout_ms <= 0:
                raise
        # Shielded: a cancelled caller must not leave the thread using a connection the pool
        # hands on; the pool closes it instead, once the call ends (close()).
        waiting = self._waiting_call = asyncio.ensure_future(asyncio.to_thread(self._waiting, call, *args))
        try:
            result: T = await asyncio.shield(waiting)
            return result
        finally:
            if waiting.done():
                self._waiting_call = None

    def _waiting(self, call: Callable[..., T], *args: Any) -> T:
        self._raw.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
        try:
            return call(*args)
        finally:
            self._raw.execute("PRAGMA busy_timeout = 0")


class InlineCursor:
    """aiosqlite's `Cursor` as `databases` uses it."""

    def __init__(self, connection: InlineConnection, raw: sqlite3.Cursor) -> None:
        self._connection = connection
        self._raw = raw

    async def execute(self, sql: str, parameters: Iterable[Any] = ()) -> InlineCursor:
        await self._connection.run(self._raw.execute, sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return await self._connection.run(self._raw.fetchone)

    async def fetchmany(self, size: int = FETCH_CHUNK) -> list[Any]:
        return await self._connection.run(self._raw.fetchmany, size)

    async def fetchall(self) -> list[Any]:
        return await self._connection.run(self._raw.fetchall)

    async def close(self) -> None:
        if not self._connection.waiting:
            self._raw.close()
        # else its caller was cancelled while the cursor ran in a thread: the pool closes the
        # whole connection once that call ends (InlineConnection.close)

    @property
    def description(self) -> Any:
        return self._raw.description

    @property
    def lastrowid(self) -> int | None:
        return self._raw.lastrowid

    @property
    def rowcount(self) -> int:
        return self._raw.rowcount

    async def __aiter__(self) -> AsyncIterator[Any]:
        while rows := await self.fetchmany():
            for row in rows:
                yield row

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _PendingCursor:
    """What `execute()` and `cursor()` return, as aiosqlite's do: awaitable, or an async context
    manager that closes the cursor."""

    __slots__ = ("_cursor", "_pending")

    def __init__(self, pending: Coroutine[Any, Any, InlineCursor]) -> None:
        self._pending = pending
        self._cursor: InlineCursor | None = None

    def __await__(self) -> Generator[Any, None, InlineCursor]:
        return self._pending.__await__()

    async def __aenter__(self) -> InlineCursor:
        self._cursor = await self._pending
        return self._cursor

    async def __aexit__(self, *exc: object) -> None:
        if self._cursor is not None:
            await self._cursor.close()
