"""Server-sent events `/sse/...`: a real server, a real HTTP client reading the stream as it comes."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from matchcast.protocol import WS_4009_SLOW_CONSUMER
from matchcast.security import create_token
from matchcast.services import matches
from tests.realtime.conftest import SELECTED, STACKS
from tests.support.databases import fresh_postgres_database, sqlite_url
from tests.support.server import RunningServer, running_server
from tests.support.server import test_settings as make_settings
from tests.support.sse import Message, open_stream


@asynccontextmanager
async def serve(tmp_path: Path, **overrides: Any) -> AsyncIterator[RunningServer]:
    """A memory-sqlite server with some settings changed."""
    settings = make_settings(database_url=sqlite_url(tmp_path), broadcast_url="memory://", **overrides)
    async with running_server(settings) as running:
        yield running


@pytest.fixture(params=SELECTED)
async def stacked(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RunningServer]:
    """A server on each selected broadcast+database stack (MATCHCAST_TEST_STACKS), as the realtime tests."""
    broadcast, database = STACKS[request.param]
    prefix = "t" + uuid.uuid4().hex[:8] + "_"
    if database == "sqlite":
        settings = make_settings(broadcast_url=broadcast, database_url=sqlite_url(tmp_path), channel_prefix=prefix)
        async with running_server(settings) as running:
            yield running
    else:
        async with fresh_postgres_database(migrate=False) as url:
            settings = make_settings(broadcast_url=broadcast, database_url=url, channel_prefix=prefix)
            async with running_server(settings) as running:
                yield running


def contiguous(first: int, messages: list[Message]) -> bool:
    return [m.id for m in messages] == list(range(first, first + len(messages)))


async def wait_for_readers(server: RunningServer, count: int) -> None:
    async def settled() -> None:
        while len(list(server.realtime.hub.connections())) != count:
            await asyncio.sleep(0.02)  # the poll interval, bounded by the wait_for below

    await asyncio.wait_for(settled(), 5)


async def test_the_state_comes_first_then_every_event_in_order_as_on_the_websocket(stacked: RunningServer) -> None:
    server = stacked
    db, hub = server.realtime.db, server.realtime.hub
    t, match = await server.factory.live_match(players=2)
    guest = server.guest_token()
    async with (
        open_stream(server.http, f"/sse/matches/{match.id}", guest) as match_reader,
        open_stream(server.http, f"/sse/tournaments/{t.id}", guest) as tournament_reader,
        server.client(f"/ws/tournament/{t.id}/", guest) as ws,
    ):
        state = await match_reader.state()
        assert state["id"] == match.id and state["status"] == "live"
        assert state["participant1"]["name"] == t.players[0].username
        assert state["last_event_id"] == 2 and state["replay"] == "complete"  # match_scheduled, match_started
        tournament_state = await tournament_reader.state()
        assert tournament_state["id"] == t.id and [m["id"] for m in tournament_state["matches"]] == [match.id]
        last = (await ws.established())["last_event_id"]
        assert tournament_state["last_event_id"] == last

        await matches.update_score(db, hub, t.organizer, match.id, 1, 0)
        await matches.update_score(db, hub, t.organizer, match.id, 2, 0)
        await matches.complete_match(db, hub, t.organizer, match.id)

        in_match = await match_reader.events(3)  # the second score waits out the batching window
        assert [m.event for m in in_match] == ["score_updated", "score_updated", "match_completed"]
        assert contiguous(3, in_match)
        assert [m.json["participant1_score"] for m in in_match] == [1, 2, 2]
        in_tournament = await tournament_reader.events(4)
        frames = await ws.events(4)
        assert [m.event for m in in_tournament] == [f["type"] for f in frames]
        assert [m.event for m in in_tournament][-1] == "bracket_updated"
        assert contiguous(last + 1, in_tournament)
        assert [(m.id, m.json) for m in in_tournament] == [(f["id"], f["data"]) for f in frames]


@pytest.mark.parametrize("how", ["header", "query"])
async def test_resuming_after_a_drop_gets_exactly_the_missed_events(stacked: RunningServer, how: str) -> None:
    server = stacked
    db, hub = server.realtime.db, server.realtime.hub
    t, match = await server.factory.live_match(players=2)
    path, guest = f"/sse/matches/{match.id}", server.guest_token()
    async with open_stream(server.http, path, guest) as reader:
        await reader.state()
        await matches.update_score(db, hub, t.organizer, match.id, 1, 0)
        seen = (await reader.event()).id
    assert seen == 3
    await wait_for_readers(server, 0)
    await matches.update_score(db, hub, t.organizer, match.id, 2, 0)  # while nobody reads
    await hub.batcher.flush_all()  # out of the batching window now, so the order below is fixed
    await report_dispute(server, match, "lag")

    # An EventSource sends the header when it reconnects by itself, with its first URL, whose
    # ?last_event_id= may be older: the header wins.
    if how == "header":
        resume: dict[str, Any] = {"headers": {"Last-Event-ID": str(seen)}, "path": f"{path}?last_event_id=1"}
    else:
        resume = {"headers": {}, "path": f"{path}?last_event_id={seen}"}
    async with open_stream(server.http, resume["path"], guest, headers=resume["headers"]) as reader:
        state = await reader.state()
        assert state["last_event_id"] == 5 and state["replay"] == "complete"
        missed = await reader.events(2)
        assert [(m.id, m.event) for m in missed] == [(4, "score_updated"), (5, "dispute_created")]
        assert missed[0].json["participant1_score"] == 2
        await matches.complete_match(db, hub, t.organizer, match.id)
        # Completing the match closes its open dispute first (the organizer's ruling).
        assert [(m.id, m.event) for m in await reader.quiet(0.5)] == [(6, "dispute_resolved"), (7, "match_completed")]


async def report_dispute(server: RunningServer, match: Any, reason: str) -> None:
    async with server.client(f"/ws/match/{match.id}/", server.token(match.participant1_id)) as player:
        await player.established()
        await player.send({"type": "report_dispute", "reason": reason})
        await player.recv_type("dispute_created")


async def test_no_valid_token_is_401_with_the_error_json(server: RunningServer, client: httpx.AsyncClient) -> None:
    _t, match = await server.factory.live_match()
    secret = server.settings.jwt_secret
    for token in [None, "not-a-jwt", create_token(secret, "12abc", 60), create_token(secret, "424242", 60)]:
        answer = await client.get(f"/sse/matches/{match.id}", params={} if token is None else {"token": token})
        assert answer.status_code == 401, (token, answer.text)
        assert answer.headers["content-type"] == "application/json"
        assert answer.json()["error"]["code"] == "unauthorized"
    expired = create_token(secret, str(match.participant1_id), -10)
    answer = await client.get(f"/sse/matches/{match.id}", headers={"Authorization": f"Bearer {expired}"})
    assert answer.status_code == 401 and "expired" in answer.json()["error"]["message"]
    assert list(server.realtime.hub.connections()) == []


async def test_a_bearer_header_opens_the_stream(server: RunningServer) -> None:
    t, match = await server.factory.live_match()
    bearer = {"Authorization": f"Bearer {server.token(t.organizer.user_id)}"}
    async with open_stream(server.http, f"/sse/matches/{match.id}", headers=bearer) as reader:
        assert (await reader.state())["id"] == match.id
        assert [conn.role for conn in server.realtime.hub.connections()] == ["organizer"]


async def test_an_unknown_id_is_404(server: RunningServer, client: httpx.AsyncClient) -> None:
    guest = {"token": server.guest_token()}
    for path in ["/sse/matches/999999", "/sse/tournaments/999999", "/sse/matches/99999999999999999999"]:
        answer = await client.get(path, params=guest)
        assert answer.status_code == 404, path
        assert answer.json()["error"]["code"] == "not_found"


async def test_a_private_tournament_is_404_to_guests_and_outsiders_and_open_to_its_people(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    t = await server.factory.seeded(4, public=False)
    match = next(m for m in await matches.matches_of(server.realtime.db, t.id) if m.participant1_id)
    other_player = next(p for p in t.players if p.user_id not in (match.participant1_id, match.participant2_id))
    outsider = await server.factory.user()
    staff = await server.factory.user(staff=True)
    paths = [f"/sse/tournaments/{t.id}", f"/sse/matches/{match.id}"]
    for token in [server.guest_token(), server.token(outsider.user_id)]:
        for path in paths:
            answer = await client.get(path, params={"token": token})
            assert answer.status_code == 404, path
            assert "private" in answer.json()["error"]["message"]
    for reader in [t.organizer, staff, other_player]:
        for path in paths:
            async with open_stream(server.http, path, server.token(reader.user_id)) as stream:
                assert (await stream.state())["id"] in (t.id, match.id)


async def test_a_heartbeat_comment_keeps_coming_and_a_reader_is_never_timed_out(tmp_path: Path) -> None:
    async with serve(tmp_path, heartbeat_interval=0.2, heartbeat_timeout=0.6) as server:
        _t, match = await server.factory.live_match()
        async with open_stream(server.http, f"/sse/matches/{match.id}", server.guest_token()) as reader:
            await reader.state()
            comments = [await reader.next(1) for _ in range(6)]  # 1.2 s: twice the heartbeat timeout
            assert [m.comment for m in comments] == ["ping"] * 6
            assert [conn.closing for conn in server.realtime.hub.connections()] == [False]


async def test_leaving_takes_the_reader_out_of_its_room_and_metrics_count_readers(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    t, match = await server.factory.live_match()
    async with (
        open_stream(server.http, f"/sse/matches/{match.id}", server.guest_token()) as one,
        open_stream(server.http, f"/sse/tournaments/{t.id}", server.token(t.players[0].user_id)) as two,
    ):
        await one.state()
        await two.state()
        metrics = (await client.get("/metrics")).text
        assert 'matchcast_connections{role="spectator",room_kind="match"} 1.0' in metrics
        assert 'matchcast_connections{role="participant",room_kind="tournament"} 1.0' in metrics
    await wait_for_readers(server, 0)
    assert server.realtime.hub.rooms == {}
    head = await client.head(f"/sse/matches/{match.id}", params={"token": server.guest_token()})
    assert head.status_code == 200 and head.content == b""
    await wait_for_readers(server, 0)


@pytest.mark.timeout(90)
async def test_a_reader_that_does_not_read_is_cut_off_and_nobody_waits(tmp_path: Path) -> None:
    async with serve(tmp_path, max_pending=8) as server:
        t = await server.factory.seeded(256)  # every cancellation sends the whole bracket (~50 KB)
        first_round = [m for m in await matches.matches_of(server.realtime.db, t.id) if m.round == 1]
        stalled = await stalled_reader(server, f"/sse/tournaments/{t.id}?token={server.guest_token()}")
        await wait_for_readers(server, 1)
        [stalled_conn] = server.realtime.hub.connections()
        async with open_stream(server.http, f"/sse/tournaments/{t.id}", server.guest_token()) as healthy:
            await healthy.state()
            for match in first_round:
                await matches.cancel_match(server.realtime.db, server.realtime.hub, t.organizer, match.id)
                # the healthy reader keeps up the whole time
                assert {(await healthy.event(2)).event for _ in range(2)} == {"match_cancelled", "bracket_updated"}
                if stalled_conn.closing:
                    break
            assert stalled_conn.close_code == WS_4009_SLOW_CONSUMER, "never cut off"
            await wait_for_readers(server, 1)  # out of its room
            assert await read_to_the_end(stalled, timeout=30)  # and its connection dropped
            async with httpx.AsyncClient(base_url=server.http) as http:
                metrics = (await http.get("/metrics")).text
            assert 'matchcast_closes_total{code="4009"} 1.0' in metrics


async def stalled_reader(server: RunningServer, path: str) -> socket.socket:
    """A raw HTTP reader with a tiny receive buffer that reads the headers and then stops."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.settimeout(5)
    sock.connect((server.host, server.port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {server.host}\r\n\r\n".encode())
    head = await asyncio.to_thread(sock.recv, 1024)
    assert head.startswith(b"HTTP/1.1 200"), head
    return sock


async def read_to_the_end(sock: socket.socket, timeout: float) -> bool:
    def drain() -> bool:
        sock.settimeout(timeout)
        try:
            while sock.recv(65536):
                pass
            return True
        except OSError:  # reset by the server: cut off as well
            return True
        finally:
            sock.close()

    return await asyncio.to_thread(drain)


async def test_a_graceful_shutdown_flushes_pending_scores_then_ends_the_stream(tmp_path: Path) -> None:
    async with serve(tmp_path, score_batch_window_ms=5000) as server:
        t, match = await server.factory.live_match()
        db, hub = server.realtime.db, server.realtime.hub
        async with open_stream(server.http, f"/sse/matches/{match.id}", server.guest_token()) as reader:
            await reader.state()
            for n in (1, 2, 3):
                await matches.update_score(db, hub, t.organizer, match.id, n, 0)
            assert (await reader.event()).json["sequence"] == 1  # 2 and 3 are held by the 5 s window
            server.server.should_exit = True  # what SIGTERM does
            rest = await reader.ended(timeout=15)
            assert [(m.event, m.json["sequence"]) for m in rest if m.event] == [("score_updated", 3)]
