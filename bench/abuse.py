"""Hostile users against a real `matchcast serve` (issue 16), measured from /proc and `ss`.

1. Replay pinning: N guests resume a long log (`last_event_id=0`), never read, and ping every
   2 s so the heartbeat never closes them (their own keepalive off: its pong would never come).
   Prints the server's RSS and kernel send queues with them connected, and again once they are
   gone (the heartbeat timeout and the close grace) or 55 s have passed.
2. Rate per user: one participant opens S sockets and sends score updates at 19/s on each (under
   the per-socket 20/1s) for a few seconds. Prints the writes accepted per second.

    .venv/bin/python -m bench.abuse [--sockets 100] [--flooders 40]

MATCHCAST_BENCH_SERVER_PYTHONPATH measures another copy of src/ (e.g. the code before a fix).
Everything runs on loopback against a server this script starts and stops.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from bench.procstat import rss_kb
from bench.servers import (
    MATCHCAST,
    free_port,
    fresh_database,
    post_json,
    seed_demo,
    server_env,
    stop,
    wait_until_up,
)
from matchcast.db.database import Database
from matchcast.protocol import Event, tournament_room
from matchcast.realtime import eventlog
from matchcast.security import create_guest_token

SECRET = "abuse-bench-secret-0123456789abcdef"
HEARTBEAT = {"MATCHCAST_HEARTBEAT_INTERVAL": "5", "MATCHCAST_HEARTBEAT_TIMEOUT": "12"}
LOG_EVENTS, PAD = 2000, "x" * 1800  # a replay of ~3.8 MB, under the 4 MB "partial" bound


async def fill_log(database_url: str, tournament_id: int) -> None:
    db = Database(database_url)
    await db.connect()
    try:
        room = tournament_room(tournament_id)
        batch = [Event("tournament_updated", {"tournament_id": tournament_id, "pad": PAD}, (room,))] * LOG_EVENTS
        await eventlog.store(db, batch)
    finally:
        await db.disconnect()


def server_send_queue(port: int) -> tuple[int, int]:
    """(established connections of the server's port, bytes in their kernel send queues)."""
    out = subprocess.run(
        ["ss", "-tnH", "state", "established", f"( sport = :{port} )"], capture_output=True, text=True, check=True
    ).stdout
    rows = [line.split() for line in out.splitlines() if line.strip()]
    return len(rows), sum(int(row[1]) for row in rows)


def mib(kb: int) -> str:
    return f"{kb / 1024:.0f} MiB"


async def stalled_guest(url: str, stop_at: float) -> None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.connect(("127.0.0.1", int(url.split(":")[2].split("/")[0])))
    try:
        async with connect(
            url, sock=sock, max_queue=1, open_timeout=10, close_timeout=1, max_size=None, ping_interval=None
        ) as ws:
            n = 0
            while time.monotonic() < stop_at:
                n += 1
                await ws.send(json.dumps({"type": "ping", "timestamp": n}))
                await asyncio.sleep(2)  # the attacker's pace
    except (ConnectionClosed, OSError):
        pass


async def pin_replays(port: int, pid: int, tournament_id: int, guests: list[str], sockets: int) -> None:
    before = rss_kb(pid)
    stop_at = time.monotonic() + 60
    url = f"ws://127.0.0.1:{port}/ws/tournament/{tournament_id}/?last_event_id=0&token="
    tasks = [asyncio.create_task(stalled_guest(url + guests[i], stop_at)) for i in range(sockets)]
    await asyncio.sleep(10)  # all connected and stuck
    held, queued = server_send_queue(port)
    during = rss_kb(pid)
    waited = 0
    while server_send_queue(port)[0] and waited < 45:  # heartbeat timeout, close grace, then some
        await asyncio.sleep(1)
        waited += 1
        if os.environ.get("ABUSE_LOG"):
            print(waited + 10, server_send_queue(port), flush=True)
    after_held, after_queued = server_send_queue(port)
    after = rss_kb(pid)
    await asyncio.gather(*tasks, return_exceptions=True)
    print(
        f"replay pinning, {sockets} stalled guests: RSS {mib(before)} -> {mib(during)} "
        f"({held} connections, {queued / 1e6:.0f} MB in kernel send queues); "
        f"{waited + 10} s after connecting: RSS {mib(after)}, {after_held} connections, "
        f"{after_queued / 1e6:.0f} MB queued"
    )


async def flood(port: int, match_id: int, token: str, sockets: int, seconds: float = 5.0) -> None:
    url = f"ws://127.0.0.1:{port}/ws/match/{match_id}/?token={token}"
    sent = refused = other = 0
    closes: dict[Any, int] = {}
    start = time.monotonic()

    def ended(how: Any) -> None:
        closes[how] = closes.get(how, 0) + 1

    async def one(index: int) -> None:
        nonlocal sent, refused, other
        try:
            async with connect(url, open_timeout=10, close_timeout=1) as ws:
                n = 0
                while time.monotonic() - start < seconds:
                    n += 1
                    update = {"type": "score_update", "participant1_score": n, "participant2_score": index}
                    await ws.send(json.dumps(update))
                    sent += 1
                    await asyncio.sleep(1 / 19)
                    while True:  # the answers so far (errors only: an accepted update is answered by its event)
                        try:
                            frame = json.loads(await asyncio.wait_for(ws.recv(), 0.001))
                        except TimeoutError:
                            break
                        if frame["type"] == "error":
                            refused += frame["data"]["code"] == "rate_limited"
                            other += frame["data"]["code"] != "rate_limited"
        except ConnectionClosed as exc:
            ended(exc.rcvd.code if exc.rcvd else None)
            return
        ended("open to the end")

    await asyncio.gather(*(one(i) for i in range(sockets)))
    accepted = sent - refused - other
    print(
        f"rate per user, {sockets} sockets of one participant at 19 frames/s each for {seconds:.0f} s: "
        f"{accepted / seconds:.0f} score writes/s accepted ({sent} sent, {refused} refused, {other} other errors); "
        f"sockets ended: {closes}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=100, help="stalled guests resuming the replay")
    parser.add_argument("--flooders", type=int, default=40, help="sockets of the flooding participant")
    parser.add_argument("--max-pending", default="1024", help="the server's MATCHCAST_MAX_PENDING")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, fresh_database("memory-sqlite", Path(tmp)) as database_url:
        env = (
            server_env(database_url, "memory://", SECRET)
            | HEARTBEAT
            | {"MATCHCAST_RATE_LIMIT": "20/1s", "MATCHCAST_MAX_PENDING": args.max_pending}
        )
        subprocess.run([MATCHCAST, "db", "upgrade"], env=env, cwd=tmp, check=True, capture_output=True, timeout=120)
        demo = seed_demo(env, Path(tmp))
        asyncio.run(fill_log(database_url, demo["tournament_id"]))
        port = free_port()
        log = Path(tmp) / "server.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [MATCHCAST, "serve", "--port", str(port)], env=env, cwd=tmp, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            wait_until_up(process, port, log, health=True)
            match = next(m for m in demo["matches"] if m["round"] == 1)
            player = next(p for p in demo["players"] if p["id"] == match["participant1_id"])
            post_json(f"http://127.0.0.1:{port}/api/matches/{match['id']}/start", demo["organizer"]["token"], {})
            guests = [create_guest_token(SECRET, 3600) for _ in range(args.sockets)]
            asyncio.run(pin_replays(port, process.pid, demo["tournament_id"], guests, args.sockets))
            asyncio.run(flood(port, match["id"], player["token"], args.flooders))
        finally:
            stop(process)
            if os.environ.get("ABUSE_LOG"):
                print(log.read_text(errors="replace")[-6000:])


if __name__ == "__main__":
    main()
