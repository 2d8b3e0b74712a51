"""Ending sessions: logout and a password change end every earlier session of the user, copies of
the cookie included, on every instance (the epoch is in the database); on both databases."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from matchcast.services import users
from matchcast.services.actors import REVOKED
from tests.support.databases import dump
from tests.support.factories import PASSWORD
from tests.support.server import RunningServer, running_server, test_settings
from tests.web.helpers import csrf_of, log_in

NEW_PASSWORD = "a-brand-new-password"


@pytest.fixture
async def servers(database_url: str) -> AsyncIterator[tuple[RunningServer, RunningServer]]:
    """Two instances on one database: a session ended on one must be over on the other."""
    settings = test_settings(database_url=database_url, broadcast_url="memory://")
    async with running_server(settings) as first, running_server(settings) as second:
        yield first, second


def copy_of(client: httpx.AsyncClient, base_url: str) -> httpx.AsyncClient:
    """Another client holding a copy of the cookie, as a thief who copied it would."""
    return httpx.AsyncClient(base_url=base_url, cookies=dict(client.cookies), follow_redirects=False, timeout=5)


async def create_form(client: httpx.AsyncClient) -> httpx.Response:
    page = await client.get("/login")  # any page renders a CSRF token of this session
    return await client.post("/organize/tournaments", data={"csrf_token": csrf_of(page.text), "name": "After"})


async def test_logout_ends_every_copy_of_the_session_on_every_instance(
    servers: tuple[RunningServer, RunningServer],
) -> None:
    first, second = servers
    organizer = await first.factory.user()
    async with (
        httpx.AsyncClient(base_url=first.http, follow_redirects=False, timeout=5) as browser,
        httpx.AsyncClient(base_url=first.http, follow_redirects=False, timeout=5) as other_browser,
    ):
        assert (await log_in(browser, organizer.username)).status_code == 303
        assert (await log_in(other_browser, organizer.username)).status_code == 303
        async with copy_of(browser, second.http) as thief:
            assert (await thief.get("/organize/")).status_code == 200  # the copy works before logout
            # The thief fetches a form's token while the session is live, to post after logout.
            token = csrf_of((await thief.get("/organize/")).text)

            page = await browser.get("/organize/")
            response = await browser.post("/logout", data={"csrf_token": csrf_of(page.text)})
            assert response.status_code == 303

            before = await dump(second.realtime.db)
            refused = await thief.post("/organize/tournaments", data={"csrf_token": token, "name": "After logout"})
            assert refused.status_code == 303 and refused.headers["location"] == "/login"
            assert await dump(second.realtime.db) == before
            assert (await thief.get("/organize/")).headers["location"] == "/login"
            assert (await thief.get("/me")).headers["location"] == "/login"
        # Logout ends every session of the user, not only the one that logged out.
        assert (await other_browser.get("/organize/")).headers["location"] == "/login"
        # Logging in again opens a fresh session that works.
        assert (await log_in(browser, organizer.username)).status_code == 303
        assert (await browser.get("/organize/")).status_code == 200


async def test_a_password_change_ends_every_session(servers: tuple[RunningServer, RunningServer]) -> None:
    first, second = servers
    player = await first.factory.user()
    async with (
        httpx.AsyncClient(base_url=first.http, follow_redirects=False, timeout=5) as browser,
        copy_of(browser, second.http) as copy,
    ):
        assert (await log_in(browser, player.username)).status_code == 303
        copy.cookies.update(browser.cookies)
        assert (await copy.get("/me")).status_code == 200

        await users.change_password(first.realtime.db, player.username, NEW_PASSWORD)

        assert (await browser.get("/me")).headers["location"] == "/login"
        assert (await copy.get("/me")).headers["location"] == "/login"
        assert (await log_in(browser, player.username)).status_code == 401  # the old password is gone
        assert (await log_in(browser, player.username, NEW_PASSWORD)).status_code == 303
        assert (await browser.get("/me")).status_code == 200


async def test_a_password_change_refuses_bad_input_and_unknown_users(database_url: str) -> None:
    settings = test_settings(database_url=database_url, broadcast_url="memory://")
    async with running_server(settings) as server:
        player = await server.factory.user()
        before = await dump(server.realtime.db)
        with pytest.raises(Exception, match="password must be"):
            await users.change_password(server.realtime.db, player.username, "short")
        with pytest.raises(Exception, match="no user named 'nobody'"):
            await users.change_password(server.realtime.db, "nobody", NEW_PASSWORD)
        assert await dump(server.realtime.db) == before


async def test_logout_revokes_the_users_tokens_too(servers: tuple[RunningServer, RunningServer]) -> None:
    """The page's live token and a token from POST /api/token stop working after logout, on the
    WebSocket, SSE and the API of every instance; a new login's token works."""
    first, second = servers
    t = await first.factory.seeded(2)
    player = t.players[0]
    async with httpx.AsyncClient(base_url=first.http, follow_redirects=False, timeout=5) as browser:
        assert (await log_in(browser, player.username)).status_code == 303
        me = await browser.get("/me")
        live = re.search(r'data-token="([^"]+)"', me.text)
        assert live is not None
        issued = await browser.post("/api/token", json={"username": player.username, "password": PASSWORD})
        api_token = issued.json()["access_token"]
        tokens = (live.group(1), api_token)
        for token in tokens:  # good before logout
            async with second.client(f"/ws/tournament/{t.id}/", token) as ws:
                assert (await ws.established())["user_id"] == player.user_id
        page = await browser.get("/me")
        assert (await browser.post("/logout", data={"csrf_token": csrf_of(page.text)})).status_code == 303

    async with httpx.AsyncClient(base_url=second.http, timeout=5) as http:
        for token in tokens:
            async with second.client(f"/ws/tournament/{t.id}/", token) as ws:
                assert await ws.closed() == 4001
            refused = await http.get(f"/sse/tournaments/{t.id}", headers={"Authorization": f"Bearer {token}"})
            assert refused.status_code == 401 and refused.json()["error"]["message"] == REVOKED
            refused = await http.post(
                f"/api/matches/{t.match_ids[0]}/start", headers={"Authorization": f"Bearer {token}"}
            )
            assert refused.status_code == 401 and refused.json()["error"]["message"] == REVOKED
        issued = await http.post("/api/token", json={"username": player.username, "password": PASSWORD})
        async with second.client(f"/ws/tournament/{t.id}/", issued.json()["access_token"]) as ws:
            assert (await ws.established())["user_id"] == player.user_id
