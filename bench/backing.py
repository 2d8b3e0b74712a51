"""A private Redis and PostgreSQL for the capacity scenario, and counters of what they did.

The shared services on 6379 and 5432 serve every session on this machine, so their command counts
and CPU would mix ours with everyone's; and the shared PostgreSQL lacks pg_stat_statements (it must
be preloaded, which takes a restart). So bench/capacity.py starts its own redis-server and its own
PostgreSQL cluster on free ports, pinned where it is told, and reads before and after each phase:
Redis's INFO (commands by name, CPU, bytes in and out), PostgreSQL's statements (pg_stat_statements,
exact at once), the bench database's transactions and rows (pg_stat_database), WAL bytes, and the
CPU of every process of the cluster.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import psycopg
import redis

from bench import servers
from bench.procstat import CLOCK_TICKS
from bench.servers import free_port, pinned, stop, wait_until_up

PG_BIN = Path(os.environ.get("MATCHCAST_BENCH_PG_BIN", "/usr/lib/postgresql/15/bin"))
# Backends report their transaction and row counts to pg_stat_database at most once a second, and
# an idle one that could not report waits 10 s (PGSTAT_IDLE_INTERVAL) before it tries again.
PG_STATS_DELAY = 11.0
# asyncpg's pool resets a connection given back to it with these four, in one round trip.
POOL_RESET = {"SELECT pg_advisory_unlock_all()", "CLOSE ALL", "UNLISTEN *", "RESET ALL"}
DATABASE_STATS = ("xact_commit", "xact_rollback", "tup_returned", "tup_fetched", "tup_inserted", "tup_updated")


@dataclass
class Redis:
    url: str
    pid: int


@dataclass
class Postgres:
    admin_url: str  # the cluster's `postgres` database: our own counter queries land there
    postmaster: int


@contextmanager
def private_redis(workdir: Path, cpus: list[int] | None) -> Iterator[Redis]:
    port = free_port()
    log = workdir / f"redis-{port}.log"
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, preexec_fn=pinned(cpus))
    try:
        wait_until_up(process, port, log, health=False)
        yield Redis(f"redis://127.0.0.1:{port}", process.pid)
    finally:
        stop(process)


def _as_postgres(cpus: list[int] | None) -> Callable[[], None]:
    """PostgreSQL refuses to run as root: drop to the `postgres` user when we are root."""
    account = pwd.getpwnam("postgres") if os.geteuid() == 0 else None

    def prepare() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)
        if account is not None:
            os.setgid(account.pw_gid)
            os.setuid(account.pw_uid)

    return prepare


@contextmanager
def private_postgres(workdir: Path, cpus: list[int] | None) -> Iterator[Postgres]:
    # Its own directory: the cluster's user (`postgres`, when we are root) cannot enter `workdir`.
    home = Path(tempfile.mkdtemp(prefix="matchcast-capacity-pg-"))
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(home, account.pw_uid, account.pw_gid)
    data, port, log = home / "data", free_port(), workdir / "postgres.log"
    made = subprocess.run(
        [str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
        capture_output=True,
        timeout=120,
        preexec_fn=_as_postgres(None),
    )
    if made.returncode != 0:
        shutil.rmtree(home, ignore_errors=True)
        raise RuntimeError(f"initdb failed ({made.returncode}): {made.stderr.decode(errors='replace')[-800:]}")
    options = {
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": str(home),
        "shared_preload_libraries": "pg_stat_statements",
        "pg_stat_statements.track": "all",
        "max_connections": "200",
    }
    command = [str(PG_BIN / "postgres"), "-D", str(data), "-p", str(port)]
    command += [arg for name, value in options.items() for arg in ("-c", f"{name}={value}")]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_as_postgres(cpus))
    try:
        wait_until_up(process, port, log, health=False)
        admin_url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        _wait_accepting(admin_url, process)
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute("CREATE EXTENSION pg_stat_statements")
        yield Postgres(admin_url, process.pid)
    finally:
        # SIGINT: a "fast" shutdown, which does not wait for clients to leave (SIGTERM would).
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        stop(process)
        shutil.rmtree(home, ignore_errors=True)


def _wait_accepting(url: str, process: subprocess.Popen[bytes]) -> None:
    """The port opens before recovery ends: wait until a connection is accepted."""
    end = time.monotonic() + 30
    while True:
        try:
            psycopg.connect(url, connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if process.poll() is not None or time.monotonic() > end:
                raise
            time.sleep(0.1)


@contextmanager
def database(admin_url: str) -> Iterator[str]:
    """A new database on the cluster of `admin_url`, dropped afterwards."""
    with servers.postgres_database(admin_url, f"matchcast_capacity_{os.getpid()}") as url:
        yield url


def tree_cpu(root: int) -> float:
    """CPU seconds of `root` and its children, the live ones and those it has reaped (PostgreSQL's
    backends are children of the postmaster)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        fields = text[text.rindex(")") + 2 :].split()
        pid, parent = int(entry.name), int(fields[1])
        if pid == root:
            total += sum(int(f) for f in fields[11:15])  # utime, stime, and the reaped children's
        elif parent == root:
            total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


class Counters:
    """Reads everything a phase is charged with; `read()` returns one flat dict of numbers, and
    `delta()` what changed between two reads, less what reading itself costs (INFO's own replies
    and calls), measured by two reads in a row."""

    def __init__(self, redis_: Redis, postgres: Postgres, database_url: str) -> None:
        self.redis = redis.Redis.from_url(redis_.url)
        self.postgres = postgres
        self.database = database_url.rsplit("/", 1)[1]
        self.admin = psycopg.connect(postgres.admin_url, autocommit=True)
        first = self.read()
        second = self.read()
        # CPU is left as read: a read costs about a millisecond, under the 10 ms tick of /proc.
        self.overhead = {k: second[k] - first.get(k, 0.0) for k in ("redis.info", "redis.bytes_in", "redis.bytes_out")}

    def delta(self, before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        """What changed from `before` to `after`, net of the reading."""
        return {k: v - before.get(k, 0.0) - self.overhead.get(k, 0.0) for k, v in after.items()}

    def close(self) -> None:
        self.redis.close()
        self.admin.close()

    def read(self) -> dict[str, float]:
        found: dict[str, float] = {}
        stats = cast(dict[str, Any], self.redis.info("commandstats"))
        for name, values in stats.items():
            found["redis." + name.removeprefix("cmdstat_")] = float(values["calls"])
        info = cast(dict[str, Any], self.redis.info())
        found["redis.cpu_s"] = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        found["redis.bytes_in"] = float(info["total_net_input_bytes"])
        found["redis.bytes_out"] = float(info["total_net_output_bytes"])
        rows = self.admin.execute(
            "SELECT s.query, s.calls, s.rows FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
            " WHERE d.datname = %s",
            (self.database,),
        ).fetchall()
        for query, calls, count in rows:
            key = "pg.sql." + " ".join(str(query).split())[:160]
            found[key] = found.get(key, 0.0) + float(calls)
            found["pg.statements"] = found.get("pg.statements", 0.0) + float(calls)
            if key[7:] in POOL_RESET:
                found["pg.reset_statements"] = found.get("pg.reset_statements", 0.0) + float(calls)
            found["pg.rows"] = found.get("pg.rows", 0.0) + float(count)
        database = self.admin.execute(
            f"SELECT {', '.join(DATABASE_STATS)} FROM pg_stat_database WHERE datname = %s", (self.database,)
        ).fetchone()
        for name, value in zip(DATABASE_STATS, database or (), strict=False):
            found["pg." + name] = float(value)
        wal = self.admin.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
        found["pg.wal_bytes"] = float(wal[0]) if wal else 0.0
        found["pg.cpu_s"] = tree_cpu(self.postgres.postmaster)
        return found

    def subscribers(self, channel: str) -> int:
        """How many connections (one per instance) are subscribed to `channel`."""
        reply = cast(list[tuple[bytes, int]], self.redis.pubsub_numsub(channel))
        return int(reply[0][1])
