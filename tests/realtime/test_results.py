"""Results over the WebSocket on every stack, and the confirmation deadline: in one server, across
a restart, and with two instances on one PostgreSQL (exactly one confirmation per report)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from matchcast.cli import EventLogPublisher
from matchcast.db.database import Database, connected, utcnow
from matchcast.protocol import match_room
from matchcast.realtime import eventlog
from matchcast.security import create_user_token
from matchcast.services import results
from tests.support.databases import fresh_postgres_database, sqlite_url
from tests.support.factories import Factory
from tests.support.processes import ServerProcess, wait_until
from tests.support.server import TEST_SECRET, RunningServer

pytestmark = pytest.mark.timeout(90)


async def logged_types(db: Database, match_id: int) -> list[str]:
    return [event.type for event in await eventlog.read_after(db, match_room(match_id), 0, 1000)]


async def test_report_then_confirm_over_the_websocket(server: RunningServer) -> None:
    _t, match = await server.factory.live_match()
    a, b = match.participant1_id, match.participant2_id
    path = f"/ws/match/{match.id}/"
    async with (
        server.client(path, server.token(a)) as player_a,
        server.client(path, server.token(b)) as player_b,
        server.client(path, server.guest_token()) as guest,
    ):
        for client in (player_a, player_b, guest):
            await client.established()
        await player_a.send({"type": "report_result", "participant1_score": 1, "participant2_score": 0})
        reported = await guest.recv_type("result_reported")
        assert (reported["data"]["reported_by_id"], reported["data"]["participant1_score"]) == (a, 1)
        report_id = reported["data"]["report_id"]

        # Refusals answer in words and change nothing.
        await guest.send({"type": "report_result", "participant1_score": 1, "participant2_score": 0})
        assert (await guest.recv_type("error"))["data"]["code"] == "forbidden"
        await player_a.send({"type": "confirm_result", "report_id": report_id})
        assert (await player_a.recv_type("error"))["data"]["code"] == "forbidden"
        await player_b.send({"type": "confirm_result", "report_id": report_id + 1})
        assert (await player_b.recv_type("error"))["data"]["code"] == "invalid_state"
        await player_b.send({"type": "confirm_result", "report_id": "1"})
        assert (await player_b.recv_type("error"))["data"]["code"] == "validation_error"
        await player_b.send({"type": "report_result", "participant1_score": 2, "participant2_score": 0})
        assert (await player_b.recv_type("error"))["data"]["code"] == "validation_error"

        await player_b.send({"type": "confirm_result", "report_id": report_id})
        confirmed = await guest.recv_type("result_confirmed")
        assert (confirmed["data"]["report_id"], confirmed["data"]["by"]) == (report_id, "opponent")
        completed = await guest.recv_type("match_completed")
        assert completed["id"] == confirmed["id"] + 1
        assert completed["data"]["winner_id"] == a
    assert await logged_types(server.realtime.db, match.id) == [
        "match_scheduled",
        "match_started",
        "result_reported",
        "result_confirmed",
        "match_completed",
    ]


async def test_results_go_to_the_match_room_only(server: RunningServer) -> None:
    t, match = await server.factory.live_match()
    async with server.client(f"/ws/tournament/{t.id}/", server.token(match.participant1_id)) as player:
        await player.established()
        await player.send({"type": "report_result", "participant1_score": 1, "participant2_score": 0})
        assert (await player.recv_type("error"))["data"]["code"] == "forbidden"
        await player.send({"type": "confirm_result", "report_id": 1})
        assert (await player.recv_type("error"))["data"]["code"] == "forbidden"


@pytest.mark.parametrize("overrides", [{"confirm_timeout": 0.5}])
async def test_an_unanswered_report_confirms_at_its_deadline(server: RunningServer) -> None:
    _, match = await server.factory.live_match()
    async with server.client(f"/ws/match/{match.id}/", server.token(match.participant2_id)) as player:
        state = (await player.established())["state"]
        assert state["pending_report"] is None
        await player.send({"type": "report_result", "participant1_score": 0, "participant2_score": 1})
        reported = await player.recv_type("result_reported")
        confirmed = await player.recv_type("result_confirmed", timeout=10)
        assert (confirmed["data"]["report_id"], confirmed["data"]["by"]) == (reported["data"]["report_id"], "timeout")
        assert (await player.recv_type("match_completed"))["data"]["winner_id"] == match.participant2_id


async def test_the_snapshot_shows_the_pending_report(server: RunningServer) -> None:
    _, match = await server.factory.live_match()
    async with server.client(f"/ws/match/{match.id}/", server.token(match.participant1_id)) as player:
        await player.established()
        await player.send({"type": "report_result", "participant1_score": 1, "participant2_score": 0})
        reported = (await player.recv_type("result_reported"))["data"]
    async with server.client(f"/ws/match/{match.id}/", server.guest_token()) as guest:
        pending = (await guest.established())["state"]["pending_report"]
    assert pending == {key: reported[key] for key in pending}
    assert set(pending) == {"report_id", "reported_by_id", "participant1_score", "participant2_score", "confirm_by"}


def instance_env(database_url: str, **more: str) -> dict[str, str]:
    return {
        "MATCHCAST_DATABASE_URL": database_url,
        "MATCHCAST_JWT_SECRET": TEST_SECRET,
        "MATCHCAST_CHANNEL_PREFIX": "t" + uuid.uuid4().hex[:8] + "_",
        **more,
    }


async def wait_past(db: Database, match_id: int) -> None:
    """Until the match's pending report is overdue (the duration the restart test is about)."""
    report = await results.pending_report(db, match_id)
    assert report is not None

    async def overdue() -> bool:
        return bool(utcnow() > report.confirm_by)

    await wait_until(overdue, 10, "the report's deadline past", interval=0.1)


async def test_a_deadline_that_passes_while_the_server_is_down_confirms_once_at_start(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    env = instance_env(url, MATCHCAST_CONFIRM_TIMEOUT="1")
    instance = await ServerProcess(env, log_dir=tmp_path).start()
    try:
        async with connected(url) as db:
            _, match = await Factory(db, EventLogPublisher(db)).live_match()
            token = create_user_token(TEST_SECRET, match.participant1_id, 600)
            async with instance.client(f"/ws/match/{match.id}/", token) as player:
                await player.established()
                await player.send({"type": "report_result", "participant1_score": 1, "participant2_score": 0})
                await player.recv_type("result_reported")
            await instance.stop()  # SIGTERM: a graceful stop
            await wait_past(db, match.id)
            assert "result_confirmed" not in await logged_types(db, match.id)
            await instance.start()

            async def confirmed() -> bool:
                return "match_completed" in await logged_types(db, match.id)

            await wait_until(confirmed, 20, "the overdue report confirmed at start-up")
            assert (await logged_types(db, match.id)).count("result_confirmed") == 1
    finally:
        await instance.stop()


async def test_two_instances_on_one_database_confirm_each_report_once(tmp_path: Path) -> None:
    async with fresh_postgres_database() as url:
        # Reports made outside both (as by a third instance): both timers find them due within their
        # short maximum sleep, at nearly the same moment, and race for each one.
        env = instance_env(url, MATCHCAST_DEADLINE_MAX_SLEEP="0.2")
        instances = [ServerProcess(env, log_dir=tmp_path) for _ in range(2)]
        try:
            await asyncio.gather(*(instance.start() for instance in instances))
            async with connected(url) as db:
                factory = Factory(db, EventLogPublisher(db))
                live = [await factory.live_match() for _ in range(30)]
                for t, match in live:
                    reporter = next(p for p in t.players if p.user_id == match.participant1_id)
                    await results.report_result(db, factory.publisher, reporter, match.id, 1, 0, 1.0)

                async def all_completed() -> bool:
                    logs = [await logged_types(db, match.id) for _, match in live]
                    return all("match_completed" in types for types in logs)

                await wait_until(all_completed, 30, "every report confirmed by one of the two instances")
                for _, match in live:
                    assert (await logged_types(db, match.id)).count("result_confirmed") == 1
                    assert (await logged_types(db, match.id)).count("match_completed") == 1
        finally:
            await asyncio.gather(*(instance.stop() for instance in instances), return_exceptions=True)
