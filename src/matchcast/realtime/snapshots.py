"""One room snapshot and last event id, read once and shared by every socket that joins within
`ttl` seconds.

A join storm (a deploy closes every socket 1012 and they all come back) otherwise reads the same
snapshot from the database once per socket: those reads were over half of a join's server CPU.
A joiner given a shared read is told its `last_event_id` and then gets every later event, the
ones the room delivered since from the room's recent events (realtime/recent.py), exactly as if it
had joined when the read was made. Events used to start a new read, but in a storm of 10k joins
with a score every half second each read waited behind the handshakes for seconds, and so did
every join behind it (bench/storm.py). What changes without an event in the room (a user renamed)
is at most `ttl` old.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

SNAPSHOT_TTL = 1.0  # seconds a shared read serves joins; bounds staleness of changes without events

Read = tuple[int, dict[str, Any]]  # (last event id, snapshot)


@dataclass
class _Entry:
    expires: float
    read: asyncio.Future[Read]


class SnapshotCache:
    def __init__(self, ttl: float = SNAPSHOT_TTL) -> None:
        self.ttl = ttl
        self._entries: dict[str, _Entry] = {}

    async def get(self, room: str, read: Callable[[], Awaitable[Read]]) -> Read:
        """The room's (last id, snapshot): a read begun within `ttl`, or a new one that the joins
        arriving meanwhile share. A failed read is not kept: the next join retries."""
        now = time.monotonic()
        entry = self._entries.get(room)
        if entry is None or entry.expires <= now or _failed(entry.read):
            entry = _Entry(now + self.ttl, asyncio.ensure_future(read()))
            entry.read.add_done_callback(_retrieve)
            self._entries[room] = entry
        # shielded: a joiner that leaves mid-read does not cancel the others' read
        return await asyncio.shield(entry.read)

    def forget(self, room: str) -> None:
        """The room closed (no socket left here): its events are no longer followed."""
        self._entries.pop(room, None)


def _failed(read: asyncio.Future[Read]) -> bool:
    return read.done() and (read.cancelled() or read.exception() is not None)


def _retrieve(read: asyncio.Future[Read]) -> None:
    """Mark the exception seen even when every joiner left: the joiners that awaited got it."""
    if not read.cancelled():
        read.exception()
