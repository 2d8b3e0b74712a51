"""The Broker over broadcaster (the only code importing it, with backends.py).

broadcaster passes `memory://` messages through as objects but Redis and Postgres only carry
text, so every message is text here whatever the backend (`broker.pack`). A frame too large for
the backend (Postgres NOTIFY takes less than 8000 bytes) travels as its id alone and subscribers
read it from the event log. broadcaster never reconnects (shared/dependencies.md §1): the
supervised backends report a lost connection, and `BroadcastBroker` connects a new one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from broadcaster import Broadcast, Event

from matchcast.realtime.backends import (
    CONNECT_TIMEOUT,
    LOST,
    OPERATION_TIMEOUT,
    PING_INTERVAL,
    PONG_TIMEOUT,
    PostgresBackend,
    RedisBackend,
    SupervisedBackend,
    describe,
)
from matchcast.realtime.broker import BrokerMessage, BrokerUnavailable, pack, unpack

log = logging.getLogger("matchcast.broker")
POSTGRES_MAX_PAYLOAD = 7000  # bytes; NOTIFY refuses 8000 and more, and the channel name counts too
RECONNECT_MIN, RECONNECT_MAX = 0.2, 2.0  # seconds between connection attempts while the broker is down


class Link:
    """One connection to the broker: a Broadcast over a backend. Once lost, it is never reused."""

    def __init__(self, url: str, ping_interval: float, pong_timeout: float) -> None:
        self.backend: SupervisedBackend | None = None
        if url.startswith(("redis://", "rediss://")):
            self.backend = RedisBackend(url, ping_interval, pong_timeout)
        elif url.startswith(("postgres://", "postgresql://")):
            self.backend = PostgresBackend(url, ping_interval, pong_timeout)
        self.broadcast = Broadcast(backend=self.backend) if self.backend is not None else Broadcast(url)
        # broadcaster's subscribe() races with itself when two first subscribers of a channel
        # overlap (shared/dependencies.md §1.4): one subscribe or unsubscribe at a time.
        self.lock = asyncio.Lock()

    @property
    def fault(self) -> BaseException | None:
        return None if self.backend is None else self.backend.fault

    async def wait_lost(self) -> BaseException:
        if self.backend is None:
            await asyncio.Event().wait()  # memory:// cannot be lost
        assert self.backend is not None
        await self.backend.lost.wait()
        assert self.backend.fault is not None
        return self.backend.fault

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.broadcast.disconnect(), OPERATION_TIMEOUT * 2)
        except Exception as exc:
            log.debug("closing a broker connection failed: %s", describe(exc))


class LinkSubscription:
    def __init__(self, subscriber: Any, link: Link) -> None:
        self._subscriber = subscriber
        self._link = link

    async def get(self) -> BrokerMessage:
        """The next message; raises BrokerUnavailable as soon as the connection is lost."""
        if self._link.fault is not None:
            raise BrokerUnavailable(describe(self._link.fault))
        event: Event = await self._subscriber.get()
        if event.message == LOST:
            raise BrokerUnavailable(describe(self._link.fault or ConnectionError("lost")))
        return unpack(str(event.message))


class BroadcastBroker:
    """A `Broker` (realtime/broker.py) over broadcaster, for `memory://`, `redis://` and `postgres://`."""

    def __init__(
        self, url: str, prefix: str = "", *, ping_interval: float = PING_INTERVAL, pong_timeout: float = PONG_TIMEOUT
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.is_postgres = url.startswith(("postgres://", "postgresql://"))
        self.max_payload = POSTGRES_MAX_PAYLOAD if self.is_postgres else None
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout
        self._link: Link | None = None
        self._fault = "not connected"
        self._available = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        """Connect, or keep trying in the background: the server serves while the broker is down."""
        attempted = asyncio.Event()
        self._supervisor = asyncio.create_task(self._supervise(attempted))
        await attempted.wait()
        if self._link is None:
            log.warning(
                "broker %s is unavailable at start-up (%s); live updates wait until it is back",
                self.safe_url,
                self._fault,
            )

    async def wait_available(self, seconds: float) -> bool:
        """Wait until the broker is connected (at once if it is), at most `seconds`."""
        try:
            await asyncio.wait_for(self._available.wait(), seconds)
        except TimeoutError:
            return False
        return True

    def health(self) -> str:
        """ "ok", or "unavailable: <what went wrong>" (shown by /healthz)."""
        link = self._link
        if link is not None and link.fault is None:
            return "ok"
        fault = describe(link.fault) if link is not None and link.fault is not None else self._fault
        return f"unavailable: {fault}"[:200]

    async def disconnect(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
            self._supervisor = None
        link, self._link = self._link, None
        self._fault = "not connected"
        self._available.clear()
        if link is not None:
            await link.close()

    async def publish(self, channel: str, event_id: int, frame: str) -> None:
        """Hand the event to the broker (at most once); raises while the broker is unavailable."""
        link = self._current()
        await link.broadcast.publish(self.prefix + channel, pack(event_id, frame, self.max_payload))

    async def publish_all(self, events: Sequence[tuple[str, int, str]]) -> None:
        link = self._current()
        messages = [
            (self.prefix + channel, pack(event_id, frame, self.max_payload)) for channel, event_id, frame in events
        ]
        if link.backend is not None:
            await link.backend.publish_all(messages)
            return
        for channel, message in messages:  # memory://: no round trips to save
            await link.broadcast.publish(channel, message)

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[LinkSubscription]:
        """Messages published on `channel` from now on, until the connection is lost (then get()
        raises; subscribe again). Raises BrokerUnavailable while the broker is down."""
        link = self._current()
        async with link.lock:
            context = link.broadcast.subscribe(self.prefix + channel)
            try:
                subscriber = await context.__aenter__()
            except Exception as exc:
                _cancelled_meanwhile(exc)
                raise BrokerUnavailable(describe(link.fault or exc)) from exc
        try:
            if link.fault is not None:  # lost while subscribing: the LOST event may have gone by
                raise BrokerUnavailable(describe(link.fault))
            yield LinkSubscription(subscriber, link)
        finally:
            await self._leave(link, context)

    @property
    def safe_url(self) -> str:
        scheme, _, rest = self.url.partition("://")
        return f"{scheme}://{rest.rpartition('@')[2]}"

    def _current(self) -> Link:
        if self._link is None or self._link.fault is not None:
            raise BrokerUnavailable(self.health().removeprefix("unavailable: "))
        return self._link

    @staticmethod
    async def _leave(link: Link, context: AbstractAsyncContextManager[Any]) -> None:
        # Never raises: it runs while the hub's room task is being cancelled, too.
        try:
            async with link.lock:
                await context.__aexit__(None, None, None)
        except Exception as exc:
            log.debug("unsubscribing failed (the connection is being replaced): %s", describe(exc))

    async def _supervise(self, attempted: asyncio.Event) -> None:
        delay = RECONNECT_MIN
        while True:
            link = Link(self.url, self.ping_interval, self.pong_timeout)
            try:
                await asyncio.wait_for(link.broadcast.connect(), CONNECT_TIMEOUT * 2)
            except Exception as exc:
                await link.close()
                if self._fault != describe(exc):
                    log.warning("broker %s: cannot connect (%s); retrying", self.safe_url, describe(exc))
                self._fault = describe(exc)
                attempted.set()
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX)
                continue
            if self._fault != "not connected":
                log.warning("broker %s: connected", self.safe_url)
            self._link, self._fault, delay = link, "", RECONNECT_MIN
            self._available.set()
            attempted.set()
            fault = await link.wait_lost()
            self._available.clear()
            self._link, self._fault = None, describe(fault)
            log.warning("broker %s: connection lost (%s); reconnecting", self.safe_url, self._fault)
            await link.close()


def _cancelled_meanwhile(exc: Exception) -> None:
    """Raise CancelledError if the task was cancelled while `exc` came up.

    broadcaster's subscribe, cancelled half-way, fails in its own clean-up (KeyError) instead of
    passing the cancellation on; taken for a broker failure, it would have the room's listener
    subscribe again for ever after its room had closed.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from exc
