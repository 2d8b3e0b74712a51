"""What the database part of a score update costs, in one process: CPU per call through `Database`.

The update-cost scenario (bench/fanout.py) measures the whole server; this isolates the calls a
score update makes to the database, as the server makes them, on a fresh demo tournament
(`matchcast demo`) with its first match live, as its organizer (the demo's token verified, their
row read): the score's `UPDATE ... RETURNING` (services/matches.py), the event log's numbering
and storing of that score in one transaction with its freshness check (realtime/eventlog.py,
services/freshness.py), the freshness check's read alone, and an empty write transaction. Each
is called `--calls` times after a warm-up, timed in CPU seconds of this process, on uvloop as the
server runs; the kinds take turns over `--rounds` rounds and the median of each is printed.

    python -m bench.dbcost --stack memory-sqlite     (or redis-postgres: its PostgreSQL only)
"""

from __future__ import annotations

import argparse
import functools
import secrets
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import uvloop

from bench import servers
from matchcast.db.database import Database
from matchcast.protocol import Event, match_room
from matchcast.realtime import eventlog
from matchcast.security import verify_token
from matchcast.services import freshness, matches
from matchcast.services.actors import load_actor


class Kept:
    """The services' Publisher, keeping the last events instead of handing them to a hub."""

    def __init__(self) -> None:
        self.last: list[Event] = []

    async def publish(self, events: Sequence[Event]) -> None:
        self.last = list(events)


async def measure(database_url: str, secret: str, seeded: dict[str, Any], calls: int, rounds: int) -> dict[str, Any]:
    db = Database(database_url)
    await db.connect()
    await db.open_pool()
    try:
        # The organizer as the server knows them: from the demo's token, checked, and their row.
        subject = verify_token(secret, seeded["organizer"]["token"])
        user_id = subject.user_id
        organizer = None if user_id is None else await load_actor(db, user_id, subject.epoch)
        if organizer is None:
            raise RuntimeError("the demo's organizer token names no current user")
        match_id = int(next(m["id"] for m in seeded["matches"] if m["round"] == 1))
        kept = Kept()
        await matches.start_match(db, kept, organizer, match_id)
        scores = iter(range(10**9))

        async def update() -> None:
            await matches.update_score(db, kept, organizer, match_id, next(scores) % 50, 0)

        async def store() -> None:
            await eventlog.store(db, kept.last, functools.partial(freshness.refresh, db))

        async def sequence() -> None:
            await matches.stored_sequence(db, match_id)

        async def empty_transaction() -> None:
            async with db.write():
                pass

        kinds: dict[str, Callable[[], Awaitable[None]]] = {
            "score UPDATE": update,
            "log store": store,
            "freshness read": sequence,
            "empty write transaction": empty_transaction,
        }
        await update()
        first_sequence = await matches.stored_sequence(db, match_id) or 0
        first_event = await eventlog.last_id(db, match_room(match_id))
        samples: dict[str, list[float]] = {name: [] for name in kinds}
        for _ in range(rounds):
            for name, call in kinds.items():
                for _ in range(calls // 10):
                    await call()
                started = time.process_time()
                for _ in range(calls):
                    await call()
                samples[name].append((time.process_time() - started) / calls * 1e6)
        # That every call did its work (a call that did nothing would look cheap):
        done = {
            "scores_stored": (await matches.stored_sequence(db, match_id) or 0) - first_sequence,
            "events_logged": await eventlog.last_id(db, match_room(match_id)) - first_event,
        }
        return {"us_per_call": {name: round(statistics.median(v), 1) for name, v in samples.items()}, **done}
    finally:
        await db.disconnect()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", default="memory-sqlite", choices=servers.STACKS)
    parser.add_argument("--calls", type=int, default=1000, help="calls of each kind per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    secret = secrets.token_hex(32)
    with tempfile.TemporaryDirectory() as workdir, servers.fresh_database(args.stack, Path(workdir)) as url:
        seeded = servers.seed_demo(servers.server_env(url, "memory://", secret), Path(workdir))
        result = uvloop.run(measure(url, secret, seeded, args.calls, args.rounds))
    print(f"CPU us per call through Database ({args.stack}, {args.calls} calls, median of {args.rounds} rounds)")
    for name, us in result["us_per_call"].items():
        print(f"  {name:<24} {us:8.1f}")
    return result


if __name__ == "__main__":
    main()
