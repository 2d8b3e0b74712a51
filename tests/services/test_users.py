import asyncio
from typing import Any

import pytest

from matchcast import errors
from matchcast.db.database import Database
from matchcast.services import users
from matchcast.services.actors import load_actor
from tests.support.databases import dump
from tests.support.factories import Factory


async def test_create_user_stores_a_hash_and_authenticates(db: Database) -> None:
    user_id = await users.create_user(db, "alice", "s3cret-password", is_staff=True)
    row = await users.find_user(db, "alice")
    assert row.id == user_id and row.is_staff is True
    assert "s3cret-password" not in row.password_hash and row.password_hash.startswith("$argon2")
    assert (await users.authenticate(db, "alice", "s3cret-password")).id == user_id
    assert await users.authenticate(db, "alice", "wrong-password") is None
    assert await users.authenticate(db, "nobody", "s3cret-password") is None
    assert await users.authenticate(db, None, "s3cret-password") is None
    assert await users.authenticate(db, "alice", 12345678) is None
    actor = await load_actor(db, user_id)
    assert actor is not None
    assert (actor.user_id, actor.username, actor.is_staff) == (user_id, "alice", True)


async def test_duplicate_username_is_a_conflict_and_changes_nothing(db: Database) -> None:
    await users.create_user(db, "bob", "password-one")
    before = await dump(db)
    with pytest.raises(errors.DomainError) as caught:
        await users.create_user(db, "bob", "password-two")
    assert caught.value.code == errors.CONFLICT and "bob" in caught.value.message
    assert await dump(db) == before


# Any: some are deliberately not strings; create_user must refuse them at run time.
BAD_CREDENTIALS: list[tuple[Any, Any]] = [
    ("", "long-enough"),
    ("has space", "long-enough"),
    ("x" * 51, "long-enough"),
    (None, "long-enough"),
    ("carol", "short"),
    ("carol", "p" * 1025),
    ("carol", None),
]


async def test_bad_username_or_password_is_refused(db: Database) -> None:
    before = await dump(db)
    for username, password in BAD_CREDENTIALS:
        with pytest.raises(errors.DomainError) as caught:
            await users.create_user(db, username, password)
        assert caught.value.code == errors.VALIDATION_ERROR, (username, password)
    assert await dump(db) == before


async def test_usernames_and_list(db: Database, factory: Factory) -> None:
    zed = await factory.user("zed")
    amy = await factory.user("amy")
    assert await users.usernames(db, [zed.user_id, amy.user_id, None]) == {zed.user_id: "zed", amy.user_id: "amy"}
    assert await users.usernames(db, [None]) == {}
    assert [u.username for u in await users.list_users(db)] == ["amy", "zed"]
    assert await load_actor(db, 999_999) is None


async def test_concurrent_creation_of_one_name_creates_one_user(db: Database) -> None:
    results = await asyncio.gather(
        *(users.create_user(db, "dup", "password-123") for _ in range(3)), return_exceptions=True
    )
    assert sorted(type(r).__name__ for r in results) == ["DomainError", "DomainError", "int"], results
    assert all(r.code == errors.CONFLICT for r in results if isinstance(r, errors.DomainError))
    assert len(await users.list_users(db)) == 1
