"""A fault-injecting TCP proxy: between the instances and Redis or PostgreSQL.

`cut()` closes every open connection at once (a reset link); `hang()` stops moving bytes in both
directions and leaves connections open (a link that silently drops packets) until `resume()`.
New connections made during a hang are accepted and hang as well, as they would on a dead route.
"""

from __future__ import annotations

import asyncio
import contextlib

CHUNK = 65536


class FaultyProxy:
    def __init__(self, name: str, target_port: int) -> None:
        self.name = name
        self.target_port = target_port
        self.port = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> FaultyProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()

    def cut(self) -> int:
        """Close every connection now; returns how many were open."""
        writers = list(self._writers)
        for writer in writers:
            writer.transport.abort()
        return len(writers) // 2

    def hang(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_writer.transport.abort()
            return
        pair = {client_writer, server_writer}
        self._writers |= pair
        try:
            await asyncio.gather(
                self._pipe(client_reader, server_writer),
                self._pipe(server_reader, client_writer),
                return_exceptions=True,
            )
        finally:
            self._writers -= pair
            for writer in pair:
                writer.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(CHUNK)
                await self._flowing.wait()  # a hang holds what was read: nothing passes, nothing fails
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        finally:
            # One direction ended or failed: the link is gone, end both (as a reset would).
            with contextlib.suppress(Exception):
                writer.transport.abort()
