"""End to end in headless Chromium: every format's page follows play without reloading. A
double-elimination loser drops into the losers bracket and a grand final won from there brings
the reset (on the organizer's page too); a Swiss round's end brings the next round's pairings
and new standings; a round robin's cross table fills in. Also takes docs/double-elimination.png
and docs/swiss.png."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.async_api import BrowserContext, Page, expect

from matchcast.services import matches, tournaments
from tests.browser.conftest import log_in, open_live
from tests.support.server import RunningServer

DOCS = Path(__file__).resolve().parents[2] / "docs"
PLAYERS = ("Nova", "Kestrel", "Hexagon", "Lumen", "Zephyr", "Quill", "Onyx", "Ravager")


async def play(server: RunningServer, organizer: Any, match_id: int, score1: int, score2: int) -> None:
    """Start, score and complete a match through the running server's publisher (the hub sends it)."""
    db, publisher = server.realtime.db, server.realtime.publisher
    await matches.start_match(db, publisher, organizer, match_id)
    await matches.update_score(db, publisher, organizer, match_id, score1, score2)
    await matches.complete_match(db, publisher, organizer, match_id)


async def ready(server: RunningServer, tournament_id: int) -> list[Any]:
    rows = await matches.matches_of(server.realtime.db, tournament_id)
    return [m for m in rows if m.status == "scheduled" and m.participant1_id and m.participant2_id]


async def named_tournament(server: RunningServer, name: str, players: int, **options: Any) -> tuple[Any, int]:
    """A seeded tournament of players with readable names (for the screenshots)."""
    db, factory = server.realtime.db, server.factory
    organizer = await factory.user("organizer")
    tournament_id = await tournaments.create_tournament(db, organizer, name, **options)
    for username in PLAYERS[:players]:
        await tournaments.register_player(db, organizer, tournament_id, (await factory.user(username)).user_id)
    await tournaments.seed_bracket(db, server.realtime.publisher, organizer, tournament_id)
    return organizer, tournament_id


async def logged_in_page(context: BrowserContext, server: RunningServer, username: str, path: str) -> Page:
    login = await context.new_page()
    await log_in(login, server, username, "/organize/")
    await login.close()
    return await open_live(context, path)  # the context keeps the session cookie


async def test_double_elimination_follows_a_drop_and_the_grand_final_reset(
    server: RunningServer, spectator: BrowserContext, organizer: BrowserContext
) -> None:
    t = await server.factory.seeded(4, format="double_elimination")
    names = {p.user_id: p.username for p in t.players}
    page = await open_live(spectator, f"/tournaments/{t.id}")
    manage = await logged_in_page(organizer, server, t.organizer.username, f"/organize/tournaments/{t.id}")
    losers = page.locator("#bracket [data-part=losers]")
    await expect(losers.locator("h2")).to_have_text("Losers bracket")
    await expect(losers.locator(".round h3")).to_have_text(["Losers round 1", "Losers final"])
    await expect(losers.locator(".slot.tbd")).to_have_count(4)  # nobody has lost yet

    first = (await ready(server, t.id))[0]
    await play(server, t.organizer, first.id, 1, 0)
    await expect(losers.locator(".name").first).to_have_text(names[first.participant2_id])
    await expect(page.locator(f"#bracket .match[data-match-id='{first.id}']")).to_have_class("match status-completed")

    while playable := [m for m in await ready(server, t.id) if m.bracket != "grand_final"]:
        for m in playable:
            await play(server, t.organizer, m.id, 1, 0)
    (grand_final,) = await ready(server, t.id)
    grand = page.locator("#bracket [data-part=grand_final]")
    await expect(grand.locator(".name")).to_have_text(
        [names[grand_final.participant1_id], names[grand_final.participant2_id]]
    )
    await play(server, t.organizer, grand_final.id, 0, 1)  # the losers bracket's champion wins: the reset
    await expect(grand.locator(".round h3")).to_have_text(["Grand final", "Grand final reset"])
    await expect(page.locator("#tournament-status")).to_have_text("running")
    (reset,) = await ready(server, t.id)
    await expect(manage.locator(f"#match-{reset.id} td").nth(1)).to_have_text("Grand final reset")
    await expect(manage.locator(f"#match-{grand_final.id} td").nth(1)).to_have_text("Grand final")

    await play(server, t.organizer, reset.id, 1, 0)
    await expect(page.locator("#tournament-status")).to_have_text("completed")
    await expect(page.locator(f"#match-list tr[data-match-id='{reset.id}'] td").first).to_have_text("Grand final reset")
    for watching in (page, manage):
        assert await watching.evaluate("window.notReloaded") is True


async def test_swiss_shows_the_next_round_and_standings_when_a_round_ends(
    server: RunningServer, spectator: BrowserContext
) -> None:
    t = await server.factory.seeded(5, format="swiss", rounds=2)
    p1, p2, p3, p4, p5 = (p.username for p in t.players)
    page = await open_live(spectator, f"/tournaments/{t.id}")
    rounds = page.locator("#bracket .round")
    await expect(rounds.locator("h3")).to_have_text(["Round 1"])
    # The top half of the seeds meets the bottom half; the lowest seed has the bye.
    await expect(rounds.locator(".name")).to_have_text([p1, p3, p2, p4, p5, "bye"])
    await expect(rounds.locator(".match-status")).to_have_text(["scheduled", "scheduled", "bye"])

    one_three, two_four = await ready(server, t.id)
    await play(server, t.organizer, one_three.id, 2, 0)
    await expect(rounds.locator("h3")).to_have_text(["Round 1"])  # paired only once every match is over
    await play(server, t.organizer, two_four.id, 0, 3)

    await expect(rounds.locator("h3")).to_have_text(["Round 1", "Round 2"])
    await expect(rounds.nth(1).locator(".match-status")).to_have_text(["scheduled", "scheduled", "bye"])
    # p2, the lowest-ranked without a bye, has round 2's: a point. Level on points, p4 and p2
    # (whose opponents won: Buchholz 1) go first, then game difference orders them.
    await expect(page.locator("#standings tr .player")).to_have_text([p4, p2, p1, p5, p3])
    second_round = await ready(server, t.id)
    row = page.locator(f"#match-list tr[data-match-id='{second_round[0].id}'] td")
    await expect(row.first).to_have_text("Round 2")

    for m in second_round:
        await play(server, t.organizer, m.id, 1, 0)
    await expect(page.locator("#tournament-status")).to_have_text("completed")
    assert await page.evaluate("window.notReloaded") is True


async def test_round_robin_fills_in_its_cross_table(server: RunningServer, spectator: BrowserContext) -> None:
    t = await server.factory.seeded(3, format="round_robin")
    page = await open_live(spectator, f"/tournaments/{t.id}")
    m = (await ready(server, t.id))[0]  # round 1: seeds 2 and 3 (seed 1 sits it out)
    cells = page.locator(f"#bracket td[data-match-id='{m.id}']")
    await expect(cells).to_have_text(["\u2013", "\u2013"])
    await matches.start_match(server.realtime.db, server.realtime.publisher, t.organizer, m.id)
    await matches.update_score(server.realtime.db, server.realtime.publisher, t.organizer, m.id, 4, 1)
    await expect(cells.first).to_have_text("4\u20131")  # the winner ranks first: their row is the first
    await expect(cells.first).to_have_class("meeting status-live")
    await matches.complete_match(server.realtime.db, server.realtime.publisher, t.organizer, m.id)
    await expect(cells).to_have_text(["4\u20131", "1\u20134"])
    await expect(cells.first).to_have_class("meeting status-completed win")
    await expect(page.locator("#standings tr .points")).to_have_text(["1", "0", "0"])

    while playable := await ready(server, t.id):
        for match in playable:
            await play(server, t.organizer, match.id, 1, 0)
    await expect(page.locator("#bracket td.meeting.status-completed")).to_have_count(6)
    await expect(page.locator("#tournament-status")).to_have_text("completed")
    assert await page.evaluate("window.notReloaded") is True


async def screenshot(page: Page, name: str) -> None:
    """The page down to its match list: the brackets (or rounds) and the standings, whole."""
    path = DOCS / name
    path.parent.mkdir(exist_ok=True)
    matches_heading = await page.locator("h2:text('Matches')").bounding_box()
    assert matches_heading is not None
    clip = {"x": 0, "y": 0, "width": 1200, "height": matches_heading["y"] - 12}
    await page.screenshot(path=str(path), full_page=True, clip=clip, animations="disabled")  # type: ignore[arg-type]
    assert path.stat().st_size > 10_000


async def test_screenshot_of_a_double_elimination_page(server: RunningServer, spectator: BrowserContext) -> None:
    organizer, tournament_id = await named_tournament(
        server, "Autumn Double 2026", 8, format="double_elimination", best_of=3
    )
    for m in (await ready(server, tournament_id))[:3]:
        await play(server, organizer, m.id, 2, 1)
    losers_first = next(m for m in await ready(server, tournament_id) if m.bracket == "losers")
    db, publisher = server.realtime.db, server.realtime.publisher
    await matches.start_match(db, publisher, organizer, losers_first.id)
    await matches.update_score(db, publisher, organizer, losers_first.id, 1, 0)

    page = await open_live(spectator, f"/tournaments/{tournament_id}")
    await expect(page.locator("#bracket .match.status-completed")).to_have_count(3)
    await expect(page.locator("#bracket .match.status-live")).to_have_count(1)
    await screenshot(page, "double-elimination.png")


async def test_screenshot_of_a_swiss_page(server: RunningServer, spectator: BrowserContext) -> None:
    organizer, tournament_id = await named_tournament(server, "Swiss Open 2026", 7, format="swiss", best_of=3, rounds=3)
    for i, m in enumerate(await ready(server, tournament_id)):
        await play(server, organizer, m.id, *((2, i % 2) if i % 2 else (i % 2, 2)))
    second = await ready(server, tournament_id)
    db, publisher = server.realtime.db, server.realtime.publisher
    await matches.start_match(db, publisher, organizer, second[0].id)
    await matches.update_score(db, publisher, organizer, second[0].id, 1, 0)

    page = await open_live(spectator, f"/tournaments/{tournament_id}")
    await expect(page.locator("#bracket .round h3")).to_have_text(["Round 1", "Round 2"])
    await expect(page.locator("#standings tr")).to_have_count(7)
    await screenshot(page, "swiss.png")
