"""The servers under test, as subprocesses on loopback: `matchcast serve` on a fresh stack, and the baselines.

A stack is a broadcast URL and a fresh database (a SQLite file, or a new PostgreSQL database
dropped afterwards) holding `matchcast demo` data with one of its matches started, so its
participant may send scores. The baselines answer the same paths with frames of the same shape
and nothing else: uvicorn + Starlette (bench/baseline.py), picows (bench/baseline_picows.py) and
Node.js `ws` (bench/node/server.js, installed by `npm ci` from the Makefile).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from matchcast.db.database import connected
from matchcast.security import create_user_token
from matchcast.services import users as accounts

ROOT = Path(__file__).resolve().parent.parent
MATCHCAST = str(Path(sys.executable).with_name("matchcast"))
POSTGRES_ADMIN_URL = os.environ.get("MATCHCAST_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("MATCHCAST_BENCH_REDIS_URL", "redis://127.0.0.1:6379")
# A directory put first on the server's import path: measures a patched copy of src/ (a proposal)
# without touching the tree. Unset for `make bench`.
SERVER_PYTHONPATH = os.environ.get("MATCHCAST_BENCH_SERVER_PYTHONPATH", "")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
STACKS = ("memory-sqlite", "redis-postgres")
# The baselines, by the key their figures have in the results, and the name they are printed with.
BASELINES = {"baseline": "baseline uvicorn", "picows": "baseline picows", "node": "baseline node ws"}
NODE_DIR = ROOT / "bench" / "node"
USER_TOKEN_TTL = 3 * 3600  # seconds: longer than any run


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Target:
    """A running server the load generator can be pointed at."""

    name: str
    pid: int
    port: int
    match_id: int = 1
    secret: str | None = None  # JWT secret for guest tokens; None: the baseline takes any token
    participant_token: str = "baseline"
    log: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    kind: str = "matchcast"  # or a key of BASELINES
    user_tokens: list[str] = field(default_factory=list)  # one per logged-in user made for it (users=)

    @property
    def match_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/match/{self.match_id}/"

    @property
    def participant_url(self) -> str:
        return f"{self.match_url}?token={self.participant_token}"


def server_env(database_url: str, broadcast_url: str, secret: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MATCHCAST_")}
    if SERVER_PYTHONPATH:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [SERVER_PYTHONPATH, env.get("PYTHONPATH", "")]))
    env.update(
        {
            "MATCHCAST_DATABASE_URL": database_url,
            "MATCHCAST_BROADCAST_URL": broadcast_url,
            "MATCHCAST_JWT_SECRET": secret,
            # Its own channels on a shared Redis: never another server's (same match ids, other database).
            "MATCHCAST_CHANNEL_PREFIX": "bench" + secrets.token_hex(6),
            # The participant sends up to 50 frames a second (the score stream), in bursts when the
            # load generator is late: past the per-user bucket (40/1s) it would be closed 4008.
            "MATCHCAST_RATE_LIMIT": "500/1s",
            "MATCHCAST_USER_RATE_LIMIT": "500/1s",
            # An hour: no heartbeat ping lands in a measured window, no idle spectator is timed out.
            "MATCHCAST_HEARTBEAT_INTERVAL": "3600",
            "MATCHCAST_HEARTBEAT_TIMEOUT": "7200",
            # Every spectator of the load generator comes from 127.0.0.1: past the default cap (200
            # per address) the server closes them 4029 and no scenario can run.
            "MATCHCAST_MAX_SOCKETS_PER_ADDRESS": "1000000",
        }
    )
    return env


@contextmanager
def fresh_database(stack: str, workdir: Path) -> Iterator[str]:
    if stack.endswith("sqlite"):
        path = workdir / f"bench-{secrets.token_hex(4)}.db"
        yield f"sqlite:///{path}"
        return
    with postgres_database(POSTGRES_ADMIN_URL, f"matchcast_bench_{secrets.token_hex(4)}") as url:
        yield url


@contextmanager
def postgres_database(admin_url: str, name: str) -> Iterator[str]:
    """A new database `name` on the cluster of `admin_url`, dropped afterwards."""
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed_demo(env: dict[str, str], workdir: Path) -> dict[str, Any]:
    """`matchcast demo --json` on the database of `env`: the tournament, its users (with tokens
    signed by env's secret) and its matches."""
    out = subprocess.run(
        [MATCHCAST, "demo", "--json"], env=env, cwd=workdir, check=True, capture_output=True, timeout=120
    ).stdout
    return dict(json.loads(out))


def wait_until_up(process: subprocess.Popen[bytes], port: int, log: Path, health: bool) -> None:
    end = time.monotonic() + START_TIMEOUT
    while time.monotonic() < end:
        if process.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-15:]
            raise RuntimeError(f"the server exited with {process.returncode} during start-up:\n" + "\n".join(tail))
        try:
            if health:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as reply:
                    if reply.status == 200:
                        return
            else:
                with socket.create_connection(("127.0.0.1", port), timeout=2):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the server did not start within {START_TIMEOUT:.0f}s; see {log}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def pinned(cpus: list[int] | None) -> Any:
    """A preexec_fn that puts the server (and every thread it starts) on `cpus`."""
    return (lambda: os.sched_setaffinity(0, cpus)) if cpus else None


def post_json(url: str, token: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        return json.loads(reply.read())


@contextmanager
def matchcast(
    stack: str,
    workdir: Path,
    cpus: list[int] | None,
    gc_tuning: bool = True,
    settings: dict[str, str] | None = None,
    label: str = "",
    users: int = 0,
) -> Iterator[Target]:
    """`matchcast serve` on a fresh `stack`, with a live demo match; yields its Target.

    Without `gc_tuning`, bench/untuned.py serves instead: the same minus the GC tuning.
    `settings`: further MATCHCAST_* variables for the server (e.g. MATCHCAST_VIEWERS_INTERVAL_MS);
    `label` goes into the Target's name, so two servers of one stack keep their sockets apart;
    `users`: that many accounts are created in its database, their tokens in `user_tokens`."""
    broadcast = "memory://" if stack.startswith("memory") else REDIS_URL
    secret = secrets.token_hex(32)
    with fresh_database(stack, workdir) as database_url:
        env = server_env(database_url, broadcast, secret)
        env.update(settings or {})
        demo = seed_demo(env, workdir)
        match = next(m for m in demo["matches"] if m["round"] == 1)
        player = next(p for p in demo["players"] if p["id"] == match["participant1_id"])
        tokens = create_users(database_url, secret, users) if users else []
        port = free_port()
        log = workdir / f"matchcast-{stack}-{port}.log"
        with open(log, "wb") as out:
            command = [MATCHCAST, "serve", "--host", "127.0.0.1", "--port", str(port)]
            if not gc_tuning:
                command = [sys.executable, "-m", "bench.untuned", str(port)]
                env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH", ""), str(ROOT)]))
            process = subprocess.Popen(
                command, env=env, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, preexec_fn=pinned(cpus)
            )
        try:
            wait_until_up(process, port, log, health=True)
            post_json(f"http://127.0.0.1:{port}/api/matches/{match['id']}/start", demo["organizer"]["token"], {})
            name = f"matchcast {stack}" + (f" {label}" if label else "")
            yield Target(name, process.pid, port, match["id"], secret, player["token"], log, user_tokens=tokens)
        finally:
            stop(process)


def create_users(database_url: str, secret: str, count: int) -> list[str]:
    """`count` accounts, through the service `matchcast user create` calls (one password hash for
    all: argon2 is slow on purpose), and a token for each, as `matchcast token` mints it."""

    async def create() -> list[int]:
        password_hash = await accounts.new_password_hash("bench-viewer", secrets.token_urlsafe(12))
        async with connected(database_url) as db, db.write():
            return [await accounts.insert_user(db, f"bench-viewer-{n}", password_hash) for n in range(count)]

    return [create_user_token(secret, user_id, USER_TOKEN_TTL) for user_id in asyncio.run(create())]


def baseline_command(kind: str, port: int, gc_tuning: bool) -> list[str]:
    if kind == "node":
        if not (NODE_DIR / "node_modules" / "ws").is_dir():
            raise RuntimeError("the Node.js baseline needs its packages: make bench (or: cd bench/node && npm ci)")
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("the Node.js baseline needs node on the PATH (scripts/node.sh installs it from Debian)")
        return [node, str(NODE_DIR / "server.js"), "--port", str(port)]
    module = {"baseline": "bench.baseline", "picows": "bench.baseline_picows"}[kind]
    return [sys.executable, "-m", module, "--port", str(port), *([] if gc_tuning else ["--no-gc-tuning"])]


@contextmanager
def baseline(workdir: Path, cpus: list[int] | None, gc_tuning: bool = True, kind: str = "baseline") -> Iterator[Target]:
    """One of the BASELINES (uvicorn + Starlette by default); the Node.js one has no GC tuning to leave out."""
    port = free_port()
    log = workdir / f"{kind}-{port}.log"
    command = baseline_command(kind, port, gc_tuning)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, preexec_fn=pinned(cpus)
        )
    try:
        wait_until_up(process, port, log, health=False)
        yield Target(BASELINES[kind], process.pid, port, 1, None, "baseline", log, kind=kind)
    finally:
        stop(process)


def start_together(running: ExitStack, servers_: Sequence[AbstractContextManager[Target]]) -> list[Target]:
    """Enter every server's context at once (each start is seconds of `matchcast demo` and imports);
    `running` stops those that started, even when another failed."""
    if not servers_:
        return []  # `--baselines ""`: nothing to start beside matchcast
    with ThreadPoolExecutor(len(servers_)) as pool:
        futures = [pool.submit(server.__enter__) for server in servers_]
    for server, future in zip(servers_, futures, strict=True):
        if future.exception() is None:
            running.push(server)
    return [future.result() for future in futures]  # the first failure, if any, raises here
