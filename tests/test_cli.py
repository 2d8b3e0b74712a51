"""The command line end to end: a real `matchcast` process on a real database, as an operator runs it."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from jose import jwt

from matchcast.protocol import tournament_room
from matchcast.security import verify_password, verify_token
from tests.support.databases import fresh_postgres_database_sync

SECRET = "cli-test-secret-of-more-than-32-bytes"


class Cli:
    """`cli(*args, **env)` runs `matchcast ARGS` in `directory`; `db_path` is its SQLite file."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.db_path = directory / "cli.db"
        self.base = {k: v for k, v in os.environ.items() if not k.startswith("MATCHCAST_")}
        self.base |= {"MATCHCAST_DATABASE_URL": f"sqlite:///{self.db_path}", "MATCHCAST_JWT_SECRET": SECRET}

    def __call__(self, *args: str, **env: str | None) -> subprocess.CompletedProcess[str]:
        environ = {k: v for k, v in (self.base | env).items() if v is not None}
        return subprocess.run(
            [sys.executable, "-m", "matchcast.cli", *args],
            cwd=self.directory,
            env=environ,
            capture_output=True,
            text=True,
            timeout=60,
        )


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """Run `matchcast ARGS` in tmp_path (no stray .env) on a SQLite file there; returns CompletedProcess."""
    return Cli(tmp_path)


def query(path: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as connection:
        return connection.execute(sql, params).fetchall()


def test_db_upgrade(cli: Cli) -> None:
    result = cli("db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and "up to date" in result.stderr
    tables = {row[0] for row in query(cli.db_path, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"users", "tournaments", "matches", "events", "alembic_version"} <= tables


def test_user_create_and_token(cli: Cli) -> None:
    created = cli("user", "create", "alice", "--password", "alice-password")
    assert created.returncode == 0, created.stderr
    assert re.fullmatch(r"\d+\n", created.stdout), f"stdout must be only the id, got {created.stdout!r}"
    user_id = int(created.stdout)
    [(name, password_hash, is_staff)] = query(cli.db_path, "SELECT username, password_hash, is_staff FROM users")
    assert (name, is_staff) == ("alice", 0) and verify_password(password_hash, "alice-password")

    duplicate = cli("user", "create", "alice", "--password", "other-password")
    assert duplicate.returncode == 1 and duplicate.stdout == ""
    assert "error:" in duplicate.stderr and "alice" in duplicate.stderr and "taken" in duplicate.stderr

    token = cli("token", "alice", "--ttl", "120")
    assert token.returncode == 0, token.stderr
    assert verify_token(SECRET, token.stdout.strip()).user_id == user_id
    claims = jwt.get_unverified_claims(token.stdout.strip())
    assert claims["exp"] - claims["iat"] == 120 and abs(claims["iat"] - time.time()) < 60

    default_ttl = jwt.get_unverified_claims(cli("token", "alice").stdout.strip())
    assert default_ttl["exp"] - default_ttl["iat"] == 3600

    unknown = cli("token", "nobody")
    assert unknown.returncode == 1 and unknown.stdout == "" and "no user named 'nobody'" in unknown.stderr


def test_user_create_staff_and_bad_input(cli: Cli) -> None:
    staff = cli("user", "create", "boss", "--password", "boss-password", "--staff")
    assert staff.returncode == 0, staff.stderr
    assert query(cli.db_path, "SELECT is_staff FROM users WHERE id = ?", int(staff.stdout)) == [(1,)]
    short = cli("user", "create", "carol", "--password", "short")
    assert short.returncode == 1 and "password must be" in short.stderr and short.stdout == ""
    assert cli("user", "create", "dave").returncode == 2  # --password is required
    assert cli("token", "boss", "--ttl", "0").returncode == 2
    assert query(cli.db_path, "SELECT count(*) FROM users") == [(1,)]


def test_user_password_sets_the_password_and_ends_every_session(cli: Cli) -> None:
    assert cli("user", "create", "frank", "--password", "frank-password").returncode == 0
    changed = cli("user", "password", "frank", "--password", "frank-new-password")
    assert changed.returncode == 0 and changed.stdout == "", changed.stderr
    [(password_hash, epoch)] = query(cli.db_path, "SELECT password_hash, session_epoch FROM users")
    assert verify_password(password_hash, "frank-new-password") and epoch == 1
    unknown = cli("user", "password", "nobody", "--password", "frank-new-password")
    assert unknown.returncode == 1 and "no user named 'nobody'" in unknown.stderr
    short = cli("user", "password", "frank", "--password", "short")
    assert short.returncode == 1 and "password must be" in short.stderr
    assert query(cli.db_path, "SELECT session_epoch FROM users") == [(1,)]


def test_logs_go_to_stderr_only(cli: Cli) -> None:
    """Without MATCHCAST_JWT_SECRET the dev-secret warning is logged, and stdout still holds only the id."""
    result = cli("user", "create", "erin", "--password", "erin-password", MATCHCAST_JWT_SECRET=None)
    assert result.returncode == 0 and re.fullmatch(r"\d+\n", result.stdout)
    assert "MATCHCAST_JWT_SECRET" in result.stderr


def check_demo(demo: dict[str, Any], secret: str) -> None:
    assert set(demo) == {"tournament_id", "organizer", "players", "matches"}
    assert type(demo["tournament_id"]) is int
    people = [demo["organizer"], *demo["players"]]
    assert len(demo["players"]) == 8
    for person in people:
        assert set(person) == {"id", "username", "password", "token"}
        assert type(person["id"]) is int and len(person["password"]) >= 8
        assert verify_token(secret, person["token"]).user_id == person["id"]
    assert len({p["id"] for p in people}) == len({p["username"] for p in people}) == 9
    assert demo["organizer"]["username"].startswith("demo-org-")
    matches = demo["matches"]  # the matches whose players are known: the first round's four
    assert len(matches) == 4
    for match in matches:
        assert set(match) == {"id", "round", "participant1_id", "participant2_id", "status"}
    assert all(m["round"] == 1 and m["status"] == "scheduled" for m in matches)
    seated = [m[key] for m in matches for key in ("participant1_id", "participant2_id")]
    assert sorted(seated) == sorted(p["id"] for p in demo["players"])


def test_demo_json(cli: Cli) -> None:
    result = cli("demo", "--json")
    assert result.returncode == 0, result.stderr
    demo = json.loads(result.stdout)  # the whole of stdout is the document
    check_demo(demo, SECRET)
    [(password_hash,)] = query(cli.db_path, "SELECT password_hash FROM users WHERE id = ?", demo["organizer"]["id"])
    assert verify_password(password_hash, demo["organizer"]["password"])
    # The seeding's events are in the tournament room's log: 4 match_scheduled, then bracket_updated.
    logged = query(
        cli.db_path, "SELECT id, type FROM events WHERE room = ? ORDER BY id", tournament_room(demo["tournament_id"])
    )
    assert logged == [
        (1, "match_scheduled"),
        (2, "match_scheduled"),
        (3, "match_scheduled"),
        (4, "match_scheduled"),
        (5, "bracket_updated"),
    ]
    second = json.loads(cli("demo", "--json").stdout)  # runs again beside the first, with new names
    assert second["tournament_id"] != demo["tournament_id"]
    assert second["organizer"]["username"] != demo["organizer"]["username"]


@pytest.mark.parametrize(
    ("format", "playable", "rounds"),
    [("double_elimination", 4, {1}), ("round_robin", 28, set(range(1, 8))), ("swiss", 4, {1})],
)
def test_demo_builds_each_format(cli: Cli, format: str, playable: int, rounds: set[int]) -> None:
    result = cli("demo", "--json", "--format", format, "--best-of", "3")
    assert result.returncode == 0, result.stderr
    demo = json.loads(result.stdout)
    assert len(demo["matches"]) == playable and {m["round"] for m in demo["matches"]} == rounds
    assert all(m["participant1_id"] and m["participant2_id"] for m in demo["matches"])
    [(stored, best_of)] = query(
        cli.db_path, "SELECT format, best_of FROM tournaments WHERE id = ?", demo["tournament_id"]
    )
    assert (stored, best_of) == (format, 3)


@pytest.mark.parametrize("args", [("--format", "ladder"), ("--best-of", "2"), ("--best-of", "x")])
def test_demo_refuses_unknown_formats_and_best_of(cli: Cli, args: tuple[str, str]) -> None:
    result = cli("demo", "--json", *args)
    assert result.returncode == 2 and ("invalid choice" in result.stderr or "invalid int" in result.stderr)
    assert result.stdout == ""


def test_demo_human_summary(cli: Cli) -> None:
    result = cli("demo")
    assert result.returncode == 0, result.stderr
    [(tournament_id, organizer_id)] = query(cli.db_path, "SELECT id, organizer_id FROM tournaments")
    [(username,)] = query(cli.db_path, "SELECT username FROM users WHERE id = ?", organizer_id)
    assert f"http://127.0.0.1:8000/tournaments/{tournament_id}" in result.stdout
    assert username in result.stdout and "/login" in result.stdout


def test_demo_json_on_postgresql(cli: Cli) -> None:
    with fresh_postgres_database_sync(migrate=False) as url:
        result = cli("demo", "--json", MATCHCAST_DATABASE_URL=url)
        assert result.returncode == 0, result.stderr
        check_demo(json.loads(result.stdout), SECRET)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MATCHCAST_HEARTBEAT_INTERVAL", "abc"),
        ("MATCHCAST_DATABASE_URL", "mysql://x"),
        ("MATCHCAST_JWT_SECRET", "short"),
    ],
)
def test_a_bad_variable_exits_2_with_one_line(cli: Cli, name: str, value: str) -> None:
    result = cli("db", "upgrade", **{name: value})
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0], result.stderr
    assert not cli.db_path.exists()  # nothing was done


def test_serve_with_workers_needs_a_shared_broadcast(cli: Cli) -> None:
    result = cli("serve", "--workers", "2")
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "MATCHCAST_BROADCAST_URL" in lines[0] and "redis://" in lines[0], result.stderr


def test_database_errors_are_one_line(cli: Cli) -> None:
    result = cli("token", "alice", MATCHCAST_DATABASE_URL="postgresql://postgres@127.0.0.1:1/nowhere")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip().startswith("error: database postgresql://postgres@127.0.0.1:1/nowhere")
    assert "Traceback" not in result.stderr


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "matchcast"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    for command in ("serve", "db", "user", "token", "demo"):
        assert command in result.stdout
