"""broadcaster backends for Redis and PostgreSQL that report a lost connection.

broadcaster 0.3.1's own backends never do: when the connection drops, the Redis listener task
dies and the Postgres connection closes, and every subscriber waits forever while publishing may
still succeed (shared/dependencies.md §1, pitfall 2). These backends watch their listening
connection (socket errors, server termination, a PING that gets no answer in time) and bound
every operation in time. The first failure marks the backend `lost` for good and hands each
subscribed channel a `LOST` event, which the Broker turns into an exception for its subscribers;
the Broker then connects a new backend. They never reconnect by themselves.

Postgres: LISTEN and NOTIFY run on two connections, each one operation at a time (broadcaster's
backend shares one connection and breaks under concurrent use, §1.4).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg
from broadcaster import BroadcastBackend, Event
from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from matchcast.ticks import sleep_to_tick, until_next_tick

T = TypeVar("T")
LOST = "\x00lost"  # the message of the event each channel gets when the connection is lost
CONNECT_TIMEOUT = 3.0  # seconds
OPERATION_TIMEOUT = 5.0
PING_INTERVAL = 5.0  # a silent connection is pinged this often ...
PONG_TIMEOUT = 5.0  # ... and lost when nothing comes back within this
CLOSE_TIMEOUT = 1.0  # a graceful close at shutdown; past it the socket is simply dropped


class SupervisedBackend(BroadcastBackend):
    """A backend whose connection is lost once and for all, loudly."""

    def __init__(self, url: str, ping_interval: float = PING_INTERVAL, pong_timeout: float = PONG_TIMEOUT) -> None:
        self.url = url
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout
        self.fault: BaseException | None = None
        self.lost = asyncio.Event()
        self._channels: set[str] = set()
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._watch: asyncio.Task[None] | None = None
        self._deadlines: set[asyncio.Timeout] = set()  # of the operations under way, cut short by fail()

    def fail(self, exc: BaseException) -> None:
        """Mark the connection lost: every subscribed channel gets a LOST event, once."""
        if self.fault is not None:
            return
        self.fault = exc
        for channel in self._channels:
            self._queue.put_nowait(Event(channel, LOST))
        self.lost.set()
        # An operation still waiting on this connection (an UNLISTEN behind a hung server, say)
        # would hold its caller, and a shutdown, for its whole timeout: it ends now instead.
        for deadline in self._deadlines:
            if not deadline.expired():
                deadline.reschedule(asyncio.get_running_loop().time())

    async def next_published(self) -> Event:
        return await self._queue.get()

    async def publish_all(self, messages: Sequence[tuple[str, Any]]) -> None:
        """Each (channel, message) in order."""
        for channel, message in messages:
            await self.publish(channel, message)

    async def _guarded(
        self,
        operation: Callable[[], Awaitable[T]],
        fatal: tuple[type[BaseException], ...],
        seconds: float = OPERATION_TIMEOUT,
    ) -> T:
        """Run a network operation bounded in time, and not past the connection's loss; an error
        of a `fatal` kind loses the connection (a timeout always does)."""
        if self.fault is not None:
            raise ConnectionError(f"broker connection lost: {describe(self.fault)}")
        try:
            # asyncio.timeout, not wait_for: no task per operation (Python 3.11's wait_for makes one).
            async with asyncio.timeout(seconds) as deadline:
                self._deadlines.add(deadline)
                try:
                    return await operation()
                finally:
                    self._deadlines.discard(deadline)
        except asyncio.CancelledError:
            # Cancelled half-way, the connection's state is unknown: do not use it again.
            self.fail(ConnectionError("an operation on the broker connection was cancelled"))
            raise
        except TimeoutError as exc:
            lost_meanwhile = self.fault
            self.fail(exc)
            if lost_meanwhile is not None:
                raise ConnectionError(f"broker connection lost: {describe(lost_meanwhile)}") from exc
            raise
        except fatal as exc:
            self.fail(exc)
            raise

    def _closing(self) -> bool:
        """Mark the connection closed by us, ending any operation still waiting on it (a shutdown
        never waits out an UNLISTEN behind a hung server); True if it was healthy until now."""
        healthy = self.fault is None
        self.fail(ConnectionError("the broker connection was closed"))
        return healthy

    async def _stop_watch(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)


class RedisBackend(SupervisedBackend):
    """PUB/SUB over redis-py: one connection listens, a pool publishes; neither retries."""

    FATAL = (RedisConnectionError, RedisTimeoutError, OSError)

    def __init__(self, url: str, ping_interval: float = PING_INTERVAL, pong_timeout: float = PONG_TIMEOUT) -> None:
        super().__init__(url, ping_interval, pong_timeout)
        self._confirming: dict[str, deque[asyncio.Future[None]]] = {}  # channel -> SUBSCRIBEs awaiting Redis

    async def connect(self) -> None:
        options: dict[str, Any] = {
            "socket_connect_timeout": CONNECT_TIMEOUT,
            "socket_timeout": OPERATION_TIMEOUT,
            "socket_keepalive": True,
            "retry": Retry(NoBackoff(), 0),  # a failure is the Broker's to handle, now
        }
        self._client = aioredis.Redis.from_url(self.url, **options)
        self._pubsub = self._client.pubsub()  # subscribe confirmations wanted: see subscribe()
        try:
            await self._client.ping()  # type: ignore[misc]
            # redis-py leaves PubSub.connect unannotated.
            await self._pubsub.connect()  # type: ignore[no-untyped-call]
        except BaseException:
            await self.disconnect()
            raise
        self._watch = asyncio.create_task(self._read())

    async def disconnect(self) -> None:
        self._closing()
        await self._stop_watch()
        for close in (self._pubsub.aclose, self._client.aclose):
            try:
                await asyncio.wait_for(close(), CLOSE_TIMEOUT)
            except Exception:
                continue

    async def subscribe(self, channel: str) -> None:
        """Subscribe and wait for Redis to confirm it.

        redis-py returns once SUBSCRIBE is sent. Until Redis has read it, a PUBLISH from another
        connection (the first event after a room opens) can reach Redis first and go to nobody;
        under load that window is long enough to lose an event no later one would bring back.
        """
        # One future per SUBSCRIBE sent, in order; each confirmation takes the oldest, also when its
        # subscriber stopped waiting (cancelled), so a late one never confirms a newer SUBSCRIBE.
        confirmed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._confirming.setdefault(channel, deque()).append(confirmed)
        await self._guarded(lambda: self._pubsub.subscribe(channel), (Exception,))
        try:
            await asyncio.wait_for(asyncio.shield(confirmed), OPERATION_TIMEOUT)
        except TimeoutError as exc:
            self.fail(exc)
            raise ConnectionError(f"Redis did not confirm the subscription within {OPERATION_TIMEOUT:g}s") from exc
        self._channels.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        if self.fault is None:
            await self._guarded(lambda: self._pubsub.unsubscribe(channel), (Exception,))

    def fail(self, exc: BaseException) -> None:
        super().fail(exc)
        for waiting in self._confirming.values():  # no confirmation comes over a lost connection
            for confirmed in waiting:
                if not confirmed.done():
                    confirmed.set_exception(ConnectionError(f"broker connection lost: {describe(exc)}"))
                    confirmed.exception()  # nobody may be waiting any more: not an unretrieved error
        self._confirming.clear()

    async def publish(self, channel: str, message: Any) -> None:
        await self._guarded(lambda: self._client.publish(channel, message), self.FATAL)

    async def publish_all(self, messages: Sequence[tuple[str, Any]]) -> None:
        """In order, on one connection, in one round trip (a pipeline, not a transaction)."""
        if len(messages) < 2:
            for channel, message in messages:
                await self.publish(channel, message)
            return

        async def send() -> None:
            async with self._client.pipeline(transaction=False) as pipe:
                for channel, message in messages:
                    pipe.publish(channel, message)
                await pipe.execute()

        await self._guarded(send, self.FATAL)

    async def _read(self) -> None:
        """Read messages; ping when quiet; any error, or a ping unanswered in time, loses the link."""
        heard = pinged = time.monotonic()
        try:
            while True:
                now = time.monotonic()
                if now - heard > self.ping_interval + self.pong_timeout:
                    raise TimeoutError(f"the broker did not answer a PING within {self.pong_timeout:g}s")
                if now - heard >= self.ping_interval and now - pinged >= self.ping_interval:
                    await asyncio.wait_for(self._pubsub.ping(), OPERATION_TIMEOUT)
                    pinged = now
                message = await self._pubsub.get_message(timeout=until_next_tick(min(1.0, self.ping_interval / 2)))
                if message is None:
                    continue
                heard = time.monotonic()
                if message["type"] == "message":
                    self._queue.put_nowait(Event(message["channel"].decode(), message["data"].decode()))
                elif message["type"] == "subscribe":  # confirms the oldest SUBSCRIBE of that channel
                    channel = message["channel"].decode()
                    waiting = self._confirming.get(channel)
                    if waiting:
                        confirmed = waiting.popleft()
                        if not waiting:
                            del self._confirming[channel]
                        if not confirmed.done():
                            confirmed.set_result(None)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.fail(exc)


class PostgresBackend(SupervisedBackend):
    """LISTEN/NOTIFY over asyncpg, on two connections, one operation at a time on each."""

    FATAL = (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError, asyncpg.OperatorInterventionError)

    async def connect(self) -> None:
        self._listen_lock = asyncio.Lock()
        self._notify_lock = asyncio.Lock()
        self._connections: list[asyncpg.Connection] = []
        try:
            self._listener = await self._connect()
            self._notifier = await self._connect()
        except BaseException:
            await self.disconnect()
            raise
        self._watch = asyncio.create_task(self._ping())

    async def _connect(self) -> asyncpg.Connection:
        connection = await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT)
        self._connections.append(connection)
        connection.add_termination_listener(self._terminated)
        return connection

    def _terminated(self, connection: asyncpg.Connection) -> None:
        self.fail(ConnectionError("the PostgreSQL broker closed the connection"))

    async def disconnect(self) -> None:
        graceful = self._closing()
        await self._stop_watch()

        async def close(connection: asyncpg.Connection) -> None:
            connection.remove_termination_listener(self._terminated)
            if graceful:
                try:
                    await connection.close(timeout=CLOSE_TIMEOUT)
                    return
                except Exception:
                    pass  # hung: dropped below
            connection.terminate()

        await asyncio.gather(*(close(connection) for connection in self._connections))

    async def subscribe(self, channel: str) -> None:
        async with self._listen_lock:
            await self._guarded(lambda: self._listener.add_listener(channel, self._notified), (Exception,))
        self._channels.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        if self.fault is None:  # a lost connection listens to nothing; its lock may be held by a hung ping
            async with self._listen_lock:
                await self._guarded(lambda: self._listener.remove_listener(channel, self._notified), (Exception,))

    async def publish(self, channel: str, message: Any) -> None:
        async with self._notify_lock:
            await self._guarded(
                lambda: self._notifier.execute("SELECT pg_notify($1, $2)", channel, message), self.FATAL
            )

    def _notified(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        self._queue.put_nowait(Event(channel, payload))

    async def _ping(self) -> None:
        """A dead peer closes nothing: ask the listening connection something now and then."""
        try:
            while True:
                await sleep_to_tick(self.ping_interval)
                async with self._listen_lock:
                    await self._guarded(lambda: self._listener.fetchval("SELECT 1"), (Exception,), self.pong_timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.fail(exc)


def describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
