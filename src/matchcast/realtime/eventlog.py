"""The event log: every broadcast event stored per room with contiguous ids 1, 2, 3, ...

Ids come from `room_counters`, incremented with an upsert that locks the room's row until commit,
so concurrent publishers, in this process or another instance, get contiguous ids in commit order.
Rooms are locked in sorted order, so two publishers never deadlock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from matchcast.db.database import Database, utcnow
from matchcast.db.tables import events, room_counters
from matchcast.protocol import Event, encode, encode_event


@dataclass(frozen=True)
class StoredEvent:
    room: str
    id: int
    type: str
    frame: str  # the complete frame text, encoded once for every subscriber of the room


Refresh = Callable[[Event], Awaitable[Event]]


async def store(db: Database, batch: Sequence[Event], refresh: Refresh | None = None) -> list[StoredEvent]:
    """Number and store `batch` in one transaction; return one StoredEvent per (event, room).

    `refresh` sees each event once its rooms are locked, so what it reads is at least as new as
    anything stored before in those rooms; it returns the event to store (rebuilt or as it was,
    for the same rooms).
    """
    rooms = sorted({room for event in batch for room in event.rooms})
    if not rooms:
        return []
    now = utcnow()
    async with db.write():
        per_room = Counter(room for event in batch for room in event.rooms)
        next_id = {}
        for room in rooms:  # numbering locks the rooms' counters until commit ...
            last = await _advance_counter(db, room, per_room[room])
            next_id[room] = last - per_room[room] + 1
        if refresh is not None:  # ... so what refresh reads now is at least as new as the log
            batch = [await refresh(event) for event in batch]
        rows = []
        stored: list[StoredEvent] = []
        for event in batch:
            data_json = encode(event.data)
            for room in event.rooms:
                event_id = next_id[room]
                next_id[room] += 1
                rows.append({"room": room, "id": event_id, "type": event.type, "payload": data_json,
                             "created_at": now})
                stored.append(StoredEvent(room, event_id, event.type, encode_event(event.type, event_id, data_json)))
        if rows:
            await db.execute(events.insert().values(rows))
    return stored


async def _advance_counter(db: Database, room: str, count: int) -> int:
    insert = (sqlite.insert if db.is_sqlite else postgresql.insert)(room_counters)
    query = insert.values(room=room, last_id=count).on_conflict_do_update(
        index_elements=[room_counters.c.room], set_={"last_id": room_counters.c.last_id + count}
    ).returning(room_counters.c.last_id)
    return int(await db.fetch_val(query))


async def last_id(db: Database, room: str) -> int:
    value = await db.fetch_val(sa.select(room_counters.c.last_id).where(room_counters.c.room == room))
    return int(value or 0)


async def read_after(db: Database, room: str, after_id: int, limit: int) -> list[StoredEvent]:
    """Stored events of `room` with id > after_id, oldest first, at most `limit`."""
    query = sa.select(events.c.id, events.c.type, events.c.payload).where(
        events.c.room == room, events.c.id > after_id
    ).order_by(events.c.id).limit(limit)
    return [StoredEvent(room, r.id, r.type, encode_event(r.type, r.id, r.payload)) for r in await db.fetch_all(query)]


async def oldest_id(db: Database, room: str) -> int | None:
    value = await db.fetch_val(sa.select(sa.func.min(events.c.id)).where(events.c.room == room))
    return None if value is None else int(value)
