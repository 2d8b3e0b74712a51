"""create_app(settings): wires the database, the broker, the hub, the routes and the pages."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from typing import Any

import asyncpg
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from matchcast import errors
from matchcast.db.database import Database, upgrade
from matchcast.logs import redact_tokens
from matchcast.realtime.broadcast import BroadcastBroker
from matchcast.realtime.hub import Hub
from matchcast.realtime.metrics import Metrics
from matchcast.services import freshness, recovery
from matchcast.services.deadlines import DeadlineTimer
from matchcast.services.webhook_delivery import WebhookDispatcher
from matchcast.settings import Settings
from matchcast.web import api, organize, pages, session, sockets, sse
from matchcast.web.handshake import RequestHeadLimit
from matchcast.web.sockets import Realtime
from matchcast.web.throttle import LoginThrottle

log = logging.getLogger("matchcast.app")
MAX_BODY = 1024 * 1024  # bytes of any request body; forms and JSON are far smaller
# What asyncpg raises when PostgreSQL is down, restarting or has dropped the connection: answered
# 503 "unavailable" (a retry will do) instead of a 500 with a traceback. The transaction, if any,
# was rolled back by the server, so nothing is half-written.
DATABASE_DOWN = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.OperatorInterventionError)
WS_1011_INTERNAL_ERROR = 1011
UNLOGGED_QUIET_WINDOWS = 10  # a score untouched for this many batching windows is past its window


async def database_unavailable(conn: Request | WebSocket, exc: Exception) -> Response | None:
    log.warning("database unavailable during %s: %s: %s", conn.url.path, type(exc).__name__, exc)
    message = "the database is unavailable; try again shortly"
    if isinstance(conn, WebSocket):
        try:
            await conn.close(WS_1011_INTERNAL_ERROR, reason=message)
        except Exception:
            pass
        return None
    return api.error_response(errors.UNAVAILABLE, message)


def create_app(settings: Settings, migrate: bool = True) -> Starlette:
    redact_tokens()
    db = Database(settings.database_url, settings.database_pool_size)
    metrics = Metrics()
    broker = BroadcastBroker(settings.broadcast_url, settings.channel_prefix)
    hub = Hub(
        settings,
        db,
        broker,
        metrics,
        refresh=functools.partial(freshness.refresh, db),
        stale_check=freshness.stale_check,
    )
    # The services' publisher: the deadline timer watches reports go by, the webhook dispatcher
    # watches its tournaments' events, and the hub numbers, stores and fans out.
    dispatcher = WebhookDispatcher(
        db, hub, settings.webhook_allow_private, settings.webhook_timeout, settings.webhook_max_sleep
    )
    deadlines = DeadlineTimer(db, dispatcher, settings.deadline_max_sleep)

    async def publish_unlogged(quiet_for: timedelta, after: float) -> None:
        await asyncio.sleep(after)
        try:
            recovered = await recovery.publish_unlogged_scores(db, deadlines, quiet_for)
        except DATABASE_DOWN as exc:  # the next start looks again
            log.warning("could not look for scores stored but never logged: %s", exc)
            return
        if recovered:
            log.warning("published %d score(s) stored but never logged (an instance was killed)", recovered)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if migrate:
            await asyncio.to_thread(upgrade, settings.database_url)
        # Each part is stopped if it started, in reverse order, even when a start or another stop
        # fails: a failed start-up or shutdown never leaves the database's pool or the broker open.
        async with AsyncExitStack() as started:
            await db.connect()
            started.push_async_callback(db.disconnect)
            await db.open_pool()
            await broker.connect()
            started.push_async_callback(broker.disconnect)
            await hub.start()
            started.push_async_callback(hub.stop)
            # Scores a killed instance stored inside a batching window but never logged (recovery.py):
            # those quiet for long enough now, and, once that long has passed, those stored just before.
            quiet_for = timedelta(milliseconds=UNLOGGED_QUIET_WINDOWS * settings.score_batch_window_ms)
            await publish_unlogged(quiet_for, after=0.0)
            dispatcher.start()
            started.push_async_callback(dispatcher.stop)
            deadlines.start()  # it publishes through the dispatcher: stopped before it
            started.push_async_callback(deadlines.stop)
            recheck = asyncio.create_task(publish_unlogged(quiet_for, after=quiet_for.total_seconds()))

            async def stop_recheck() -> None:
                recheck.cancel()
                await asyncio.gather(recheck, return_exceptions=True)

            started.push_async_callback(stop_recheck)
            log.info("matchcast ready (database %s, broadcast %s)", db.url.scheme, settings.broadcast_url.split(":")[0])
            yield

    middleware = [
        Middleware(RequestHeadLimit),
        Middleware(RequestBodyLimitMiddleware, max_body_size=MAX_BODY),  # streamed: 413 past it
        *session.middleware(settings),
    ]
    routes = [*sockets.routes(), *sse.routes, *api.routes, *pages.routes(), *organize.routes()]
    handlers: dict[Any, Any] = dict.fromkeys(DATABASE_DOWN, database_unavailable)
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan, exception_handlers=handlers)
    app.state.realtime = Realtime(settings=settings, db=db, hub=hub, metrics=metrics, publisher=deadlines)
    app.state.login_throttle = LoginThrottle(settings.login_rate_limit)
    return app
