"""matchcast instances on one private Redis and one private PostgreSQL database, as in production:
the same database, broker URL and channel prefix for all, round-robin demo tournaments with every
match started, and the players' tokens."""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import backing, servers
from matchcast.security import create_user_token


@dataclass
class Stack:
    env: dict[str, str]
    workdir: Path
    counters: backing.Counters
    demos: list[dict[str, Any]]
    server_cpus: list[int] | None
    redis_pid: int
    postgres_pid: int

    @property
    def final(self) -> dict[str, Any]:
        match: dict[str, Any] = self.demos[0]["matches"][0]
        return match

    def token_of(self, demo: dict[str, Any], user_id: int) -> str:
        return str(next(p["token"] for p in demo["players"] if p["id"] == user_id))


@contextmanager
def stack(workdir: Path, server_cpus: list[int] | None, client_cpus: list[int] | None, demos: int) -> Iterator[Stack]:
    with (
        backing.private_redis(workdir, client_cpus) as redis_,
        backing.private_postgres(workdir, client_cpus) as postgres,
        backing.database(postgres.admin_url) as database_url,
    ):
        env = servers.server_env(database_url, redis_.url, secrets.token_hex(32))
        # Logged-in joins reuse a few players' tokens: each holds many sockets at once.
        env["MATCHCAST_MAX_SOCKETS_PER_USER"] = "1000000"
        made = [demo(env, workdir) for _ in range(demos)]
        counters = backing.Counters(redis_, postgres, database_url)
        try:
            yield Stack(env, workdir, counters, made, server_cpus, redis_.pid, postgres.postmaster)
        finally:
            counters.close()


def demo(env: dict[str, str], workdir: Path) -> dict[str, Any]:
    command = [servers.MATCHCAST, "demo", "--json", "--format", "round_robin"]
    done = subprocess.run(command, env=env, cwd=workdir, check=True, capture_output=True, timeout=120)
    made: dict[str, Any] = json.loads(done.stdout)
    return made


@contextmanager
def instance(stack_: Stack, label: str) -> Iterator[servers.Target]:
    """One more `matchcast serve` on the stack's database, Redis and channel prefix."""
    port = servers.free_port()
    log = stack_.workdir / f"matchcast-{label}-{port}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [servers.MATCHCAST, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=stack_.env,
            cwd=stack_.workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=servers.pinned(stack_.server_cpus),
        )
    try:
        servers.wait_until_up(process, port, log, health=True)
        final = stack_.final
        participant = stack_.token_of(stack_.demos[0], final["participant1_id"])
        secret = stack_.env["MATCHCAST_JWT_SECRET"]
        yield servers.Target(f"matchcast {label}", process.pid, port, final["id"], secret, participant, log)
    finally:
        servers.stop(process)


def start_matches(stack_: Stack, target: servers.Target) -> None:
    for made in stack_.demos:
        for match in made["matches"]:
            url = f"http://127.0.0.1:{target.port}/api/matches/{match['id']}/start"
            servers.post_json(url, made["organizer"]["token"], {})


def spectator_tokens(stack_: Stack, count: int) -> list[str]:
    """Logged-in spectators of the final: the tournament's other players, in turn."""
    made, final = stack_.demos[0], stack_.final
    players = [p for p in made["players"] if p["id"] not in (final["participant1_id"], final["participant2_id"])]
    secret = stack_.env["MATCHCAST_JWT_SECRET"]
    return [create_user_token(secret, players[n % len(players)]["id"], 3600) for n in range(count)]
