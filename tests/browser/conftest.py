"""Browser tests: headless Chromium (Debian's, at /usr/bin/chromium) against a real server.

They never skip: without Chromium, launching fails and the tests fail (`make browser` installs it).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from tests.support.databases import sqlite_url
from tests.support.factories import PASSWORD
from tests.support.server import RunningServer, running_server, test_settings

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 5000

expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    settings = test_settings(database_url=sqlite_url(tmp_path), broadcast_url="memory://")
    async with running_server(settings) as running:
        yield running


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, timeout=20000)
        try:
            yield chromium
        finally:
            await chromium.close()


async def new_context(browser: Browser, server: RunningServer, **options: object) -> BrowserContext:
    context = await browser.new_context(base_url=server.http, **options)  # type: ignore[arg-type]
    context.set_default_timeout(TIMEOUT_MS)
    return context


@pytest.fixture
async def spectator(browser: Browser, server: RunningServer) -> AsyncIterator[BrowserContext]:
    context = await new_context(browser, server)
    yield context
    await context.close()


@pytest.fixture
async def organizer(browser: Browser, server: RunningServer) -> AsyncIterator[BrowserContext]:
    context = await new_context(browser, server)
    yield context
    await context.close()


async def wait_until_true(page: Page, expression: str, timeout_ms: int = TIMEOUT_MS) -> None:
    """Poll `expression` in the page until it is true.

    Not page.wait_for_function: once its first check fails it polls with eval, which the
    pages' Content-Security-Policy (no 'unsafe-eval') refuses. page.evaluate is not subject to it.
    """

    async def check() -> None:
        while not await page.evaluate(expression):
            await asyncio.sleep(0.05)  # the poll interval of this bounded poll

    await asyncio.wait_for(check(), timeout_ms / 1000)


NOT_RELOADED = "() => { window.notReloaded = true; }"  # still true at the end: the page never reloaded


async def open_live(context: BrowserContext, path: str) -> Page:
    """A page of `path` whose socket is live, marked so that a reload would show."""
    page = await context.new_page()
    await page.set_viewport_size({"width": 1200, "height": 1000})
    await page.goto(path)
    await expect(page.locator("#connection-state")).to_have_text("live")
    await page.evaluate(NOT_RELOADED)
    return page


async def log_in(page: Page, server: RunningServer, username: str, lands_on: str) -> None:
    """Log `page`'s context in through the login form."""
    await page.goto("/login")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button:text('Log in')")
    await expect(page).to_have_url(server.http + lands_on)
