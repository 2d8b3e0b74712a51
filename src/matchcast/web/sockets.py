"""The WebSocket endpoints `/ws/tournament/{id}/` and `/ws/match/{id}/`: they call the services
as the HTTP routes do, and hand the sockets to the hub.

Everything is decided after accept, so clients see the contract's close codes (a close before
accept is an empty HTTP 403 on uvicorn); only a foreign Origin is refused before accept, with 403.
Frames are received as text and parsed here: bad input is answered, never a reason to close.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.endpoints import WebSocketEndpoint
from starlette.requests import HTTPConnection
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket

from matchcast import errors
from matchcast.db.database import Database
from matchcast.errors import FRAME_ERRORS, INVALID_STATE, RATE_LIMITED
from matchcast.ids import ID, path_id
from matchcast.protocol import (
    WS_1011_INTERNAL_ERROR,
    WS_4001_AUTHENTICATION_FAILED,
    WS_4003_FORBIDDEN,
    WS_4008_RATE_LIMITED,
    WS_4029_TOO_MANY_CONNECTIONS,
    WS_4404_NOT_FOUND,
    encode_error,
    encode_pong,
    match_room,
    parse_client_frame,
    tournament_room,
)
from matchcast.realtime.connection import CONTROL, Connection
from matchcast.realtime.frames import Frame
from matchcast.realtime.hub import Hub
from matchcast.realtime.metrics import Metrics
from matchcast.realtime.ratelimit import TokenBucket
from matchcast.security import TokenError, TokenSubject, verify_token
from matchcast.services import disputes, matches, results, snapshots
from matchcast.services.actors import REVOKED, Actor, Standing, guest_in_room, user_in_room
from matchcast.services.publisher import Publisher
from matchcast.settings import Settings
from matchcast.web.guest_access import GuestAccess
from matchcast.web.wire import wire_of

log = logging.getLogger("matchcast.ws")


@dataclass
class Realtime:
    """What the endpoints need, set on `app.state.realtime` by create_app."""

    settings: Settings
    db: Database
    hub: Hub
    metrics: Metrics
    publisher: Publisher  # what the services hand their events to: the hub, through the deadline timer
    guests: GuestAccess = field(default_factory=GuestAccess)  # who may watch which room, for guests


def whole(seconds: float) -> float | int:
    """25.0 -> 25, as the contract writes it; 0.3 stays 0.3 (tests use sub-second beats)."""
    return int(seconds) if float(seconds).is_integer() else seconds


def origin_allowed(websocket: WebSocket, settings: Settings) -> bool:
    origin = websocket.headers.get("origin")
    if origin is None:
        return True  # not a browser: nothing to protect against
    origin = origin.rstrip("/")
    if settings.allowed_origins:
        return origin in settings.allowed_origins
    host = websocket.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


def bearer_token(connection: HTTPConnection) -> str | None:
    """`?token=` (browsers cannot set headers on a WebSocket or an EventSource), else `Authorization: Bearer`."""
    token = connection.query_params.get("token")
    if token:
        return token
    header = connection.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def client_address(connection: HTTPConnection) -> str:
    return connection.client.host if connection.client else "unknown"


def quota_key(subject: TokenSubject) -> str:
    """A user counts by id; a guest token is a user of its own (the address cap bounds minting more)."""
    return f"user:{subject.user_id}" if subject.user_id is not None else f"guest:{subject.guest}"


def rate_key(subject: TokenSubject, address: str) -> str:
    """Guests share their address's bucket: a new guest token is free, a new address is not."""
    return f"user:{subject.user_id}" if subject.user_id is not None else f"address:{address}"


def resume_point(connection: HTTPConnection) -> int | None:
    return event_id(connection.query_params.get("last_event_id"))


def event_id(raw: str | None) -> int | None:
    """A client's last event id; anything but a plain decimal number means "no resume"."""
    if raw is None or not raw.isascii() or not raw.isdigit() or len(raw) > 15:
        return None
    return int(raw)


class RoomEndpoint(WebSocketEndpoint):
    encoding = None  # text is parsed here, so bad JSON gets an answer instead of a 1003 close
    kind = ""

    conn: Connection | None = None
    quota: tuple[str, str] | None = None  # (user key, address) counted in the hub's SocketQuota
    rate_key = ""
    actor: Actor | None = None
    room_id = 0

    async def on_connect(self, websocket: WebSocket) -> None:
        rt: Realtime = websocket.app.state.realtime
        if not origin_allowed(websocket, rt.settings):
            await websocket.close()  # before accept: uvicorn answers HTTP 403
            return
        await websocket.accept()
        try:
            subject = verify_token(rt.settings.jwt_secret, bearer_token(websocket))
        except TokenError as exc:
            await self._refuse(websocket, rt, WS_4001_AUTHENTICATION_FAILED, str(exc))
            return
        try:
            self.room_id = path_id(websocket)
        except errors.DomainError:
            await self._refuse(websocket, rt, WS_4404_NOT_FOUND, f"no such {self.kind}")
            return
        address = client_address(websocket)
        refused = rt.hub.quota.acquire(quota_key(subject), address)
        if refused is not None:
            await self._refuse(websocket, rt, WS_4029_TOO_MANY_CONNECTIONS, refused)
            return
        self.quota = (quota_key(subject), address)
        self.rate_key = rate_key(subject, address)
        try:
            await self._connect(websocket, rt, subject.user_id, subject.epoch)
        except BaseException:  # cancelled mid-set-up: on_disconnect will not run
            self._release(rt)
            raise

    def _release(self, rt: Realtime) -> None:
        if self.quota is not None:
            rt.hub.quota.release(*self.quota)
            self.quota = None

    async def _connect(self, websocket: WebSocket, rt: Realtime, user_id: int | None, epoch: int) -> None:
        try:
            opened = await self._open(websocket, rt, user_id, epoch)
        except Exception as exc:  # the database or the broker is down: say so, do not hang
            log.warning("could not open %s %s: %r", self.kind, self.room_id, exc)
            if self.conn is not None:
                rt.hub.leave(self.conn)
                self.conn = None
            await self._refuse(websocket, rt, WS_1011_INTERNAL_ERROR, "server unavailable (database or broker); retry")
            return
        if opened:
            assert self.conn is not None
            rt.metrics.joins.labels(self.kind, self.conn.role).inc()
            # A line per join is a tenth of a join's CPU: /metrics counts them; DEBUG shows each.
            log.debug("open room=%s role=%s user=%s", self.conn.room, self.conn.role, self.conn.user_id)

    async def _open(self, websocket: WebSocket, rt: Realtime, user_id: int | None, epoch: int) -> bool:
        standing = await self._standing(rt, user_id, epoch)
        if standing is None:
            await self._refuse(websocket, rt, WS_4001_AUTHENTICATION_FAILED, REVOKED)
            return False
        if standing.role is None:
            await self._refuse(websocket, rt, WS_4404_NOT_FOUND, f"no such {self.kind}")
            return False
        if not standing.may_watch:
            why = "this tournament is private: only its organizer, staff and its players may watch; log in as one"
            await self._refuse(websocket, rt, WS_4003_FORBIDDEN, why)
            return False
        role = standing.role
        room = self.room_name()
        self.conn = Connection(
            websocket,
            room,
            self.kind,
            role,
            self.actor.user_id if self.actor else None,
            rt.settings.max_pending,
            TokenBucket(rt.settings.rate_limit),
            rt.hub.leave,
            wire_of(websocket),
        )
        welcome = {
            "room": room,
            "user_id": self.conn.user_id,
            "role": role,
            "heartbeat_interval": whole(rt.settings.heartbeat_interval),
            "heartbeat_timeout": whole(rt.settings.heartbeat_timeout),
        }
        await rt.hub.establish(self.conn, self.snapshot_of(rt.db), resume_point(websocket), welcome)
        return True

    async def _standing(self, rt: Realtime, user_id: int | None, epoch: int) -> Standing | None:
        """The joiner's role and right to watch; None for a revoked token. A user's comes from the
        database on every join (so is a revocation); a guest's from the rooms' shared reads."""
        if user_id is None:
            return await rt.guests.get(self.room_name(), lambda: guest_in_room(rt.db, self.kind, self.room_id))
        found = await user_in_room(rt.db, self.kind, self.room_id, user_id, epoch)
        if found is None:
            return None
        self.actor, standing = found
        return standing

    async def _refuse(self, websocket: WebSocket, rt: Realtime, code: int, why: str) -> None:
        log.info("refused path=%s code=%d reason=%s", websocket.url.path, code, why)
        rt.metrics.closes.labels(str(code)).inc()
        try:
            await websocket.close(code, reason=why[:120])
        except Exception:  # the client left during the set-up: nothing to tell it
            pass

    async def on_receive(self, websocket: WebSocket, data: Any) -> None:
        conn = self.conn
        if conn is None or conn.closing:
            return
        rt: Realtime = websocket.app.state.realtime
        rt.metrics.frames_in.inc()
        conn.last_seen = time.monotonic()
        # Each socket's bucket (the contract's), then the one its user shares with its other sockets.
        if not conn.bucket.allow() or not rt.hub.user_rate.allow(self.rate_key):
            if conn.bucket.flooding():
                conn.abort(WS_4008_RATE_LIMITED, drain=True)
            else:
                self._error(rt, RATE_LIMITED, "too many frames; slow down")
            return
        try:
            frame = parse_client_frame(data if isinstance(data, str) else None)
            if frame.type == "ping":
                conn.offer(CONTROL, Frame(encode_pong(frame.fields["timestamp"])))
            elif frame.type == "score_update":
                await self.score_update(rt, frame.fields)
            elif frame.type == "report_result":
                await self.report_result(rt, frame.fields)
            elif frame.type == "confirm_result":
                await self.confirm_result(rt, frame.fields["report_id"])
            elif frame.type == "report_dispute":
                await self.report_dispute(rt, frame.fields["reason"])
        except errors.DomainError as exc:
            # The frame's own codes as they are; the API's (not_found, conflict) are about state here.
            self._error(rt, exc.code if exc.code in FRAME_ERRORS else INVALID_STATE, exc.message)
        except Exception:
            log.exception("frame handling failed in %s", conn.room)
            self._error(rt, INVALID_STATE, "the server could not do this now (database unavailable?); try again")

    def _error(self, rt: Realtime, code: str, message: str) -> None:
        rt.metrics.errors.labels(code).inc()
        if self.conn is not None:
            self.conn.offer(CONTROL, Frame(encode_error(code, message)))

    async def on_disconnect(self, websocket: WebSocket, close_code: int) -> None:
        rt: Realtime = websocket.app.state.realtime
        self._release(rt)
        conn = self.conn
        if conn is None:
            return
        rt.hub.leave(conn)
        conn.gone()
        code = conn.close_code or close_code
        rt.metrics.closes.labels(str(code)).inc()
        # Closes the server chose (slow consumer, heartbeat, restart...) are worth a line each;
        # clients leaving are counted in /metrics, and shown with DEBUG.
        level = logging.INFO if conn.close_code else logging.DEBUG
        log.log(level, "close room=%s role=%s user=%s code=%s", conn.room, conn.role, conn.user_id, code)

    # -- per room kind ----------------------------------------------------------------------------

    def room_name(self) -> str:
        raise NotImplementedError

    def snapshot_of(self, db: Database) -> Any:
        raise NotImplementedError

    async def score_update(self, rt: Realtime, fields: dict[str, Any]) -> None:
        raise errors.forbidden(f"score updates go to /ws/match/{{id}}/, not a {self.kind} room")

    async def report_result(self, rt: Realtime, fields: dict[str, Any]) -> None:
        raise errors.forbidden(f"results are reported in /ws/match/{{id}}/, not a {self.kind} room")

    async def confirm_result(self, rt: Realtime, report_id: int) -> None:
        raise errors.forbidden(f"results are confirmed in /ws/match/{{id}}/, not a {self.kind} room")

    async def report_dispute(self, rt: Realtime, reason: str) -> None:
        raise errors.forbidden(f"disputes are reported in /ws/match/{{id}}/, not a {self.kind} room")


class MatchEndpoint(RoomEndpoint):
    kind = "match"

    def room_name(self) -> str:
        return match_room(self.room_id)

    def snapshot_of(self, db: Database) -> Any:
        return lambda: snapshots.match_snapshot(db, self.room_id)

    async def score_update(self, rt: Realtime, fields: dict[str, Any]) -> None:
        await matches.update_score(
            rt.db, rt.publisher, self.actor, self.room_id, fields["participant1_score"], fields["participant2_score"]
        )

    async def report_result(self, rt: Realtime, fields: dict[str, Any]) -> None:
        score1, score2 = fields["participant1_score"], fields["participant2_score"]
        await results.report_result(
            rt.db, rt.publisher, self.actor, self.room_id, score1, score2, rt.settings.confirm_timeout
        )

    async def confirm_result(self, rt: Realtime, report_id: int) -> None:
        await results.confirm_result(rt.db, rt.publisher, self.actor, self.room_id, report_id)

    async def report_dispute(self, rt: Realtime, reason: str) -> None:
        await disputes.report_dispute(rt.db, rt.publisher, self.actor, self.room_id, reason)


class TournamentEndpoint(RoomEndpoint):
    kind = "tournament"

    def room_name(self) -> str:
        return tournament_room(self.room_id)

    def snapshot_of(self, db: Database) -> Any:
        return lambda: snapshots.tournament_snapshot(db, self.room_id)


def routes() -> list[BaseRoute]:
    return [
        WebSocketRoute(f"/ws/tournament/{ID}/", TournamentEndpoint),
        WebSocketRoute(f"/ws/tournament/{ID}", TournamentEndpoint),
        WebSocketRoute(f"/ws/match/{ID}/", MatchEndpoint),
        WebSocketRoute(f"/ws/match/{ID}", MatchEndpoint),
    ]
