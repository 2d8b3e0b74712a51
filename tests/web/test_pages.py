"""Spectator pages: the list, a tournament, a match; rendered on the server, escaped, with a live token."""

from __future__ import annotations

import re
from typing import Any

import httpx

from matchcast.security import verify_token
from matchcast.services import disputes, matches, results, tournaments
from tests.support.factories import Tournament
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


# -- results on the match and tournament pages ---------------------------------------------------


async def report(server: RunningServer, t: Tournament, match: Any, by: int, scores: tuple[int, int]) -> Any:
    """Participant `by` (1 or 2) of `match` reports a result, as over the match's WebSocket."""
    reporter = next(p for p in t.players if p.user_id == getattr(match, f"participant{by}_id"))
    rt = server.realtime
    await results.report_result(rt.db, rt.publisher, reporter, match.id, *scores, rt.settings.confirm_timeout)
    return reporter


async def test_everyone_sees_a_pending_report(server: RunningServer, client: httpx.AsyncClient) -> None:
    t, match = await server.factory.live_match(players=4)
    reporter = await report(server, t, match, 1, (1, 0))
    pending = re.compile(rf"{reporter.username} reported 1\u20130 · confirms at <time datetime=\"[^\"]+Z\" data-clock>")
    page = await client.get(f"/matches/{match.id}")
    assert pending.search(page.text), page.text
    assert 'id="controls"' not in page.text  # a spectator has no controls
    page = await client.get(f"/tournaments/{t.id}")
    assert pending.search(page.text)
    assert '<span class="flag reported">reported</span>' in page.text


async def test_participants_get_their_controls_and_their_own_token(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    t, match = await server.factory.live_match(players=4)
    player = next(p for p in t.players if p.user_id == match.participant2_id)
    opponent = next(p for p in t.players if p.user_id == match.participant1_id)
    await log_in(client, player.username)
    page = await client.get(f"/matches/{match.id}")
    assert verify_token(server.settings.jwt_secret, live_token(page.text)).user_id == player.user_id
    assert '<section class="controls" id="controls" data-side="2"' in page.text
    assert f"Your match against {opponent.username}" in page.text
    for control in ("score-control", "report-control", "confirm-control", "dispute-control", "pending-mine"):
        assert f'id="{control}"' in page.text, control
    assert "Reporting, confirming and disputing a result need JavaScript." in page.text  # <noscript>


async def test_no_controls_for_spectators_other_players_or_the_organizer(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    t, match = await server.factory.live_match(players=4)
    bystander = next(p for p in t.players if p.user_id not in (match.participant1_id, match.participant2_id))
    staff = await server.factory.user(staff=True)
    for user in (None, bystander, t.organizer, staff):
        async with httpx.AsyncClient(base_url=server.http) as browser:
            if user is not None:
                await log_in(browser, user.username)
            page = await browser.get(f"/matches/{match.id}")
            assert page.status_code == 200
            assert 'id="controls"' not in page.text and 'id="report-control"' not in page.text, user
            subject = verify_token(server.settings.jwt_secret, live_token(page.text))
            assert subject.user_id == (user.user_id if user else None)


async def test_an_organizer_who_plays_gets_controls(server: RunningServer, client: httpx.AsyncClient) -> None:
    t = await server.factory.tournament(1)
    db, publisher = server.realtime.db, server.realtime.publisher
    await tournaments.register_player(db, t.organizer, t.id, t.organizer.user_id)
    await tournaments.seed_bracket(db, publisher, t.organizer, t.id)
    (match,) = await matches.matches_of(db, t.id)
    await log_in(client, t.organizer.username)
    page = await client.get(f"/matches/{match.id}")
    assert 'id="controls"' in page.text and "Manage" in page.text


# -- /me ---------------------------------------------------------------------------------------


async def test_me_without_a_session_redirects_to_login(client: httpx.AsyncClient) -> None:
    response = await client.get("/me")
    assert response.status_code == 303 and response.headers["location"] == "/login"


async def test_me_lists_live_then_scheduled_then_completed_matches(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    db, publisher = server.realtime.db, server.realtime.publisher
    t = await server.factory.seeded(4)
    semis = [m for m in await matches.matches_of(db, t.id) if m.round == 1]
    for semi in semis:  # participant 1 of each semifinal wins it
        await matches.start_match(db, publisher, t.organizer, semi.id)
        await matches.update_score(db, publisher, t.organizer, semi.id, 1, 0)
        await matches.complete_match(db, publisher, t.organizer, semi.id)
    me = next(p for p in t.players if p.user_id == semis[0].participant1_id)
    beaten = next(p for p in t.players if p.user_id == semis[0].participant2_id)
    final = await server.factory.match(semis[0].next_match_id)
    await matches.start_match(db, publisher, t.organizer, final.id)
    rival_side = 2 if final.participant1_id == me.user_id else 1
    rival = await report(server, t, final, rival_side, (0, 1) if rival_side == 2 else (1, 0))  # "me" lost
    other = await server.factory.tournament(1, name="Second Cup")
    await tournaments.register_player(db, other.organizer, other.id, me.user_id)
    await tournaments.seed_bracket(db, publisher, other.organizer, other.id)
    (scheduled,) = await matches.matches_of(db, other.id)

    await log_in(client, me.username)
    page = await client.get("/me")
    assert page.status_code == 200
    order = [int(i) for i in re.findall(r'<tr class="[^"]*" data-match-id="(\d+)"', page.text)]
    assert order == [final.id, scheduled.id, semis[0].id]
    assert f'<a href="/matches/{final.id}">vs {rival.username}</a>' in page.text
    assert f'<a href="/matches/{scheduled.id}">vs {other.players[0].username}</a>' in page.text
    assert f'<a href="/matches/{semis[0].id}">vs {beaten.username}</a>' in page.text
    assert f"{rival.username} reported 0\u20131, a loss for you</strong> · confirm or dispute by" in page.text
    assert '<span class="outcome">won</span>' in page.text and '<td class="score">1 : 0</td>' in page.text
    assert "Second Cup" in page.text and "Test Cup" in page.text
    assert f'data-rooms="{other.id} {t.id}"' in page.text  # live through both tournaments' rooms
    assert verify_token(server.settings.jwt_secret, live_token(page.text)).user_id == me.user_id
    assert '<script src="/static/live.js" defer></script>' in page.text


async def test_me_without_matches(server: RunningServer, client: httpx.AsyncClient) -> None:
    user = await server.factory.user()
    await log_in(client, user.username)
    page = await client.get("/me")
    assert page.status_code == 200 and "You have no matches yet" in page.text
    assert 'data-rooms=""' in page.text


async def test_a_private_tournament_is_seen_only_by_its_people(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    t = await server.factory.seeded(2, public=False)
    assert (await client.get(f"/tournaments/{t.id}")).status_code == 404
    assert (await log_in(client, t.players[0].username)).status_code == 303
    page = await client.get(f"/tournaments/{t.id}")
    assert page.status_code == 200 and t.players[1].username in page.text
