"""The storm's participant (bench/storm.py): a score every `interval` seconds, whatever happens to the server.

While the server is down its sends fail, and it sends the same score again on the next tick, over a
new connection it keeps trying to open (every PROBE_PERIOD). Its own socket receives the room's
score events too: the last score it sends names the room's last event.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from bench.resuming import PROBE_PERIOD, close_code, open_socket


class Scorer:
    """The match's participant, sending a score every `interval` seconds whatever happens to the server."""

    def __init__(self, url: str, interval: float) -> None:
        self.url = url
        self.interval = interval
        self.ws: ClientConnection | None = None
        self.lost = asyncio.Event()
        self.scoring = True
        self.value = 0  # the last score sent
        self.sent = 0
        self.failed = 0  # ticks whose score could not be sent (no connection, or it closed under the send)
        self.connects = 0
        self.closes: list[int] = []
        self.errors: list[str] = []
        self.seen: list[tuple[int, int, int]] = []  # (event id, participant1_score, monotonic ns) of score events
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self._stay_connected()), loop.create_task(self._score())]

    async def _stay_connected(self) -> None:
        while True:
            if self.ws is not None:
                await self.lost.wait()
                self.lost.clear()
                continue
            try:
                ws, data = await open_socket(self.url)
            except Exception:
                await asyncio.sleep(PROBE_PERIOD)
                continue
            if data.get("role") != "participant":
                raise RuntimeError(f"the scorer was admitted as {data.get('role')!r}, not as a participant")
            self.ws = ws
            self.connects += 1
            self.tasks.append(asyncio.get_running_loop().create_task(self._read(ws)))

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for text in ws:
                if isinstance(text, str) and text.startswith('{"type":"score_updated"'):
                    frame = json.loads(text)
                    self.seen.append((frame["id"], frame["data"]["participant1_score"], time.monotonic_ns()))
                elif isinstance(text, str) and text.startswith('{"type":"error"'):
                    self.errors.append(f"connection {self.connects}: {text[:160]}")
        except ConnectionClosed as exc:
            self.closes.append(close_code(exc))
        finally:
            self.ws = None
            self.lost.set()

    async def _score(self) -> None:
        while self.scoring:
            if not await self._send(self.value + 1):
                self.failed += 1
            await asyncio.sleep(self.interval)

    async def _send(self, value: int) -> bool:
        ws = self.ws
        if ws is None:
            return False
        try:
            await ws.send(f'{{"type":"score_update","participant1_score":{value},"participant2_score":0}}')
        except ConnectionClosed:
            return False
        self.value = value
        self.sent += 1
        return True

    @property
    def last_id(self) -> int:
        return self.seen[-1][0] if self.seen else 0

    async def event_after(self, event_id: int, after_ns: int, seconds: float) -> int:
        """When (monotonic ns) the first score event past `event_id` arrived after `after_ns`; 0: none in time."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for seen_id, _, at in self.seen:
                if seen_id > event_id and at > after_ns:
                    return at
            await asyncio.sleep(0.01)
        return 0

    async def finish(self, seconds: float) -> dict[str, Any]:
        """Stop the ticks, send one last score, and name the event that carried it: the room's last.

        `final_id` is None when that score did not come back in `seconds` (the server stopped
        publishing)."""
        self.scoring = False
        await asyncio.gather(self.tasks[1], return_exceptions=True)
        end = time.monotonic() + seconds
        final = self.value + 1
        while not await self._send(final):
            if time.monotonic() > end:
                raise TimeoutError(f"the scorer could not send its last score in {seconds:.0f}s")
            await asyncio.sleep(PROBE_PERIOD)
        while not self.seen or self.seen[-1][1] < final:
            if time.monotonic() > end:
                return {**self.stats(), "final_value": final, "final_id": None}
            await asyncio.sleep(0.01)
        return {**self.stats(), "final_value": final, "final_id": self.seen[-1][0]}

    def stats(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "failed": self.failed,
            "connects": self.connects,
            "closes": self.closes,
            "errors": self.errors[:10],
            "last_seen": self.seen[-3:],  # (event id, score, monotonic ns)
        }

    async def close(self) -> None:
        self.scoring = False
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.ws is not None:
            self.ws.transport.abort()
