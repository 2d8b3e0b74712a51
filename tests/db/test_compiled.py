"""Reused compilations answer with each statement's own values, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from matchcast.db.compiled import CompiledCache
from matchcast.db.database import Database, utcnow
from matchcast.db.tables import room_counters, users

pytestmark = pytest.mark.timeout(60)


async def add_users(db: Database, count: int) -> list[int]:
    ids = []
    for i in range(count):
        query = users.insert().values(username=f"u{i}", password_hash="x", is_staff=i % 2 == 0, created_at=utcnow())
        ids.append(int(await db.fetch_val(query.returning(users.c.id))))
    return ids


async def test_statements_of_one_shape_compile_once_and_keep_their_own_values(db: Database) -> None:
    ids = await add_users(db, 5)
    misses = db.compiled.misses
    for i, user_id in enumerate(ids):
        row = await db.fetch_one(sa.select(users.c.username, users.c.is_staff).where(users.c.id == user_id))
        assert (row.username, row.is_staff) == (f"u{i}", i % 2 == 0)  # typed: a bool, not 0/1
    assert db.compiled.misses == misses + 1
    assert db.compiled.hits >= 4


async def test_updates_and_returning_reuse_with_their_own_values(db: Database) -> None:
    ids = await add_users(db, 3)
    for n, user_id in enumerate(ids):
        query = users.update().where(users.c.id == user_id).values(username=f"renamed{n}").returning(users.c.username)
        assert await db.fetch_val(query) == f"renamed{n}"
    names = await db.fetch_all(sa.select(users.c.username).order_by(users.c.id))
    assert [r.username for r in names] == ["renamed0", "renamed1", "renamed2"]


async def test_in_lists_of_any_length_are_right(db: Database) -> None:
    ids = await add_users(db, 4)
    for chosen in (ids[:1], ids[:3], ids[1:], []):
        rows = await db.fetch_all(sa.select(users.c.id).where(users.c.id.in_(chosen)).order_by(users.c.id))
        assert [r.id for r in rows] == chosen


async def test_multi_row_values_are_compiled_each_time(db: Database) -> None:
    for count in (1, 3, 2):
        rows = [{"room": f"r{count}-{i}", "last_id": i} for i in range(count)]
        await db.execute(room_counters.insert().values(rows))
    assert await db.fetch_val(sa.select(sa.func.count()).select_from(room_counters)) == 6


async def test_limits_and_texts_keep_their_values(db: Database) -> None:
    await add_users(db, 5)
    for limit in (1, 4, 2):
        assert len(await db.fetch_all(sa.select(users.c.id).limit(limit))) == limit
    for name in ("u1", "u3"):
        query = sa.text("SELECT username FROM users WHERE username = :name").bindparams(name=name)
        assert await db.fetch_val(query) == name


def test_the_cache_is_bounded() -> None:
    from sqlalchemy.dialects import sqlite

    cache = CompiledCache(max_shapes=3)
    dialect = sqlite.dialect()
    for column in ("id", "username", "is_staff", "created_at", "password_hash"):
        query = sa.select(users.c[column]).where(users.c.id == 1)
        cache.prepare(query).compile(dialect=dialect, compile_kwargs={})
    assert len(cache._compiled) == 3


async def test_prepared_statements_run_with_the_values_of_each_call(db: Database) -> None:
    from matchcast.db.compiled import Prepared

    ids = await add_users(db, 3)
    by_id = Prepared(sa.select(users.c.username, users.c.created_at).where(users.c.id == sa.bindparam("user_id")))
    for i, user_id in enumerate(ids):
        row = await db.fetch_one(by_id(user_id=user_id))
        assert row.username == f"u{i}"
        assert row.created_at.year >= 2026  # typed: a datetime on SQLite too
    assert await db.fetch_one(by_id(user_id=-1)) is None
    with pytest.raises(sa.exc.InvalidRequestError, match="user_id"):  # a forgotten value is an error, not NULL
        await db.fetch_one(by_id())


# Prepared statements run from a plan made once per kind of database (db/backends.py): the
# records must be those `databases` gives for the same statement run its own way.


async def test_a_planned_statement_reads_the_rows_databases_reads(db: Database) -> None:
    from matchcast.db.compiled import Prepared

    await add_users(db, 3)
    prepared = Prepared(
        sa.select(users).where(users.c.id >= sa.bindparam("first", type_=sa.Integer)).order_by(users.c.id)
    )
    planned = await db.fetch_all(prepared(first=2))
    plain = await db.fetch_all(sa.select(users).where(users.c.id >= 2).order_by(users.c.id))
    assert len(planned) == 2
    assert [dict(row._mapping) for row in planned] == [dict(row._mapping) for row in plain]
    for mine, theirs in zip(planned, plain, strict=True):
        assert (mine.is_staff, mine.created_at, mine[users.c.username]) == (
            theirs.is_staff,
            theirs.created_at,
            theirs[users.c.username],
        )
        assert isinstance(mine.created_at, type(theirs.created_at))  # converted the same way


async def test_a_plan_is_made_once_and_keeps_the_values_the_statement_holds(db: Database) -> None:
    from matchcast.db.compiled import Prepared

    (user_id,) = await add_users(db, 1)
    # The literal suffix is a parameter the statement holds itself; the caller gives only the id.
    rename = Prepared(
        users.update()
        .where(users.c.id == sa.bindparam("user_id", type_=sa.Integer))
        .values(username=users.c.username + "-x")
        .returning(users.c.username)
    )
    for expected in ("u0-x", "u0-x-x"):
        assert await db.fetch_val(rename(user_id=user_id)) == expected
    assert len(rename.plans) == 1
    counted = Prepared(sa.text("UPDATE users SET is_staff = :staff WHERE id = :user_id"))
    assert await db.execute(counted(staff=True, user_id=user_id)) in (1, None)  # as databases answers
    assert (await db.fetch_one(sa.select(users.c.is_staff).where(users.c.id == user_id))).is_staff is True
