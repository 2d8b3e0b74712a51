"""What a server that stopped publishing is doing: the database's side, its metrics, its threads.

Read when the storm's last score does not come back (bench/storm.py), so the failure says whether
the score was stored, whether its event was, and what the database connections wait for.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from bench.servers import POSTGRES_ADMIN_URL

STATE = (
    "SELECT (SELECT participant1_score FROM matches WHERE id = {match}),"
    " (SELECT sequence FROM matches WHERE id = {match}),"
    " (SELECT last_id FROM room_counters WHERE room = 'match_{match}'),"
    " (SELECT max(id) FROM events WHERE room = 'match_{match}')"
)
ACTIVITY = (
    "SELECT pid, state, wait_event_type, wait_event, extract(epoch FROM now() - xact_start)::int,"
    " left(query, 100) FROM pg_stat_activity WHERE datname = %s"
)


def stored(database_url: str, match_id: int) -> dict[str, Any]:
    """The match's score and sequence, the room's counter and its last stored event."""
    query = STATE.format(match=int(match_id))
    if database_url.startswith("sqlite"):
        with contextlib.closing(sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=5)) as db:
            row = db.execute(query).fetchone()
    else:
        with psycopg.connect(database_url, autocommit=True) as db:
            row = db.execute(query).fetchone()
    assert row is not None
    return dict(zip(("score", "sequence", "room_counter", "last_event"), row, strict=True))


def activity(database_url: str) -> list[Any]:
    if database_url.startswith("sqlite"):
        return []
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        return [list(row) for row in admin.execute(ACTIVITY, (database_url.rsplit("/", 1)[1],))]


def metrics(port: int) -> list[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text: str = reply.read().decode()
    return [line for line in text.splitlines() if line.startswith("matchcast_")]


def health(port: int) -> str:
    """/healthz reads the database through the pool: does it answer within 5 s?"""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as reply:
            return f"{reply.status} {reply.read().decode()[:200]}"
    except (TimeoutError, urllib.error.URLError) as exc:
        return f"no answer in 5 s: {exc}"


def threads(pid: int) -> str:
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None:
        return "no py-spy"
    return subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30).stdout


def diagnose(database_url: str, match_id: int, port: int, pid: int) -> dict[str, Any]:
    found: dict[str, Any] = {}
    probes: dict[str, Callable[[], Any]] = {
        "stored": lambda: stored(database_url, match_id),
        "activity": lambda: activity(database_url),
        "healthz": lambda: health(port),
        "metrics": lambda: metrics(port),
        "threads": lambda: threads(pid),
    }
    for name, probe in probes.items():
        try:
            found[name] = probe()
        except Exception as exc:  # one probe failing must not hide the others
            found[name] = f"{type(exc).__name__}: {exc}"
    return found
