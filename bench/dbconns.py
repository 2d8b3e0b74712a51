"""How many database connections a server holds, sampled from a thread while a scenario runs.

PostgreSQL: the rows of `pg_stat_activity` for the server's database (every backend connected to
it; the sampler itself connects to the admin database, so it is not one of them). SQLite has no
server to ask: the count is the server process's open file descriptors on the database file (each
connection opens it once; its WAL and shared memory files are not counted), read from
/proc/<pid>/fd. The same pass counts the server's threads.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import psycopg

from bench.servers import POSTGRES_ADMIN_URL

PERIOD = 0.05  # seconds between samples; a SQLite pass reads a link per open socket (10k: ~15 ms)


@dataclass
class Sample:
    at_ns: int  # time.monotonic_ns(), the clock of every process here
    connections: int
    threads: int


def sqlite_file_descriptors(pid: int, path: Path) -> int:
    target = str(path)
    count = 0
    try:
        for fd in os.scandir(f"/proc/{pid}/fd"):
            try:
                count += os.readlink(fd.path) == target
            except OSError:
                continue  # closed meanwhile
    except OSError:
        return 0  # no such process (between a stop and a start)
    return count


def threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


@dataclass
class ConnectionSampler:
    """Samples `count()` and the server's threads every PERIOD until stopped; `pid()` follows restarts."""

    database_url: str
    pid: Callable[[], int]
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def what(self) -> str:
        if self.database_url.startswith("sqlite"):
            return "the server's open file descriptors on the SQLite database file"
        return "pg_stat_activity rows for the server's PostgreSQL database"

    def __enter__(self) -> ConnectionSampler:
        self._thread = threading.Thread(target=self._run, name="db-connections", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        if self.database_url.startswith("sqlite"):
            path = Path(self.database_url.removeprefix("sqlite:///")).resolve()
            self._loop(lambda pid: sqlite_file_descriptors(pid, path))
            return
        name = self.database_url.rsplit("/", 1)[1]
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            query = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
            self._loop(lambda _: int(admin.execute(query, (name,)).fetchone()[0]))  # type: ignore[index]

    def _loop(self, count: Callable[[int], int]) -> None:
        while not self._stop.is_set():
            pid = self.pid()
            self.samples.append(Sample(time.monotonic_ns(), count(pid), threads(pid)))
            self._stop.wait(PERIOD)

    def peak(self, start_ns: int = 0, end_ns: int = 2**63) -> dict[str, int]:
        """The most connections (and threads) seen between `start_ns` and `end_ns`."""
        inside = [s for s in self.samples if start_ns <= s.at_ns <= end_ns]
        return {
            "connections": max((s.connections for s in inside), default=0),
            "threads": max((s.threads for s in inside), default=0),
            "samples": len(inside),
        }
