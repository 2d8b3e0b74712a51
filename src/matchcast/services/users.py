"""Users: creation with hashed passwords, authentication, password changes and the session epoch."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import sqlalchemy as sa

from matchcast import errors
from matchcast.db.database import UNIQUE_VIOLATIONS, Database, utcnow
from matchcast.db.tables import users
from matchcast.protocol import is_utf8
from matchcast.security import hash_password, verify_password
from matchcast.services.actors import Actor

USERNAME = re.compile(r"[A-Za-z0-9_.\-]{1,50}")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
# argon2 takes ~0.1 s of CPU on purpose: run it on two threads of its own, so logins never stall
# the event loop that delivers every live frame (and a login storm waits its turn).
_HASHING = ThreadPoolExecutor(max_workers=2, thread_name_prefix="argon2")


async def hashing(function: Any, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(_HASHING, function, *args)


def validate_username(username: Any) -> str:
    if not isinstance(username, str) or not USERNAME.fullmatch(username):
        raise errors.invalid("username must be 1 to 50 letters, digits, '.', '_' or '-'")
    return username


def validate_password(password: Any) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD or not is_utf8(password):
        raise errors.invalid(f"password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return password


async def create_user(db: Database, username: str, password: str, is_staff: bool = False) -> int:
    password_hash = await new_password_hash(username, password)
    async with db.write():
        return await insert_user(db, username, password_hash, is_staff)


async def new_password_hash(username: str, password: str) -> str:
    """Validate a new account's name and password; hash the password (before any transaction:
    argon2 is slow on purpose, and a write transaction holds SQLite's write lock)."""
    validate_username(username)
    validate_password(password)
    return str(await hashing(hash_password, password))


async def insert_user(db: Database, username: str, password_hash: str, is_staff: bool = False) -> int:
    """Add the account inside the caller's write transaction; refuse a name that is taken."""
    taken = errors.DomainError(errors.CONFLICT, f"username {username!r} is taken; pick another")
    if await find_user(db, username) is not None:
        raise taken
    query = users.insert().values(
        username=username, password_hash=password_hash, is_staff=is_staff, created_at=utcnow()
    )
    try:
        return int(await db.fetch_val(query.returning(users.c.id)))
    except UNIQUE_VIOLATIONS:
        # Another writer (a concurrent request, the command line) took the name since the check.
        raise taken from None


async def find_user(db: Database, username: str) -> Any:
    return await db.fetch_one(users.select().where(users.c.username == username))


async def authenticate(db: Database, username: Any, password: Any) -> Any:
    """The user row for a right username and password, else None (same cost either way)."""
    if not isinstance(username, str) or not isinstance(password, str) or len(password) > MAX_PASSWORD:
        return None
    row = await find_user(db, username) if USERNAME.fullmatch(username) else None
    ok = await hashing(verify_password, row.password_hash if row else None, password)
    return row if ok and row is not None else None


async def usernames(db: Database, ids: Iterable[int | None]) -> dict[int, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = await db.fetch_all(sa.select(users.c.id, users.c.username).where(users.c.id.in_(wanted)))
    return {row.id: row.username for row in rows}


async def list_users(db: Database) -> list[Any]:
    return list(await db.fetch_all(sa.select(users.c.id, users.c.username).order_by(users.c.username)))


async def session_actor(db: Database, user_id: int, epoch: Any) -> Actor | None:
    """The user of a session cookie, or None when the user is gone or the session was ended
    (logout or a password change bumped the epoch since the cookie was signed): one query."""
    query = sa.select(users.c.id, users.c.username, users.c.is_staff, users.c.session_epoch)
    row = await db.fetch_one(query.where(users.c.id == user_id))
    if row is None or not isinstance(epoch, int) or epoch != row.session_epoch:
        return None
    return Actor(row.id, row.username, bool(row.is_staff), row.session_epoch)


async def end_sessions(db: Database, user_id: int) -> None:
    """End every session of the user, on every instance: their cookies carry the old epoch."""
    await db.write_one(
        users.update()
        .where(users.c.id == user_id)
        .values(session_epoch=users.c.session_epoch + 1)
        .returning(users.c.id)
    )


async def change_password(db: Database, username: str, password: str) -> None:
    """Set a new password and end every session opened with the old one."""
    password_hash = await new_password_hash(username, password)
    changed = await db.write_one(
        users.update()
        .where(users.c.username == username)
        .values(password_hash=password_hash, session_epoch=users.c.session_epoch + 1)
        .returning(users.c.id)
    )
    if changed is None:
        raise errors.not_found(f"no user named {username!r}; create one with: matchcast user create NAME --password P")
