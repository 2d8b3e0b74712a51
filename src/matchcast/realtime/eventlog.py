"""The event log: every broadcast event stored per room with contiguous ids 1, 2, 3, ...

Ids come from `room_counters`, incremented with an upsert that locks the room's row until commit,
so concurrent publishers, in this process or another instance, get contiguous ids in commit order.
Rooms are locked in sorted order, so two publishers never deadlock. On PostgreSQL one event whose
staleness the database can judge is stored by one statement instead of five round trips
(`matchcast_log_event`, migration 0006), with the same locks in the same order.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from matchcast.db.compiled import Prepared
from matchcast.db.database import Database, utcnow
from matchcast.db.staleness import STALE, StaleCheck, StaleChecks
from matchcast.db.tables import events, room_counters
from matchcast.protocol import Event, encode, encode_event


@dataclass(frozen=True)
class StoredEvent:
    room: str
    id: int
    type: str
    frame: str  # the complete frame text, encoded once for every subscriber of the room


Refresh = Callable[[Event], Awaitable[Event]]


async def store(
    db: Database, batch: Sequence[Event], refresh: Refresh | None = None, stale_check: StaleChecks | None = None
) -> list[StoredEvent]:
    """Number and store `batch` in one transaction; return one StoredEvent per (event, room).

    `refresh` sees each event once its rooms are locked, so what it reads is at least as new as
    anything stored before in those rooms; it returns the event to store (rebuilt or as it was,
    for the same rooms). Where `stale_check` gives a check for a lone event, PostgreSQL stores it
    in one statement, and only a stale one goes through `refresh`.
    """
    # One event, each room once (the function numbers each room by one).
    if (
        stale_check is not None
        and len(batch) == 1
        and not db.is_sqlite
        and len(set(batch[0].rooms)) == len(batch[0].rooms)
    ):
        check = stale_check(batch[0])
        if check is not None:
            logged = await _log_in_one_statement(db, batch[0], check)
            if logged is not None:
                return logged
    per_room = Counter(room for event in batch for room in event.rooms)
    if not per_room:
        return []
    now = utcnow()
    async with db.write():
        # Numbering locks the rooms' counters until commit ...
        next_id = {room: last - per_room[room] + 1 for room, last in (await _advance_counters(db, per_room)).items()}
        if refresh is not None:  # ... so what refresh reads now is at least as new as the log
            batch = [await refresh(event) for event in batch]
        rows = []
        stored: list[StoredEvent] = []
        for event in batch:
            data_json = encode(event.data)
            for room in event.rooms:
                event_id = next_id[room]
                next_id[room] += 1
                rows.append({"room": room, "id": event_id, "type": event.type, "payload": data_json, "created_at": now})
                stored.append(StoredEvent(room, event_id, event.type, encode_event(event.type, event_id, data_json)))
        if rows:
            query = _insert(events, ("room", "id", "type", "payload", "created_at"), len(rows))
            await db.execute(query(**_values(rows)))
    return stored


LOG_EVENT = Prepared(
    sa.text(
        "SELECT numbered_rooms, numbered_ids FROM matchcast_log_event("
        ":rooms, :type, :payload, :created_at, :stale_query, :stale_args)"
    )
    .bindparams(
        sa.bindparam("rooms", type_=sa.ARRAY(sa.String)),
        sa.bindparam("type", type_=sa.String),
        sa.bindparam("payload", type_=sa.Text),
        sa.bindparam("created_at", type_=sa.DateTime),
        sa.bindparam("stale_query", type_=sa.Text),
        sa.bindparam("stale_args", type_=sa.ARRAY(sa.Integer)),
    )
    .columns(sa.column("numbered_rooms", sa.ARRAY(sa.String)), sa.column("numbered_ids", sa.ARRAY(sa.Integer)))
)


async def _log_in_one_statement(db: Database, event: Event, check: StaleCheck) -> list[StoredEvent] | None:
    """Store `event` with matchcast_log_event; None (nothing stored) when it went stale."""
    if not event.rooms:
        return []
    data_json = encode(event.data)
    statement = LOG_EVENT(
        rooms=list(event.rooms),
        type=event.type,
        payload=data_json,
        created_at=utcnow(),
        stale_query=check.query,
        stale_args=list(check.args),
    )
    try:
        row = await db.fetch_one(statement)
    except Exception as exc:
        if getattr(exc, "sqlstate", None) == STALE:
            return None
        raise
    assert row is not None
    ids = dict(zip(row.numbered_rooms, row.numbered_ids, strict=True))
    return [
        StoredEvent(room, ids[room], event.type, encode_event(event.type, ids[room], data_json)) for room in event.rooms
    ]


async def _advance_counters(db: Database, counts: Counter[str]) -> dict[str, int]:
    """Add `counts` to the rooms' counters in one statement; return each room's new last id.

    The rows go in sorted room order, the order in which PostgreSQL locks them.
    """
    rows = [{"room": room, "last_id": counts[room]} for room in sorted(counts)]
    query = _insert(room_counters, ("room", "last_id"), len(rows), ADD_TO_COUNTER, returning=True)
    return {row.room: int(row.last_id) for row in await db.fetch_all(query(**_values(rows)))}


# The same in SQLite (3.35 and later) and PostgreSQL.
ADD_TO_COUNTER = " ON CONFLICT (room) DO UPDATE SET last_id = room_counters.last_id + excluded.last_id"


def _values(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {f"{column}_{i}": value for i, row in enumerate(rows) for column, value in row.items()}


@functools.lru_cache(maxsize=64)
def _insert(table: sa.Table, columns: tuple[str, ...], count: int, tail: str = "", returning: bool = False) -> Prepared:
    """A multi-row INSERT of `count` rows as text with typed parameters (`column_i`), plus `tail`;
    with `returning`, it returns `columns` (typed).

    SQLAlchemy never reuses the compilation of a multi-row VALUES clause (db/compiled.py); this
    is compiled once per row count.
    """
    rows = ", ".join("(" + ", ".join(f":{column}_{i}" for column in columns) + ")" for i in range(count))
    binds = [sa.bindparam(f"{column}_{i}", type_=table.c[column].type) for i in range(count) for column in columns]
    listed = ", ".join(columns)
    sql = f"INSERT INTO {table.name} ({listed}) VALUES {rows}{tail}" + (f" RETURNING {listed}" if returning else "")
    text = sa.text(sql).bindparams(*binds)
    return Prepared(text.columns(*(table.c[column] for column in columns)) if returning else text)


async def last_id(db: Database, room: str) -> int:
    value = await db.fetch_val(sa.select(room_counters.c.last_id).where(room_counters.c.room == room))
    return int(value or 0)


async def read_after(db: Database, room: str, after_id: int, limit: int) -> list[StoredEvent]:
    """Stored events of `room` with id > after_id, oldest first, at most `limit`."""
    query = (
        sa.select(events.c.id, events.c.type, events.c.payload)
        .where(events.c.room == room, events.c.id > after_id)
        .order_by(events.c.id)
        .limit(limit)
    )
    return [StoredEvent(room, r.id, r.type, encode_event(r.type, r.id, r.payload)) for r in await db.fetch_all(query)]


async def oldest_id(db: Database, room: str) -> int | None:
    value = await db.fetch_val(sa.select(sa.func.min(events.c.id)).where(events.c.room == room))
    return None if value is None else int(value)


async def payload_bytes(db: Database, room: str, after_id: int, until_id: int) -> int:
    """The size of the payloads of `room`'s events after_id < id <= until_id, summed by the database."""
    query = sa.select(sa.func.coalesce(sa.func.sum(sa.func.length(events.c.payload)), 0)).where(
        events.c.room == room, events.c.id > after_id, events.c.id <= until_id
    )
    return int(await db.fetch_val(query) or 0)
