"""The streaming overlay in headless Chromium: transparent, scaled, live; the README's picture of it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from playwright.async_api import BrowserContext, ConsoleMessage, expect

from matchcast.services import matches, tournaments
from tests.support.server import RunningServer

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "overlay.png"


async def wait_for_sockets(server: RunningServer, count: int) -> None:
    async def opened() -> None:
        while len(list(server.realtime.hub.connections())) < count:
            await asyncio.sleep(0.05)  # the poll interval, bounded by the wait_for below

    await asyncio.wait_for(opened(), 5)


async def test_the_overlay_follows_its_match_live_on_a_transparent_page(
    server: RunningServer, spectator: BrowserContext
) -> None:
    db, hub = server.realtime.db, server.realtime.hub
    t, match = await server.factory.live_match(players=2)
    page = await spectator.new_page()
    console: list[ConsoleMessage] = []
    page.on("console", lambda message: console.append(message))
    await page.goto(f"/overlay/matches/{match.id}?theme=dark&scale=1.5")
    board = page.locator("#match")
    await expect(board.locator(".side-1 .name")).to_have_text(t.players[0].username)
    await expect(board.locator(".side-1 .score")).to_have_text("0")
    await wait_for_sockets(server, 1)

    await matches.update_score(db, hub, t.organizer, match.id, 2, 1)
    await expect(board.locator(".side-1 .score")).to_have_text("2")
    await expect(board.locator(".side-2 .score")).to_have_text("1")
    await matches.complete_match(db, hub, t.organizer, match.id)
    await expect(board).to_have_class("scoreboard status-completed")
    await expect(board.locator(".side-1")).to_have_class("side side-1 winner")
    await expect(board.locator(".match-status")).to_have_text("completed")

    transparent = "rgba(0, 0, 0, 0)"
    for element in ("document.documentElement", "document.body"):
        assert await page.evaluate(f"getComputedStyle({element}).backgroundColor") == transparent
    assert await page.evaluate("getComputedStyle(document.body).fontSize") == "48px"  # 32px at scale 1
    # Nothing was refused by the Content-Security-Policy (the scale is set through the CSSOM).
    errors = [(m.text, m.location["url"]) for m in console if m.type == "error"]
    assert [error for error in errors if not error[1].endswith("/favicon.ico")] == []


async def test_the_light_theme_and_a_small_scale(server: RunningServer, spectator: BrowserContext) -> None:
    _t, match = await server.factory.live_match(players=2)
    page = await spectator.new_page()
    await page.goto(f"/overlay/matches/{match.id}?theme=light&scale=0.5")
    await expect(page.locator("body")).to_have_class("overlay theme-light")
    assert await page.evaluate("getComputedStyle(document.body).fontSize") == "16px"
    assert await page.evaluate("getComputedStyle(document.body).color") == "rgb(18, 23, 34)"


async def test_screenshot_of_the_overlay(server: RunningServer, spectator: BrowserContext) -> None:
    db, hub, factory = server.realtime.db, server.realtime.hub, server.factory
    organizer = await factory.user("organizer")
    tournament_id = await tournaments.create_tournament(db, organizer, "Spring Invitational 2026")
    for name in ("Nova", "Kestrel"):
        await tournaments.register_player(db, organizer, tournament_id, (await factory.user(name)).user_id)
    [match_id] = await tournaments.seed_bracket(db, hub, organizer, tournament_id)
    await matches.start_match(db, hub, organizer, match_id)
    await matches.update_score(db, hub, organizer, match_id, 2, 1)

    page = await spectator.new_page()
    await page.set_viewport_size({"width": 1920, "height": 1080})  # an OBS canvas
    await page.goto(f"/overlay/matches/{match_id}?theme=dark&scale=1.5")
    await wait_for_sockets(server, 1)
    board = page.locator("#match")
    await expect(board.locator(".side-2 .score")).to_have_text("1")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    await board.screenshot(path=str(SCREENSHOT), omit_background=True, animations="disabled")
    assert SCREENSHOT.stat().st_size > 2_000
