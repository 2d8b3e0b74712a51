"""create_app(settings): wires the database, the broker, the hub, the routes and the pages."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, WebSocketRoute

from matchcast.db.database import Database, upgrade
from matchcast.realtime.broker import Broker
from matchcast.realtime.endpoints import MatchEndpoint, Realtime, TournamentEndpoint
from matchcast.realtime.handshake import RequestHeadLimit
from matchcast.realtime.hub import Hub
from matchcast.realtime.metrics import Metrics
from matchcast.settings import Settings
from matchcast.web import api, organize, pages, session

log = logging.getLogger("matchcast.app")


def websocket_routes() -> list[BaseRoute]:
    return [
        WebSocketRoute("/ws/tournament/{id:int}/", TournamentEndpoint),
        WebSocketRoute("/ws/tournament/{id:int}", TournamentEndpoint),
        WebSocketRoute("/ws/match/{id:int}/", MatchEndpoint),
        WebSocketRoute("/ws/match/{id:int}", MatchEndpoint),
    ]


def create_app(settings: Settings, migrate: bool = True) -> Starlette:
    db = Database(settings.database_url)
    metrics = Metrics()
    broker = Broker(settings.broadcast_url, settings.channel_prefix)
    hub = Hub(settings, db, broker, metrics)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if migrate:
            await asyncio.to_thread(upgrade, settings.database_url)
        await db.connect()
        await broker.connect()
        await hub.start()
        log.info("matchcast ready (database %s, broadcast %s)", db.url.scheme, settings.broadcast_url.split(":")[0])
        try:
            yield
        finally:
            await hub.stop()
            await broker.disconnect()
            await db.disconnect()

    middleware = [Middleware(RequestHeadLimit), *session.middleware(settings)]
    routes = [*websocket_routes(), *api.routes, *pages.routes(), *organize.routes()]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.realtime = Realtime(settings=settings, db=db, hub=hub, metrics=metrics)
    return app
