"""`databases`' two backends, running Prepared statements (db/compiled.py) from a plan.

For every statement `databases` formats the SQL, puts the values in the driver's order through
their converters, and builds the result's column maps (on SQLite also SQLAlchemy's result
metadata). With the compilation itself cached that was still most of the CPU of a statement:
cProfile of `matchcast serve` under score updates, 100-150 µs of it per statement where SQLite
answers in 5-20 µs. A Prepared statement is always the same text, so all of that is done once
per kind of database, in its `Plan`; a call only orders its values. Every other statement goes
through `databases` as before, and the rows are the same Records either way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg
from databases.backends.common.records import Record, Row, create_column_maps
from databases.backends.postgres import PostgresBackend, PostgresConnection
from databases.backends.sqlite import CompilationContext, SQLiteBackend, SQLiteConnection
from sqlalchemy.engine.cursor import CursorResultMetaData
from sqlalchemy.exc import InvalidRequestError

from matchcast.db.compiled import Bound, Prepared

log = logging.getLogger("matchcast.db")
COMPILE_KWARGS = {"render_postcompile": True}  # what `databases` compiles with
POOL_CLOSE_GRACE = 5.0  # seconds for the pool's connections to come back at shutdown
_REQUIRED = object()


class Plan:
    """How one backend runs one Prepared statement: the SQL as the driver takes it, where each
    value goes and how it is converted, and how its rows are read."""

    __slots__ = ("columns", "context", "dialect", "metadata", "parameters", "sql")

    def __init__(self, compiled: Any, dialect: Any, sql: str, names: Sequence[str]) -> None:
        self.sql = sql
        self.dialect = dialect
        defaults = compiled.construct_params(_check=False)  # the values the statement holds itself
        required = {name for name, bind in compiled.binds.items() if bind.required}
        processors = compiled._bind_processors
        self.parameters: tuple[tuple[str, Callable[[Any], Any] | None, Any], ...] = tuple(
            (name, processors.get(name), _REQUIRED if name in required else defaults[name]) for name in names
        )
        self.columns = (compiled._result_columns, create_column_maps(compiled._result_columns))
        self.context: Any = None  # SQLite's, for its result metadata
        self.metadata: Any = None  # SQLite's, from the first result's description

    @classmethod
    def of(cls, prepared: Prepared, dialect: Any, make: Callable[[Any, Any], Plan]) -> Plan:
        """`prepared`'s plan on `dialect`, made once."""
        plan: Plan | None = prepared.plans.get(dialect.name)  # one paramstyle per backend
        if plan is None:
            plan = prepared.plans[dialect.name] = make(prepared.compiled(dialect, COMPILE_KWARGS), dialect)
        return plan

    def arguments(self, values: dict[str, Any]) -> list[Any]:
        arguments = []
        for name, process, default in self.parameters:
            value = values.get(name, default)
            if value is _REQUIRED:
                raise InvalidRequestError(f"A value is required for bind parameter {name!r} of: {self.sql}")
            arguments.append(value if process is None else process(value))
        return arguments

    def record(self, row: Any) -> Record:
        result_columns, column_maps = self.columns
        return Record(row, result_columns, self.dialect, column_maps)

    def sqlite_records(self, rows: Sequence[Any], description: Any) -> list[Record]:
        metadata = self.metadata
        if metadata is None:  # the same columns every time: SQLAlchemy caches it the same way
            metadata = self.metadata = CursorResultMetaData(self.context, description)
        return [self.record(Row(metadata, metadata._processors, metadata._keymap, row)) for row in rows]


def sqlite_plan(compiled: Any, dialect: Any) -> Plan:
    plan = Plan(compiled, dialect, compiled.string, compiled.positiontup)
    context = dialect.execution_ctx_cls()  # what `databases` builds for each statement
    context.dialect = dialect
    context.result_column_struct = (
        compiled._result_columns,
        compiled._ordered_columns,
        compiled._textual_ordered_columns,
        compiled._ad_hoc_textual,
        compiled._loose_column_name_matching,
    )
    plan.context = CompilationContext(context)
    return plan


def postgres_plan(compiled: Any, dialect: Any) -> Plan:
    names = sorted(compiled.params)  # numbered as `databases` numbers them: $1, $2, ... by name
    sql = compiled.string % {name: f"${i}" for i, name in enumerate(names, start=1)}
    return Plan(compiled, dialect, sql, names)


class Planned:
    """Mixed into a backend's connection: the plan of a Prepared statement, None for any other."""

    _dialect: Any
    make_plan: Callable[[Any, Any], Plan]

    def _plan(self, query: Any) -> Plan | None:
        return Plan.of(query.prepared, self._dialect, self.make_plan) if isinstance(query, Bound) else None


class PreparedSQLiteConnection(Planned, SQLiteConnection):
    """Connections from the pool `PreparedSQLiteBackend` is given (InlineConnections)."""

    make_plan = staticmethod(sqlite_plan)

    async def fetch_all(self, query: Any) -> list[Record]:
        plan = self._plan(query)
        if plan is None:
            return list(await super().fetch_all(query))
        async with self._connection.execute(plan.sql, plan.arguments(query.values)) as cursor:
            return plan.sqlite_records(await cursor.fetchall(), cursor.description)

    async def fetch_one(self, query: Any) -> Record | None:
        plan = self._plan(query)
        if plan is None:
            return await super().fetch_one(query)
        async with self._connection.execute(plan.sql, plan.arguments(query.values)) as cursor:
            row = await cursor.fetchone()
            return None if row is None else plan.sqlite_records([row], cursor.description)[0]

    async def execute(self, query: Any) -> Any:
        plan = self._plan(query)
        if plan is None:
            return await super().execute(query)
        async with self._connection.execute(plan.sql, plan.arguments(query.values)) as cursor:
            return cursor.rowcount if cursor.lastrowid == 0 else cursor.lastrowid  # as `databases` answers


class PreparedSQLiteBackend(SQLiteBackend):
    """SQLite over `pool` (db/database.py's ReusingSQLitePool)."""

    def __init__(self, url: Any, pool: Any, **options: Any) -> None:
        super().__init__(url, **options)
        self._pool = pool

    def connection(self) -> PreparedSQLiteConnection:
        return PreparedSQLiteConnection(self._pool, self._dialect)


class PreparedPostgresConnection(Planned, PostgresConnection):
    make_plan = staticmethod(postgres_plan)

    async def fetch_all(self, query: Any) -> list[Record]:
        plan = self._plan(query)
        if plan is None:
            return list(await super().fetch_all(query))
        return [plan.record(row) for row in await self._connection.fetch(plan.sql, *plan.arguments(query.values))]

    async def fetch_one(self, query: Any) -> Record | None:
        plan = self._plan(query)
        if plan is None:
            return await super().fetch_one(query)
        row = await self._connection.fetchrow(plan.sql, *plan.arguments(query.values))
        return None if row is None else plan.record(row)

    async def execute(self, query: Any) -> Any:
        plan = self._plan(query)
        if plan is None:
            return await super().execute(query)
        return await self._connection.fetchval(plan.sql, *plan.arguments(query.values))


class PreparedPostgresBackend(PostgresBackend):
    def connection(self) -> PreparedPostgresConnection:
        return PreparedPostgresConnection(self, self._dialect)

    async def disconnect(self) -> None:
        """asyncpg's Pool.close waits, without bound, for every connection to come back: one that a
        task never releases (cancelled at the wrong moment) would hold a shutdown for ever. Past
        the grace the pool is terminated: its connections are closed where they are."""
        pool: asyncpg.Pool | None = self._pool  # type: ignore[has-type]  # databases leaves it unannotated
        assert pool is not None, "DatabaseBackend is not running"
        self._pool = None
        try:
            await asyncio.wait_for(pool.close(), POOL_CLOSE_GRACE)
        except TimeoutError:
            log.warning("database connections still in use %gs into the shutdown: closed", POOL_CLOSE_GRACE)
            pool.terminate()
