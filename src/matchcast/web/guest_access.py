"""Whether guests may join a room, read from the database at most once per room per `ttl`
seconds and shared by every guest joining meanwhile: a guest's join (a reconnect storm after a
deploy is mostly guests) then needs no database at all, its snapshot coming from the hub's cache.

What is kept is all a guest's admission depends on: the room exists, and its tournament is
public. The application changes neither once a room exists (a tournament is created public or
private, and nothing is deleted); when an operator does, in the database, each instance obeys
within `ttl`: the guests admitted meanwhile are those that joined at most `ttl` earlier, and,
as before, sockets already open stay open. A room that does not exist yet (a match of a round
not drawn yet) is admitted at most `ttl` after it appears. A failed read is not kept.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from matchcast.services.actors import Standing

ACCESS_TTL = 1.0  # seconds; the hub's shared snapshots are as old at most (realtime/snapshots.py)
MAX_ROOMS = 10_000  # rooms remembered; guests probing made-up ids cannot grow it further


@dataclass
class _Entry:
    expires: float
    read: asyncio.Future[Standing]


class GuestAccess:
    def __init__(
        self, ttl: float = ACCESS_TTL, max_rooms: int = MAX_ROOMS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_rooms = max_rooms
        self.clock = clock
        self._entries: dict[str, _Entry] = {}

    async def get(self, room: str, read: Callable[[], Awaitable[Standing]]) -> Standing:
        """A guest's standing in `room`: a read younger than `ttl`, or a new one shared with
        the guests joining while it runs."""
        now = self.clock()
        entry = self._entries.get(room)
        if entry is None or entry.expires <= now or _failed(entry.read):
            if entry is not None:
                del self._entries[room]  # re-inserted last: the oldest entries go first
            elif len(self._entries) >= self.max_rooms:
                del self._entries[next(iter(self._entries))]
            entry = self._entries[room] = _Entry(now + self.ttl, asyncio.ensure_future(read()))
            entry.read.add_done_callback(_retrieve)
        # shielded: a guest that leaves mid-read does not cancel the others' read
        return await asyncio.shield(entry.read)


def _failed(read: asyncio.Future[Standing]) -> bool:
    return read.done() and (read.cancelled() or read.exception() is not None)


def _retrieve(read: asyncio.Future[Standing]) -> None:
    """Mark the exception seen even when every guest left: those that awaited got it."""
    if not read.cancelled():
        read.exception()
