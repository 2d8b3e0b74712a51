"""What a hostile user tried through the pages and the API: the form and the API agree on who may
score, tokens are never cached, the API's answers are never sniffed, and no flash is lost."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.support.databases import dump, sqlite_url
from tests.support.factories import PASSWORD
from tests.support.server import RunningServer, running_server, test_settings
from tests.support.sse import open_stream
from tests.web.helpers import csrf_of, log_in

ORGANIZER_ONLY = "only the tournament's organizer or a staff user may do this"


async def test_a_participant_cannot_score_their_own_match_through_the_organizer_form(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    t, match = await server.factory.live_match(players=2)
    player = next(p for p in t.players if p.user_id == match.participant1_id)
    assert (await log_in(client, player.username)).status_code == 303
    token = csrf_of((await client.get("/organize/")).text)
    scores = {"participant1_score": "5", "participant2_score": "0"}
    before = await dump(server.realtime.db)

    form = await client.post(f"/organize/matches/{match.id}/score", data={"csrf_token": token, **scores})
    assert form.status_code == 403, form.text[:2000]
    assert ORGANIZER_ONLY in html.unescape(form.text)
    api = await client.post(
        f"/api/matches/{match.id}/score",
        json={key: int(value) for key, value in scores.items()},
        headers={"Authorization": f"Bearer {server.token(player.user_id)}"},
    )
    assert api.status_code == 403 and api.json()["error"]["message"] == ORGANIZER_ONLY  # the two paths agree
    assert await dump(server.realtime.db) == before


async def test_a_token_is_never_cached(server: RunningServer, client: httpx.AsyncClient) -> None:
    user = await server.factory.user()
    answers = [
        await client.post("/api/token", json={"username": user.username, "password": PASSWORD}),
        await client.post("/api/token", json={"username": user.username, "password": "wrong-password"}),
        await client.post("/api/token", content=b"not json"),
    ]
    assert [a.status_code for a in answers] == [200, 401, 400]
    assert "access_token" in answers[0].json()
    for answer in answers:
        assert answer.headers["cache-control"] == "no-store" and answer.headers["pragma"] == "no-cache"
        assert answer.headers["x-content-type-options"] == "nosniff"


@pytest.fixture
async def webhook_server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """A server whose webhooks may call this machine (a closed port: nothing is delivered)."""
    settings = test_settings(database_url=sqlite_url(tmp_path), broadcast_url="memory://", webhook_allow_private=True)
    async with running_server(settings) as running:
        yield running


async def test_every_api_answer_says_nosniff(webhook_server: RunningServer) -> None:
    server = webhook_server
    async with httpx.AsyncClient(base_url=server.http, follow_redirects=False, timeout=5) as client:
        t, match = await server.factory.live_match(players=2)
        organizer = {"Authorization": f"Bearer {server.token(t.organizer.user_id)}"}
        created = await client.post(
            f"/api/tournaments/{t.id}/webhooks", json={"url": "http://127.0.0.1:9/hook"}, headers=organizer
        )
        assert created.status_code == 201, created.text
        answers = [
            await client.get(f"/api/tournaments/{t.id}"),
            await client.get(f"/api/matches/{match.id}"),
            await client.get("/api/matches/999999"),
            await client.post(f"/api/matches/{match.id}/score", json={}),
            await client.post(f"/api/matches/{match.id}/score", content=b"[", headers=organizer),
            await client.post(
                f"/api/matches/{match.id}/score",
                json={"participant1_score": 1, "participant2_score": 0},
                headers=organizer,
            ),
            created,
            await client.get(f"/api/tournaments/{t.id}/webhooks", headers=organizer),
            await client.delete(f"/api/webhooks/{created.json()['id']}", headers=organizer),
            await client.get("/healthz"),
            await client.get("/metrics"),
            await client.get("/sse/matches/999999"),
        ]
        assert [a.status_code for a in answers] == [200, 200, 404, 401, 400, 200, 201, 200, 204, 200, 200, 401]
        for answer in answers:
            assert answer.headers.get("x-content-type-options") == "nosniff", (answer.request.url, answer.headers)
    async with open_stream(server.http, f"/sse/matches/{match.id}", server.guest_token()) as reader:
        assert reader.response.headers["x-content-type-options"] == "nosniff"


FLASH = re.compile(r'<p class="flash flash-success">([^<]*)</p>')


async def test_every_flash_is_shown_and_only_by_a_page_that_shows_flashes(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    t, match = await server.factory.live_match(players=2)
    assert (await log_in(client, t.organizer.username)).status_code == 303
    token = csrf_of((await client.get("/organize/")).text)  # shows (and takes) "Logged in as ..."
    for name in ("First", "Second"):  # two actions before any page is shown
        created = await client.post("/organize/tournaments", data={"csrf_token": token, "name": name})
        assert created.status_code == 303
    overlay = await client.get(f"/overlay/matches/{match.id}")
    assert overlay.status_code == 200 and "flash" not in overlay.text
    shown = [html.unescape(message) for message in FLASH.findall((await client.get("/organize/")).text)]
    assert shown == [
        f"Tournament {name!r} created: register its players, then seed it." for name in ("First", "Second")
    ]
    assert FLASH.findall((await client.get("/organize/")).text) == []  # shown once
