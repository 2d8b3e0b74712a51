"""One WebSocket seen from the hub: a bounded outbound backlog and a writer that drains it.

The hub hands every socket of a room the same pre-encoded text with `offer()`, which never
awaits, so one slow socket cannot slow anybody else. The writer starts eagerly: `offer()` runs it
at once, and a socket that can take the frame (nearly always) has it written before `offer()`
returns, with no task at all. Only a writer that has to wait (the client's TCP window is full)
goes on in a task of its own, while later frames queue behind it. A backlog over `max_pending`
frames means the client does not read: it is closed 4009 and its backlog dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Generator, Sequence
from typing import Any, Protocol

from matchcast.protocol import WS_4009_SLOW_CONSUMER
from matchcast.realtime.ratelimit import TokenBucket

log = logging.getLogger("matchcast.connection")
CLOSE_GRACE = 5.0  # seconds a closing socket may take to take its last frames
CONTROL = 0  # the id given to ping/pong/error/connection_established frames: never filtered


class Socket(Protocol):
    """What the writer needs of a WebSocket (Starlette's, or a test's fake)."""

    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


class Connection:
    __slots__ = (
        "__weakref__",
        "after",
        "allowance",
        "backlog",
        "bucket",
        "close_code",
        "closer",
        "closing",
        "draining",
        "last_seen",
        "leave",
        "max_pending",
        "open",
        "opened_at",
        "role",
        "room",
        "room_kind",
        "user_id",
        "websocket",
        "writer",
    )

    def __init__(
        self,
        websocket: Socket,
        room: str,
        room_kind: str,
        role: str,
        user_id: int | None,
        max_pending: int,
        bucket: TokenBucket,
        leave: Callable[[Connection], None],
    ) -> None:
        self.websocket = websocket
        self.room = room
        self.room_kind = room_kind
        self.role = role
        self.user_id = user_id
        self.max_pending = max_pending
        self.bucket = bucket
        self.leave = leave  # takes the socket out of its room (the hub's)
        self.backlog: deque[tuple[int, str]] = deque()
        self.writer: asyncio.Task[None] | None = None  # a writer that had to wait
        self.draining = False  # a writer is running (eagerly, or in `writer`)
        self.after = 0  # events with an id at most this were already sent (or replayed)
        self.allowance = 0  # frames of the initial replay not yet written, allowed beyond max_pending
        self.open = False  # False while connection_established and the replay are being sent
        self.closing = False
        self.close_code: int | None = None
        self.closer: asyncio.Task[None] | None = None  # the close started by abort(), kept from the GC
        self.last_seen = time.monotonic()
        self.opened_at = self.last_seen

    def offer(self, event_id: int, frame: str) -> None:
        """Queue one frame for this socket; never awaits."""
        if self.closing:
            return
        if len(self.backlog) >= self.max_pending + self.allowance:
            self.abort(WS_4009_SLOW_CONSUMER)
            return
        self.backlog.append((event_id, frame))
        if self.open and not self.draining:
            self._write()

    def start(self, after: int, first: Sequence[str] = ()) -> None:
        """Send `first` (connection_established, the replay), then live events after `after`.

        The replay is allowed on top of `max_pending`: a client is slow when live frames pile up.
        """
        self.backlog.extendleft((CONTROL, frame) for frame in reversed(first))
        self.allowance = len(first)
        self.after = after
        self.open = True
        if self.backlog and not self.draining and not self.closing:
            self._write()

    def _write(self) -> None:
        """Run the writer now, up to its first wait; only if it has to wait, in a task.

        A task per socket per frame cost a fifth of every frame's CPU, and without the GC tuning
        its survivors made full collections run during the fan-out (docs/performance.md).
        """
        self.draining = True
        writer = self._drain()
        try:
            waiting_for = writer.send(None)
        except StopIteration:
            return  # everything written; _drain reset `draining`
        self.writer = asyncio.get_running_loop().create_task(_resume(writer, waiting_for))

    async def _drain(self) -> None:
        try:
            while self.backlog:
                event_id, frame = self.backlog.popleft()
                if self.allowance:  # the replay goes first: once written, live frames count in full
                    self.allowance -= 1
                if event_id != CONTROL:
                    if event_id <= self.after:
                        continue  # already in the snapshot or the replay
                    self.after = event_id
                await self.websocket.send_text(frame)
        except Exception:  # the peer went away mid-send; the endpoint's receive loop sees it too
            self.closing = True
            self.backlog.clear()
        finally:
            self.writer = None
            self.draining = False

    def abort(self, code: int, drain: bool = False) -> None:
        """Close from synchronous code (the hub's fan-out, the heartbeat, the rate limit).

        With `drain`, frames already queued (answers to the client) go out before the close;
        without, they are dropped (a slow consumer would never take them).
        """
        if self.closing:
            return
        self.closing = True
        self.close_code = code
        if not drain:
            self.backlog.clear()
            if self.writer is not None:
                self.writer.cancel()  # it may be blocked on a client that does not read
        self.closer = asyncio.create_task(self._close_after(code))

    async def close_after_sending(self, code: int) -> None:
        """Send what is queued, then close (graceful shutdown)."""
        if self.closing:
            return
        self.closing = True
        self.close_code = code
        await self._close_after(code)

    async def _close_after(self, code: int) -> None:
        writer = self.writer
        if writer is not None:
            # A client that does not read would hold the writer for ever: give it a while. The
            # writer's own end (failed, cancelled by abort()) is not ours to raise; our own
            # cancellation (a shutdown's bound) goes on up.
            _, pending = await asyncio.wait({writer}, timeout=CLOSE_GRACE)
            for task in pending:
                task.cancel()
        await self.close(code)

    async def close(self, code: int) -> None:
        self.closing = True
        self.close_code = self.close_code or code
        self.backlog.clear()
        try:
            # The close frame waits behind unread data, like any frame; past the grace the socket
            # leaves its room at once (nothing more is queued for it) and uvicorn's keepalive
            # drops the dead TCP connection.
            await asyncio.wait_for(self.websocket.close(code), CLOSE_GRACE)
        except TimeoutError:
            log.info("room=%s: client took no close frame in %.0fs; dropped", self.room, CLOSE_GRACE)
            self.leave(self)
        except Exception:  # already closed by the peer
            pass

    @property
    def pending(self) -> int:
        return len(self.backlog)


class _Yield:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, Any, Any]:
        return (yield self.value)


async def _resume(coroutine: Coroutine[Any, Any, None], waiting_for: Any) -> None:
    """Go on with `coroutine`, started outside any task, from the point where it yielded `waiting_for`.

    The task running this hands each yielded future to the event loop exactly as if it ran
    `coroutine` itself, and throws cancellation (or any error) into it at the point it waits.
    """
    while True:
        try:
            sent = await _Yield(waiting_for)
        except BaseException as error:  # cancellation included: the coroutine gets to clean up
            try:
                waiting_for = coroutine.throw(error)
            except StopIteration:
                return
            continue
        try:
            waiting_for = coroutine.send(sent)
        except StopIteration:
            return
