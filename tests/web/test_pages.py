"""Spectator pages: the list, a tournament, a match; rendered on the server, escaped, with a live token."""

from __future__ import annotations

import re

import httpx

from matchcast.security import verify_token
from matchcast.services import disputes, matches, tournaments
from tests.support.server import RunningServer
from tests.web.helpers import XSS, XSS_ESCAPED, live_token, log_in


async def test_index_lists_public_tournaments_only(server: RunningServer, client: httpx.AsyncClient) -> None:
    shown = await server.factory.tournament(name="Spring Open")
    hidden = await server.factory.tournament(name="Staff Scrims", public=False)
    page = await client.get("/")
    assert page.status_code == 200
    assert "Spring Open" in page.text and f'href="/tournaments/{shown.id}"' in page.text
    assert "Staff Scrims" not in page.text and f"/tournaments/{hidden.id}" not in page.text


async def test_index_shows_an_organizer_their_private_tournament(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    mine = await server.factory.tournament(name="Staff Scrims", public=False)
    await log_in(client, mine.organizer.username)
    page = await client.get("/")
    assert "Staff Scrims" in page.text and "private" in page.text


async def test_tournament_page_renders_bracket_scores_and_live_matches(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    t = await server.factory.seeded(8)
    db, hub, org = server.realtime.db, server.realtime.hub, t.organizer
    first, second = [m for m in await matches.matches_of(db, t.id) if m.round == 1][:2]
    await matches.start_match(db, hub, org, first.id)
    await matches.update_score(db, hub, org, first.id, 7, 3)
    await matches.start_match(db, hub, org, second.id)
    await matches.update_score(db, hub, org, second.id, 2, 5)
    await matches.complete_match(db, hub, org, second.id)

    page = await client.get(f"/tournaments/{t.id}")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert "script-src" not in page.headers["content-security-policy"]  # default-src 'self' covers it
    text = page.text
    for round_name in ("Quarterfinals", "Semifinals", "Final"):
        assert f"<h3>{round_name}</h3>" in text
    for player in t.players:
        assert player.username in text
    live_card = re.search(rf'<a class="match status-live" href="/matches/{first.id}".*?</a>', text, re.S)
    assert live_card and '<span class="score">7</span>' in live_card.group(0)
    done_card = re.search(rf'<a class="match status-completed" href="/matches/{second.id}".*?</a>', text, re.S)
    assert done_card and re.search(
        r'class="slot winner"><span class="name">[^<]+</span><span class="score">5<', done_card.group(0)
    )
    assert f'<tr class="status-live" data-match-id="{first.id}">' in text  # the match list too
    assert '<script src="/static/live.js" defer></script>' in text
    assert 'id="connection-state"' in text


async def test_tournament_page_carries_a_guest_token(server: RunningServer, client: httpx.AsyncClient) -> None:
    t = await server.factory.seeded(2)
    page = await client.get(f"/tournaments/{t.id}")
    subject = verify_token(server.settings.jwt_secret, live_token(page.text))
    assert subject.user_id is None and subject.guest
    assert f'data-kind="tournament" data-id="{t.id}"' in page.text


async def test_a_logged_in_organizer_gets_a_user_token(server: RunningServer, client: httpx.AsyncClient) -> None:
    t, match = await server.factory.live_match()
    await log_in(client, t.organizer.username)
    page = await client.get(f"/matches/{match.id}")
    assert verify_token(server.settings.jwt_secret, live_token(page.text)).user_id == t.organizer.user_id
    assert f'href="/organize/tournaments/{t.id}#match-{match.id}"' in page.text  # a Manage link


async def test_draft_tournament_page_lists_players(server: RunningServer, client: httpx.AsyncClient) -> None:
    t = await server.factory.tournament(3)
    page = await client.get(f"/tournaments/{t.id}")
    assert page.status_code == 200 and "The bracket is not seeded yet." in page.text
    assert all(f"<li>{p.username}</li>" in page.text for p in t.players)


async def test_match_page_shows_players_score_status_and_open_disputes(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    t, match = await server.factory.live_match()
    db, hub = server.realtime.db, server.realtime.hub
    await matches.update_score(db, hub, t.organizer, match.id, 11, 9)
    reporter = next(p for p in t.players if p.user_id == match.participant2_id)
    await disputes.report_dispute(db, hub, reporter, match.id, "the lag switch was on")
    page = await client.get(f"/matches/{match.id}")
    assert page.status_code == 200
    text = page.text
    assert '<section class="scoreboard status-live" id="match"' in text
    assert '<span class="score">11</span>' in text and '<span class="score">9</span>' in text
    assert '<span class="match-status">live</span>' in text
    assert "the lag switch was on" in text and f"reported by {reporter.username}" in text
    assert f'data-kind="match" data-id="{match.id}"' in text
    assert f'href="/tournaments/{t.id}"' in text and "Final" in text  # two players: one round


async def test_unknown_ids_are_404(server: RunningServer, client: httpx.AsyncClient) -> None:
    for path in ("/tournaments/999", "/matches/999", "/tournaments/99999999999", "/matches/99999999999"):
        page = await client.get(path)
        assert page.status_code == 404, path
        assert "does not exist" in page.text or "nothing has the id" in page.text
    assert (await client.get("/tournaments/abc")).status_code == 404


async def test_user_supplied_text_is_escaped_everywhere(server: RunningServer, client: httpx.AsyncClient) -> None:
    t = await server.factory.tournament(2, name=XSS)
    db, hub = server.realtime.db, server.realtime.hub
    await tournaments.seed_bracket(db, hub, t.organizer, t.id)
    match = next(m for m in await matches.matches_of(db, t.id) if m.round == 1)
    await disputes.report_dispute(db, hub, t.players[0], match.id, XSS)
    await log_in(client, t.organizer.username)
    for path in ("/", f"/tournaments/{t.id}", f"/matches/{match.id}", "/organize/", f"/organize/tournaments/{t.id}"):
        page = await client.get(path)
        assert page.status_code == 200, path
        assert XSS not in page.text, path
        assert XSS_ESCAPED in page.text, path


async def test_static_client_and_styles_are_served(client: httpx.AsyncClient) -> None:
    script = await client.get("/static/live.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert "last_event_id" in script.text and "innerHTML" not in script.text
    assert (await client.get("/static/style.css")).status_code == 200
