"""The load generator: spectator sockets spread over worker processes, and one participant.

Each worker is a process with its own asyncio loop (uvloop) holding a share of the spectator
sockets (the `websockets` client). A spectator records, for every `score_updated` frame, the
value the participant put in `participant1_score` and the monotonic time it arrived (one clock
for every process of this machine); the participant records when it sent each value, so the
orchestrator turns the two into publish -> receive latencies. Every wait is bounded: commands
have a timeout, and every socket's reads end at the worker's deadline.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import multiprocessing
import os
import resource
import time
import traceback
from array import array
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.procstat import cpu_seconds
from bench.stormworker import StormCommands

SCORE_PREFIX = '{"type":"score_updated"'
CONNECT_TIMEOUT = 60.0  # seconds for one handshake and its connection_established
COMMAND_SLACK = 30.0  # seconds a command may take beyond its own timeout before the orchestrator gives up
DEFAULT_LIFETIME = 1800.0  # a worker ends by itself after this many seconds whatever happens


def raise_open_files_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Spectator:
    __slots__ = ("close_code", "last", "task", "times", "values", "ws")

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.values = array("q")
        self.times = array("q")
        self.last = -1
        self.close_code: int | None = None  # set when the server closed the socket
        self.task: asyncio.Task[None] | None = None


class Worker:
    """Runs in a worker process; answers the orchestrator's commands one at a time."""

    def __init__(self, pipe: Connection, lifetime: float) -> None:
        self.pipe = pipe
        self.deadline = time.monotonic() + lifetime
        self.groups: dict[str, list[Spectator]] = {}  # spectators by the server they watch
        self.recording: set[str] = set()
        self.connect_errors: dict[str, int] = {}
        self.participants: dict[str, ClientConnection] = {}
        self.participant_errors: dict[str, list[str]] = {}
        self.last_drive: dict[str, float] = {}  # per group, when its last update was sent (loop time)
        self.readers: set[asyncio.Task[None]] = set()  # the participants' readers, kept alive
        self.storm = StormCommands(self.deadline)  # a reconnect storm's commands (bench/storm.py)

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        while time.monotonic() < self.deadline:
            ready = await loop.run_in_executor(None, self.pipe.poll, 1.0)
            if not ready:
                continue
            name, kwargs = self.pipe.recv()
            if name == "stop":
                await self.close_all()
                self.pipe.send(("ok", None))
                return
            try:
                command = getattr(self, "cmd_" + name, None) or getattr(self.storm, "cmd_" + name)
                result = await command(**kwargs)
                self.pipe.send(("ok", result))
            except Exception:
                self.pipe.send(("error", traceback.format_exc()))

    # -- spectators ---------------------------------------------------------------------------

    async def cmd_connect(
        self,
        group: str,
        count: int,
        url: str,
        secret: str | None,
        concurrency: int,
        tokens: Sequence[str] = (),
    ) -> dict[str, Any]:
        gate = asyncio.Semaphore(concurrency)
        started = time.monotonic()
        self.connect_errors = {}
        spectators = self.groups.setdefault(group, [])

        async def one(n: int) -> None:
            async with gate:
                await self._open(group, spectators, url, secret, tokens[n % len(tokens)] if tokens else None)

        await asyncio.gather(*(one(n) for n in range(count)))
        gc.collect()
        gc.freeze()  # the sockets live until the end: keep collections in this process short
        return {
            "open": sum(1 for s in spectators if s.close_code is None),
            "errors": dict(self.connect_errors),
            "seconds": time.monotonic() - started,
        }

    async def _open(
        self, group: str, spectators: list[Spectator], url: str, secret: str | None, token: str | None = None
    ) -> None:
        token = token or create_token(secret)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                ws = await connect(
                    f"{url}?token={token}",
                    compression=None,
                    ping_interval=None,
                    close_timeout=1,
                    max_queue=64,
                    open_timeout=CONNECT_TIMEOUT,
                    proxy=None,  # websockets reads every proxy variable of the environment per connect
                )
                first = await ws.recv()
        except Exception as exc:  # refused, timed out, closed: counted, the run goes on
            key = type(exc).__name__
            self.connect_errors[key] = self.connect_errors.get(key, 0) + 1
            return
        if not isinstance(first, str) or '"connection_established"' not in first[:40]:
            self.connect_errors["unexpected first frame"] = self.connect_errors.get("unexpected first frame", 0) + 1
            ws.transport.abort()
            return
        spectator = Spectator(ws)
        spectator.task = asyncio.get_running_loop().create_task(self._read(group, spectator))
        spectators.append(spectator)

    async def _read(self, group: str, spectator: Spectator) -> None:
        ws = spectator.ws
        try:
            async with asyncio.timeout_at(asyncio.get_running_loop().time() + self.deadline - time.monotonic()):
                while True:
                    text = await ws.recv()
                    if group in self.recording and isinstance(text, str) and text.startswith(SCORE_PREFIX):
                        arrived = time.monotonic_ns()
                        value = json.loads(text)["data"]["participant1_score"]
                        spectator.values.append(value)
                        spectator.times.append(arrived)
                        spectator.last = value
        except ConnectionClosed as exc:
            spectator.close_code = exc.rcvd.code if exc.rcvd is not None else 1006
        except TimeoutError:
            pass

    async def cmd_record(self, group: str) -> None:
        """Forget what `group` recorded, and record from now on."""
        for spectator in self.groups.get(group, []):
            spectator.values = array("q")
            spectator.times = array("q")
            spectator.last = -1
        self.recording.add(group)
        gc.disable()  # no collection pause inside a measured window (collect() turns it back on)

    async def cmd_wait_value(self, group: str, value: int, seconds: float) -> dict[str, Any]:
        """Wait until every open spectator of `group` has seen `value` (at most `seconds`)."""
        end = time.monotonic() + seconds
        spectators = self.groups.get(group, [])
        while True:
            missing = sum(1 for s in spectators if s.last < value and s.close_code is None)
            if missing == 0 or time.monotonic() > end:
                return {"missing": missing}
            await asyncio.sleep(0.02)

    async def cmd_collect(self, group: str) -> dict[str, Any]:
        self.recording.discard(group)
        gc.enable()
        spectators = self.groups.get(group, [])
        return {
            "values": [s.values.tobytes() for s in spectators],
            "times": [s.times.tobytes() for s in spectators],
            "last": [s.last for s in spectators],
            "closed": [s.close_code for s in spectators if s.close_code is not None],
        }

    async def cmd_cpu(self) -> float:
        return cpu_seconds(os.getpid())

    async def cmd_close(self, group: str) -> None:
        await self.close(group)

    async def close(self, group: str) -> None:
        for spectator in self.groups.pop(group, []):
            if spectator.task is not None:
                spectator.task.cancel()
            spectator.ws.transport.abort()
        participant = self.participants.pop(group, None)
        if participant is not None:
            participant.transport.abort()
        self.recording.discard(group)
        await asyncio.sleep(0)

    async def close_all(self) -> None:
        for group in {*self.groups, *self.participants}:
            await self.close(group)
        await self.storm.close()

    # -- the participant ---------------------------------------------------------------------------

    async def cmd_participant(self, group: str, url: str, role: str | None) -> None:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            ws = await connect(
                url, compression=None, ping_interval=None, close_timeout=1, open_timeout=CONNECT_TIMEOUT, proxy=None
            )
            first = await ws.recv()
        if '"connection_established"' not in str(first)[:40] or (role and f'"role":"{role}"' not in str(first)):
            raise RuntimeError(f"the participant was not admitted as a participant: {str(first)[:300]}")
        self.participants[group] = ws
        self.participant_errors[group] = []
        reader = asyncio.get_running_loop().create_task(self._participant_read(ws, self.participant_errors[group]))
        self.readers.add(reader)
        reader.add_done_callback(self.readers.discard)

    async def _participant_read(self, ws: ClientConnection, errors: list[str]) -> None:
        try:
            async with asyncio.timeout_at(asyncio.get_running_loop().time() + self.deadline - time.monotonic()):
                async for text in ws:
                    if isinstance(text, str) and text.startswith('{"type":"error"'):
                        errors.append(text[:200])
        except (ConnectionClosed, TimeoutError):
            pass

    async def cmd_drive(self, group: str, first: int, count: int, interval: float) -> dict[str, Any]:
        """Send `count` score updates, values first, first + 1, ..., `interval` seconds apart.

        The first is also `interval` after the group's previous drive's last: the warm-up's last
        update and a sample's first were milliseconds apart, so a server that coalesces scores
        (matchcast's 100 ms window) held the sample's first for most of a window, 5 % of a
        sample's frames at 1000 spectators, and the p99 measured that instead of the fan-out.
        """
        participant = self.participants[group]
        errors = self.participant_errors[group]
        errors.clear()
        sent: dict[int, int] = {}
        loop = asyncio.get_running_loop()
        start = max(loop.time(), self.last_drive.get(group, -math.inf) + interval)
        for n in range(count):
            delay = start + n * interval - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            value = first + n
            frame = f'{{"type":"score_update","participant1_score":{value},"participant2_score":0}}'
            sent[value] = time.monotonic_ns()
            self.last_drive[group] = loop.time()
            await participant.send(frame)
        await asyncio.sleep(0.05)  # an error answer to the last update has time to arrive
        return {"sent": sent, "errors": list(errors)}


def create_token(secret: str | None) -> str:
    if secret is None:
        return "baseline-needs-no-token"
    from matchcast.security import create_guest_token

    return create_guest_token(secret, 3600)


def worker_main(pipe: Connection, cpus: Sequence[int] | None, lifetime: float) -> None:
    if cpus:
        os.sched_setaffinity(0, cpus)
    raise_open_files_limit()
    try:
        import uvloop

        runner: Callable[[Coroutine[Any, Any, None]], None] = uvloop.run
    except ImportError:  # pragma: no cover - uvicorn[standard] brings uvloop
        runner = asyncio.run
    runner(Worker(pipe, lifetime).serve())


@dataclass
class Process:
    process: Any
    pipe: Connection


class LoadGenerator:
    """The orchestrator's handle on the workers: `processes` spectator workers and one participant
    worker. Sockets come in groups, one per server under test, so two servers can be measured in turn."""

    def __init__(self, processes: int, cpus: Sequence[int] | None = None, lifetime: float = DEFAULT_LIFETIME) -> None:
        self.size = processes
        self.cpus = list(cpus) if cpus else None
        self.lifetime = lifetime
        self.workers: list[Process] = []
        self.driver: Process | None = None
        self.open: dict[str, int] = {}

    def __enter__(self) -> LoadGenerator:
        context = multiprocessing.get_context("spawn")
        for _ in range(self.size + 1):
            parent, child = context.Pipe()
            process = context.Process(target=worker_main, args=(child, self.cpus, self.lifetime), daemon=True)
            process.start()
            self.workers.append(Process(process, parent))
        self.driver = self.workers.pop()
        self.cpu()  # every worker is up and answering
        return self

    def __exit__(self, *exc: object) -> None:
        for worker in [*self.workers, *([self.driver] if self.driver else [])]:
            try:
                worker.pipe.send(("stop", {}))
                worker.pipe.poll(10)
            except (OSError, EOFError):
                pass
            worker.process.join(5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(5)

    def _call(
        self,
        workers: Sequence[Process],
        name: str,
        timeout: float,
        per_worker: Sequence[dict[str, Any]],
    ) -> list[Any]:
        for worker, kwargs in zip(workers, per_worker, strict=True):
            worker.pipe.send((name, kwargs))
        results = []
        for worker in workers:
            if not worker.pipe.poll(timeout + COMMAND_SLACK):
                raise TimeoutError(f"a load generator worker did not answer {name!r} in {timeout + COMMAND_SLACK:.0f}s")
            status, value = worker.pipe.recv()
            if status != "ok":
                raise RuntimeError(f"load generator worker failed in {name!r}:\n{value}")
            results.append(value)
        return results

    def broadcast(self, name: str, wait: float = 10.0, **kwargs: Any) -> list[Any]:
        """Run command `name` on every spectator worker, `wait` seconds at most (plus slack)."""
        return self._call(self.workers, name, wait, [kwargs] * len(self.workers))

    def shares(self, total: int) -> list[int]:
        """`total` split over the spectator workers as evenly as it goes."""
        return [total // self.size + (1 if i < total % self.size else 0) for i in range(self.size)]

    def spectators(
        self, group: str, total: int, url: str, secret: str | None, concurrency: int = 32, tokens: Sequence[str] = ()
    ) -> dict[str, Any]:
        """Open spectator sockets in `group` until `total` are open; returns how long it took and what failed.
        `tokens`: the sockets' tokens (logged-in users), each used once while there are enough; else guest tokens."""
        want = max(0, total - self.open.get(group, 0))
        shares = self.shares(want)
        starts = [sum(shares[:i]) for i in range(self.size)]
        timeout = CONNECT_TIMEOUT * (1 + want / max(1, concurrency * self.size))
        started = time.monotonic()
        results = self._call(
            self.workers,
            "connect",
            timeout,
            [
                {"group": group, "count": n, "url": url, "secret": secret, "concurrency": concurrency}
                | ({"tokens": [tokens[(start + k) % len(tokens)] for k in range(n)]} if tokens else {})
                for n, start in zip(shares, starts, strict=True)
            ],
        )
        self.open[group] = sum(r["open"] for r in results)
        errors: dict[str, int] = {}
        for r in results:
            for key, n in r["errors"].items():
                errors[key] = errors.get(key, 0) + n
        return {"open": self.open[group], "errors": errors, "seconds": time.monotonic() - started}

    def each(self, name: str, timeout: float, per_worker: Sequence[dict[str, Any]]) -> list[Any]:
        """Run command `name` on every spectator worker, each with its own arguments."""
        return self._call(self.workers, name, timeout, per_worker)

    def on_driver(self, name: str, timeout: float = 10.0, **kwargs: Any) -> Any:
        """Run command `name` on the participant's worker."""
        assert self.driver is not None
        return self._call([self.driver], name, timeout, [kwargs])[0]

    def participant(self, group: str, url: str, role: str | None = "participant") -> None:
        assert self.driver is not None
        self._call([self.driver], "participant", CONNECT_TIMEOUT, [{"group": group, "url": url, "role": role}])

    def drive(self, group: str, first: int, count: int, interval: float) -> dict[str, Any]:
        assert self.driver is not None
        result: dict[str, Any] = self._call(
            [self.driver],
            "drive",
            count * interval + 5,
            [{"group": group, "first": first, "count": count, "interval": interval}],
        )[0]
        return result

    def record(self, group: str) -> None:
        self.broadcast("record", group=group)

    def wait_value(self, group: str, value: int, timeout: float) -> int:
        """Wait until every spectator of `group` saw `value`; return how many did not in time."""
        results = self.broadcast("wait_value", timeout, group=group, value=value, seconds=timeout)
        return sum(r["missing"] for r in results)

    def collect(self, group: str) -> dict[str, Any]:
        merged: dict[str, Any] = {"values": [], "times": [], "last": [], "closed": []}
        for result in self.broadcast("collect", 60, group=group):
            for key in merged:
                merged[key] += result[key]
        merged["values"] = [array("q", raw) for raw in merged["values"]]
        merged["times"] = [array("q", raw) for raw in merged["times"]]
        return merged

    def cpu(self) -> float:
        """CPU seconds used so far by the spectator workers together."""
        return float(sum(self.broadcast("cpu")))

    def close(self, group: str) -> None:
        """Drop `group`'s sockets (abort: the server sees them go at once)."""
        workers = [*self.workers, *([self.driver] if self.driver else [])]
        self._call(workers, "close", 30, [{"group": group}] * len(workers))
        self.open.pop(group, None)
