"""The processes under test: a private Redis, a fresh PostgreSQL database, three `matchcast serve`.

The instances reach Redis and PostgreSQL only through a `FaultyProxy` each, so links can be cut or
hung; Redis itself can be paused (SIGSTOP) or restarted on its port behind the proxy.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import httpx

from chaos.proxy import FaultyProxy

ROOT = Path(__file__).resolve().parents[1]
MATCHCAST = Path(sys.executable).parent / "matchcast"
ADMIN_URL = os.environ.get("CHAOS_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
START_TIMEOUT = 40.0
STOP_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_for(check: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
    """Poll an async predicate until true; raise naming `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {seconds:g}s")
        await asyncio.sleep(0.05)  # the poll interval, bounded by the deadline above


class Redis:
    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        command = [shutil.which("redis-server") or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no"]
        self.process = await asyncio.to_thread(
            subprocess.Popen, command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        await wait_for(self._answers, 10, f"redis-server on port {self.port}")

    async def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a paused Redis cannot exit
            self.process.terminate()
            await asyncio.to_thread(self.process.wait, 10)

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    async def _answers(self) -> bool:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        try:
            writer.write(b"PING\r\n")
            return (await asyncio.wait_for(reader.readline(), 1)).startswith(b"+PONG")
        finally:
            writer.close()


class Instance:
    """One `matchcast serve` on a fixed port, restarted on the same port after every stop."""

    def __init__(self, index: int, env: dict[str, str], log_dir: Path) -> None:
        self.index = index
        self.port = free_port()
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.log_path = log_dir / f"instance-{index}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.up = False

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None and self.process.poll() is None else None

    async def start(self) -> None:
        command = [str(MATCHCAST), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        self.process = await asyncio.to_thread(self._launch, command)
        await wait_for(self._healthy, START_TIMEOUT, f"instance {self.index} on port {self.port} healthy")
        self.up = True

    def _launch(self, command: list[str]) -> subprocess.Popen[bytes]:
        with open(self.log_path, "ab") as log:
            return subprocess.Popen(command, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    async def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"instance {self.index} exited with {self.process.returncode}:\n{tail}")
        try:
            async with httpx.AsyncClient(timeout=1) as client:
                return (await client.get(self.http + "/healthz")).status_code == 200
        except httpx.TransportError:
            return False

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    async def kill(self) -> None:
        self.up = False
        assert self.process is not None
        self.process.kill()
        await asyncio.to_thread(self.process.wait, 10)

    async def terminate(self) -> int:
        """SIGTERM and wait: the graceful shutdown (clients get 1012). Returns the exit code."""
        self.up = False
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)
        self.process.terminate()
        try:
            return await asyncio.to_thread(self.process.wait, STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            await asyncio.to_thread(self.process.wait, 5)
            return -9


async def create_database() -> str:
    name = f"chaos_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + name


async def drop_database(url: str) -> None:
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await conn.close()


def via_proxy(url: str, port: int) -> str:
    """The same database URL, through the proxy's port."""
    scheme, rest = url.split("://", 1)
    userinfo, _, hostpath = rest.rpartition("@")
    path = hostpath.split("/", 1)[1]
    return f"{scheme}://{userinfo + '@' if userinfo else ''}127.0.0.1:{port}/{path}"


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class Cluster:
    def __init__(self, log_dir: Path, instances: int = 3, confirm_timeout: int = 3) -> None:
        self.log_dir = log_dir
        self.count = instances
        self.confirm_timeout = confirm_timeout
        self.jwt_secret = "chaos-" + uuid.uuid4().hex
        self.redis = Redis()
        self.database_url = ""
        self.instances: list[Instance] = []
        self.redis_proxy: FaultyProxy | None = None
        self.pg_proxy: FaultyProxy | None = None

    def cli_env(self) -> dict[str, str]:
        return {**os.environ, "MATCHCAST_DATABASE_URL": self.database_url, "MATCHCAST_JWT_SECRET": self.jwt_secret}

    async def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        await self.redis.start()
        self.database_url = await create_database()
        self.redis_proxy = await FaultyProxy("redis", self.redis.port).start()
        pg_port = int(self.database_url.split("://", 1)[1].rpartition("@")[2].split("/")[0].split(":")[1])
        self.pg_proxy = await FaultyProxy("postgres", pg_port).start()
        await asyncio.to_thread(self.cli, "db", "upgrade")
        env = {
            "MATCHCAST_DATABASE_URL": via_proxy(self.database_url, self.pg_proxy.port),
            "MATCHCAST_BROADCAST_URL": f"redis://127.0.0.1:{self.redis_proxy.port}",
            "MATCHCAST_JWT_SECRET": self.jwt_secret,
            "MATCHCAST_WEBHOOK_ALLOW_PRIVATE": "true",
            "MATCHCAST_CONFIRM_TIMEOUT": str(self.confirm_timeout),
        }
        self.instances = [Instance(i, env, self.log_dir) for i in range(self.count)]
        await asyncio.gather(*(instance.start() for instance in self.instances))

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [str(MATCHCAST), *args], env=self.cli_env(), cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            raise RuntimeError(f"matchcast {' '.join(args)} failed: {result.stderr[-2000:]}")
        return result.stdout

    async def stop(self) -> None:
        for instance in self.instances:
            if instance.pid is not None:
                await instance.terminate()
        for proxy in (self.redis_proxy, self.pg_proxy):
            if proxy is not None:
                proxy.resume()
                await proxy.close()
        await self.redis.stop()
        if self.database_url and not os.environ.get("CHAOS_KEEP_DATABASE"):
            await drop_database(self.database_url)
