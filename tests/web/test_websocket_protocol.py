"""The WebSocket protocol (web/websocket_protocol.py) under a tiny app on the server's own uvicorn
configuration: what wsproto would answer, on the short path (accepted here) and on wsproto's own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from wsproto import WSConnection
from wsproto.connection import Connection

from matchcast.server import Server, config
from matchcast.web.websocket_protocol import WebSocketProtocol
from tests.support.server import test_settings

TIMEOUT = 5.0
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's example: its accept is s3pPLMBiTxaQ9kYGzzhZRbK+xOo=


async def echo(websocket: WebSocket) -> None:
    """Accepts as the query says, then echoes text until the client closes; `fail` raises first."""
    mode = websocket.query_params.get("mode", "")
    if mode == "refuse":
        await websocket.close()
        return
    if mode == "deny":
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"4")]
        await websocket.send({"type": "websocket.http.response.start", "status": 431, "headers": headers})
        await websocket.send({"type": "websocket.http.response.body", "body": b"long"})
        return
    if mode == "fail":
        raise RuntimeError("the app failed before accepting")
    if mode == "subprotocol":
        await websocket.accept(subprotocol=websocket.scope["subprotocols"][-1])
    elif mode == "headers":
        await websocket.accept(headers=[(b"x-room", b"match_1")])
    else:
        await websocket.accept()
    await websocket.send_text(repr((websocket.url.path, websocket.url.query, websocket.headers.get("x-probe"))))
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        await websocket.send_text(message["text"])


@asynccontextmanager
async def serving() -> AsyncIterator[Server]:
    app = Starlette(routes=[WebSocketRoute("/echo/{name}", echo)])
    server = Server(config(app, test_settings(), port=0, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())

    async def started() -> None:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)  # polled, bounded by the wait_for below

    await asyncio.wait_for(started(), 20)
    try:
        yield server
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 20)


def url(server: Server, query: str = "") -> str:
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    return f"ws://{host}:{port}/echo/a%20b" + (f"?{query}" if query else "")


async def raw_exchange(server: Server, head: bytes) -> bytes:
    """Send `head` on a bare TCP connection; what the server answers until it closes or pauses."""
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(head)
        return await asyncio.wait_for(reader.read(4096), TIMEOUT)
    finally:
        writer.close()


def upgrade(*extra: bytes, version: bytes = b"13", key: bytes | None = KEY) -> bytes:
    lines = [b"GET /echo/a HTTP/1.1", b"Host: example", b"Upgrade: websocket", b"Connection: keep-alive, Upgrade"]
    lines += [b"Sec-WebSocket-Version: " + version] + ([b"Sec-WebSocket-Key: " + key] if key else [])
    return b"\r\n".join([*lines, *extra, b"", b""])


async def test_an_accept_is_answered_here_as_rfc_6455_says_and_frames_flow_in_order() -> None:
    async with serving() as server:
        answer = await raw_exchange(server, upgrade())
        assert answer.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"), answer
        assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in answer
        assert b"\r\ndate: " in answer and b"\r\nserver: uvicorn\r\n" in answer  # uvicorn's defaults
        async with connect(url(server, "x=1&token=abc"), additional_headers={"X-Probe": "p"}) as ws:
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == repr(("/echo/a b", "x=1&token=abc", "p"))
            (protocol,) = server.server_state.connections
            assert isinstance(protocol, WebSocketProtocol)
            assert isinstance(cast(object, protocol.conn), Connection)  # wsproto's frames only: no h11 kept
            for n in range(50):
                await ws.send(f"frame {n}")
            assert [await asyncio.wait_for(ws.recv(), TIMEOUT) for _ in range(50)] == [f"frame {n}" for n in range(50)]
            await ws.close(4000)
        assert ws.close_code == 4000


async def test_a_malformed_upgrade_gets_wsprotos_answer() -> None:
    async with serving() as server:
        assert (await raw_exchange(server, upgrade(key=None))).startswith(b"HTTP/1.1 400 ")
        wrong_version = await raw_exchange(server, upgrade(version=b"8"))
        assert wrong_version.startswith(b"HTTP/1.1 426 ") and b"Sec-WebSocket-Version: 13" in wrong_version


@pytest.mark.parametrize("mode", ["subprotocol", "headers"])
async def test_an_accept_with_more_to_say_is_wsprotos(mode: str) -> None:
    async with serving() as server:
        async with connect(url(server, f"mode={mode}"), subprotocols=["a", "b"]) as ws:  # type: ignore[list-item]
            assert await asyncio.wait_for(ws.recv(), TIMEOUT)
            if mode == "subprotocol":
                assert ws.subprotocol == "b"
            else:
                assert ws.response is not None and ws.response.headers["x-room"] == "match_1"
            (protocol,) = server.server_state.connections
            assert isinstance(protocol, WebSocketProtocol) and isinstance(protocol.conn, WSConnection)
            await ws.send("still echoed")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "still echoed"


@pytest.mark.parametrize(("mode", "status"), [("refuse", 403), ("deny", 431), ("fail", 500)])
async def test_refusals_before_accept_are_wsprotos_http_answers(mode: str, status: int) -> None:
    async with serving() as server:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url(server, f"mode={mode}")):
                pass
        assert refused.value.response.status_code == status
        if mode == "deny":
            assert refused.value.response.body == b"long"


async def test_the_client_leaving_ends_the_apps_receive() -> None:
    async with serving() as server:
        async with connect(url(server)) as ws:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
            ws.transport.abort()
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), TIMEOUT)

        async def gone() -> None:
            while server.server_state.connections or server.server_state.tasks:
                await asyncio.sleep(0.01)  # polled, bounded by the wait_for

        await asyncio.wait_for(gone(), TIMEOUT)
