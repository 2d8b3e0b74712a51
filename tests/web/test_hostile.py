"""What a hostile user tried through the pages and the API: the form and the API agree on who may
score, tokens are never cached, the API's answers are never sniffed, and no flash is lost."""

from __future__ import annotations

import html

import httpx

from tests.support.databases import dump
from tests.support.server import RunningServer
from tests.web.helpers import csrf_of, log_in

ORGANIZER_ONLY = "only the tournament's organizer or a staff user may do this"


async def test_a_participant_cannot_score_their_own_match_through_the_organizer_form(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    t, match = await server.factory.live_match(players=2)
    player = next(p for p in t.players if p.user_id == match.participant1_id)
    assert (await log_in(client, player.username)).status_code == 303
    token = csrf_of((await client.get("/organize/")).text)
    scores = {"participant1_score": "5", "participant2_score": "0"}
    before = await dump(server.realtime.db)

    form = await client.post(f"/organize/matches/{match.id}/score", data={"csrf_token": token, **scores})
    assert form.status_code == 403, form.text[:2000]
    assert ORGANIZER_ONLY in html.unescape(form.text)
    api = await client.post(
        f"/api/matches/{match.id}/score",
        json={key: int(value) for key, value in scores.items()},
        headers={"Authorization": f"Bearer {server.token(player.user_id)}"},
    )
    assert api.status_code == 403 and api.json()["error"]["message"] == ORGANIZER_ONLY  # the two paths agree
    assert await dump(server.realtime.db) == before
