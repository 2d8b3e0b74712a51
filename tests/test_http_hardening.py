"""A real `matchcast serve` under hostile load: bounded database connections, timed-out request
heads, forwarded headers trusted only from named proxies."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
from collections.abc import AsyncIterator, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from matchcast.security import create_guest_token
from tests.support.processes import MATCHCAST, ROOT, ServerProcess
from tests.support.server import TEST_SECRET

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
        **extra,
    }


async def demo(env: Mapping[str, str]) -> dict[str, Any]:
    done = await asyncio.to_thread(
        subprocess.run,
        [str(MATCHCAST), "demo", "--json"],
        env={**os.environ, **env},
        capture_output=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)  # type: ignore[no-any-return]


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
    created = await demo(env)
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
