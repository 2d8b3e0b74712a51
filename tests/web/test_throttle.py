"""Failed logins are throttled per client address, on the form and on POST /api/token alike."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from matchcast.settings import RateLimit
from tests.support.databases import sqlite_url
from tests.support.factories import PASSWORD
from tests.support.server import RunningServer, running_server
from tests.support.server import test_settings as settings_for_tests
from tests.web.helpers import csrf_of

pytestmark = pytest.mark.timeout(60)
LIMIT = 3


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    settings = settings_for_tests(
        database_url=sqlite_url(tmp_path), login_rate_limit=RateLimit(LIMIT, 60), forwarded_allow_ips=("127.0.0.1",)
    )
    async with running_server(settings) as running:
        yield running


def from_address(address: str) -> dict[str, str]:
    # The server trusts X-Forwarded-For from 127.0.0.1 here, as from a proxy in front.
    return {"x-forwarded-for": address}


async def token(http: httpx.AsyncClient, username: str, password: str, address: str) -> httpx.Response:
    return await http.post(
        "/api/token", json={"username": username, "password": password}, headers=from_address(address)
    )


async def test_the_api_refuses_an_address_after_too_many_failures(server: RunningServer) -> None:
    user = await server.factory.user()
    async with httpx.AsyncClient(base_url=server.http, timeout=5) as http:
        for _ in range(LIMIT):
            assert (await token(http, user.username, "wrong", "203.0.113.7")).status_code == 401
        refused = await token(http, user.username, PASSWORD, "203.0.113.7")  # even the right password
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"
        assert "try again in" in refused.json()["error"]["message"]
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        # Another address is not held up by this one.
        assert (await token(http, user.username, PASSWORD, "198.51.100.9")).status_code == 200


async def test_a_burst_of_simultaneous_guesses_gets_no_more_than_the_limit(server: RunningServer) -> None:
    # Each guess takes an argon2 hash (~0.1 s); guesses still hashing count against the limit.
    user = await server.factory.user()
    async with httpx.AsyncClient(base_url=server.http, timeout=10) as http:
        answers = await asyncio.gather(*(token(http, user.username, "wrong", "203.0.113.10") for _ in range(LIMIT * 4)))
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses.count(401) <= LIMIT and statuses.count(429) >= LIMIT * 3, statuses


async def test_successful_logins_do_not_count(server: RunningServer) -> None:
    user = await server.factory.user()
    async with httpx.AsyncClient(base_url=server.http, timeout=5) as http:
        for _ in range(LIMIT * 3):
            assert (await token(http, user.username, PASSWORD, "203.0.113.8")).status_code == 200
        for _ in range(LIMIT):
            assert (await token(http, user.username, "wrong", "203.0.113.8")).status_code == 401
        assert (await token(http, user.username, "wrong", "203.0.113.8")).status_code == 429


async def test_the_login_form_shares_the_count_and_says_when_to_retry(server: RunningServer) -> None:
    user = await server.factory.user()
    async with httpx.AsyncClient(base_url=server.http, timeout=5, headers=from_address("203.0.113.9")) as http:
        for _ in range(LIMIT - 1):
            assert (await token(http, user.username, "wrong", "203.0.113.9")).status_code == 401
        page = await http.get("/login")
        data = {"csrf_token": csrf_of(page.text), "username": user.username, "password": "wrong"}
        assert (await http.post("/login", data=data)).status_code == 401  # the last one allowed
        refused = await http.post("/login", data={**data, "password": PASSWORD})
        assert refused.status_code == 429
        assert "too many failed logins" in refused.text and "matchcast_session" not in refused.headers.get(
            "set-cookie", ""
        )
        assert int(refused.headers["retry-after"]) >= 1


async def test_a_secure_session_cookie_is_marked_secure(tmp_path: Path) -> None:
    settings = settings_for_tests(database_url=sqlite_url(tmp_path), session_cookie_secure=True)
    async with running_server(settings) as server, httpx.AsyncClient(base_url=server.http, timeout=5) as http:
        page = await http.get("/login", headers={"x-forwarded-proto": "https"})  # TLS ended at a proxy
        cookie = page.headers["set-cookie"]  # the session holding the form's CSRF secret
        assert "matchcast_session=" in cookie and "; secure" in cookie.lower()
