"""`kill -9` of a real `matchcast serve` inside a score's batching window: the score is stored but
neither logged nor broadcast. The next instance to start publishes it, so a client resuming with
`last_event_id` ends at the stored score (issue: stored sequence 225, last broadcast 219)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.support.databases import fresh_postgres_database
from tests.support.processes import ServerProcess, run_demo
from tests.support.server import TEST_SECRET


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/serve.db"
    else:
        async with fresh_postgres_database() as url:
            yield url


@pytest.mark.timeout(120)
async def test_scores_stored_by_a_killed_instance_are_published_at_the_next_start(
    tmp_path: Path, database_url: str
) -> None:
    env = {
        "MATCHCAST_DATABASE_URL": database_url,
        "MATCHCAST_BROADCAST_URL": "memory://",
        "MATCHCAST_JWT_SECRET": TEST_SECRET,
        "MATCHCAST_SCORE_BATCH_WINDOW_MS": "10000",  # the killed instance holds its scores
        "MATCHCAST_RATE_LIMIT": "100/1s",
    }
    created = await run_demo(env)
    match = created["matches"][0]
    player = next(p for p in created["players"] if p["id"] == match["participant1_id"])
    organizer = {"Authorization": f"Bearer {created['organizer']['token']}"}
    room = f"/ws/match/{match['id']}/"

    killed = await ServerProcess(env, log_dir=tmp_path).start()
    try:
        async with httpx.AsyncClient(base_url=killed.http, timeout=5) as http:
            assert (await http.post(f"/api/matches/{match['id']}/start", headers=organizer)).status_code == 200
        async with killed.client(room, player["token"]) as spectator:
            await spectator.established()
            for n in range(1, 6):
                scored = await http_score(killed.http, match["id"], organizer, n)
                assert scored["sequence"] == n
            first = await spectator.recv_type("score_updated")  # the window's leading edge
            assert first["data"]["sequence"] == 1
            seen = first["id"]
            killed.process.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
            await asyncio.to_thread(killed.process.wait, 10)  # type: ignore[union-attr]
    finally:
        await killed.stop()

    restarted = await ServerProcess({**env, "MATCHCAST_SCORE_BATCH_WINDOW_MS": "100"}, log_dir=tmp_path).start()
    try:
        async with restarted.client(f"{room}?last_event_id={seen}", player["token"]) as resumed:
            welcome = await resumed.established()
            assert welcome["state"]["sequence"] == 5
            try:
                recovered = await resumed.recv_type("score_updated", timeout=15)
            except TimeoutError:
                raise AssertionError(
                    f"no recovered score; the restarted server said:\n{restarted.log()[-4000:]}"
                ) from None
            assert (recovered["data"]["sequence"], recovered["data"]["participant1_score"]) == (5, 5)
            assert recovered["id"] == seen + 1  # numbered right after what the killed one logged
        assert "published 1 score(s) stored but never logged" in restarted.log()
    finally:
        await restarted.stop()

    again = await ServerProcess(env, log_dir=tmp_path).start()  # nothing left to recover: no duplicate
    try:
        async with again.client(f"{room}?last_event_id={seen + 1}", player["token"]) as resumed:
            assert (await resumed.established())["last_event_id"] == seen + 1
    finally:
        await again.stop()
    assert "never logged" not in again.log()


async def http_score(base: str, match_id: int, headers: dict[str, str], score: int) -> dict[str, int]:
    async with httpx.AsyncClient(base_url=base, timeout=5) as http:
        answer = await http.post(
            f"/api/matches/{match_id}/score",
            headers=headers,
            json={"participant1_score": score, "participant2_score": 0},
        )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())
