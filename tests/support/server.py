"""A real uvicorn server on a free port, in the test's event loop, and a WebSocket client helper."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import websockets
from starlette.applications import Starlette
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from matchcast.app import create_app
from matchcast.security import create_guest_token, create_user_token
from matchcast.server import Server, config
from matchcast.settings import Settings
from matchcast.web.sockets import Realtime
from tests.support.factories import Factory

RECV_TIMEOUT = 5.0
TEST_SECRET = "test-secret-that-is-long-enough-0123456789"


@dataclass
class RunningServer:
    host: str
    port: int
    settings: Settings
    server: Server

    @property
    def http(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def realtime(self) -> Realtime:
        # config.app is the Starlette app running_server() passed in; its state is untyped.
        app = cast(Starlette, self.server.config.app)
        return cast(Realtime, app.state.realtime)

    @property
    def factory(self) -> Factory:
        return Factory(self.realtime.db, self.realtime.publisher)  # the chain production uses

    def token(self, user_id: int, ttl: int = 600) -> str:
        return create_user_token(self.settings.jwt_secret, user_id, ttl)

    def guest_token(self) -> str:
        return create_guest_token(self.settings.jwt_secret, 600)

    @asynccontextmanager
    async def client(self, path: str, token: str | None = None, **kwargs: Any) -> AsyncIterator[Client]:
        query = path
        if token is not None:
            query += ("&" if "?" in path else "?") + f"token={token}"
        async with connect(self.ws + query, open_timeout=5, close_timeout=2, **kwargs) as ws:
            yield Client(ws)


class Client:
    """A websockets client whose every receive is bounded in time."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send(self, obj: Any) -> None:
        await self.ws.send(obj if isinstance(obj, str | bytes) else json.dumps(obj))

    async def recv(self, timeout: float = RECV_TIMEOUT) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))  # type: ignore[no-any-return]

    async def recv_type(self, *types: str, timeout: float = RECV_TIMEOUT) -> dict[str, Any]:
        """The next frame of one of `types`, skipping pings and anything else."""

        async def wait() -> dict[str, Any]:
            while True:
                frame = await self.recv(timeout)
                if frame["type"] in types:
                    return frame

        return await asyncio.wait_for(wait(), timeout)

    async def established(self) -> dict[str, Any]:
        frame = await self.recv_type("connection_established")
        return frame["data"]  # type: ignore[no-any-return]

    async def events(self, count: int, timeout: float = RECV_TIMEOUT) -> list[dict[str, Any]]:
        """The next `count` server events (frames with an id), skipping control frames."""
        found: list[dict[str, Any]] = []

        async def collect() -> None:
            while len(found) < count:
                frame = await self.recv(timeout)
                if "id" in frame:
                    found.append(frame)

        await asyncio.wait_for(collect(), timeout)
        return found

    async def quiet(self, seconds: float) -> list[dict[str, Any]]:
        """Every frame that arrives within `seconds`."""
        frames: list[dict[str, Any]] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (left := deadline - loop.time()) > 0:
            try:
                frames.append(await self.recv(left))
            except TimeoutError:
                break
        return frames

    async def closed(self, timeout: float = RECV_TIMEOUT) -> int | None:
        """Read until the server closes; return the close code."""

        async def drain() -> int | None:
            try:
                while True:
                    await self.ws.recv()
            except ConnectionClosed as exc:
                return exc.rcvd.code if exc.rcvd else None

        return await asyncio.wait_for(drain(), timeout)


def test_settings(**changes: Any) -> Settings:
    base = Settings(jwt_secret=TEST_SECRET, database_url="sqlite:///./unused.db")
    return base.with_(**changes)


test_settings.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test, wherever it is imported


@asynccontextmanager
async def running_server(settings: Settings, **options: Any) -> AsyncIterator[RunningServer]:
    """`options`: uvicorn's, over matchcast.server.config's (another WebSocket implementation, say)."""
    server = Server(config(create_app(settings), settings, port=0, **{"log_level": "warning", **options}))
    task = asyncio.create_task(server.serve())

    async def started() -> None:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("server stopped during start-up")
            await asyncio.sleep(0.01)  # the poll interval, bounded by the wait_for below

    await asyncio.wait_for(started(), 20)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    try:
        yield RunningServer(host, port, settings, server)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 20)


__all__ = ["Client", "RunningServer", "running_server", "test_settings", "websockets"]
