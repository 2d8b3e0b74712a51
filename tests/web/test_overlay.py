"""The streaming overlay `/overlay/matches/{id}`: the scoreboard alone, themed and scaled, live."""

from __future__ import annotations

import re

import httpx

from matchcast.security import verify_token
from matchcast.services import matches
from tests.support.server import RunningServer
from tests.web.helpers import live_token, log_in


async def test_the_overlay_shows_names_score_and_status_only(server: RunningServer, client: httpx.AsyncClient) -> None:
    t, match = await server.factory.live_match(players=2)
    await matches.update_score(server.realtime.db, server.realtime.hub, t.organizer, match.id, 3, 1)
    page = await client.get(f"/overlay/matches/{match.id}")
    assert page.status_code == 200
    text = page.text
    board = re.search(r'<section class="scoreboard status-live" id="match".*?</section>', text, re.S)
    assert board, text
    names = re.findall(r'<span class="name">([^<]+)</span><span class="score">(\d+)</span>', board.group(0))
    assert names == [(t.players[0].username, "3"), (t.players[1].username, "1")]
    assert '<span class="match-status">live</span>' in board.group(0)
    assert 'class="topbar"' not in text and "disputes" not in text  # nothing but the scoreboard
    assert '<body class="overlay theme-dark">' in text and 'data-scale="1"' in text
    # The policy forbids inline scripts and styles: everything comes from files.
    assert "style=" not in text and "<style" not in text
    assert re.findall(r"<script[^>]*>", text) == [
        '<script src="/static/overlay.js" defer>',
        '<script src="/static/live.js" defer>',
    ]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    subject = verify_token(server.settings.jwt_secret, live_token(text))
    assert subject.guest and subject.user_id is None


async def test_theme_and_scale_are_checked(server: RunningServer, client: httpx.AsyncClient) -> None:
    _t, match = await server.factory.live_match()
    path = f"/overlay/matches/{match.id}"
    light = await client.get(path, params={"theme": "light", "scale": "1.5"})
    assert light.status_code == 200
    assert '<body class="overlay theme-light">' in light.text and 'data-scale="1.5"' in light.text
    for scale in ("0.5", "3", "2.25"):
        assert (await client.get(path, params={"scale": scale})).status_code == 200, scale
    bad_theme = await client.get(path, params={"theme": "neon"})
    assert bad_theme.status_code == 400
    assert "theme must be dark or light, got &#39;neon&#39;" in bad_theme.text
    for scale in ("0.4", "3.01", "abc", "nan", "inf", "1e0", "-1", "", "1." + "5" * 50):
        answer = await client.get(path, params={"scale": scale})
        assert answer.status_code == 400, scale
        assert "scale must be a number from 0.5 to 3" in answer.text, scale


async def test_an_unknown_match_is_404(server: RunningServer, client: httpx.AsyncClient) -> None:
    assert (await client.get("/overlay/matches/424242")).status_code == 404
    assert (await client.get("/overlay/matches/99999999999999999999")).status_code == 404


async def test_a_private_tournament_overlay_is_404_to_guests_and_shown_to_its_organizer(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    t = await server.factory.seeded(2, public=False)
    [match] = await matches.matches_of(server.realtime.db, t.id)
    path = f"/overlay/matches/{match.id}?theme=light"
    hidden = await client.get(path)
    assert hidden.status_code == 404 and t.players[0].username not in hidden.text
    await log_in(client, t.organizer.username)
    shown = await client.get(path)
    assert shown.status_code == 200 and t.players[0].username in shown.text
    subject = verify_token(server.settings.jwt_secret, live_token(shown.text))
    assert subject.user_id == t.organizer.user_id  # so its live stream may read the private room too
