"""The broker: cross-process pub/sub over broadcaster (the only module importing it).

broadcaster passes `memory://` messages through as objects but Redis and Postgres only carry
text, so every message is text here whatever the backend. A message names the event id and the
publish time, then the frame; a frame too large for the backend (Postgres NOTIFY takes less than
8000 bytes) travels as its id alone and subscribers read it from the event log.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from broadcaster import Broadcast

POSTGRES_MAX_PAYLOAD = 7000  # bytes; NOTIFY refuses 8000 and more, and the channel name counts too


@dataclass(frozen=True)
class BrokerMessage:
    event_id: int
    published_ns: int
    frame: str | None  # None: too large for the broker, read it from the log


def pack(event_id: int, frame: str, max_payload: int | None) -> str:
    head = f"{event_id} {time.time_ns()}\n"
    if max_payload is not None and len(frame.encode()) + len(head) > max_payload:
        return head
    return head + frame


def unpack(message: str) -> BrokerMessage:
    head, _, frame = message.partition("\n")
    event_id, _, published = head.partition(" ")
    return BrokerMessage(int(event_id), int(published), frame or None)


class Subscription:
    def __init__(self, subscriber: object) -> None:
        self._subscriber = subscriber

    async def get(self) -> BrokerMessage:
        event = await self._subscriber.get()  # type: ignore[attr-defined]
        return unpack(str(event.message))


class Broker:
    def __init__(self, url: str, prefix: str = "") -> None:
        self.url = url
        self.prefix = prefix
        self.is_postgres = url.startswith(("postgres://", "postgresql://"))
        self.max_payload = POSTGRES_MAX_PAYLOAD if self.is_postgres else None
        self._broadcast: Broadcast | None = None
        # broadcaster's Postgres backend runs LISTEN and NOTIFY on one asyncpg connection that
        # breaks under concurrent use (shared/dependencies.md §1.4), and its subscribe() races
        # with itself on every backend: one operation at a time.
        self._lock = asyncio.Lock()

    async def connect(self) -> None:
        # Created here, not in __init__: broadcaster binds queues to the running loop.
        self._broadcast = Broadcast(self.url)
        await self._broadcast.connect()

    def health(self) -> str:
        """"ok", or what is broken (shown by /healthz)."""
        return "ok" if self._broadcast is not None else "not connected"

    async def disconnect(self) -> None:
        if self._broadcast is not None:
            await self._broadcast.disconnect()
            self._broadcast = None

    async def publish(self, channel: str, event_id: int, frame: str) -> None:
        assert self._broadcast is not None, "Broker.connect() first"
        message = pack(event_id, frame, self.max_payload)
        if self.is_postgres:
            async with self._lock:
                await self._broadcast.publish(self.prefix + channel, message)
        else:
            await self._broadcast.publish(self.prefix + channel, message)

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Subscription]:
        assert self._broadcast is not None, "Broker.connect() first"
        async with self._lock:
            context = self._broadcast.subscribe(self.prefix + channel)
            subscriber = await context.__aenter__()
        try:
            yield Subscription(subscriber)
        finally:
            async with self._lock:
                await context.__aexit__(None, None, None)
