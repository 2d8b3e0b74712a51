"""Helpers of the page and form tests: CSRF and live tokens from rendered pages, logging in, posting forms."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from tests.support.factories import PASSWORD

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
TOKEN = re.compile(r'data-token="([^"]+)"')
XSS = "<script>alert(1)</script>"
XSS_ESCAPED = html.escape(XSS, quote=True)


def csrf_of(page: str) -> str:
    found = CSRF.search(page)
    assert found, "the page has no form with a CSRF token"
    return html.unescape(found.group(1))


def live_token(page: str) -> str:
    found = TOKEN.search(page)
    assert found, "the page carries no token for live.js"
    return found.group(1)


async def log_in(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> httpx.Response:
    page = await client.get("/login")
    return await client.post(
        "/login", data={"csrf_token": csrf_of(page.text), "username": username, "password": password}
    )


async def post_form(client: httpx.AsyncClient, path: str, data: dict[str, Any] | None = None) -> httpx.Response:
    """POST a form the way a browser does: with the CSRF token the organizer index renders."""
    page = await client.get("/organize/")
    return await client.post(path, data={"csrf_token": csrf_of(page.text), **(data or {})})


class Organizer:
    """A logged-in browser that posts many forms: one session cookie, and one CSRF token for all of
    them (it is bound to the session, not to a form, and stays valid for forms.CSRF_TIME_LIMIT), so
    a form costs one request. The 303 after each form is not followed: the page it leads to is not
    under test, and a 256-player bracket's manage page takes 50-100 ms to render. So the flash
    messages that page would show pile up in the cookie, ~50 bytes a form (6 KB after 128 forms)."""

    def __init__(self, client: httpx.AsyncClient, csrf_token: str) -> None:
        self.client = client
        self.csrf_token = csrf_token

    async def post(self, path: str, data: dict[str, Any] | None = None) -> httpx.Response:
        """POST a form that must succeed: a refusal renders a page (4xx), a lost session goes to /login."""
        response = await self.client.post(path, data={"csrf_token": self.csrf_token, **(data or {})})
        assert response.status_code == 303, (path, response.status_code, response.text[:500])
        assert response.headers["location"] != "/login", path
        return response

    async def match_ids(self, tournament_id: int, round: int) -> list[int]:
        """The ids of a round's matches, from the tournament's JSON snapshot (GET /api/tournaments/{id})."""
        response = await self.client.get(f"/api/tournaments/{tournament_id}")
        assert response.status_code == 200, response.text[:500]
        return [m["id"] for m in response.json()["matches"] if m["round"] == round]


@asynccontextmanager
async def organizer(base_url: str, username: str) -> AsyncIterator[Organizer]:
    async with httpx.AsyncClient(base_url=base_url, follow_redirects=False, timeout=5) as client:
        assert (await log_in(client, username)).status_code == 303
        # The token after login: logging in starts a fresh session, with a fresh CSRF secret.
        yield Organizer(client, csrf_of((await client.get("/organize/")).text))


async def follow(client: httpx.AsyncClient, response: httpx.Response) -> httpx.Response:
    assert response.status_code == 303, (response.status_code, response.text[:500])
    return await client.get(response.headers["location"])
