"""Readers of rooms that must see every event: WebSocket spectators, SSE readers, a webhook receiver.

Each reader reconnects after every drop, to any instance that is up, with the last id it processed
(`last_event_id`, `Last-Event-ID`); on `replay: "partial"` it takes the snapshot and continues
from the snapshot's id. A reader that sees an id that does not follow the last one records it (the
checker reports it) and reconnects, as the protocol tells clients to.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Callable
from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from chaos.cluster import Instance
from chaos.history import History, Stream

SILENCE = 60.0  # longer than the heartbeat interval (25 s): no frame at all means a dead link
BACKOFF = (0.2, 1.0)


def pick(instances: list[Instance], rng: random.Random) -> Instance:
    up = [i for i in instances if i.up]
    return rng.choice(up or instances)


async def spectate(
    stream: Stream, path: str, token: Callable[[], str], instances: list[Instance], stop: asyncio.Event, seed: int
) -> None:
    rng = random.Random(seed)
    while not stop.is_set():
        instance = pick(instances, rng)
        opened, replayed = time.time(), stream.replayed
        reason = "closed"
        try:
            url = f"{instance.ws}{path}?token={token()}&last_event_id={stream.last}"
            async with connect(url, open_timeout=5, close_timeout=1, max_size=None) as ws:
                stream.connections += 1
                stream.instance = instance.index
                reason = await _read_socket(ws, stream, instance.index, stop)
        except ConnectionClosed as exc:
            reason = f"closed {exc.rcvd.code if exc.rcvd else 'without a close frame'}"
        except (OSError, TimeoutError, WebSocketException) as exc:
            reason = type(exc).__name__
        stream.ended(opened, reason, instance.index, replayed)
        if not stop.is_set():
            await asyncio.sleep(rng.uniform(*BACKOFF))  # back off before the next attempt


async def _read_socket(ws: Any, stream: Stream, instance: int, stop: asyncio.Event) -> str:
    established = json.loads(await asyncio.wait_for(ws.recv(), 10))
    if established.get("type") != "connection_established":
        return f"unexpected first frame {established.get('type')}"
    data = established["data"]
    latest = int(data["last_event_id"])
    if data["replay"] == "partial":
        stream.resets.append((len(stream.ids), latest))
    replay_until = latest
    while not stop.is_set():
        receive = asyncio.ensure_future(ws.recv())
        stopped = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({receive, stopped}, timeout=SILENCE, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if receive not in done:
            receive.cancel()
            return "stopped" if stop.is_set() else "silent"
        frame = json.loads(receive.result())
        if frame.get("type") == "ping":
            await ws.send(json.dumps({"type": "pong", "timestamp": frame.get("timestamp", 0)}))
            continue
        if "id" not in frame:
            continue
        if frame["id"] <= replay_until:
            stream.replayed += 1
        if not stream.receive(int(frame["id"]), instance):
            return "jump"
    return "stopped"


async def sse_read(
    stream: Stream, path: str, token: Callable[[], str], instances: list[Instance], stop: asyncio.Event, seed: int
) -> None:
    rng = random.Random(seed)
    timeout = httpx.Timeout(5, read=SILENCE)
    async with httpx.AsyncClient(timeout=timeout) as client:
        while not stop.is_set():
            instance = pick(instances, rng)
            opened, replayed = time.time(), stream.replayed
            headers = {"Authorization": f"Bearer {token()}", "Last-Event-ID": str(stream.last)}
            reason = "closed"
            try:
                async with client.stream("GET", instance.http + path, headers=headers) as response:
                    if response.status_code != 200:
                        reason = f"http {response.status_code}"
                    else:
                        stream.connections += 1
                        stream.instance = instance.index
                        reason = await _read_sse(response, stream, instance.index, stop)
            except (httpx.HTTPError, OSError) as exc:
                reason = type(exc).__name__
            stream.ended(opened, reason, instance.index, replayed)
            if not stop.is_set():
                await asyncio.sleep(rng.uniform(*BACKOFF))  # back off before the next attempt


async def _read_sse(response: httpx.Response, stream: Stream, instance: int, stop: asyncio.Event) -> str:
    event_id: int | None = None
    lines = response.aiter_lines()
    while not stop.is_set():
        next_line = asyncio.ensure_future(anext(lines))
        stopped = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({next_line, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if next_line not in done:
            next_line.cancel()
            return "stopped"
        try:
            line = next_line.result()
        except StopAsyncIteration:
            return "closed"
        if line.startswith("id:"):
            event_id = int(line[3:].strip())
        elif line == "" and event_id is not None:
            if not stream.receive(event_id, instance):
                return "jump"
            event_id = None
    return "stopped"


class WebhookReceiver:
    """A plain asyncio HTTP server on loopback: answers 200 to every POST and records the ids."""

    def __init__(self, history: History) -> None:
        self.history = history
        self.port = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> WebhookReceiver:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def url(self, tournament_id: int) -> str:
        return f"http://127.0.0.1:{self.port}/hook/{tournament_id}"

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
            while True:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                body = await asyncio.wait_for(reader.readexactly(length), 30)
                tournament_id = int(path.rstrip("/").rsplit("/", 1)[1])
                self.history.webhook.setdefault(tournament_id, []).append(int(json.loads(body)["id"]))
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        writer.close()
