"""A real `matchcast serve` under hostile load: bounded database connections, timed-out request
heads, forwarded headers trusted only from named proxies."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from matchcast.security import create_guest_token
from matchcast.services import matches
from tests.support.databases import sqlite_url
from tests.support.processes import MATCHCAST, ROOT, ServerProcess, run_demo
from tests.support.server import TEST_SECRET, running_server
from tests.support.server import test_settings as settings_for_tests
from tests.support.sse import open_stream

pytestmark = pytest.mark.timeout(120)


class LimitedServerProcess(ServerProcess):
    """`matchcast serve` with a low open-files limit, as an operator's systemd unit may set."""

    def __init__(self, env: Mapping[str, str], open_files: int, log_dir: Path) -> None:
        super().__init__(env, log_dir=log_dir)
        self.open_files = open_files

    def _launch(self) -> subprocess.Popen[bytes]:
        def limit() -> None:  # runs in the child, before exec
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.open_files, self.open_files))

        command = [str(MATCHCAST), "serve", "--port", str(self.port)]
        with open(self.log_path, "wb") as log:
            return subprocess.Popen(
                command, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, preexec_fn=limit
            )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid


@dataclass
class Peak:
    threads: int = 0
    fds: int = 0


@asynccontextmanager
async def watching(pid: int) -> AsyncIterator[Peak]:
    """The most threads and open files `pid` had while the block ran (sampled every 10 ms)."""
    peak = Peak()

    def sample() -> None:
        try:
            peak.threads = max(peak.threads, len(os.listdir(f"/proc/{pid}/task")))
            peak.fds = max(peak.fds, len(os.listdir(f"/proc/{pid}/fd")))
        except FileNotFoundError:  # the process is gone; the test's answers will say why
            pass

    async def poll() -> None:
        while True:
            sample()
            await asyncio.sleep(0.01)  # the sampling interval; cancelled when the block ends

    task = asyncio.create_task(poll())
    try:
        yield peak
    finally:
        task.cancel()
        sample()


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "MATCHCAST_DATABASE_URL": f"sqlite:///{tmp_path}/serve.db",
        "MATCHCAST_BROADCAST_URL": "memory://",
        "MATCHCAST_JWT_SECRET": TEST_SECRET,
        # Bursts from one address with one token, measuring pools and timeouts, not the socket caps.
        "MATCHCAST_MAX_SOCKETS_PER_USER": "100000",
        "MATCHCAST_MAX_SOCKETS_PER_ADDRESS": "100000",
        **extra,
    }


# -- 1. the SQLite pool is bounded: a burst waits for connections instead of opening one each ----

BURST = 400  # concurrent clients of each kind below, against ...
OPEN_FILES = 700  # ... a limit the burst's sockets fit in, but not three database files per request
POOL_SIZE = 8


async def spectate(ws_url: str, token: str) -> str:
    """What the server answered a spectator's handshake: 'established' or the close code."""
    async with connect(f"{ws_url}?token={token}", open_timeout=60, close_timeout=5) as ws:
        try:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
        except ConnectionClosed as exc:
            return str(exc.rcvd.code if exc.rcvd else None)
        return "established" if frame["type"] == "connection_established" else frame["type"]


async def burst(server: ServerProcess, created: dict[str, Any]) -> list[tuple[str, Any]]:
    token = create_guest_token(TEST_SECRET, 600)
    tournament, match = created["tournament_id"], created["matches"][0]["id"]
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=server.http, timeout=60, limits=limits) as http:

        async def get(path: str) -> tuple[str, Any]:
            response = await http.get(path)
            return path, response.status_code

        async def ws(path: str) -> tuple[str, Any]:
            return path, await spectate(server.ws + path, token)

        jobs: list[Coroutine[Any, Any, tuple[str, Any]]] = []
        for n in range(BURST // 4):
            jobs += [
                get(f"/api/tournaments/{tournament}"),
                get(f"/api/tournaments/{900_000 + n}"),
                ws(f"/ws/match/{match}/"),
                ws(f"/ws/match/{900_000 + n}/"),
            ]
        answers = await asyncio.gather(*jobs)
        answers.append(("/healthz", (await http.get("/healthz")).status_code))
    return answers


def expected(path: str) -> Any:
    unknown = "/900" in path
    if path.startswith("/ws/"):
        return "4404" if unknown else "established"
    return 404 if unknown else 200


async def test_a_burst_of_requests_waits_for_a_bounded_number_of_sqlite_connections(tmp_path: Path) -> None:
    env = base_env(tmp_path, MATCHCAST_DATABASE_POOL_SIZE=str(POOL_SIZE))
    created = await run_demo(env)
    server = LimitedServerProcess(env, OPEN_FILES, tmp_path)
    await server.start()
    try:
        async with watching(server.pid) as peak:
            answers = await asyncio.wait_for(burst(server, created), 90)
        wrong = [(path, got) for path, got in answers if got != expected(path)]
        print(f"{len(answers)} concurrent requests, {len(wrong)} wrong; peak {peak.threads} threads, {peak.fds} fds")
        assert not wrong, f"{len(wrong)} of {len(answers)} wrong, e.g. {wrong[:5]}\n{server.log()[-2000:]}"
        # One thread per connection at most, plus the main thread and asyncio's executor.
        assert peak.threads <= POOL_SIZE + 1 + 12, peak
        assert peak.fds <= BURST + 3 * (POOL_SIZE + 1) + 60, peak
        assert "Traceback" not in server.log()
    finally:
        await server.stop()


# -- 2. a request head must arrive within MATCHCAST_REQUEST_HEAD_TIMEOUT --------------------------

HEAD_TIMEOUT = 1.0
ATTACKERS = 300  # more than the server's open-files limit below lets it hold at once
PARTIAL_HEAD = b"GET /healthz HTTP/1.1\r\nHost: attacker\r\nX-Padding: "


async def attacker(port: int, kind: int, closed: list[tuple[float, bytes]]) -> None:
    """One connection that never completes its head: half sent at once, dripped a byte at a time
    (each byte used to restart uvicorn's only clock), or nothing at all. Records when the server
    closed it, and what it said."""
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    began = loop.time()

    async def drip() -> None:
        for byte in PARTIAL_HEAD + b"x" * 1000:
            writer.write(bytes([byte]))
            await asyncio.sleep(0.1)  # the drip's pace; the task ends when the server closes

    dripping = asyncio.create_task(drip()) if kind == 1 else None
    if kind == 0:
        writer.write(PARTIAL_HEAD)
    try:
        try:
            answer = await asyncio.wait_for(reader.read(), 30)  # until the server closes
        except ConnectionResetError:  # closed while bytes we sent were still unread: a reset
            answer = b""
        closed.append((loop.time() - began, answer))
    finally:
        if dripping is not None:
            dripping.cancel()
        writer.close()


async def served(url: str, seconds: float) -> float:
    """How long until `url` answers 200 (retrying refused or dropped connections)."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    async with httpx.AsyncClient(timeout=5) as http:
        while loop.time() - began < seconds:
            try:
                if (await http.get(url)).status_code == 200:
                    return loop.time() - began
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)  # the retry pace, bounded by `seconds`
    raise TimeoutError(f"{url} not served within {seconds:g} s")


async def test_half_sent_request_heads_are_closed_and_others_are_served(tmp_path: Path) -> None:
    env = base_env(tmp_path, MATCHCAST_REQUEST_HEAD_TIMEOUT=str(HEAD_TIMEOUT))
    server = LimitedServerProcess(env, ATTACKERS * 2 // 3, tmp_path)
    await server.start()
    try:
        closed: list[tuple[float, bytes]] = []
        attack = asyncio.gather(*(attacker(server.port, n % 3, closed) for n in range(ATTACKERS)))
        # Meanwhile a legitimate client gets in, once the attackers' files come back. Past the
        # open-files limit the event loop (libuv) accepts and drops connections at once.
        waited = await served(server.http + "/healthz", 15)
        await asyncio.wait_for(attack, 40)
        told = sum(answer.startswith(b"HTTP/1.1 408 ") for _, answer in closed)
        in_time = sum(seconds <= HEAD_TIMEOUT + 1 for seconds, _ in closed)
        print(f"{len(closed)} of {ATTACKERS} closed, {in_time} within {HEAD_TIMEOUT + 1:g} s, {told} with a 408; ")
        print(f"the last after {max(s for s, _ in closed):.1f} s; a legitimate request served after {waited:.1f} s")
        assert len(closed) == ATTACKERS and told > 0
        assert all(answer == b"" or answer.startswith(b"HTTP/1.1 408 ") for _, answer in closed)
        assert max(seconds for seconds, _ in closed) < HEAD_TIMEOUT * 5
    finally:
        await server.stop()


async def read_response(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    return head + await asyncio.wait_for(reader.readexactly(length), 5)


async def slow_then_half_sent(port: int) -> tuple[bytes, bytes, float]:
    """A request whose head takes most of the timeout and whose body comes after it (answered),
    then, on the same kept-alive connection, half a head (closed: the answer and how soon)."""
    body = b'{"username": "nobody", "password": "wrong"}'
    head = (
        b"POST /api/token HTTP/1.1\r\nHost: slow\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n" % len(body)
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for n in range(0, len(head), len(head) // 6):
            writer.write(head[n : n + len(head) // 6])
            await asyncio.sleep(HEAD_TIMEOUT / 10)  # the client's pace: the head takes 0.6 of the timeout
        await asyncio.sleep(HEAD_TIMEOUT * 1.5)  # the body, long after the head: not the head's clock
        writer.write(body)
        answered = await read_response(reader)
        loop = asyncio.get_running_loop()
        began = loop.time()
        writer.write(PARTIAL_HEAD)
        cut = await asyncio.wait_for(reader.read(), 10)
        return answered, cut, loop.time() - began
    finally:
        writer.close()


async def test_complete_heads_are_never_cut_slow_bodies_streams_and_websockets_live_on(tmp_path: Path) -> None:
    settings = settings_for_tests(database_url=sqlite_url(tmp_path), request_head_timeout=HEAD_TIMEOUT)
    async with running_server(settings) as server:
        t, match = await server.factory.live_match()
        guest = server.guest_token()
        async with (
            server.client(f"/ws/match/{match.id}/", guest) as ws,
            open_stream(server.http, f"/sse/matches/{match.id}", guest) as sse,
        ):
            await ws.established()
            await sse.state()
            answered, cut, after = await slow_then_half_sent(server.port)
            assert answered.startswith(b"HTTP/1.1 401 "), answered
            assert cut.startswith(b"HTTP/1.1 408 "), cut
            assert b"not complete within 1 s" in cut
            assert after < HEAD_TIMEOUT * 3  # the head's clock, not the 5 s keep-alive one
            # Both streams are older than the timeout by now, and still live.
            await ws.send({"type": "ping", "timestamp": 1})
            assert (await ws.recv_type("pong"))["type"] == "pong"
            await matches.update_score(server.realtime.db, server.realtime.publisher, t.organizer, match.id, 1, 0)
            assert (await sse.event()).event == "score_updated"
            assert (await ws.recv_type("score_updated"))["data"]["participant1_score"] == 1


# -- 3. X-Forwarded-For is believed only from MATCHCAST_FORWARDED_ALLOW_IPS ----------------------

GUESSES = 25


async def guesses(server: ServerProcess, addresses: Callable[[int], str]) -> list[int]:
    """The statuses of wrong logins from loopback, each claiming to be forwarded for addresses(n)."""
    async with httpx.AsyncClient(base_url=server.http, timeout=10) as http:
        statuses = []
        for n in range(GUESSES):
            answer = await http.post(
                "/api/token",
                json={"username": "admin", "password": f"guess-{n}"},
                headers={"x-forwarded-for": addresses(n)},
            )
            statuses.append(answer.status_code)
        return statuses


def rotating(n: int) -> str:
    return f"203.0.113.{n + 1}"


async def test_by_default_no_forwarded_address_is_believed_so_the_throttle_holds(tmp_path: Path) -> None:
    server = await ServerProcess(base_env(tmp_path), log_dir=tmp_path).start()
    try:
        statuses = await guesses(server, rotating)
    finally:
        await server.stop()
    print(f"default settings, X-Forwarded-For rotating: {statuses.count(401)} of {GUESSES} guesses checked")
    assert statuses == [401] * 10 + [429] * (GUESSES - 10)  # MATCHCAST_LOGIN_RATE_LIMIT's default 10/60s


async def test_a_named_proxy_s_forwarded_address_is_the_client_s(tmp_path: Path) -> None:
    env = base_env(tmp_path, MATCHCAST_FORWARDED_ALLOW_IPS="127.0.0.1")
    server = await ServerProcess(env, log_dir=tmp_path).start()
    try:
        assert await guesses(server, rotating) == [401] * GUESSES  # 25 clients, one guess each
        # nginx appends the address it saw; what a client wrote in front of it is not believed.
        spoofing = await guesses(server, lambda n: f"{rotating(n)}, 198.51.100.7")
    finally:
        await server.stop()
    assert spoofing == [401] * 10 + [429] * (GUESSES - 10)


async def test_worker_processes_time_request_heads_too(tmp_path: Path) -> None:
    # Each worker gets the server's configuration pickled: the timeout must travel with it.
    env = base_env(
        tmp_path,
        MATCHCAST_REQUEST_HEAD_TIMEOUT=str(HEAD_TIMEOUT),
        MATCHCAST_BROADCAST_URL="redis://127.0.0.1:6379",
        MATCHCAST_CHANNEL_PREFIX="heads_" + os.urandom(4).hex(),
    )
    server = await ServerProcess(env, workers=2, log_dir=tmp_path).start()
    try:
        closed: list[tuple[float, bytes]] = []
        await asyncio.wait_for(asyncio.gather(*(attacker(server.port, 0, closed) for _ in range(4))), 20)
        assert all(s < HEAD_TIMEOUT * 3 and answer.startswith(b"HTTP/1.1 408 ") for s, answer in closed), closed
    finally:
        await server.stop()


async def test_a_pool_of_two_serves_concurrent_writes_reads_and_joins_without_deadlock(tmp_path: Path) -> None:
    # Scores (writes through the hub's log), snapshots (reads) and spectators joining (a
    # connection held for the snapshot and replay) at once, on two connections and the writer's.
    settings = settings_for_tests(
        database_url=sqlite_url(tmp_path), database_pool_size=2, max_sockets_per_user=1000, max_sockets_per_address=1000
    )
    async with running_server(settings) as server:
        t, match = await server.factory.live_match()
        organizer = {"Authorization": f"Bearer {server.token(t.organizer.user_id)}"}
        guest = server.guest_token()
        async with httpx.AsyncClient(base_url=server.http, timeout=20) as http:

            async def score(n: int) -> int:
                body = {"participant1_score": n, "participant2_score": 0}
                return (await http.post(f"/api/matches/{match.id}/score", json=body, headers=organizer)).status_code

            async def read() -> int:
                return (await http.get(f"/api/tournaments/{t.id}")).status_code

            async def join() -> int:
                async with server.client(f"/ws/match/{match.id}/?last_event_id=0", guest) as ws:
                    await ws.established()
                    return 200

            work = [score(n) for n in range(1, 31)] + [read() for _ in range(30)] + [join() for _ in range(30)]
            statuses = await asyncio.wait_for(asyncio.gather(*work), 60)
        assert statuses == [200] * len(work)
        assert (await server.factory.match(match.id)).participant1_score in range(1, 31)
