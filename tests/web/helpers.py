"""Helpers of the page and form tests: CSRF and live tokens from rendered pages, logging in, posting forms."""

from __future__ import annotations

import html
import re
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


async def follow(client: httpx.AsyncClient, response: httpx.Response) -> httpx.Response:
    assert response.status_code == 303, (response.status_code, response.text[:500])
    return await client.get(response.headers["location"])
