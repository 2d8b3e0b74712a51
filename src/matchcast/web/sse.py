"""Server-sent events: `GET /sse/tournaments/{id}` and `GET /sse/matches/{id}` (protocol, "Audience").

A reader is one more Connection of the hub, whose socket is an `EventStream`: the hub's writer
hands it each frame, which becomes a text/event-stream message and goes to the response body
(sse-starlette's EventSourceResponse) one at a time, so the Connection's bounded backlog is the
only queue and a reader that does not read is cut off like a WebSocket. Everything a WebSocket
decides after accept (token, id, access) is decided here before the response starts: a refusal
is an HTTP status with the API's error JSON, and nothing is streamed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from sse_starlette import EventSourceResponse
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from matchcast import errors
from matchcast.db import tables
from matchcast.db.database import Database
from matchcast.ids import ID, path_id
from matchcast.protocol import WS_4009_SLOW_CONSUMER, match_room, sse_message, tournament_room
from matchcast.realtime.connection import Connection
from matchcast.realtime.ratelimit import TokenBucket
from matchcast.security import TokenError, verify_token
from matchcast.services import matches, snapshots, tournaments
from matchcast.services.actors import REVOKED, Actor, load_actor, match_role, may_watch, tournament_role
from matchcast.web.api import NO_SNIFF, error_response
from matchcast.web.sockets import Realtime, bearer_token, client_address, event_id, quota_key, resume_point

log = logging.getLogger("matchcast.sse")
# At shutdown the hub flushes pending scores and closes every reader (Hub.stop, bounded by 10 s);
# sse-starlette, which notices the shutdown first, waits this long for that before cutting streams.
SHUTDOWN_GRACE = 10.0
WELCOME = '{"type":"connection_established"'
NOT_READABLE = "no such {kind} (a private tournament is readable by its organizer, staff and players only)"


@functools.lru_cache(maxsize=64)
def message_bytes(frame: str) -> bytes | None:
    """The SSE message of a frame, converted once per frame: the hub hands every reader of a room
    the same string object, so after the first reader each one costs a dictionary lookup."""
    message = sse_message(frame)
    return None if message is None else message.encode()


class EventStream:
    """The Socket of an SSE reader's Connection, and the body of its response.

    send_text() hands over one message and returns at once if the body is waiting for it (the hub's
    fan-out writes without a task, as to a WebSocket); else it waits until the body has taken the
    previous one, so messages pile up in the Connection's backlog, whose bound cuts slow readers.
    """

    __slots__ = ("_message", "_wake", "cancel", "conn", "ended", "finished")

    def __init__(self) -> None:
        self._message: bytes | None = None  # handed over, not yet taken by the body
        self._wake: asyncio.Future[None] | None = None  # the one side waiting for the other
        self.ended = False
        self.finished = asyncio.Event()  # the body has sent its last message
        self.cancel: Callable[[], Any] = lambda: None  # ends the response at once (RoomStream sets it)
        self.conn: Connection | None = None

    async def send_text(self, data: str) -> None:
        if data.startswith(WELCOME):  # this reader's own: not worth caching
            text = sse_message(data)
            message = None if text is None else text.encode()
        else:
            message = message_bytes(data)
        if message is None:
            return
        while self._message is not None and not self.ended:
            await self._wait()
        if self.ended:
            raise ConnectionError("the reader has gone")
        self._message = message
        self._notify()
        if self.conn is not None:
            self.conn.last_seen = time.monotonic()  # it took the last message: alive, for the hub's heartbeat check

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        """End the stream after the message being sent; a slow consumer's response is cut at once."""
        self.end()
        if code == WS_4009_SLOW_CONSUMER:
            self.cancel()
            return
        try:
            await self.finished.wait()  # the Connection bounds this wait (CLOSE_GRACE)
        finally:
            if not self.finished.is_set():
                self.cancel()  # a reader that does not read holds the last send: cut it

    def end(self) -> None:
        self.ended = True
        self._notify()

    async def body(self) -> AsyncIterator[bytes]:
        try:
            while True:
                while self._message is None and not self.ended:
                    await self._wait()
                if self._message is None:
                    return
                message, self._message = self._message, None
                self._notify()
                yield message
        finally:
            self.end()
            self.finished.set()

    async def _wait(self) -> None:
        # One side waits at a time; but the body, woken, may not have run yet when the writer
        # comes to wait: the future it leaves is then the writer's, and not the body's to clear.
        wake = self._wake = asyncio.get_running_loop().create_future()
        try:
            await wake
        finally:
            if self._wake is wake:
                self._wake = None

    def _notify(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)


class RoomStream(EventSourceResponse):
    """The response of one reader: `stream`'s messages, then `ended` (which takes it out of its room)."""

    def __init__(self, stream: EventStream, ended: Callable[[], None]) -> None:
        # No ping task per reader: the hub's heartbeat, one timer for every socket, sends the
        # comment line through the Connection, in order with the events.
        super().__init__(stream.body(), ping=0, sep="\n", shutdown_grace_period=SHUTDOWN_GRACE, headers=NO_SNIFF)
        self.stream = stream
        self.ended = ended

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            with anyio.CancelScope() as cancel_scope:
                self.stream.cancel = cancel_scope.cancel
                await super().__call__(scope, receive, send)
        finally:
            self.stream.end()
            self.ended()


@dataclass(frozen=True)
class RoomKind:
    name: str
    room: Callable[[int], str]
    role: Callable[[Database, Actor | None, int], Awaitable[str | None]]
    snapshot: Callable[[Database, int], Awaitable[dict[str, Any]]]


async def match_reader(db: Database, actor: Actor | None, match_id: int) -> str | None:
    """The reader's role in the match room, or None: no such match, or not theirs to read."""
    match = await db.fetch_one(matches.with_organizer().where(tables.matches.c.id == match_id))
    if match is None or not await may_watch(db, actor, await tournaments.get_tournament(db, match.tournament_id)):
        return None
    return match_role(actor, match, match.organizer_id)


async def tournament_reader(db: Database, actor: Actor | None, tournament_id: int) -> str | None:
    """The reader's role in the tournament room, or None: no such tournament, or not theirs to read."""
    tournament = await db.fetch_one(tables.tournaments.select().where(tables.tournaments.c.id == tournament_id))
    if tournament is None or not await may_watch(db, actor, tournament):
        return None
    return await tournament_role(db, actor, tournament_id)


MATCH = RoomKind("match", match_room, match_reader, snapshots.match_snapshot)
TOURNAMENT = RoomKind("tournament", tournament_room, tournament_reader, snapshots.tournament_snapshot)


def resume_from(request: Request) -> int | None:
    """`Last-Event-ID` (what EventSource sends when it reconnects by itself), else `?last_event_id=`."""
    header = request.headers.get("last-event-id")
    return event_id(header) if header is not None else resume_point(request)


def endpoint(kind: RoomKind) -> Callable[[Request], Awaitable[Response]]:
    async def events(request: Request) -> Response:
        rt: Realtime = request.app.state.realtime
        try:
            subject = verify_token(rt.settings.jwt_secret, bearer_token(request))
        except TokenError as exc:
            return error_response(errors.UNAUTHORIZED, str(exc))
        try:
            room_id = path_id(request)
        except errors.DomainError as exc:
            return error_response(exc.code, exc.message)
        async with rt.db.connection():  # one database connection for these few queries
            actor = None if subject.user_id is None else await load_actor(rt.db, subject.user_id, subject.epoch)
            if subject.user_id is not None and actor is None:
                return error_response(errors.UNAUTHORIZED, REVOKED)
            role = await kind.role(rt.db, actor, room_id)
        if role is None:
            return error_response(errors.NOT_FOUND, NOT_READABLE.format(kind=kind.name))
        # The WebSocket endpoints' caps, on the same counts: a reader is a socket too.
        held = (quota_key(subject), client_address(request))
        refused = rt.hub.quota.acquire(*held)
        if refused is not None:
            return error_response(errors.RATE_LIMITED, refused, {"Retry-After": "10"})
        try:
            response = await open_stream(request, rt, kind, room_id, role, actor, lambda: rt.hub.quota.release(*held))
        except BaseException:
            rt.hub.quota.release(*held)
            raise
        if not isinstance(response, RoomStream):
            rt.hub.quota.release(*held)
        return response

    return events


async def open_stream(
    request: Request,
    rt: Realtime,
    kind: RoomKind,
    room_id: int,
    role: str,
    actor: Actor | None,
    release: Callable[[], None] = lambda: None,
) -> Response:
    stream = EventStream()
    user_id = None if actor is None else actor.user_id
    room = kind.room(room_id)
    conn = Connection(
        stream,
        room,
        kind.name,
        role,
        user_id,
        rt.settings.max_pending,
        TokenBucket(rt.settings.rate_limit),
        rt.hub.leave,
    )
    stream.conn = conn
    try:
        await rt.hub.establish(conn, lambda: kind.snapshot(rt.db, room_id), resume_from(request), welcome={})
    except Exception as exc:  # the database or the broker is down: say so, do not hang
        log.warning("could not open the event stream of %s: %r", room, exc)
        rt.hub.leave(conn)
        stream.end()
        return error_response(errors.UNAVAILABLE, "server unavailable (database or broker); retry")
    log.info("sse open room=%s role=%s user=%s", room, role, user_id)

    def ended() -> None:
        release()
        rt.hub.leave(conn)
        conn.gone()
        if conn.close_code is not None:
            rt.metrics.closes.labels(str(conn.close_code)).inc()
        log.info("sse close room=%s role=%s user=%s code=%s", room, role, user_id, conn.close_code)

    return RoomStream(stream, ended)


routes = [
    Route(f"/sse/tournaments/{ID}", endpoint(TOURNAMENT), methods=["GET"]),
    Route(f"/sse/matches/{ID}", endpoint(MATCH), methods=["GET"]),
]
