"""Every format drawn on the server, readable without JavaScript: double elimination's two
brackets and grand final, a round robin's cross table, Swiss rounds with their byes, standings in
rank order; and the organizer's and the match page's labels of those rounds."""

from __future__ import annotations

import re
from typing import Any

import httpx

from matchcast.services import matches, tournaments
from tests.support.factories import Tournament
from tests.support.server import RunningServer
from tests.web.helpers import XSS, XSS_ESCAPED, log_in

STANDING_ROW = re.compile(r'<tr data-participant-id="(\d+)"><td>(\d+)</td><td class="player">([^<]*)</td>(.*?)</tr>')
CROSS_ROW = re.compile(r'<tr data-participant-id="(\d+)"><th scope="row">[^<]*</th>(.*?)</tr>')
CELL = re.compile(r'<td class="([^"]*)"[^>]*>(?:<a href="[^"]*">([^<]*)</a>)?</td>')


async def play(server: RunningServer, t: Tournament, match_id: int, score1: int, score2: int) -> None:
    """The organizer starts the match, sets its score and completes it: the higher score wins."""
    db, publisher = server.realtime.db, server.realtime.publisher
    await matches.start_match(db, publisher, t.organizer, match_id)
    await matches.update_score(db, publisher, t.organizer, match_id, score1, score2)
    await matches.complete_match(db, publisher, t.organizer, match_id)


async def ready(server: RunningServer, t: Tournament) -> list[Any]:
    """The scheduled matches whose two players are known, in play order."""
    rows = await matches.matches_of(server.realtime.db, t.id)
    return [m for m in rows if m.status == "scheduled" and m.participant1_id and m.participant2_id]


def part(page: str, key: str) -> str:
    """The HTML of one part of the bracket region (`rounds`, `losers`, `grand_final`)."""
    region = page.split('id="bracket"', 1)[1].split("</section>", 1)[0]
    return region.split(f'data-part="{key}"', 1)[1].split("data-part=", 1)[0]


def titles(html: str) -> list[str]:
    return re.findall(r"<h3>([^<]+)</h3>", html)


def name_of(t: Tournament, user_id: int) -> str:
    return next(p.username for p in t.players if p.user_id == user_id)


def standings_order(text: str) -> list[str]:
    return [name for _, _, name, _ in STANDING_ROW.findall(text)]


async def test_double_elimination_draws_winners_losers_and_the_grand_final(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    t = await server.factory.seeded(4, format="double_elimination", best_of=3)
    first = (await ready(server, t))[0]
    page = (await client.get(f"/tournaments/{t.id}")).text
    assert '<span class="badge" id="tournament-format">Double elimination</span>' in page
    assert '<span class="badge" id="best-of">best of 3</span>' in page
    for title in ("Winners bracket", "Losers bracket", "Grand final"):
        assert f"<h2>{title}</h2>" in page
    assert titles(part(page, "rounds")) == ["Winners round 1", "Winners final"]
    assert titles(part(page, "losers")) == ["Losers round 1", "Losers final"]
    assert titles(part(page, "grand_final")) == ["Grand final"]
    loser = name_of(t, first.participant2_id)
    assert loser not in part(page, "losers")

    await play(server, t, first.id, 2, 1)
    page = (await client.get(f"/tournaments/{t.id}")).text
    assert f'<span class="name">{loser}</span>' in part(page, "losers")  # a first loss drops a player there
    losers_first = next(m for m in await matches.matches_of(server.realtime.db, t.id) if m.bracket == "losers")
    assert re.search(rf'data-match-id="{losers_first.id}">\s*<td>Losers round 1</td>', page)  # the match list
    match_page = (await client.get(f"/matches/{losers_first.id}")).text
    assert '<span id="round-name">Losers round 1</span> · best of 3' in match_page


async def test_a_grand_final_won_from_the_losers_bracket_shows_the_reset(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    t = await server.factory.seeded(4, format="double_elimination")
    while playable := await ready(server, t):
        for m in playable:  # participant 1 wins, but for the losers bracket's champion in the grand final
            await play(server, t, m.id, *((0, 1) if m.bracket == "grand_final" and m.round == 1 else (1, 0)))
    page = (await client.get(f"/tournaments/{t.id}")).text
    assert titles(part(page, "grand_final")) == ["Grand final", "Grand final reset"]
    assert '<span class="badge status-completed" id="tournament-status">completed</span>' in page
    await log_in(client, t.organizer.username)
    manage = (await client.get(f"/organize/tournaments/{t.id}")).text
    labels = re.findall(r'<tr id="match-\d+"[^>]*>\s*<td>\d+</td>\s*<td>([^<]+)</td>', manage)
    assert labels == [
        "Winners round 1",
        "Winners round 1",
        "Winners final",
        "Losers round 1",
        "Losers final",
        "Grand final",
        "Grand final reset",
    ]
    assert "Double elimination" in manage and "best of 1" in manage


async def test_round_robin_draws_a_cross_table_and_standings(server: RunningServer, client: httpx.AsyncClient) -> None:
    t = await server.factory.seeded(4, format="round_robin")
    p1, p2, p3, p4 = t.players
    by_pair = {
        frozenset((m.participant1_id, m.participant2_id)): m for m in await matches.matches_of(server.realtime.db, t.id)
    }

    async def meet(a: Any, b: Any, score_a: int, score_b: int) -> None:
        m = by_pair[frozenset((a.user_id, b.user_id))]
        await play(server, t, m.id, *((score_a, score_b) if m.participant1_id == a.user_id else (score_b, score_a)))

    await meet(p1, p4, 7, 3)  # +4
    await meet(p3, p2, 5, 4)  # +1
    live = by_pair[frozenset((p1.user_id, p3.user_id))]
    await matches.start_match(server.realtime.db, server.realtime.publisher, t.organizer, live.id)

    page = (await client.get(f"/tournaments/{t.id}")).text
    assert '<section class="brackets" id="bracket" aria-label="Cross table">' in page
    assert "Round robin" in page
    order = [p1, p3, p2, p4]  # points, then head-to-head (none yet), then game difference
    assert standings_order(page) == [p.username for p in order]
    assert '<th data-tiebreak="head_to_head">Head-to-head</th><th data-tiebreak="game_difference">' in page
    ranks = {name: (rank, rest) for _, rank, name, rest in STANDING_ROW.findall(page)}
    assert ranks[p1.username] == ("1", '<td>1</td><td>1</td><td>0</td><td class="points">1</td><td>0</td><td>4</td>')
    assert ranks[p4.username] == ("4", '<td>1</td><td>0</td><td>1</td><td class="points">0</td><td>0</td><td>-4</td>')
    table = {int(who): CELL.findall(cells) for who, cells in CROSS_ROW.findall(page)}
    assert list(table) == [p.user_id for p in order]  # rows in rank order, and so are the columns
    header = re.search(r'<table class="cross-table">\s*<thead><tr><th scope="col">Player</th>(.*?)</tr>', page, re.S)
    assert header and re.findall(r'<th scope="col">([^<]*)</th>', header.group(1)) == [p.username for p in order]
    column = {p.user_id: i for i, p in enumerate(order)}

    def cell(a: Any, b: Any) -> tuple[str, str]:
        found: tuple[str, str] = table[a.user_id][column[b.user_id]]
        return found

    assert cell(p1, p4) == ("meeting status-completed win", "7\u20133")
    assert cell(p4, p1) == ("meeting status-completed loss", "3\u20137")
    assert cell(p2, p3) == ("meeting status-completed loss", "4\u20135")
    assert cell(p1, p3) == ("meeting status-live", "0\u20130")
    assert cell(p2, p4) == ("meeting status-scheduled", "\u2013")
    assert all(table[p.user_id][column[p.user_id]] == ("blank", "") for p in order)  # nobody meets themselves


async def test_swiss_draws_its_rounds_with_byes_and_standings(server: RunningServer, client: httpx.AsyncClient) -> None:
    t = await server.factory.seeded(5, format="swiss", rounds=2)
    page = (await client.get(f"/tournaments/{t.id}")).text
    assert "Swiss · 2 rounds" in page
    assert titles(page) == ["Round 1"]
    byes = re.findall(
        r'<a class="match status-completed" href="/matches/\d+" data-match-id="\d+">(.*?)</a>', page, re.S
    )
    assert len(byes) == 1 and '<span class="name">bye</span>' in byes[0]
    assert f'<span class="name">{t.players[4].username}</span>' in byes[0]  # the lowest seed, with an odd count
    assert '<span class="match-status">bye</span>' in byes[0]

    p1, p2, p3, p4, p5 = t.players
    scores = {frozenset((p1.user_id, p3.user_id)): (p1, 3, 0), frozenset((p2.user_id, p4.user_id)): (p2, 2, 1)}
    for m in await ready(server, t):
        winner, high, low = scores[frozenset((m.participant1_id, m.participant2_id))]
        await play(server, t, m.id, *((high, low) if m.participant1_id == winner.user_id else (low, high)))

    page = (await client.get(f"/tournaments/{t.id}")).text
    assert titles(page) == ["Round 1", "Round 2"]
    assert page.count('<span class="match-status">bye</span>') == 2  # a new bye in round 2
    assert '<th data-tiebreak="buchholz">Buchholz</th>' in page
    # p3, the lowest-ranked without a bye, has round 2's (a win at once): one point each for p1
    # and p3 (their opponents won: Buchholz 1; then game difference), p2 and p5; then p4.
    assert standings_order(page) == [p.username for p in (p1, p3, p2, p5, p4)]
    rows = {name: rest for _, _, name, rest in STANDING_ROW.findall(page)}
    assert rows[p1.username] == '<td>1</td><td>1</td><td>0</td><td class="points">1</td><td>1</td><td>3</td>'
    assert rows[p3.username] == '<td>2</td><td>1</td><td>1</td><td class="points">1</td><td>1</td><td>-3</td>'

    await log_in(client, t.organizer.username)
    manage = (await client.get(f"/organize/tournaments/{t.id}")).text
    assert standings_order(manage) == standings_order(page)
    assert "Swiss · 2 rounds" in manage


async def test_a_hostile_player_name_is_escaped_in_every_format(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    db, publisher = server.realtime.db, server.realtime.publisher
    hostile = await server.factory.user(XSS)
    for format in ("single_elimination", "double_elimination", "round_robin", "swiss"):
        t = await server.factory.tournament(2, format=format)
        await tournaments.register_player(db, t.organizer, t.id, hostile.user_id)
        await tournaments.seed_bracket(db, publisher, t.organizer, t.id)
        first = next(
            m for m in await matches.matches_of(db, t.id) if hostile.user_id in (m.participant1_id, m.participant2_id)
        )
        async with httpx.AsyncClient(base_url=server.http) as organizer:
            await log_in(organizer, t.organizer.username)
            for path in (f"/tournaments/{t.id}", f"/matches/{first.id}", f"/organize/tournaments/{t.id}"):
                page = (await organizer.get(path)).text
                assert XSS not in page, (format, path)
                assert XSS_ESCAPED in page, (format, path)
