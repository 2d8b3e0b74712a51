"""Spectators that resume with `last_event_id` through a server restart.

The spectators of the reconnect storm (bench/storm.py), run in the load generator's processes. A
spectator notes the id of every event it is delivered; when the server closes it, it reconnects at
once with `?last_event_id=<the last id it has>`, as the contract's clients do, for as long as it
takes. Afterwards its log is checked: every id from one past the room's last id when it first
connected to the room's final id, once each, in order.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from array import array
from collections import Counter
from collections.abc import Sequence
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

ID_KEY = ',"id":'  # every stored event's frame starts {"type":"<type>","id":<id>,... (protocol.encode_event)
CONNECT_TIMEOUT = 60.0  # seconds for one handshake and its connection_established
PROBE_PERIOD = 0.01  # seconds between retries of a refused connect: a tiny backoff, everyone comes at once
RETRY_DELAY = 0.02  # mean seconds before retrying any other failure (a reset, the stopping server's 500)


def close_code(exc: ConnectionClosed) -> int:
    return exc.rcvd.code if exc.rcvd is not None else 1006


async def open_socket(url: str) -> tuple[ClientConnection, dict[str, Any]]:
    """A connection and its connection_established data; raises what the handshake raised."""
    ws = await connect(
        url,
        compression=None,
        ping_interval=None,
        close_timeout=1,
        max_queue=64,
        open_timeout=CONNECT_TIMEOUT,
        # Not looked up: websockets reads the environment's proxy variables on every connect, which
        # was most of a 10k storm's client CPU while the server sat idle.
        proxy=None,
    )
    try:
        first = await asyncio.wait_for(ws.recv(), CONNECT_TIMEOUT)
        frame = json.loads(first)
        if frame.get("type") != "connection_established":
            raise RuntimeError(f"unexpected first frame: {str(first)[:200]}")
    except BaseException:
        ws.transport.abort()
        raise
    return ws, frame["data"]


class PortGate:
    """Stands in for every spectator of this process retrying its refused connect every PROBE_PERIOD.

    While the port is closed one probe retries for all of them, and lets them all go the moment the
    port accepts: the same storm as 10k clients polling at 10 ms, without 10k clients' worth of
    failing connects taking the load generator's core away from the handshakes that follow."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.open = asyncio.Event()
        self.open.set()
        self.probe: asyncio.Task[None] | None = None

    async def wait(self) -> None:
        """Called after a refused connect: returns once the port accepts connections again."""
        if self.open.is_set():
            self.open.clear()
            self.probe = asyncio.get_running_loop().create_task(self._watch())
        await self.open.wait()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(PROBE_PERIOD)
            try:
                _, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                continue
            writer.transport.abort()
            self.open.set()
            return


class Link:
    """One connection of a spectator: when it was established, when it had caught up, how it ended."""

    __slots__ = ("attempted_ns", "closed", "established_ns", "replay", "resumed_ns", "start", "target")

    def __init__(self, attempted_ns: int, established_ns: int, target: int, start: int, replay: str) -> None:
        self.attempted_ns = attempted_ns  # when the attempt that made it began (its TCP connect)
        self.established_ns = established_ns
        self.target = target  # the room's last event id when it was established
        self.start = start  # index of its first event in the spectator's log
        self.replay = replay
        self.resumed_ns = 0  # when the spectator held every event up to `target`
        self.closed: int | None = None


class Spectator:
    __slots__ = ("attempts", "failures", "first", "ids", "last", "late", "links", "token")

    def __init__(self, token: str, late: bool) -> None:
        self.token = token
        self.late = late  # reconnects only once released (the replay path runs whatever the timing)
        self.ids = array("q")  # every event id delivered, in the order delivered
        self.first = 0  # the first id it must hold: one past the last id when it first connected
        self.last = -1  # the highest id it holds: what it resumes from
        self.links: list[Link] = []
        self.attempts = 0
        self.failures: Counter[str] = Counter()

    def resumed_since(self, since_ns: int) -> bool:
        """Connected after `since_ns`, caught up, and still open."""
        if not self.links:
            return False
        link = self.links[-1]
        return link.established_ns > since_ns and link.resumed_ns > 0 and link.closed is None


class Crowd:
    """This process's share of the storm's spectators, all on one match."""

    def __init__(self, url: str, tokens: Sequence[str], late: int, resume: bool, deadline: float) -> None:
        self.url = url
        self.resume = resume  # False only to check that the verification catches a lost resume
        self.deadline = deadline
        self.spectators = [Spectator(token, n < late) for n, token in enumerate(tokens)]
        host_port = url.split("//", 1)[1].split("/", 1)[0]
        host, port = host_port.rsplit(":", 1)
        self.gate = PortGate(host, int(port))
        self.released = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.admitted = 0
        self.all_admitted = asyncio.Event()

    async def connect(self, concurrency: int) -> dict[str, Any]:
        """Open every spectator's first connection, `concurrency` handshakes at a time."""
        admission = asyncio.Semaphore(concurrency)
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self._live(s, admission)) for s in self.spectators]
        if self.spectators:
            await self.all_admitted.wait()  # each first connection is bounded by CONNECT_TIMEOUT
        failures: Counter[str] = Counter()
        for s in self.spectators:
            failures.update(s.failures)
        return {
            "open": sum(1 for s in self.spectators if s.links),
            "errors": dict(failures),
            "seconds": time.monotonic() - started,
        }

    async def _live(self, s: Spectator, admission: asyncio.Semaphore) -> None:
        async with asyncio.timeout(self.deadline - time.monotonic()):
            try:
                async with admission:
                    ws = await self._attempt(s)
            finally:
                self.admitted += 1
                if self.admitted == len(self.spectators):
                    self.all_admitted.set()
            while ws is not None:
                await self._read(s, ws)
                if s.late:
                    await self.released.wait()
                ws = None
                while ws is None:
                    ws = await self._attempt(s)

    async def _attempt(self, s: Spectator) -> ClientConnection | None:
        """One handshake; on failure, waits as a client would before its next attempt."""
        s.attempts += 1
        query = f"?token={s.token}"
        if s.links and self.resume:
            query += f"&last_event_id={s.last}"
        attempted = time.monotonic_ns()
        try:
            ws, data = await open_socket(self.url + query)
        except ConnectionRefusedError:
            s.failures["refused"] += 1
            await self.gate.wait()
            return None
        except ConnectionClosed as exc:  # accepted, then closed before connection_established
            s.failures[f"closed {close_code(exc)}"] += 1
        except Exception as exc:  # a reset, a timeout, the stopping server's HTTP 500
            s.failures[type(exc).__name__] += 1
        else:
            now = time.monotonic_ns()
            link = Link(attempted, now, int(data["last_event_id"]), len(s.ids), str(data.get("replay")))
            if not s.links:
                s.first, s.last = link.target + 1, link.target
            if s.last >= link.target:
                link.resumed_ns = now
            s.links.append(link)
            return ws
        if not s.links:
            return None  # a first connection is not retried: it is counted as an error
        await asyncio.sleep(RETRY_DELAY * 2 * random.random())
        return None

    async def _read(self, s: Spectator, ws: ClientConnection) -> None:
        link = s.links[-1]
        try:
            while True:
                text = await ws.recv()
                at = text.find(ID_KEY, 0, 64) if isinstance(text, str) else -1
                if at < 0:
                    continue  # viewers, ping: no id
                start = at + len(ID_KEY)
                assert isinstance(text, str)
                event_id = int(text[start : text.index(",", start)])
                s.ids.append(event_id)
                if event_id > s.last:
                    s.last = event_id
                if not link.resumed_ns and s.last >= link.target:
                    link.resumed_ns = time.monotonic_ns()
        except ConnectionClosed as exc:
            link.closed = close_code(exc)

    def status(self, since_ns: int) -> dict[str, int]:
        return {
            "resumed": sum(1 for s in self.spectators if s.resumed_since(since_ns)),
            "connected": sum(1 for s in self.spectators if s.links),
            "running": sum(1 for task in self.tasks if not task.done()),
        }

    async def wait_for(self, event_id: int, seconds: float) -> int:
        """Wait until every connected spectator holds `event_id`; returns how many do not."""
        end = time.monotonic() + seconds
        while True:
            missing = sum(1 for s in self.spectators if s.links and s.last < event_id)
            if missing == 0 or time.monotonic() > end:
                return missing
            await asyncio.sleep(0.02)

    def report(self, final_id: int, since_ns: int) -> list[dict[str, Any]]:
        return [summary(s, final_id, since_ns) for s in self.spectators if s.links]

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.gate.probe is not None:
            self.gate.probe.cancel()


def check_log(ids: Sequence[int], first: int, final: int) -> dict[str, Any]:
    """Is `ids` exactly first, first + 1, ..., final? And if not, how far from it."""
    expected = range(first, final + 1)
    seen = set(ids)
    return {
        "complete": list(ids) == list(expected),
        "missing": sum(1 for event_id in expected if event_id not in seen),
        "duplicates": len(ids) - len(seen),
        "unordered": sum(1 for a, b in itertools.pairwise(ids) if b < a),
    }


def summary(s: Spectator, final_id: int, since_ns: int) -> dict[str, Any]:
    """What the orchestrator needs of one spectator: its log checked, its resume timed."""
    after = [link for link in s.links if link.established_ns > since_ns]
    last = s.links[-1]
    return {
        **check_log(s.ids, s.first, final_id),
        "first": s.first,
        "closes": [link.closed for link in s.links if link.closed is not None],
        "resumed_ns": last.resumed_ns if last in after and last.closed is None else 0,
        "established_ns": after[-1].established_ns if after else 0,
        "first_established_ns": after[0].established_ns if after else 0,
        "attempted_ns": after[-1].attempted_ns if after else 0,
        "replayed": sum(1 for link in after for event_id in s.ids[link.start :] if event_id <= link.target),
        "partial": any(link.replay != "complete" for link in after),
        "attempts": s.attempts,
        "failures": dict(s.failures),
    }
