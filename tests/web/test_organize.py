"""Organizer login and forms: sessions, CSRF, every action, and refusals that change nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from matchcast.services import disputes, matches, tournaments, users
from tests.support.databases import dump
from tests.support.factories import Tournament
from tests.support.server import RunningServer
from tests.web.helpers import csrf_of, follow, log_in, post_form


async def logged_in_organizer(server: RunningServer, client: httpx.AsyncClient, players: int = 4) -> Tournament:
    t = await server.factory.seeded(players) if players >= 2 else await server.factory.tournament(players)
    assert (await log_in(client, t.organizer.username)).status_code == 303
    return t


async def first_match(server: RunningServer, t: Tournament, status: str = "scheduled") -> Any:
    rows = await matches.matches_of(server.realtime.db, t.id)
    return next(m for m in rows if m.status == status and m.participant1_id and m.participant2_id)


async def refused_changes_nothing(
    server: RunningServer, client: httpx.AsyncClient, path: str, data: dict[str, Any], status: int, reason: str
) -> httpx.Response:
    token = csrf_of((await client.get("/organize/")).text)
    before = await dump(server.realtime.db)
    response = await client.post(path, data={"csrf_token": token, **data})
    assert response.status_code == status, response.text[:2000]
    assert reason in response.text
    assert await dump(server.realtime.db) == before
    return response


# -- sessions ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/organize/"),
        ("GET", "/organize/tournaments/1"),
        ("POST", "/organize/tournaments"),
        ("POST", "/organize/tournaments/1/seed"),
        ("POST", "/organize/matches/1/score"),
        ("POST", "/organize/disputes/1/resolve"),
    ],
)
async def test_organize_without_a_session_redirects_to_login(client: httpx.AsyncClient, method: str, path: str) -> None:
    response = await client.request(method, path)
    assert response.status_code == 303 and response.headers["location"] == "/login"


async def test_login_with_the_right_password_opens_a_session(server: RunningServer, client: httpx.AsyncClient) -> None:
    t = await server.factory.tournament()
    response = await log_in(client, t.organizer.username)
    assert response.status_code == 303 and response.headers["location"] == "/organize/"
    page = await follow(client, response)
    assert page.status_code == 200 and f"Logged in as {t.organizer.username}." in page.text
    assert (await client.get("/login")).status_code == 303  # already logged in


@pytest.mark.parametrize("role", ["organizer", "staff", "player", "new user"])
async def test_login_lands_organizers_on_organize_and_everyone_else_on_me(
    server: RunningServer, client: httpx.AsyncClient, role: str
) -> None:
    t = await server.factory.seeded(2)
    user = {
        "organizer": t.organizer,
        "staff": await server.factory.user(staff=True),
        "player": t.players[0],
        "new user": await server.factory.user(),
    }[role]
    home = "/organize/" if role in ("organizer", "staff") else "/me"
    response = await log_in(client, user.username)
    assert response.status_code == 303 and response.headers["location"] == home
    page = await follow(client, response)
    assert page.status_code == 200 and f"Logged in as {user.username}." in page.text
    again = await client.get("/login")  # already logged in: straight to the same place
    assert again.status_code == 303 and again.headers["location"] == home


async def test_login_with_a_wrong_password_opens_no_session(server: RunningServer, client: httpx.AsyncClient) -> None:
    user = await server.factory.user()
    for username, password in ((user.username, "wrong-password"), ("nobody-here", "whatever-password")):
        response = await log_in(client, username, password)
        assert response.status_code == 401 and "wrong username or password" in response.text
        assert (await client.get("/organize/")).status_code == 303


async def test_logout_ends_the_session(server: RunningServer, client: httpx.AsyncClient) -> None:
    t = await logged_in_organizer(server, client, players=0)
    page = await client.get(f"/tournaments/{t.id}")
    response = await client.post("/logout", data={"csrf_token": csrf_of(page.text)})
    assert response.status_code == 303 and response.headers["location"] == "/"
    assert "Logged out." in (await follow(client, response)).text
    assert (await client.get("/organize/")).status_code == 303


# -- CSRF ---------------------------------------------------------------------------------------


async def test_login_without_a_valid_csrf_token_is_refused(server: RunningServer, client: httpx.AsyncClient) -> None:
    user = await server.factory.user()
    await client.get("/login")
    for token in (None, "", "20991231000000##0123456789abcdef0123456789abcdef01234567", "garbage"):
        data = {"username": user.username, "password": "correct-horse-battery"}
        if token is not None:
            data["csrf_token"] = token
        response = await client.post("/login", data=data)
        assert response.status_code == 403 and "security token" in response.text
    assert (await client.get("/organize/")).status_code == 303


async def test_forms_without_a_valid_csrf_token_are_refused_and_change_nothing(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    t = await logged_in_organizer(server, client)
    match = await first_match(server, t)
    async with httpx.AsyncClient(base_url=server.http) as other:  # a token of another session
        await log_in(other, t.organizer.username)
        foreign = csrf_of((await other.get("/organize/")).text)
    before = await dump(server.realtime.db)
    posts = [
        ("/organize/tournaments", {"name": "Sneaky Cup"}),
        (f"/organize/tournaments/{t.id}/seed", {}),
        (f"/organize/matches/{match.id}/start", {}),
        (f"/organize/matches/{match.id}/cancel", {}),
        ("/logout", {}),
    ]
    for path, data in posts:
        for token in (None, "nonsense", foreign):
            body = data if token is None else {**data, "csrf_token": token}
            response = await client.post(path, data=body)
            assert response.status_code == 403, (path, token)
    assert await dump(server.realtime.db) == before
    assert (await client.get("/organize/")).status_code == 200  # still logged in: logout was refused too


# -- tournaments and players --------------------------------------------------------------------


async def test_create_a_tournament(server: RunningServer, client: httpx.AsyncClient) -> None:
    user = await server.factory.user()
    await log_in(client, user.username)
    response = await post_form(client, "/organize/tournaments", {"name": "  Autumn Major  "})
    page = await follow(client, response)
    assert page.status_code == 200 and "Tournament &#39;Autumn Major&#39; created" in page.text
    rows = await tournaments.list_tournaments(server.realtime.db, user)
    assert [(r.name, r.organizer_id, r.is_public) for r in rows] == [("Autumn Major", user.user_id, False)]


async def test_create_a_listed_tournament(server: RunningServer, client: httpx.AsyncClient) -> None:
    user = await server.factory.user()
    await log_in(client, user.username)
    await post_form(client, "/organize/tournaments", {"name": "Open Cup", "public": "y"})
    assert "Open Cup" in (await client.get("/")).text
    assert "Open Cup" in (await client.get("/organize/")).text


async def test_create_a_best_of_three_tournament(server: RunningServer, client: httpx.AsyncClient) -> None:
    user = await server.factory.user()
    await log_in(client, user.username)
    page = await follow(client, await post_form(client, "/organize/tournaments", {"name": "Bo3 Cup", "best_of": "3"}))
    assert "best of 3" in page.text
    (row,) = await tournaments.list_tournaments(server.realtime.db, user)
    assert row.best_of == 3
    await refused_changes_nothing(
        server,
        client,
        "/organize/tournaments",
        {"name": "Bo2 Cup", "best_of": "2"},
        400,
        "best_of must be one of 1, 3, 5, 7, got 2",
    )


async def test_create_a_tournament_refused(server: RunningServer, client: httpx.AsyncClient) -> None:
    user = await server.factory.user()
    await log_in(client, user.username)
    await refused_changes_nothing(
        server, client, "/organize/tournaments", {"name": "x" * 201}, 400, "name must be 1 to 200 characters"
    )
    await refused_changes_nothing(server, client, "/organize/tournaments", {}, 400, "give the tournament a name")


async def test_register_existing_and_new_players(server: RunningServer, client: httpx.AsyncClient) -> None:
    t = await logged_in_organizer(server, client, players=0)
    existing = await server.factory.user()
    response = await post_form(client, f"/organize/tournaments/{t.id}/players", {"username": existing.username})
    assert f"Registered {existing.username}." in (await follow(client, response)).text
    response = await post_form(
        client, f"/organize/tournaments/{t.id}/players/new", {"username": "newcomer", "password": "a-long-password"}
    )
    page = await follow(client, response)
    assert "Created and registered newcomer." in page.text
    names = [p.username for p in await tournaments.registered_players(server.realtime.db, t.id)]
    assert names == [existing.username, "newcomer"]
    assert await users.authenticate(server.realtime.db, "newcomer", "a-long-password") is not None


async def test_register_players_refused(server: RunningServer, client: httpx.AsyncClient) -> None:
    t = await logged_in_organizer(server, client, players=0)
    taken = await server.factory.user()
    path = f"/organize/tournaments/{t.id}/players"
    await post_form(client, path, {"username": taken.username})
    await refused_changes_nothing(server, client, path, {"username": "ghost"}, 404, "there is no user &#39;ghost&#39;")
    await refused_changes_nothing(server, client, path, {"username": taken.username}, 409, "is already registered")
    await refused_changes_nothing(
        server,
        client,
        path + "/new",
        {"username": "shorty", "password": "short"},
        400,
        "password must be 8 to 1024 characters",
    )
    await refused_changes_nothing(
        server, client, path + "/new", {"username": taken.username, "password": "long-enough-1"}, 409, "is taken"
    )


async def test_register_after_seeding_is_refused(server: RunningServer, client: httpx.AsyncClient) -> None:
    t = await logged_in_organizer(server, client, players=2)
    late = await server.factory.user()
    reason = "players can be registered only before the bracket is seeded"
    for path, data in (
        ("players", {"username": late.username}),
        ("players/new", {"username": "latecomer", "password": "long-enough-1"}),
    ):
        await refused_changes_nothing(server, client, f"/organize/tournaments/{t.id}/{path}", data, 409, reason)


async def test_seed_the_bracket(server: RunningServer, client: httpx.AsyncClient) -> None:
    user = await server.factory.user()
    t = await server.factory.tournament(4, organizer=user)
    await log_in(client, user.username)
    page = await follow(client, await post_form(client, f"/organize/tournaments/{t.id}/seed"))
    assert "Bracket seeded" in page.text and "Start</button>" in page.text
    assert len(await matches.matches_of(server.realtime.db, t.id)) == 3


async def test_seed_refused(server: RunningServer, client: httpx.AsyncClient) -> None:
    user = await server.factory.user()
    t = await server.factory.tournament(1, organizer=user)
    await log_in(client, user.username)
    await refused_changes_nothing(
        server, client, f"/organize/tournaments/{t.id}/seed", {}, 409, "seeding needs 2 to 256 players; 1 registered"
    )
    await refused_changes_nothing(
        server, client, "/organize/tournaments/999/seed", {}, 404, "tournament 999 does not exist"
    )


# -- matches ------------------------------------------------------------------------------------


async def test_start_score_and_complete_a_match(server: RunningServer, client: httpx.AsyncClient) -> None:
    t = await logged_in_organizer(server, client)
    match = await first_match(server, t)
    page = await follow(client, await post_form(client, f"/organize/matches/{match.id}/start"))
    assert f"Match {match.id} is live." in page.text
    page = await follow(
        client,
        await post_form(
            client, f"/organize/matches/{match.id}/score", {"participant1_score": "3", "participant2_score": "1"}
        ),
    )
    assert f"Match {match.id}: 3\u20131." in page.text
    page = await follow(client, await post_form(client, f"/organize/matches/{match.id}/complete", {"winner_id": ""}))
    winner = await server.factory.match(match.id)
    assert winner.status == "completed" and winner.winner_id == match.participant1_id
    assert "advances." in page.text
    following = await server.factory.match(match.next_match_id)
    assert match.participant1_id in (following.participant1_id, following.participant2_id)


async def test_complete_with_a_chosen_winner(server: RunningServer, client: httpx.AsyncClient) -> None:
    t = await logged_in_organizer(server, client)
    match = await first_match(server, t)
    await matches.start_match(server.realtime.db, server.realtime.hub, t.organizer, match.id)
    await post_form(client, f"/organize/matches/{match.id}/complete", {"winner_id": str(match.participant2_id)})
    assert (await server.factory.match(match.id)).winner_id == match.participant2_id


async def test_cancel_a_match(server: RunningServer, client: httpx.AsyncClient) -> None:
    t = await logged_in_organizer(server, client)
    match = await first_match(server, t)
    page = await follow(client, await post_form(client, f"/organize/matches/{match.id}/cancel"))
    assert f"Match {match.id} cancelled." in page.text
    assert (await server.factory.match(match.id)).status == "cancelled"


async def test_match_actions_refused(server: RunningServer, client: httpx.AsyncClient) -> None:
    t = await logged_in_organizer(server, client)
    match = await first_match(server, t)
    base = f"/organize/matches/{match.id}"
    scores = {"participant1_score": "2", "participant2_score": "2"}
    await refused_changes_nothing(
        server, client, base + "/score", scores, 409, "scores can change only while it is live"
    )
    await refused_changes_nothing(server, client, base + "/complete", {}, 409, "only a live match can be completed")
    await post_form(client, base + "/start")
    await refused_changes_nothing(server, client, base + "/start", {}, 409, "only a scheduled match can start")
    await refused_changes_nothing(
        server, client, base + "/score", {"participant1_score": "two", "participant2_score": "1"}, 400, "Player 1"
    )
    await refused_changes_nothing(
        server,
        client,
        base + "/score",
        {"participant1_score": "-1", "participant2_score": "1"},
        400,
        "participant1_score must be an integer from 0 to 1000000",
    )
    await post_form(client, base + "/score", scores)
    await refused_changes_nothing(server, client, base + "/complete", {}, 400, "the scores are tied")
    await refused_changes_nothing(
        server,
        client,
        base + "/complete",
        {"winner_id": "424242"},
        400,
        "winner_id must be one of the match&#39;s players",
    )
    await post_form(client, base + "/complete", {"winner_id": str(match.participant1_id)})
    await refused_changes_nothing(
        server, client, base + "/cancel", {}, 409, "only a scheduled or live match can be cancelled"
    )
    await refused_changes_nothing(server, client, "/organize/matches/999/start", {}, 404, "match 999 does not exist")
    waiting = next(m for m in await matches.matches_of(server.realtime.db, t.id) if m.round == 2)
    await refused_changes_nothing(
        server, client, f"/organize/matches/{waiting.id}/start", {}, 409, "is waiting for its players"
    )


async def test_refused_action_shows_the_manage_page_with_the_reason(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    t = await logged_in_organizer(server, client)
    match = await first_match(server, t)
    response = await post_form(
        client, f"/organize/matches/{match.id}/score", {"participant1_score": "1", "participant2_score": "0"}
    )
    assert response.status_code == 409
    assert '<p class="flash flash-error" id="error">' in response.text
    assert f'id="match-{match.id}"' in response.text  # the page itself, to try again


# -- disputes -----------------------------------------------------------------------------------


async def test_resolve_a_dispute_and_refuse_resolving_it_twice(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    t = await logged_in_organizer(server, client)
    match = await first_match(server, t)
    reporter = next(p for p in t.players if p.user_id == match.participant1_id)
    dispute = await disputes.report_dispute(
        server.realtime.db, server.realtime.hub, reporter, match.id, "wrong map was played"
    )
    manage = await client.get(f"/organize/tournaments/{t.id}")
    assert "wrong map was played" in manage.text and f'id="dispute-{dispute.id}"' in manage.text
    path = f"/organize/disputes/{dispute.id}/resolve"
    page = await follow(client, await post_form(client, path, {"resolution": "replay on the right map"}))
    assert f"Dispute {dispute.id} resolved." in page.text and "No open disputes." in page.text
    await refused_changes_nothing(server, client, path, {"resolution": "again"}, 409, "is already resolved")
    await refused_changes_nothing(server, client, path, {"resolution": ""}, 400, "describe how the dispute")
    await refused_changes_nothing(
        server, client, "/organize/disputes/999/resolve", {"resolution": "x"}, 404, "dispute 999 does not exist"
    )


async def live_dispute(server: RunningServer, client: httpx.AsyncClient) -> tuple[Tournament, Any, Any]:
    """A logged-in organizer, a live first-round match and its participant 2's open dispute."""
    t = await logged_in_organizer(server, client)
    match = await first_match(server, t)
    db, publisher = server.realtime.db, server.realtime.publisher
    await matches.start_match(db, publisher, t.organizer, match.id)
    reporter = next(p for p in t.players if p.user_id == match.participant2_id)
    dispute = await disputes.report_dispute(db, publisher, reporter, match.id, "he reported a win he did not have")
    return t, match, dispute


async def test_resolve_a_dispute_with_the_final_score(server: RunningServer, client: httpx.AsyncClient) -> None:
    t, match, dispute = await live_dispute(server, client)
    manage = await client.get(f"/organize/tournaments/{t.id}")
    form = manage.text[manage.text.index(f'id="dispute-{dispute.id}"') :]
    form = form[: form.index("</form>")]
    assert 'name="participant1_score"' in form and 'name="participant2_score"' in form  # live: a final score
    assert 'id="dispute-count"' in manage.text and "1 open dispute<" in manage.text
    assert f'id="match-{match.id}" class="status-live disputed"' in manage.text  # the row stands out

    path = f"/organize/disputes/{dispute.id}/resolve"
    data = {"resolution": "the replay shows 0-1", "participant1_score": "0", "participant2_score": "1"}
    page = await follow(client, await post_form(client, path, data))
    assert f"Dispute {dispute.id} resolved: match {match.id} completed 0\u20131." in page.text
    done = await server.factory.match(match.id)
    assert (done.status, done.winner_id, done.participant1_score, done.participant2_score) == (
        "completed",
        match.participant2_id,
        0,
        1,
    )
    following = await server.factory.match(match.next_match_id)
    assert match.participant2_id in (following.participant1_id, following.participant2_id)  # advanced


@pytest.mark.parametrize(
    "scores,reason",
    [
        (("1", "1"), "a result must decide the match"),
        (("2", "0"), "the winner has exactly 1"),
        (("1", ""), "give both participant1_score and participant2_score, or neither"),
        (("x", "0"), "Player 1 score: Not a valid integer value"),
        (("-1", "1"), "participant1_score must be an integer from 0"),
    ],
)
async def test_resolve_with_a_wrong_score_is_refused_and_changes_nothing(
    server: RunningServer, client: httpx.AsyncClient, scores: tuple[str, str], reason: str
) -> None:
    _, _, dispute = await live_dispute(server, client)
    data = {"resolution": "replayed", "participant1_score": scores[0], "participant2_score": scores[1]}
    response = await refused_changes_nothing(
        server, client, f"/organize/disputes/{dispute.id}/resolve", data, 400, reason
    )
    assert f'id="dispute-{dispute.id}"' in response.text  # the form again, to correct it


async def test_completing_the_match_closes_its_dispute(server: RunningServer, client: httpx.AsyncClient) -> None:
    t, match, dispute = await live_dispute(server, client)
    await matches.complete_match(
        server.realtime.db, server.realtime.publisher, t.organizer, match.id, match.participant1_id
    )
    manage = await client.get(f"/organize/tournaments/{t.id}")
    assert f'id="dispute-{dispute.id}"' not in manage.text  # the organizer's completion was the ruling
    data = {"resolution": "too late", "participant1_score": "1", "participant2_score": "0"}
    await refused_changes_nothing(
        server, client, f"/organize/disputes/{dispute.id}/resolve", data, 409, "is already resolved"
    )


# -- rights -------------------------------------------------------------------------------------


async def test_only_the_organizer_or_staff_may_act(server: RunningServer, client: httpx.AsyncClient) -> None:
    t = await server.factory.seeded(4)
    match = await first_match(server, t)
    outsider = await server.factory.user()
    await log_in(client, outsider.username)
    assert (await client.get(f"/organize/tournaments/{t.id}")).status_code == 403
    await refused_changes_nothing(
        server,
        client,
        f"/organize/matches/{match.id}/start",
        {},
        403,
        "only the tournament&#39;s organizer or a staff user may do this",
    )
    await refused_changes_nothing(
        server,
        client,
        f"/organize/tournaments/{t.id}/players",
        {"username": outsider.username},
        403,
        "only the tournament&#39;s organizer",
    )
    assert f'/organize/tournaments/{t.id}"' not in (await client.get("/organize/")).text  # not theirs

    staff = await server.factory.user(staff=True)
    async with httpx.AsyncClient(base_url=server.http) as staff_client:
        await log_in(staff_client, staff.username)
        assert (await staff_client.get(f"/organize/tournaments/{t.id}")).status_code == 200
        response = await post_form(staff_client, f"/organize/matches/{match.id}/start")
        assert response.status_code == 303
    assert (await server.factory.match(match.id)).status == "live"


# -- live -----------------------------------------------------------------------------------------


async def test_form_actions_reach_spectators_live(server: RunningServer, client: httpx.AsyncClient) -> None:
    t = await logged_in_organizer(server, client)
    match = await first_match(server, t)
    async with (
        server.client(f"/ws/match/{match.id}/", server.guest_token()) as spectator,
        server.client(f"/ws/tournament/{t.id}/", server.guest_token()) as bracket_watcher,
    ):
        await spectator.established()
        await bracket_watcher.established()
        await post_form(client, f"/organize/matches/{match.id}/start")
        assert (await spectator.recv_type("match_started"))["data"]["match_id"] == match.id
        await post_form(
            client, f"/organize/matches/{match.id}/score", {"participant1_score": "4", "participant2_score": "2"}
        )
        scored = (await spectator.recv_type("score_updated"))["data"]
        assert (scored["participant1_score"], scored["participant2_score"], scored["sequence"]) == (4, 2, 1)
        await post_form(client, f"/organize/matches/{match.id}/complete")
        done = (await spectator.recv_type("match_completed"))["data"]
        assert done["winner_id"] == match.participant1_id
        bracket = (await bracket_watcher.recv_type("bracket_updated"))["data"]["bracket"]
        assert bracket["rounds"][0]["matches"][0]["status"] == "completed"
