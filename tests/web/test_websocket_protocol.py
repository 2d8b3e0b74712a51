"""The WebSocket protocol (web/websocket_protocol.py) under a tiny app on the server's own uvicorn
configuration: what wsproto would answer, on the short path (accepted here) and on wsproto's own."""

from __future__ import annotations

import asyncio
import os
import socket
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
from tests.support.processes import wait_until
from tests.support.server import test_settings

TIMEOUT = 5.0
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's example: its accept is s3pPLMBiTxaQ9kYGzzhZRbK+xOo=


DISCONNECTS: list[int] = []  # the codes of echo's disconnects, in order


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
            DISCONNECTS.append(message["code"])
            return
        if message.get("text") is not None:
            await websocket.send_text(message["text"])
        else:
            await websocket.send_bytes(message["bytes"])


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


# -- a client's frames: small whole text frames decoded here, everything else by wsproto --------


def client_frame(payload: bytes, opcode: int = 0x1, fin: bool = True, masked: bool = True) -> bytes:
    """One frame as a client sends it (RFC 6455, 5.2), masked with a random key."""
    head = bytes([(0x80 if fin else 0) | opcode])
    size = len(payload)
    bit = 0x80 if masked else 0
    if size <= 125:
        head += bytes([bit | size])
    else:
        head += bytes([bit | 126]) + size.to_bytes(2, "big")
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(opcode, payload) of the server's next frame (unmasked, as servers send them)."""
    first, second = await asyncio.wait_for(reader.readexactly(2), TIMEOUT)
    size = second & 0x7F
    if size == 126:
        size = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), TIMEOUT), "big")
    return first & 0x0F, await asyncio.wait_for(reader.readexactly(size), TIMEOUT)


@asynccontextmanager
async def raw_socket(server: Server) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter, list[int]]]:
    """A bare TCP WebSocket past its 101 and the app's first frame; the list counts the chunks
    that reached wsproto's decoder (the rest were decoded by the protocol itself)."""
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    reader, writer = await asyncio.open_connection(host, port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        writer.write(upgrade())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head.startswith(b"HTTP/1.1 101 "), head
        assert (await read_frame(reader))[0] == 0x1  # the app's first text frame
        (protocol,) = server.server_state.connections
        assert isinstance(protocol, WebSocketProtocol) and isinstance(cast(object, protocol.conn), Connection)
        to_wsproto: list[int] = []
        receive_data = protocol.conn.receive_data

        def counted(data: bytes | None) -> None:
            to_wsproto.append(len(data or b""))
            receive_data(data)

        protocol.conn.receive_data = counted  # type: ignore[method-assign]
        yield reader, writer, to_wsproto
    finally:
        writer.close()


async def send_each(writer: asyncio.StreamWriter, *chunks: bytes) -> None:
    for chunk in chunks:
        writer.write(chunk)
        await writer.drain()


async def send_to_wsproto(writer: asyncio.StreamWriter, to_wsproto: list[int], chunk: bytes) -> None:
    """Send `chunk` alone and wait until it reached wsproto: the next chunk is read apart from it
    (the server reads one message at a time, and the kernel joins what waits meanwhile)."""
    before = len(to_wsproto)
    await send_each(writer, chunk)
    await wait_until(lambda: len(to_wsproto) > before, TIMEOUT, "the chunk reaching wsproto", interval=0.001)


@pytest.mark.parametrize(
    "text", ["", "score", '{"type":"score_update","participant1_score":3}', "é🏆" * 20 + "x" * 5, "x" * 125]
)
async def test_a_small_whole_text_frame_is_decoded_here_and_delivered_as_wsproto_would(text: str) -> None:
    assert len(text.encode()) <= 125
    async with serving() as server, raw_socket(server) as (reader, writer, to_wsproto):
        for _ in range(3):
            await send_each(writer, client_frame(text.encode()))
            assert await read_frame(reader) == (0x1, text.encode())
        assert to_wsproto == []


async def test_what_is_not_one_small_whole_text_frame_goes_to_wsproto_in_order() -> None:
    async with serving() as server, raw_socket(server) as (reader, writer, to_wsproto):
        big = "y" * 126
        await send_to_wsproto(writer, to_wsproto, client_frame(big.encode()))  # a 16-bit length
        assert await read_frame(reader) == (0x1, big.encode())
        await send_to_wsproto(writer, to_wsproto, client_frame(b"\x00\xff", opcode=0x2))  # binary
        assert await read_frame(reader) == (0x2, b"\x00\xff")
        await send_to_wsproto(writer, to_wsproto, client_frame(b"one") + client_frame(b"two"))  # two at once
        assert [await read_frame(reader) for _ in range(2)] == [(0x1, b"one"), (0x1, b"two")]
        whole = client_frame(b"split")
        await send_to_wsproto(writer, to_wsproto, whole[:3])  # a frame cut in two: wsproto holds the start ...
        await send_to_wsproto(writer, to_wsproto, whole[3:])  # ... so the rest is its too
        assert await read_frame(reader) == (0x1, b"split")
        # A message in fragments, a ping between them: its last fragment looks whole and small.
        await send_to_wsproto(writer, to_wsproto, client_frame(b"frag", fin=False))
        await send_to_wsproto(writer, to_wsproto, client_frame(b"p", opcode=0x9))
        assert await read_frame(reader) == (0xA, b"p")  # the pong
        await send_to_wsproto(writer, to_wsproto, client_frame(b"ment", opcode=0x0))
        assert await read_frame(reader) == (0x1, b"fragment")
        seen = len(to_wsproto)
        await send_each(writer, client_frame(b"after"))  # between messages again: decoded here
        assert await read_frame(reader) == (0x1, b"after")
        assert len(to_wsproto) == seen == 8


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([client_frame(b"\xff\xfe")], 1007),  # not UTF-8: wsproto's answer
        ([client_frame(b"\xe2\x82")], 1007),  # UTF-8 cut short
        ([client_frame(b"plain", masked=False)], 1002),  # a client's frames are masked
        ([client_frame(b"frag", fin=False), client_frame(b"whole")], 1002),  # a new message inside one
        ([bytes([0xC1, 0x85]) + client_frame(b"rsv1!")[2:]], 1002),  # RSV1 without an extension
    ],
)
async def test_a_broken_frame_is_judged_by_wsproto(frames: list[bytes], code: int) -> None:
    """As in uvicorn: the connection is dropped and the app's receive ends with wsproto's code."""
    async with serving() as server, raw_socket(server) as (reader, writer, to_wsproto):
        DISCONNECTS.clear()
        await send_each(writer, *frames)
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
        assert to_wsproto
        await wait_until(lambda: bool(DISCONNECTS), TIMEOUT, "the app hearing the disconnect", interval=0.001)
        assert DISCONNECTS == [code]


async def test_a_close_after_small_frames_is_answered() -> None:
    async with serving() as server, raw_socket(server) as (reader, writer, to_wsproto):
        await send_each(writer, client_frame(b"last words"))
        assert await read_frame(reader) == (0x1, b"last words")
        await send_each(writer, client_frame((4000).to_bytes(2, "big") + b"bye", opcode=0x8))
        opcode, payload = await read_frame(reader)
        assert (opcode, int.from_bytes(payload[:2], "big")) == (0x8, 4000)
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""  # and the connection closed
        assert len(to_wsproto) == 1
