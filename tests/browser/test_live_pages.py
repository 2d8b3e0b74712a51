"""End to end in headless Chromium: an organizer's form changes what a spectator sees, live;
a spectator whose connection drops reconnects and catches up; the README's screenshot."""

from __future__ import annotations

import json
from pathlib import Path

from playwright.async_api import Browser, BrowserContext, Page, expect

from matchcast.protocol import WS_1012_SERVICE_RESTART
from matchcast.realtime.connection import CONTROL
from matchcast.realtime.frames import Frame
from matchcast.services import disputes, matches, tournaments
from tests.browser.conftest import new_context, wait_until_true
from tests.support.factories import PASSWORD
from tests.support.server import RunningServer

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "spectator.png"
# Records every text the connection indicator shows, so a short-lived "reconnecting" is not missed.
WATCH_CONNECTION = """() => {
  const el = document.getElementById("connection-state");
  window.seenStates = [el.textContent];
  new MutationObserver(() => window.seenStates.push(el.textContent))
    .observe(el, {childList: true, characterData: true, subtree: true});
  window.notReloaded = true;
}"""


async def open_live(context: BrowserContext, path: str) -> Page:
    page = await context.new_page()
    await page.goto(path)
    await expect(page.locator("#connection-state")).to_have_text("live")
    await page.evaluate(WATCH_CONNECTION)
    return page


async def test_spectators_see_a_score_set_through_the_organizer_form(
    server: RunningServer, spectator: BrowserContext, organizer: BrowserContext
) -> None:
    t, match = await server.factory.live_match(players=4)
    match_page = await open_live(spectator, f"/matches/{match.id}")
    bracket_page = await open_live(spectator, f"/tournaments/{t.id}")
    await expect(match_page.locator("#match .side-1 .score")).to_have_text("0")

    form = await organizer.new_page()
    await form.goto("/login")
    await form.fill("input[name=username]", t.organizer.username)
    await form.fill("input[name=password]", PASSWORD)
    await form.click("button:text('Log in')")
    await expect(form).to_have_url(server.http + "/organize/")
    await form.goto(f"/organize/tournaments/{t.id}")
    row = form.locator(f"#match-{match.id}")
    await row.locator("input[name=participant1_score]").fill("3")
    await row.locator("input[name=participant2_score]").fill("1")
    await row.locator("button:text('Set score')").click()
    await expect(form.locator(".flash-success")).to_have_text(f"Match {match.id}: 3\u20131.")

    await expect(match_page.locator("#match .side-1 .score")).to_have_text("3")
    await expect(match_page.locator("#match .side-2 .score")).to_have_text("1")
    card = bracket_page.locator(f"#bracket .match[data-match-id='{match.id}']")
    await expect(card.locator(".slot .score")).to_have_text(["3", "1"])
    await expect(card).to_have_class("match status-live")

    await row.locator("button:text('Complete')").click()
    await expect(match_page.locator("#match")).to_have_class("scoreboard status-completed")
    await expect(match_page.locator("#match .side-1")).to_have_class("side side-1 winner")
    await expect(card).to_have_class("match status-completed")
    for page in (match_page, bracket_page):
        assert await page.evaluate("window.notReloaded") is True


async def test_a_dropped_spectator_reconnects_and_catches_up(server: RunningServer, spectator: BrowserContext) -> None:
    t, match = await server.factory.live_match(players=2)
    sockets: list[str] = []
    page = await spectator.new_page()
    page.on("websocket", lambda ws: sockets.append(ws.url))
    await page.goto(f"/matches/{match.id}")
    await expect(page.locator("#connection-state")).to_have_text("live")
    await page.evaluate(WATCH_CONNECTION)

    hub = server.realtime.hub
    for conn in list(hub.connections()):
        conn.abort(WS_1012_SERVICE_RESTART)
    await matches.update_score(server.realtime.db, hub, t.organizer, match.id, 5, 4)  # while it is away

    await wait_until_true(page, "window.seenStates.includes('reconnecting')")
    await expect(page.locator("#connection-state")).to_have_text("live")
    await expect(page.locator("#match .side-1 .score")).to_have_text("5")
    await expect(page.locator("#match .side-2 .score")).to_have_text("4")
    assert len(sockets) == 2 and "last_event_id=" not in sockets[0]
    assert "last_event_id=2" in sockets[1]  # match_scheduled, match_started: then the score was replayed
    assert await page.evaluate("window.notReloaded") is True


async def test_screenshot_of_a_spectator_page(server: RunningServer, spectator: BrowserContext) -> None:
    db, hub, factory = server.realtime.db, server.realtime.hub, server.factory
    organizer = await factory.user("organizer")
    tournament_id = await tournaments.create_tournament(db, organizer, "Spring Invitational 2026")
    for name in ("Nova", "Kestrel", "Hexagon", "Lumen", "Zephyr", "Quill", "Onyx", "Ravager"):
        await tournaments.register_player(db, organizer, tournament_id, (await factory.user(name)).user_id)
    await tournaments.seed_bracket(db, hub, organizer, tournament_id)
    first_round = [m for m in await matches.matches_of(db, tournament_id) if m.round == 1]
    for match, (score1, score2) in zip(first_round[:3], [(3, 1), (2, 3), (1, 1)], strict=True):
        await matches.start_match(db, hub, organizer, match.id)
        await matches.update_score(db, hub, organizer, match.id, score1, score2)
    for match in first_round[:2]:
        await matches.complete_match(db, hub, organizer, match.id)

    page = await spectator.new_page()
    await page.set_viewport_size({"width": 1200, "height": 800})
    await page.goto(f"/tournaments/{tournament_id}")
    await expect(page.locator("#connection-state")).to_have_text("live")
    await expect(page.locator("#bracket .match.status-live")).to_have_count(1)
    await expect(page.locator("#bracket .match.status-completed")).to_have_count(2)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    await page.screenshot(path=str(SCREENSHOT), animations="disabled")
    assert SCREENSHOT.stat().st_size > 10_000


async def test_the_tournament_page_follows_seeding_results_and_disputes(
    server: RunningServer, spectator: BrowserContext
) -> None:
    db, hub = server.realtime.db, server.realtime.hub
    t = await server.factory.tournament(4)
    page = await open_live(spectator, f"/tournaments/{t.id}")
    await expect(page.locator("#bracket")).to_have_text("The bracket is not seeded yet.")

    await tournaments.seed_bracket(db, hub, t.organizer, t.id)
    cards = page.locator("#bracket .match")
    await expect(cards).to_have_count(3)
    await expect(page.locator("#bracket .round h3")).to_have_text(["Semifinals", "Final"])
    await expect(page.locator("#tournament-status")).to_have_text("running")
    semi = (await matches.matches_of(db, t.id))[0]
    card = page.locator(f"#bracket .match[data-match-id='{semi.id}']")
    await expect(card.locator(".name")).to_have_text([t.players[0].username, t.players[3].username])

    await matches.start_match(db, hub, t.organizer, semi.id)
    await expect(card).to_have_class("match status-live")
    match_page = await open_live(spectator, f"/matches/{semi.id}")
    reporter = t.players[0]
    dispute = await disputes.report_dispute(db, hub, reporter, semi.id, "<b>ping spikes</b>")
    await expect(card.locator(".flag")).to_have_text("disputed")
    reason = match_page.locator("#disputes li .reason")
    await expect(reason).to_have_text("<b>ping spikes</b>")  # shown as text, never parsed as HTML
    await expect(reason.locator("b")).to_have_count(0)
    await expect(match_page.locator("#disputes li .by")).to_have_text(f"reported by {reporter.username}")
    await disputes.resolve_dispute(db, hub, t.organizer, dispute.id, "replayed the round")
    await expect(card.locator(".flag")).to_have_count(0)
    await expect(match_page.locator("#disputes li")).to_have_text("No open disputes.")

    await matches.update_score(db, hub, t.organizer, semi.id, 2, 0)
    await matches.complete_match(db, hub, t.organizer, semi.id)
    final = page.locator(f"#bracket .match[data-match-id='{semi.next_match_id}']")
    await expect(final.locator(".slot").first).to_have_class("slot")
    await expect(final.locator(".name")).to_have_text([reporter.username, "TBD"])
    row = page.locator(f"#match-list tr[data-match-id='{semi.id}']")
    await expect(row.locator("td.score")).to_have_text("2 : 0")
    assert await page.evaluate("window.notReloaded") is True


async def test_stale_scores_are_ignored_and_an_id_jump_resumes(
    server: RunningServer, spectator: BrowserContext
) -> None:
    t, match = await server.factory.live_match(players=2)
    sockets: list[str] = []
    page = await spectator.new_page()
    page.on("websocket", lambda ws: sockets.append(ws.url))
    await page.goto(f"/matches/{match.id}")
    await expect(page.locator("#connection-state")).to_have_text("live")
    await page.evaluate(WATCH_CONNECTION)
    await matches.update_score(server.realtime.db, server.realtime.hub, t.organizer, match.id, 1, 0)  # id 3
    await expect(page.locator("#match .side-1 .score")).to_have_text("1")

    (conn,) = list(server.realtime.hub.connections())
    stale = {
        "type": "score_updated",
        "id": 4,
        "data": {"match_id": match.id, "participant1_score": 9, "participant2_score": 9, "sequence": 1},
    }
    conn.offer(CONTROL, Frame(json.dumps(stale)))  # CONTROL: the hub sends it as it is
    jump = {"type": "match_started", "id": 9, "data": {"match_id": match.id}}
    conn.offer(CONTROL, Frame(json.dumps(jump)))

    await wait_until_true(page, "window.seenStates.includes('reconnecting')")
    await expect(page.locator("#connection-state")).to_have_text("live")
    assert len(sockets) == 2 and "last_event_id=4" in sockets[1]  # resumed after the last event applied
    await expect(page.locator("#match .side-1 .score")).to_have_text("1")
    await expect(page.locator("#match .side-2 .score")).to_have_text("0")


async def test_pages_are_readable_without_javascript(server: RunningServer, browser: Browser) -> None:
    t, match = await server.factory.live_match(players=4)
    await matches.update_score(server.realtime.db, server.realtime.hub, t.organizer, match.id, 6, 2)
    context = await new_context(browser, server, java_script_enabled=False)
    try:
        page = await context.new_page()
        await page.goto(f"/tournaments/{t.id}")
        card = page.locator(f"#bracket .match[data-match-id='{match.id}']")
        await expect(card.locator(".score")).to_have_text(["6", "2"])
        await expect(page.locator("noscript")).to_have_count(1)
        await expect(page.locator("#connection-state")).to_be_hidden()
        await page.goto(f"/matches/{match.id}")
        await expect(page.locator("#match .score")).to_have_text(["6", "2"])
    finally:
        await context.close()
