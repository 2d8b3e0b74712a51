"""Real processes for tests: `matchcast serve` instances, and brokers or databases a test may stop.

- `ServerProcess`: `matchcast serve` on a free port with the given environment; `start()` waits for
  `/healthz` to answer, `stop()` sends SIGTERM (a graceful shutdown) and waits.
- `RedisServer`: a private redis-server on its own port (no persistence), stopped and started
  again on the same port by the test. Never the shared one on 6379.
- `PostgresCluster`: a private PostgreSQL cluster (initdb once, in a temporary directory) on its
  own port, for outages. Never the shared server on 5432.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

from tests.support.server import Client

ROOT = Path(__file__).resolve().parents[2]
MATCHCAST = Path(sys.executable).parent / "matchcast"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
POSTGRES_BIN = (
    Path(os.environ.get("MATCHCAST_TEST_POSTGRES_BIN", "")) if os.environ.get("MATCHCAST_TEST_POSTGRES_BIN") else None
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_until(
    predicate: Callable[[], bool | Coroutine[Any, Any, bool]], seconds: float, what: str, interval: float = 0.05
) -> None:
    """Poll `predicate` (sync or async) until it is true; fail naming `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {seconds:g}s")
        await asyncio.sleep(interval)  # the poll interval, bounded by the deadline above


async def run_demo(env: Mapping[str, str]) -> dict[str, Any]:
    """`matchcast demo --json` against `env`'s database: the tournament, its users and tokens."""
    done = await asyncio.to_thread(
        subprocess.run,
        [str(MATCHCAST), "demo", "--json"],
        env={**os.environ, **env},
        capture_output=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)  # type: ignore[no-any-return]


class ServerProcess:
    """`matchcast serve --port P [--workers N]` as a subprocess; its log is kept in a file."""

    def __init__(self, env: Mapping[str, str], workers: int = 1, log_dir: Path | None = None) -> None:
        self.port = free_port()
        self.workers = workers
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.log_path = Path(log_dir or tempfile.mkdtemp(prefix="matchcast-")) / f"serve-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @asynccontextmanager
    async def client(self, path: str, token: str | None = None, **kwargs: Any) -> AsyncIterator[Client]:
        """A WebSocket client of this instance (every receive bounded in time)."""
        if token is not None:
            path += ("&" if "?" in path else "?") + f"token={token}"
        async with connect(self.ws + path, open_timeout=5, close_timeout=2, **kwargs) as ws:
            yield Client(ws)

    def _launch(self) -> subprocess.Popen[bytes]:
        command = [str(MATCHCAST), "serve", "--port", str(self.port), "--workers", str(self.workers)]
        with open(self.log_path, "wb") as log:
            return subprocess.Popen(command, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    async def start(self) -> ServerProcess:
        self.process = self._launch()

        async def healthy() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"matchcast serve exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            try:
                async with httpx.AsyncClient(timeout=1) as client:
                    return (await client.get(self.http + "/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_until(healthy, START_TIMEOUT, f"matchcast serve on port {self.port} healthy")
        return self

    async def stop(self) -> int:
        """SIGTERM, then wait; kill only if it does not exit in time. Returns the exit code."""
        process = self.process
        if process is None or process.poll() is not None:
            return process.returncode if process is not None else 0
        process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.to_thread(process.wait, STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait, 5)
            ignored = f"matchcast serve ignored SIGTERM for {STOP_TIMEOUT:g}s"
            raise RuntimeError(f"{ignored}:\n{self.log()[-3000:]}") from None


class RedisServer:
    """A private redis-server on its own port; stop() and start() again keep the port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def _launch(self) -> subprocess.Popen[bytes]:
        command = [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def start(self) -> RedisServer:
        self.process = self._launch()
        await wait_until(self._answers, 10, f"redis-server on port {self.port}")
        return self

    async def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            await asyncio.to_thread(self.process.wait, 10)
        self.process = None

    async def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"redis-server on port {self.port} exited with {self.process.returncode}")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        try:
            writer.write(b"PING\r\n")
            return (await asyncio.wait_for(reader.readline(), 1)).startswith(b"+PONG")
        finally:
            writer.close()


def postgres_bin() -> Path:
    if POSTGRES_BIN is not None:
        return POSTGRES_BIN
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError("initdb not found: install PostgreSQL or set MATCHCAST_TEST_POSTGRES_BIN")
    return Path(initdb).parent


class PostgresCluster:
    """A private PostgreSQL cluster on its own port, trust auth, no fsync: only for tests.

    PostgreSQL refuses to run as root; as root the cluster runs as the `postgres` user.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="matchcast-pg-"))
        self.data = self.dir / "data"
        self.bin = postgres_bin()

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        argv = [str(self.bin / command[0]), *command[1:]]
        if os.geteuid() == 0:
            argv = ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(f"'{a}'" for a in argv)]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"{command[0]} failed ({result.returncode}): {result.stderr or result.stdout}")

    def init(self) -> PostgresCluster:
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        return self

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"), "-w", "-t", "30", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def remove(self) -> None:
        if self.running():
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
