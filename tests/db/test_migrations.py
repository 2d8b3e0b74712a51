import os
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from matchcast.db.database import MIGRATIONS, connected, sync_url, upgrade
from matchcast.db.tables import metadata
from matchcast.services import matches, snapshots
from matchcast.services.actors import load_actor
from matchcast.services.publisher import DiscardingPublisher
from tests.support.databases import fresh_postgres_database_sync, sqlite_url
from tests.support.processes import MATCHCAST
from tests.support.server import TEST_SECRET


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield sqlite_url(tmp_path, "empty.db")
    else:
        with fresh_postgres_database_sync(migrate=False) as url:
            yield url


def head_revision() -> str | None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()


def inspect(url: str) -> tuple[set[str], str | None, list[Any]]:
    engine = sa.create_engine(sync_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection)
            tables = set(sa.inspect(connection).get_table_names())
            return tables, context.get_current_revision(), compare_metadata(context, metadata)
    finally:
        engine.dispose()


def test_upgrade_creates_every_table_and_is_idempotent(empty_url: str) -> None:
    assert inspect(empty_url)[0] == set()
    upgrade(empty_url)
    first = inspect(empty_url)
    upgrade(empty_url)
    assert inspect(empty_url) == first
    tables, revision, differences = first
    assert tables == set(metadata.tables) | {"alembic_version"}
    assert revision == head_revision()
    assert differences == [], f"the migrations and tables.py disagree: {differences}"


def test_upgrade_keeps_existing_rows(database_url: str) -> None:
    engine = sa.create_engine(sync_url(database_url), poolclass=sa.pool.NullPool)
    users = metadata.tables["users"]
    with engine.begin() as connection:
        connection.execute(
            users.insert().values(username="kept", password_hash="x", is_staff=False, created_at=sa.func.now())
        )
    upgrade(database_url)
    with engine.connect() as connection:
        assert connection.execute(sa.select(users.c.username)).scalars().all() == ["kept"]
    engine.dispose()


async def test_a_single_elimination_tournament_seeded_before_formats_plays_on_after_0004(empty_url: str) -> None:
    """Rows written by the 0003 schema (no format, no bracket column) become a single-elimination
    tournament in the `main` bracket, whose next match fills and schedules as before."""
    upgrade(empty_url, "0003")
    engine = sa.create_engine(sync_url(empty_url), poolclass=sa.pool.NullPool)
    now = datetime(2026, 1, 1, 12, 0)
    with engine.begin() as connection:
        for user_id, username in enumerate(("org", "p1", "p2", "p3", "p4"), start=1):
            connection.execute(
                sa.text(
                    "INSERT INTO users (id, username, password_hash, is_staff, created_at)"
                    " VALUES (:id, :username, 'x', false, :now)"
                ),
                {"id": user_id, "username": username, "now": now},
            )
        connection.execute(
            sa.text(
                "INSERT INTO tournaments (id, name, organizer_id, is_public, status, best_of, created_at)"
                " VALUES (1, 'Old Cup', 1, true, 'running', 1, :now)"
            ),
            {"now": now},
        )
        # The final first (the semifinals point at it), then semifinal 1 completed (p1 placed in
        # the final) and semifinal 2 live.
        insert_match = sa.text(
            "INSERT INTO matches (id, tournament_id, round, position, participant1_id, participant2_id,"
            " participant1_score, participant2_score, sequence, status, winner_id, is_bye, next_match_id,"
            " next_slot, scheduled_at, created_at, updated_at) VALUES (:id, 1, :round, :position, :p1, :p2,"
            " :s1, :s2, 0, :status, :winner, false, :next, :slot, :scheduled, :now, :now)"
        )
        rows: list[dict[str, Any]] = [
            {"id": 3, "round": 2, "position": 0, "p1": 2, "p2": None, "next": None, "slot": None, "scheduled": None},
            {"id": 1, "round": 1, "position": 0, "p1": 2, "p2": 3, "status": "completed", "winner": 2, "s1": 1},
            {"id": 2, "round": 1, "position": 1, "p1": 4, "p2": 5, "status": "live"},
        ]
        for row in rows:
            defaults = {"s1": 0, "s2": 0, "status": "scheduled", "winner": None, "next": 3, "scheduled": now}
            connection.execute(insert_match, {**defaults, "slot": row["position"] + 1, **row, "now": now})
    engine.dispose()

    upgrade(empty_url)
    async with connected(empty_url) as db:
        state = await snapshots.tournament_snapshot(db, 1)
        assert (state["format"], state["rounds"]) == ("single_elimination", None)
        assert {m["id"]: m["bracket"] for m in state["matches"]} == {1: "main", 2: "main", 3: "main"}
        assert [c["name"] for c in state["bracket"]["rounds"]] == ["Semifinals", "Final"]
        organizer = await load_actor(db, 1)
        publisher = DiscardingPublisher()
        await matches.update_score(db, publisher, organizer, 2, 0, 1)
        await matches.complete_match(db, publisher, organizer, 2)
        final = await snapshots.match_snapshot(db, 3)
        assert (final["participant1"], final["participant2"]) == ({"id": 2, "name": "p1"}, {"id": 5, "name": "p4"})
        assert final["scheduled_at"] is not None and final["round_name"] == "Final"
        assert [e.type for e in publisher.published][-3:] == [
            "match_completed",
            "match_scheduled",
            "bracket_updated",
        ]


def test_0005_keeps_rows_and_ids_and_never_reuses_a_deleted_id(empty_url: str) -> None:
    """SQLite's tables are recreated with AUTOINCREMENT: every row keeps its id, existing users
    start with session epoch 0, and a deleted id (also one from before 0005) is not given again."""
    upgrade(empty_url, "0004")
    engine = sa.create_engine(sync_url(empty_url), poolclass=sa.pool.NullPool)
    insert_user = sa.text(
        "INSERT INTO users (username, password_hash, is_staff, created_at) VALUES (:name, 'x', false, :now)"
    )
    now = datetime(2026, 1, 1, 12, 0)
    with engine.begin() as connection:
        for name in ("u1", "u2", "u3"):
            connection.execute(insert_user, {"name": name, "now": now})
        connection.execute(
            sa.text(
                "INSERT INTO tournaments (name, organizer_id, is_public, status, created_at)"
                " VALUES ('Kept', 2, true, 'draft', :now)"
            ),
            {"now": now},
        )
    upgrade(empty_url)
    with engine.begin() as connection:
        rows = connection.execute(sa.text("SELECT id, username, session_epoch FROM users ORDER BY id")).all()
        assert [tuple(row) for row in rows] == [(1, "u1", 0), (2, "u2", 0), (3, "u3", 0)]
        assert connection.execute(sa.text("SELECT id, organizer_id FROM tournaments")).all() == [(1, 2)]
        connection.execute(sa.text("DELETE FROM users WHERE id = 3"))
        connection.execute(insert_user, {"name": "u4", "now": now})
        assert connection.execute(sa.text("SELECT max(id) FROM users")).scalar() == 4
    engine.dispose()


def test_sqlite_tables_never_reuse_ids_after_the_migrations_as_in_tables_py(tmp_path: Path) -> None:
    """compare_metadata does not compare AUTOINCREMENT: check that every table tables.py marks has
    it after the migrations, and no other."""
    url = sqlite_url(tmp_path, "ids.db")
    upgrade(url)
    engine = sa.create_engine(sync_url(url), poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        schema: dict[str, str] = dict(
            connection.execute(sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'table'")).all()
        )
    engine.dispose()
    marked = {name for name, table in metadata.tables.items() if table.dialect_options["sqlite"]["autoincrement"]}
    assert marked == {"users", "tournaments", "registrations", "matches", "disputes", "reports", "webhooks"}
    assert {name for name, sql in schema.items() if "AUTOINCREMENT" in sql} == marked


def test_processes_upgrading_one_new_database_at_once_all_succeed(empty_url: str) -> None:
    """What `matchcast serve --workers 4` (each worker migrates on start) or a deploy of several
    instances does to a new database: one process migrates, the others wait and find it done."""
    env = {**os.environ, "MATCHCAST_DATABASE_URL": empty_url, "MATCHCAST_JWT_SECRET": TEST_SECRET}
    upgrades = [
        subprocess.Popen([str(MATCHCAST), "db", "upgrade"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(4)
    ]
    outputs = [upgrade.communicate(timeout=60)[0].decode() for upgrade in upgrades]
    assert [upgrade.returncode for upgrade in upgrades] == [0] * 4, "\n".join(outputs)
    tables, revision, differences = inspect(empty_url)
    assert tables == set(metadata.tables) | {"alembic_version"}
    assert (revision, differences) == (head_revision(), [])
