"""Page and form tests: a real server per test on a fresh SQLite file, and a cookie-keeping client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.support.databases import sqlite_url
from tests.support.server import RunningServer, running_server, test_settings


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    settings = test_settings(database_url=sqlite_url(tmp_path), broadcast_url="memory://")
    async with running_server(settings) as running:
        yield running


@pytest.fixture
async def client(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.http, follow_redirects=False, timeout=5) as http:
        yield http
