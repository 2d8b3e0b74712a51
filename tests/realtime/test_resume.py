"""Resume without loss: replay from the event log, and live delivery without holes."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from matchcast.db import tables
from matchcast.protocol import Event, match_room, tournament_room
from matchcast.realtime import eventlog, retention
from matchcast.realtime.recent import RECENT_EVENTS
from matchcast.services import disputes
from tests.support.factories import Tournament
from tests.support.server import RunningServer


async def dispute(server: RunningServer, t: Tournament, match: Any, n: int) -> None:
    """One event in each room of the match, published through the real service.

    A participant has one open dispute at a time: the previous one is closed first, in the
    database alone (no event), since these tests are about the log, not about disputes.
    """
    reporter = next(p for p in t.players if p.user_id == match.participant1_id)
    db = server.realtime.db
    await db.execute(tables.disputes.update().where(tables.disputes.c.match_id == match.id).values(status="resolved"))
    await disputes.report_dispute(db, server.realtime.hub, reporter, match.id, f"reason {n}")


async def test_a_reconnecting_client_gets_what_it_missed_in_order(server: RunningServer) -> None:
    t, match = await server.factory.live_match()
    async with server.client(f"/ws/match/{match.id}/", server.guest_token()) as ws:
        seen = (await ws.established())["last_event_id"]
    for n in range(5):
        await dispute(server, t, match, n)
    async with server.client(f"/ws/match/{match.id}/?last_event_id={seen}", server.guest_token()) as ws:
        data = await ws.established()
        replayed = await ws.events(5)
        await dispute(server, t, match, 99)
        live = await ws.events(1)
    assert data["replay"] == "complete" and data["last_event_id"] == seen + 5
    assert [e["id"] for e in replayed] == list(range(seen + 1, seen + 6))
    assert [e["data"]["reason"] for e in replayed] == [f"reason {n}" for n in range(5)]
    assert live[0]["id"] == seen + 6 and live[0]["data"]["reason"] == "reason 99"


async def test_resume_from_zero_replays_the_whole_room(server: RunningServer) -> None:
    _t, match = await server.factory.live_match()
    async with server.client(f"/ws/match/{match.id}/?last_event_id=0", server.guest_token()) as ws:
        data = await ws.established()
        events = await ws.events(data["last_event_id"])
    assert [e["type"] for e in events] == ["match_scheduled", "match_started"]
    assert [e["id"] for e in events] == [1, 2]


async def test_a_resume_point_beyond_the_last_id_replays_nothing(server: RunningServer) -> None:
    t, match = await server.factory.live_match()
    async with server.client(f"/ws/match/{match.id}/?last_event_id=500", server.guest_token()) as ws:
        data = await ws.established()
        assert data["replay"] == "complete" and data["last_event_id"] == 2
        assert [f for f in await ws.quiet(0.3) if "id" in f] == []
        await dispute(server, t, match, 1)
        assert [e["id"] for e in await ws.events(1)] == [3]


@pytest.mark.parametrize("overrides", [{"max_replay_events": 3}])
async def test_a_resume_too_far_behind_is_partial(server: RunningServer) -> None:
    t, match = await server.factory.live_match()
    for n in range(5):
        await dispute(server, t, match, n)
    async with server.client(f"/ws/match/{match.id}/?last_event_id=1", server.guest_token()) as ws:
        data = await ws.established()
        assert data["replay"] == "partial" and data["last_event_id"] == 7
        assert [d["reason"] for d in data["state"]["disputes"]] == ["reason 4"]  # the snapshot carries the news
        assert [f for f in await ws.quiet(0.3) if "id" in f] == []
    async with server.client(f"/ws/match/{match.id}/?last_event_id=4", server.guest_token()) as ws:
        data = await ws.established()
        assert data["replay"] == "complete"
        assert [e["id"] for e in await ws.events(3)] == [5, 6, 7]


async def test_a_resume_older_than_retention_is_partial(server: RunningServer) -> None:
    t, match = await server.factory.live_match()
    # A retention of 0 s: everything stored until now is past it, with no wait for it to age.
    assert await retention.prune(server.realtime.db, 0) >= 2  # match_scheduled, match_started
    await dispute(server, t, match, 1)
    async with server.client(f"/ws/match/{match.id}/?last_event_id=1", server.guest_token()) as ws:
        data = await ws.established()
        assert data["replay"] == "partial" and data["last_event_id"] == 3
        assert data["state"]["status"] == "live"
    async with server.client(f"/ws/match/{match.id}/?last_event_id=2", server.guest_token()) as ws:
        data = await ws.established()
        assert data["replay"] == "complete"
        assert [e["id"] for e in await ws.events(1)] == [3]


@pytest.mark.parametrize("overrides", [{"gap_fill_wait_ms": 100}])
async def test_an_event_stored_but_never_broadcast_still_arrives_in_order(server: RunningServer) -> None:
    t, match = await server.factory.live_match()
    async with server.client(f"/ws/match/{match.id}/", server.guest_token()) as ws:
        last = (await ws.established())["last_event_id"]
        # Stored in the log, never given to the broker (a crash, or a lost PUB/SUB message).
        lost = Event(
            "match_started",
            {"match_id": match.id, "tournament_id": t.id, "started_at": "lost"},
            (tournament_room(t.id), match_room(match.id)),
        )
        await eventlog.store(server.realtime.db, [lost])
        await dispute(server, t, match, 1)
        events = await ws.events(2)
    assert [e["id"] for e in events] == [last + 1, last + 2]
    assert events[0]["data"]["started_at"] == "lost" and events[1]["type"] == "dispute_created"


# -- replays from the room's recent events (realtime/recent.py) ----------------------------------


def count_log_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record each read of the event log the resumes could make (the real reads still run)."""
    reads: list[str] = []
    for name in ("read_after", "oldest_id", "payload_bytes"):
        real = getattr(eventlog, name)

        async def counted(*args: Any, _real: Any = real, _name: str = name) -> Any:
            reads.append(_name)
            return await _real(*args)

        monkeypatch.setattr(eventlog, name, counted)
    return reads


async def test_a_resume_within_the_rooms_recent_events_reads_nothing_from_the_log(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    t, match = await server.factory.live_match()
    async with server.client(f"/ws/match/{match.id}/", server.guest_token()) as watcher:
        seen = (await watcher.established())["last_event_id"]
        for n in range(5):
            await dispute(server, t, match, n)
        await watcher.events(5)  # the room delivered them: they are its recent events
        reads = count_log_reads(monkeypatch)
        async with server.client(f"/ws/match/{match.id}/?last_event_id={seen}", server.guest_token()) as ws:
            data = await ws.established()
            replayed = await ws.events(5)
    assert data["replay"] == "complete"
    assert [e["id"] for e in replayed] == list(range(seen + 1, seen + 6))
    assert [e["data"]["reason"] for e in replayed] == [f"reason {n}" for n in range(5)]
    assert reads == []


async def test_a_resume_older_than_the_recent_events_is_replayed_from_the_log_then_from_memory(
    server: RunningServer,
) -> None:
    _t, match = await server.factory.live_match()  # events 1 and 2
    room = match_room(match.id)
    many = [Event("dispute_created", {"match_id": match.id, "n": n}, (room,)) for n in range(RECENT_EVENTS + 40)]
    await eventlog.store(server.realtime.db, many)
    last = 2 + len(many)
    async with server.client(f"/ws/match/{match.id}/?last_event_id=2", server.guest_token()) as ws:
        data = await ws.established()
        replayed = await ws.events(len(many))
    assert data["replay"] == "complete" and data["last_event_id"] == last
    assert [e["id"] for e in replayed] == list(range(3, last + 1))
    assert [e["data"]["n"] for e in replayed] == list(range(len(many)))


async def test_a_resume_gets_events_stored_after_the_rooms_recent_ones_from_the_log(server: RunningServer) -> None:
    server.realtime.hub.snapshots.ttl = 0  # every join reads the last id afresh: ahead of the room here
    t, match = await server.factory.live_match()
    async with server.client(f"/ws/match/{match.id}/", server.guest_token()) as watcher:
        seen = (await watcher.established())["last_event_id"]
        for n in range(3):
            await dispute(server, t, match, n)
        await watcher.events(3)
        # Stored, not yet delivered by the room (in flight, or a lost PUB/SUB message): the
        # resume's last_event_id covers them, and its replay reads them from the log.
        lost = [Event("dispute_created", {"match_id": match.id, "n": n}, (match_room(match.id),)) for n in range(2)]
        await eventlog.store(server.realtime.db, lost)
        async with server.client(f"/ws/match/{match.id}/?last_event_id={seen + 1}", server.guest_token()) as ws:
            data = await ws.established()
            replayed = await ws.events(4)
    assert data["replay"] == "complete" and data["last_event_id"] == seen + 5
    assert [e["id"] for e in replayed] == list(range(seen + 2, seen + 6))
    assert [e["data"].get("n") for e in replayed[2:]] == [0, 1]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_clients_dropping_and_resuming_at_random_each_get_the_full_sequence(
    server: RunningServer, seed: int
) -> None:
    rng = random.Random(seed)
    t, match = await server.factory.live_match()
    room = f"/ws/match/{match.id}/"
    total_events = 60
    published = asyncio.Event()

    async def publisher() -> None:
        for n in range(total_events):
            await dispute(server, t, match, n)
            await asyncio.sleep(rng.uniform(0, 0.03))  # random jitter of the publisher, not a wait
        published.set()

    async def client(name: int) -> list[int]:
        ids: list[int] = []
        last = 0  # resume from the very start: the room's whole sequence
        while True:
            async with server.client(f"{room}?last_event_id={last}", server.guest_token()) as ws:
                data = await ws.established()
                target = data["last_event_id"]
                stay = rng.uniform(0.05, 0.4)
                loop = asyncio.get_running_loop()
                leave_at = loop.time() + stay
                while True:
                    if published.is_set() and last >= final_id():
                        return ids
                    try:
                        frame = await ws.recv(max(0.01, leave_at - loop.time()))
                    except TimeoutError:
                        break  # drop the connection at a random moment
                    if "id" in frame:
                        ids.append(frame["id"])
                        last = frame["id"]
                assert target >= 0

    final: list[int] = []

    def final_id() -> int:
        return final[0] if final else 1 << 30

    async def settle() -> None:
        await published.wait()
        final.append(await eventlog.last_id(server.realtime.db, match_room(match.id)))

    results = await asyncio.gather(publisher(), settle(), *(client(n) for n in range(4)))
    expected = list(range(1, final[0] + 1))
    assert final[0] == 2 + total_events
    for ids in results[2:]:
        assert ids == expected


@pytest.mark.timeout(60)
async def test_events_published_during_the_handshake_are_neither_lost_nor_doubled(server: RunningServer) -> None:
    t, match = await server.factory.live_match()
    published = 0

    async def publish(stop: asyncio.Event) -> None:
        nonlocal published
        while not stop.is_set():
            await dispute(server, t, match, published)
            published += 1
            await asyncio.sleep(0)  # a yield, not a wait: publish as fast as the handshakes let it

    for attempt in range(8):
        # Publishing runs from before the socket connects until it is established, then 5 more
        # events: the server and this client share one event loop, and SQLite's statements run
        # on it without a yield (db/inline_sqlite.py), so a publisher left running would grow
        # the log faster than this client, which replays it, reads it.
        stop = asyncio.Event()
        publisher = asyncio.create_task(publish(stop))
        resume = attempt * 3  # some fresh, some resuming from an old id
        try:
            async with server.client(f"/ws/match/{match.id}/?last_event_id={resume}", server.guest_token()) as ws:
                data = await ws.established()
                stop.set()
                await publisher
                for n in range(5):
                    await dispute(server, t, match, published + n)
                last = data["last_event_id"]
                events = await ws.events(max(0, last - resume) + 5)
        finally:
            stop.set()
            await publisher
        ids = [e["id"] for e in events]
        first = resume + 1 if data["replay"] == "complete" and resume < last else last + 1
        assert ids == list(range(first, first + len(ids))), (attempt, ids[:10])
