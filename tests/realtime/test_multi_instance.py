"""Several instances: `matchcast serve` processes sharing one fresh PostgreSQL database and one broker.

What one instance publishes reaches the sockets of every other, in id order, with no gap.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from matchcast.cli import EventLogPublisher
from matchcast.db.database import Database, connected
from matchcast.realtime import eventlog
from matchcast.security import create_guest_token, create_user_token
from tests.support.databases import fresh_postgres_database
from tests.support.factories import Factory
from tests.support.processes import MATCHCAST, ServerProcess, wait_until
from tests.support.server import TEST_SECRET, Client

pytestmark = pytest.mark.timeout(90)
EVENT_WAIT = 10.0  # seconds


@dataclass
class Deployment:
    instances: list[ServerProcess]
    db: Database
    factory: Factory  # builds tournaments in the shared database; their events go to the log

    def token(self, user_id: int) -> str:
        return create_user_token(TEST_SECRET, user_id, 600)

    def guest(self) -> str:
        return create_guest_token(TEST_SECRET, 600)


@pytest.fixture
async def env(shared_stack: tuple[str, str], tmp_path: Any) -> AsyncIterator[dict[str, str]]:
    broadcast, _ = shared_stack
    async with fresh_postgres_database() as url:
        yield {
            "MATCHCAST_DATABASE_URL": url,
            "MATCHCAST_BROADCAST_URL": broadcast,
            "MATCHCAST_JWT_SECRET": TEST_SECRET,
            "MATCHCAST_CHANNEL_PREFIX": "t" + uuid.uuid4().hex[:8] + "_",  # others share this broker
        }


async def deploy(env: dict[str, str], tmp_path: Any, count: int, workers: int = 1) -> AsyncIterator[Deployment]:
    instances = [ServerProcess(env, workers=workers, log_dir=tmp_path) for _ in range(count)]
    try:
        await asyncio.gather(*(instance.start() for instance in instances))
        async with connected(env["MATCHCAST_DATABASE_URL"]) as db:
            yield Deployment(instances, db, Factory(db, EventLogPublisher(db)))
    finally:
        await asyncio.gather(*(instance.stop() for instance in instances), return_exceptions=True)


@pytest.fixture
async def two(env: dict[str, str], tmp_path: Any) -> AsyncIterator[Deployment]:
    async for deployment in deploy(env, tmp_path, 2):
        yield deployment


async def events_until(client: Client, last_id: int, type_: str, done: Any) -> list[dict[str, Any]]:
    """Every event after `last_id` up to the first of `type_` for which done(frame); ids contiguous."""
    frames: list[dict[str, Any]] = []

    async def collect() -> None:
        while True:
            (frame,) = await client.events(1, timeout=EVENT_WAIT)
            assert frame["id"] == last_id + len(frames) + 1, f"hole or duplicate: {frame} after {frames[-1:]}"
            frames.append(frame)
            if frame["type"] == type_ and done(frame):
                return

    await asyncio.wait_for(collect(), EVENT_WAIT)
    return frames


async def test_a_spectator_on_b_receives_what_a_participant_sends_on_a(two: Deployment) -> None:
    a, b = two.instances
    t, match = await two.factory.live_match()
    async with (
        a.client(f"/ws/match/{match.id}/", two.token(match.participant1_id)) as player,
        b.client(f"/ws/match/{match.id}/", two.guest()) as spectator,
        b.client(f"/ws/tournament/{t.id}/", two.guest()) as watcher,
    ):
        await player.established()
        seen = (await spectator.established())["last_event_id"]
        watched = (await watcher.established())["last_event_id"]
        await player.send({"type": "score_update", "participant1_score": 3, "participant2_score": 1})
        for client, last in ((spectator, seen), (watcher, watched)):
            (frame,) = await events_until(client, last, "score_updated", lambda f: True)
            assert frame["data"]["match_id"] == match.id
            assert (frame["data"]["participant1_score"], frame["data"]["participant2_score"]) == (3, 1)


def client_view(updates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a client shows: it drops a score_updated whose sequence is not above the last one
    (docs/protocol.md). Each instance batches its own updates, so a coalesced update of one
    instance may be stored after a newer one of the other."""
    shown: list[dict[str, Any]] = []
    for frame in updates:
        if not shown or frame["data"]["sequence"] > shown[-1]["data"]["sequence"]:
            shown.append(frame)
    return shown


async def test_scores_alternating_between_instances_stay_monotonic(two: Deployment) -> None:
    a, b = two.instances
    _t, match = await two.factory.live_match()
    async with (
        a.client(f"/ws/match/{match.id}/", two.token(match.participant1_id)) as p1,
        b.client(f"/ws/match/{match.id}/", two.token(match.participant2_id)) as p2,
        a.client(f"/ws/match/{match.id}/", two.guest()) as on_a,
        b.client(f"/ws/match/{match.id}/", two.guest()) as on_b,
    ):
        await p1.established()
        await p2.established()
        last = {on_a: (await on_a.established())["last_event_id"], on_b: (await on_b.established())["last_event_id"]}
        updates = 20
        for n in range(1, updates + 1):
            await (p1 if n % 2 else p2).send({"type": "score_update", "participant1_score": n, "participant2_score": 0})
            await asyncio.sleep(0.02)  # pacing, not a wait: a stream of one update every 20 ms

        async def all_stored() -> bool:  # every update is accepted, on either instance
            sequence: int = (await two.factory.match(match.id)).sequence
            return sequence == updates

        await wait_until(all_stored, 10, f"{updates} score updates stored")
        final = await two.factory.match(match.id)
        for spectator in (on_a, on_b):
            frames = await events_until(
                spectator, last[spectator], "score_updated", lambda f: f["data"]["sequence"] == updates
            )
            shown = client_view([f for f in frames if f["type"] == "score_updated"])
            sequences = [f["data"]["sequence"] for f in shown]
            assert sequences == sorted(set(sequences)) and sequences[-1] == updates, sequences
            assert shown[-1]["data"]["participant1_score"] == final.participant1_score
        for player in (p1, p2):  # nobody was refused anything
            assert not [f for f in await player.quiet(0.1) if f["type"] == "error"]


async def test_a_dispute_reported_on_a_reaches_both_rooms_on_b(two: Deployment) -> None:
    a, b = two.instances
    t, match = await two.factory.live_match()
    async with (
        a.client(f"/ws/match/{match.id}/", two.token(match.participant2_id)) as player,
        b.client(f"/ws/match/{match.id}/", two.guest()) as match_room,
        b.client(f"/ws/tournament/{t.id}/", two.token(t.organizer.user_id)) as tournament_room,
    ):
        await player.established()
        last = [(await room.established())["last_event_id"] for room in (match_room, tournament_room)]
        await player.send({"type": "report_dispute", "reason": "opponent disconnected twice"})
        found = []
        for client, after in zip((match_room, tournament_room), last, strict=True):
            (frame,) = await events_until(client, after, "dispute_created", lambda f: True)
            assert frame["data"]["reason"] == "opponent disconnected twice"
            assert frame["data"]["reported_by_id"] == match.participant2_id
            found.append(frame["data"]["dispute_id"])
        assert found[0] == found[1]


async def test_a_client_resumes_on_the_other_instance_without_loss(two: Deployment) -> None:
    a, b = two.instances
    t, match = await two.factory.live_match()
    async with a.client(f"/ws/match/{match.id}/", two.guest()) as first:
        left_at = (await first.established())["last_event_id"]
    headers = {"Authorization": f"Bearer {two.token(t.organizer.user_id)}"}
    async with httpx.AsyncClient(timeout=5) as http:
        for n in range(1, 4):  # while the client is away, on instance A
            reply = await http.post(
                f"{a.http}/api/matches/{match.id}/score",
                headers=headers,
                json={"participant1_score": n, "participant2_score": 0},
            )
            assert reply.status_code == 200, reply.text
        await http.post(f"{a.http}/api/matches/{match.id}/complete", headers=headers, json={})
    stored = await eventlog.last_id(two.db, f"match_{match.id}")
    async with b.client(f"/ws/match/{match.id}/?last_event_id={left_at}", two.guest()) as back:
        data = await back.established()
        assert data["replay"] == "complete" and data["last_event_id"] == stored
        replayed = await back.events(stored - left_at)
    assert [f["id"] for f in replayed] == list(range(left_at + 1, stored + 1))
    assert replayed[-1]["type"] == "match_completed"


@pytest.mark.timeout(120)
async def test_workers_share_rooms_through_the_broker(env: dict[str, str], tmp_path: Any) -> None:
    async for deployment in deploy(env, tmp_path, 1, workers=2):
        (server,) = deployment.instances
        _t, match = await deployment.factory.live_match()
        async with AsyncExitStack() as stack:
            player = await stack.enter_async_context(
                server.client(f"/ws/match/{match.id}/", deployment.token(match.participant1_id))
            )
            await player.established()
            # The kernel hands each connection to either worker: with 8 spectators both are all but
            # certainly used, and each must get the score whichever worker it landed on.
            spectators = [
                await stack.enter_async_context(server.client(f"/ws/match/{match.id}/", deployment.guest()))
                for _ in range(8)
            ]
            lasts = [(await s.established())["last_event_id"] for s in spectators]
            await player.send({"type": "score_update", "participant1_score": 7, "participant2_score": 5})
            for spectator, last in zip(spectators, lasts, strict=True):
                (frame,) = await events_until(spectator, last, "score_updated", lambda f: True)
                assert frame["data"]["participant1_score"] == 7


def test_workers_on_memory_broadcast_are_refused() -> None:
    env = {**os.environ, "MATCHCAST_BROADCAST_URL": "memory://", "MATCHCAST_JWT_SECRET": TEST_SECRET}
    result = subprocess.run(
        [str(MATCHCAST), "serve", "--workers", "2", "--port", "0"], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "memory://" in result.stderr and "--workers" in result.stderr
