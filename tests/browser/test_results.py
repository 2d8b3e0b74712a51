"""End to end in headless Chromium: results on the players' word.

Two players and the organizer, each in a browser context of their own and logged in through
/login, plus a guest: A reports, B sees it live and disputes it, the organizer sees the dispute
arrive and resolves it with the final score, and everyone sees the match completed and the
bracket advance, none of them reloading. Also takes docs/participant.png and docs/organizer.png.
"""

from __future__ import annotations

import re
from pathlib import Path

from playwright.async_api import Browser, BrowserContext, expect

from matchcast.services import matches, results, tournaments
from tests.browser.conftest import NOT_RELOADED, log_in, new_context, open_live
from tests.support.databases import sqlite_url
from tests.support.factories import PASSWORD
from tests.support.server import RunningServer, running_server
from tests.support.server import test_settings as settings_with  # not a test

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "participant.png"
ORGANIZER_SCREENSHOT = SCREENSHOT.with_name("organizer.png")
COUNTDOWN = re.compile(r"^\d+:\d\d$")


async def logged_in(browser: Browser, server: RunningServer, username: str, lands_on: str) -> BrowserContext:
    """A browser context of its own, logged in through the login form."""
    context = await new_context(browser, server)
    page = await context.new_page()
    await log_in(page, server, username, lands_on)
    await page.close()
    return context


async def test_report_dispute_and_resolve_with_two_players_an_organizer_and_a_guest(
    server: RunningServer, browser: Browser, spectator: BrowserContext
) -> None:
    rt, factory = server.realtime, server.factory
    organizer = await factory.user("Marshal")
    tournament_id = await tournaments.create_tournament(rt.db, organizer, "Winter Cup")
    for name in ("Nova", "Kestrel", "Hexagon", "Lumen"):
        await tournaments.register_player(rt.db, organizer, tournament_id, (await factory.user(name)).user_id)
    await tournaments.seed_bracket(rt.db, rt.publisher, organizer, tournament_id)
    semi = next(m for m in await matches.matches_of(rt.db, tournament_id) if m.round == 1)
    await matches.start_match(rt.db, rt.publisher, organizer, semi.id)
    a, b = (await factory.match(semi.id)).participant1_id, semi.participant2_id
    names = {u.id: u.username for u in await tournaments.registered_players(rt.db, tournament_id)}
    name_a, name_b = names[a], names[b]

    contexts = [
        await logged_in(browser, server, name_a, "/me"),
        await logged_in(browser, server, name_b, "/me"),
        await logged_in(browser, server, organizer.username, "/organize/"),
    ]
    try:
        player_a, player_b, organizing = contexts
        # A finds the match on their own page and follows its link.
        me_a = await open_live(player_a, "/me")
        await expect(me_a.locator(f"#my-matches tr[data-match-id='{semi.id}'] .match-status")).to_have_text("live")
        await me_a.click(f"text=vs {name_b}")
        await expect(me_a).to_have_url(f"{server.http}/matches/{semi.id}")
        await expect(me_a.locator("#connection-state")).to_have_text("live")
        page_a = me_a
        await page_a.evaluate(NOT_RELOADED)
        me_b = await open_live(player_b, "/me")
        page_b = await open_live(player_b, f"/matches/{semi.id}")
        manage = await open_live(organizing, f"/organize/tournaments/{tournament_id}")
        guest = await open_live(spectator, f"/matches/{semi.id}")
        bracket = await open_live(spectator, f"/tournaments/{tournament_id}")
        await expect(guest.locator("#controls")).to_have_count(0)
        await expect(manage.locator("#controls")).to_have_count(0)

        # The running score, from a player's controls.
        running = page_a.locator("#score-control")
        await running.locator("input[name=participant1_score]").fill("1")
        await running.locator("button:text('Update score')").click()
        await expect(guest.locator("#match .side-1 .score")).to_have_text("1")
        await expect(page_b.locator("#score-control input[name=participant1_score]")).to_have_value("1")

        # A reports 1-0; everyone sees it, B may confirm or dispute before the deadline.
        report_a = page_a.locator("#report-control")
        await report_a.locator("input[name=participant1_score]").fill("1")
        await report_a.locator("input[name=participant2_score]").fill("0")
        await report_a.locator("button:text('Report result')").click()
        await expect(page_a.locator("#pending-mine")).to_contain_text(f"Waiting for {name_b} to confirm")
        confirm_b = page_b.locator("#confirm-control")
        await expect(confirm_b).to_be_visible()
        await expect(confirm_b).to_contain_text(f"{name_a} reported: {name_a} 1\u20130 {name_b}.")
        await expect(confirm_b.locator(".countdown")).to_have_text(COUNTDOWN)
        await expect(page_b.locator("#pending-mine")).to_be_hidden()
        await expect(page_a.locator("#confirm-control")).to_be_hidden()
        pending = re.compile(rf"{name_a} reported 1\u20130 · confirms at \d\d:\d\d")
        await expect(guest.locator("#result")).to_have_text(pending)
        await expect(bracket.locator(f"#match-list tr[data-match-id='{semi.id}']")).to_contain_text(pending)
        await expect(manage.locator(f"#match-{semi.id} td.result")).to_have_text(pending)
        await expect(me_b.locator(f"#my-matches tr[data-match-id='{semi.id}'] .result")).to_contain_text(
            f"{name_a} reported 0\u20131, a loss for you"
        )
        SCREENSHOT.parent.mkdir(exist_ok=True)
        await page_b.screenshot(path=str(SCREENSHOT), animations="disabled", full_page=True)
        assert SCREENSHOT.stat().st_size > 10_000

        # A refused action is explained beside the control that sent it.
        report_b = page_b.locator("#report-control")
        await report_b.locator("input[name=participant1_score]").fill("1")
        await report_b.locator("input[name=participant2_score]").fill("1")
        await report_b.locator("button:text('Report result')").click()
        await expect(report_b.locator(".control-error")).to_have_text(
            "Check the values: a result must decide the match: 1\u20131 is a tie"
        )
        await expect(page_b.locator("#dispute-control .control-error")).to_be_hidden()

        # B disputes with a reason: the report is set aside, the organizer sees it arrive.
        dispute_b = page_b.locator("#dispute-control")
        await dispute_b.locator("textarea[name=reason]").fill("I won the deciding game, see the replay")
        await dispute_b.locator("button:text('Dispute')").click()
        await expect(page_b.locator("#controls-state")).to_contain_text("Your dispute is open")
        await expect(confirm_b).to_be_hidden()
        await expect(report_b).to_be_hidden()
        await expect(page_a.locator("#controls-state")).to_contain_text(f"{name_b} disputed")
        await expect(page_a.locator("#pending-mine")).to_be_hidden()
        await expect(guest.locator("#result")).to_have_text("Disputed: the organizer decides the result.")
        await expect(guest.locator("#disputes li .reason")).to_have_text("I won the deciding game, see the replay")
        await expect(manage.locator("#dispute-count")).to_have_text("1 open dispute")
        await expect(manage.locator(f"#match-{semi.id}")).to_have_class("status-live disputed")
        form = manage.locator("form.dispute")
        await expect(form).to_contain_text("I won the deciding game, see the replay")
        await expect(form).to_contain_text(f"reported by {name_b}")
        assert await manage.evaluate("window.notReloaded") is True
        await manage.screenshot(path=str(ORGANIZER_SCREENSHOT), animations="disabled", full_page=True)
        assert ORGANIZER_SCREENSHOT.stat().st_size > 10_000

        # The organizer rules: B won 1-0 (participant 2).
        await form.locator("input[name=resolution]").fill("replay checked: Kestrel's game counts")
        await form.locator("input[name=participant1_score]").fill("0")
        await form.locator("input[name=participant2_score]").fill("1")
        await form.locator("button:text('Resolve')").click()
        await expect(manage.locator(".flash-success")).to_contain_text("completed 0\u20131.")
        await expect(manage.locator("#no-disputes")).to_be_visible()
        await expect(manage.locator("#dispute-count")).to_be_hidden()

        for page in (page_a, page_b, guest):
            await expect(page.locator("#match")).to_have_class("scoreboard status-completed")
            await expect(page.locator("#match .side-2")).to_have_class("side side-2 winner")
            await expect(page.locator("#result")).to_have_text(f"Final result: {name_a} 0\u20131 {name_b}.")
        await expect(page_b.locator("#controls-state")).to_contain_text("The match is over")
        final = bracket.locator(f"#bracket .match[data-match-id='{semi.next_match_id}']")
        await expect(final.locator(".name")).to_contain_text([name_b])
        await expect(bracket.locator(f"#bracket .match[data-match-id='{semi.id}']")).to_have_class(
            "match status-completed"
        )
        await expect(me_b.locator(f"#my-matches tr[data-match-id='{semi.id}'] .outcome")).to_have_text("won")
        await expect(me_b.locator(f"#my-matches tr[data-match-id='{semi.next_match_id}']")).to_contain_text("vs TBD")
        for page in (page_a, page_b, me_b, guest, bracket):
            assert await page.evaluate("window.notReloaded") is True
    finally:
        for context in contexts:
            await context.close()


async def test_an_unanswered_report_confirms_itself_at_its_deadline(tmp_path: Path, browser: Browser) -> None:
    settings = settings_with(database_url=sqlite_url(tmp_path), broadcast_url="memory://", confirm_timeout=3)
    async with running_server(settings) as server:
        t, match = await server.factory.live_match(players=2)
        reporter = next(p for p in t.players if p.user_id == match.participant1_id)
        opponent = next(p for p in t.players if p.user_id == match.participant2_id)
        contexts = [
            await logged_in(browser, server, reporter.username, "/me"),
            await logged_in(browser, server, opponent.username, "/me"),
        ]
        try:
            page_a = await open_live(contexts[0], f"/matches/{match.id}")
            page_b = await open_live(contexts[1], f"/matches/{match.id}")
            report = page_a.locator("#report-control")
            await report.locator("input[name=participant1_score]").fill("0")
            await report.locator("input[name=participant2_score]").fill("1")
            await report.locator("button:text('Report result')").click()
            await expect(page_b.locator("#confirm-control .countdown")).to_have_text(re.compile(r"^0:0[0-3]$"))
            for page in (page_a, page_b):  # nobody confirmed: the deadline did
                await expect(page.locator("#result")).to_have_text(
                    f"Final result: {reporter.username} 0\u20131 {opponent.username} (confirmed at its deadline).",
                    timeout=10_000,
                )
                await expect(page.locator("#match .side-2")).to_have_class("side side-2 winner")
                assert await page.evaluate("window.notReloaded") is True
        finally:
            for context in contexts:
                await context.close()


async def test_a_players_pages_are_readable_without_javascript(server: RunningServer, browser: Browser) -> None:
    t, match = await server.factory.live_match(players=2)
    reporter = next(p for p in t.players if p.user_id == match.participant1_id)
    rt = server.realtime
    await results.report_result(rt.db, rt.publisher, reporter, match.id, 1, 0, rt.settings.confirm_timeout)
    context = await new_context(browser, server, java_script_enabled=False)
    try:
        page = await context.new_page()
        await page.goto("/login")
        await page.fill("input[name=username]", reporter.username)
        await page.fill("input[name=password]", PASSWORD)
        await page.click("button:text('Log in')")
        await expect(page).to_have_url(server.http + "/me")
        row = page.locator(f"#my-matches tr[data-match-id='{match.id}']")
        await expect(row.locator(".result")).to_contain_text("You reported 1\u20130, a win · waiting for")
        await expect(row.locator(".result time")).to_have_text(re.compile(r"^\d\d:\d\d UTC$"))  # no script: UTC
        await row.locator("a").click()
        await expect(page.locator("#result")).to_contain_text(f"{reporter.username} reported 1\u20130 · confirms at")
        await expect(page.locator("#controls h2")).to_be_visible()
        await expect(page.locator("#controls noscript")).to_have_count(1)
        await expect(page.locator("#report-control")).to_be_hidden()  # it needs the socket
    finally:
        await context.close()
