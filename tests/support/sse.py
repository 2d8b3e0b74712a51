"""A server-sent-events reader over httpx whose every read is bounded in time."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

READ_TIMEOUT = 5.0


@dataclass
class Message:
    event: str | None = None
    id: int | None = None
    data: str | None = None
    comment: str | None = None

    @property
    def json(self) -> Any:
        assert self.data is not None, f"no data in {self}"
        return json.loads(self.data)


class Reader:
    """Messages parsed as the EventSource algorithm does (fields, comments, a blank line ends one),
    by a task of its own, so a read that times out loses nothing."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._queue: asyncio.Queue[Message | None] = asyncio.Queue()
        self.task = asyncio.create_task(self._parse())

    async def _parse(self) -> None:
        message, data = Message(), list[str]()
        try:
            async for line in self.response.aiter_lines():
                if line == "":
                    if data or message.event or message.id is not None:
                        message.data = "\n".join(data) if data else None
                        self._queue.put_nowait(message)
                    message, data = Message(), list[str]()
                    continue
                field, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if field == "":
                    self._queue.put_nowait(Message(comment=value))
                elif field == "data":
                    data.append(value)
                elif field == "event":
                    message.event = value
                elif field == "id":
                    message.id = int(value)
        finally:
            self._queue.put_nowait(None)

    async def next(self, timeout: float = READ_TIMEOUT) -> Message:
        """The next message, or comment line (a message with only `comment`)."""
        message = await asyncio.wait_for(self._queue.get(), timeout)
        if message is None:
            self._queue.put_nowait(None)
            raise EOFError("the stream ended")
        return message

    async def ended(self, timeout: float = READ_TIMEOUT) -> list[Message]:
        """Every message until the server ends the stream; fails if it does not end in time."""
        found: list[Message] = []

        async def drain() -> None:
            while True:
                try:
                    found.append(await self.next(timeout))
                except EOFError:
                    return

        await asyncio.wait_for(drain(), timeout)
        await self.task  # raises if the stream was cut instead of ended (an incomplete chunked body)
        return found

    async def event(self, timeout: float = READ_TIMEOUT) -> Message:
        """The next message that is not a comment."""

        async def skip_comments() -> Message:
            while (message := await self.next(timeout)).comment is not None:
                pass
            return message

        return await asyncio.wait_for(skip_comments(), timeout)

    async def state(self) -> dict[str, Any]:
        message = await self.event()
        assert message.event == "state" and message.id is None, message
        state: dict[str, Any] = message.json
        return state

    async def events(self, count: int, timeout: float = READ_TIMEOUT) -> list[Message]:
        return [await self.event(timeout) for _ in range(count)]

    async def quiet(self, seconds: float) -> list[Message]:
        """Every message (comments skipped) that arrives within `seconds`."""
        found: list[Message] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (left := deadline - loop.time()) > 0:
            try:
                found.append(await self.event(left))
            except TimeoutError:
                break
        return found


@asynccontextmanager
async def open_stream(
    base_url: str, path: str, token: str | None = None, headers: dict[str, str] | None = None
) -> AsyncIterator[Reader]:
    """GET `path` as a stream; the response must be 200 text/event-stream."""
    if token is not None:  # added to the path: httpx's `params` would replace its query
        path += ("&" if "?" in path else "?") + f"token={token}"
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=READ_TIMEOUT) as http,
        http.stream("GET", path, headers=headers) as response,
    ):
        assert response.status_code == 200, (response.status_code, await response.aread())
        assert response.headers["content-type"].startswith("text/event-stream")
        reader = Reader(response)
        try:
            yield reader
        finally:
            reader.task.cancel()
            await asyncio.gather(reader.task, return_exceptions=True)
