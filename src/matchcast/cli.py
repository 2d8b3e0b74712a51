"""The `matchcast` command line (shared/spec/operations.md): serve, db upgrade, user create and
password, token, demo.

Results go to stdout (an id, a token, the demo's JSON) so scripts can capture them; everything
else, logs included, goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import secrets
import sqlite3
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg
import sqlalchemy as sa

from matchcast.db.database import Database, connected, upgrade
from matchcast.errors import DomainError, not_found
from matchcast.protocol import Event
from matchcast.realtime import eventlog
from matchcast.security import create_user_token
from matchcast.services import formats, matches, tournaments, users
from matchcast.services.actors import Actor, load_actor
from matchcast.settings import Settings, SettingsError

log = logging.getLogger("matchcast.cli")
T = TypeVar("T")
EXIT_ERROR = 1
EXIT_USAGE = 2
DEMO_PLAYERS = 8
DEMO_TOKEN_TTL = 86400
DEMO_BASE_URL = "http://127.0.0.1:8000"
# asyncpg raises OSError when it cannot connect and PostgresError for what the server refuses; the
# aiosqlite driver raises sqlite3 errors; alembic's synchronous engine raises SQLAlchemy errors.
DATABASE_ERRORS = (OSError, asyncpg.PostgresError, sqlite3.Error, sa.exc.SQLAlchemyError)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for chatty in ("alembic", "databases"):  # "connected", "running migration": noise on every command
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.command(settings, args))
    except DomainError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_ERROR
    except DATABASE_ERRORS as exc:
        # One line instead of a driver traceback: which database, and what it said.
        said = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        missing = isinstance(exc, asyncpg.UndefinedTableError) or "no such table" in said
        hint = " (create the schema with: matchcast db upgrade)" if missing else ""
        print(f"error: database {hide_password(settings.database_url)}: {said}{hint}", file=sys.stderr)
        return EXIT_ERROR


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="matchcast", description="Live match updates for tournaments.")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", help="run the ASGI app under uvicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=port_number, default=8000)
    serve.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="more than 1 needs MATCHCAST_BROADCAST_URL=redis://... or postgres://...",
    )
    serve.set_defaults(command=cmd_serve)

    db = commands.add_parser("db", help="database schema").add_subparsers(metavar="ACTION", required=True)
    db.add_parser("upgrade", help="create or migrate the schema").set_defaults(command=cmd_db_upgrade)

    user = commands.add_parser("user", help="users").add_subparsers(metavar="ACTION", required=True)
    create = user.add_parser("create", help="create a user and print its id")
    create.add_argument("name")
    create.add_argument("--password", required=True)
    create.add_argument("--staff", action="store_true", help="may organize every tournament")
    create.set_defaults(command=cmd_user_create)
    password = user.add_parser("password", help="set a user's password and end every session of the user")
    password.add_argument("name")
    password.add_argument("--password", required=True)
    password.set_defaults(command=cmd_user_password)

    token = commands.add_parser("token", help="print a signed access token for a user")
    token.add_argument("name")
    token.add_argument("--ttl", type=positive_int, default=3600, metavar="SECONDS")
    token.set_defaults(command=cmd_token)

    demo = commands.add_parser("demo", help="create a demo tournament with 8 players and a seeded bracket")
    demo.add_argument("--json", action="store_true", help="print only the demo's JSON document on stdout")
    demo.add_argument("--format", choices=sorted(formats.FORMATS), default=formats.DEFAULT, help="tournament format")
    demo.add_argument("--best-of", type=int, choices=tournaments.BEST_OF, default=1, help="games per match")
    demo.set_defaults(command=cmd_demo)
    return parser


def positive_int(raw: str) -> int:
    if not raw.isascii() or not raw.isdigit() or int(raw) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {raw!r}")
    return int(raw)


def port_number(raw: str) -> int:
    if not raw.isascii() or not raw.isdigit() or int(raw) > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 0 to 65535, got {raw!r}")
    return int(raw)


def hide_password(url: str) -> str:
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    if args.workers > 1 and not settings.shared_broadcast:
        print(
            f"error: --workers {args.workers} needs a broadcast shared by all workers, but MATCHCAST_BROADCAST_URL "
            "is memory:// (one process only); set MATCHCAST_BROADCAST_URL=redis://HOST:PORT or "
            "postgres://USER@HOST/DB, or run with --workers 1",
            file=sys.stderr,
        )
        return EXIT_USAGE
    from matchcast.server import serve  # the server pulls in uvicorn and the whole app: only when serving

    serve(settings, args.host, args.port, args.workers)
    return 0


def cmd_db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    upgrade(settings.database_url)
    print(f"database schema is up to date: {hide_password(settings.database_url)}", file=sys.stderr)
    return 0


def cmd_user_create(settings: Settings, args: argparse.Namespace) -> int:
    upgrade(settings.database_url)
    user_id = run(settings, lambda db: users.create_user(db, args.name, args.password, is_staff=args.staff))
    print(user_id)
    return 0


def cmd_user_password(settings: Settings, args: argparse.Namespace) -> int:
    upgrade(settings.database_url)
    run(settings, lambda db: users.change_password(db, args.name, args.password))
    print(f"password of {args.name!r} changed; every session of the user is ended", file=sys.stderr)
    return 0


def cmd_token(settings: Settings, args: argparse.Namespace) -> int:
    row = run(settings, lambda db: users.find_user(db, args.name))
    if row is None:
        raise not_found(f"no user named {args.name!r}; create one with: matchcast user create NAME --password P")
    print(create_user_token(settings.jwt_secret, row.id, args.ttl, row.session_epoch))
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    upgrade(settings.database_url)
    demo = run(settings, lambda db: create_demo(db, settings.jwt_secret, args.format, args.best_of))
    if args.json:
        print(json.dumps(demo, indent=2))
    else:
        print(describe_demo(demo))
    return 0


def run(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    async def with_database() -> T:
        async with connected(settings.database_url) as db:
            return await work(db)

    return asyncio.run(with_database())


class EventLogPublisher:
    """Stores events in the rooms' logs, where a running server's clients find them on resume.

    No broadcast: the command line has no sockets, and a demo tournament has no spectators yet.
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    async def publish(self, events: Sequence[Event]) -> None:
        await eventlog.store(self.db, events)


async def create_demo(db: Database, jwt_secret: str, format: str = formats.DEFAULT, best_of: int = 1) -> dict[str, Any]:
    suffix = secrets.token_hex(4)
    organizer = await demo_user(db, jwt_secret, f"demo-org-{suffix}")
    players = [await demo_user(db, jwt_secret, f"demo-p{n}-{suffix}") for n in range(1, DEMO_PLAYERS + 1)]
    actor = await load_actor(db, organizer["id"])
    name = f"Demo {format.replace('_', ' ').title()} {suffix}"
    tournament_id = await demo_tournament(db, actor, name, [p["id"] for p in players], format, best_of)
    # The matches whose players are known (operations.md): what a player can be sent to now.
    rows = [m for m in await matches.matches_of(db, tournament_id) if m.participant1_id and m.participant2_id]
    log.info("demo tournament %d: %d players, %d matches", tournament_id, len(players), len(rows))
    return {
        "tournament_id": tournament_id,
        "organizer": organizer,
        "players": players,
        "matches": [
            {
                "id": m.id,
                "round": m.round,
                "participant1_id": m.participant1_id,
                "participant2_id": m.participant2_id,
                "status": m.status,
            }
            for m in rows
        ],
    }


async def demo_user(db: Database, jwt_secret: str, username: str) -> dict[str, Any]:
    password = secrets.token_urlsafe(12)
    user_id = await users.create_user(db, username, password)
    return {
        "id": user_id,
        "username": username,
        "password": password,
        "token": create_user_token(jwt_secret, user_id, DEMO_TOKEN_TTL),
    }


async def demo_tournament(
    db: Database, organizer: Actor | None, name: str, player_ids: list[int], format: str, best_of: int
) -> int:
    tournament_id = await tournaments.create_tournament(db, organizer, name, True, best_of, format=format)
    for player_id in player_ids:
        await tournaments.register_player(db, organizer, tournament_id, player_id)
    await tournaments.seed_bracket(db, EventLogPublisher(db), organizer, tournament_id)
    return tournament_id


def describe_demo(demo: dict[str, Any]) -> str:
    organizer, tournament_id = demo["organizer"], demo["tournament_id"]
    lines = [
        f"Demo tournament {tournament_id} created: {len(demo['players'])} players, bracket seeded.",
        f"  Watch it:        {DEMO_BASE_URL}/tournaments/{tournament_id}",
        f"  Organize it:     {DEMO_BASE_URL}/login  as {organizer['username']} / {organizer['password']}",
        f"  Organizer token: {organizer['token']}",
        "  Matches to play:",
    ]
    for match in demo["matches"]:
        if match["status"] == "scheduled":
            lines.append(
                f"    {DEMO_BASE_URL}/matches/{match['id']}  "
                f"(players {match['participant1_id']} v {match['participant2_id']}, {match['status']})"
            )
    lines.append("  Players (username / password):")
    lines += [f"    {p['username']} / {p['password']}  (id {p['id']})" for p in demo["players"]]
    lines.append("Start the server with `matchcast serve` if it is not running.")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
