"""Log in and out (every user: organizers land on /organize/, players on /me), and the
organizer's forms that run a tournament.

Every action goes through the same services as the JSON API, with the services' publisher
(`rt.publisher`: the hub, through the confirmation deadlines), so everyone sees it live. Order
of checks: a session (else 303 to /login), a valid CSRF token (else 403, nothing done), then the
service, which checks existence, rights and state. A refused action renders the page again with
the reason and the matching status; nothing changed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from wtforms import Form

from matchcast import errors
from matchcast.db.database import Database
from matchcast.db.tables import disputes as disputes_table
from matchcast.db.tables import tournaments as tournaments_table
from matchcast.db.tables import webhooks as webhooks_table
from matchcast.ids import ID, path_id
from matchcast.protocol import EVENT_TYPES
from matchcast.services import disputes, formats, matches, snapshots, tournaments, users, webhooks
from matchcast.services.actors import Actor, is_organizer
from matchcast.services.formats.base import MIN_PLAYERS
from matchcast.web import forms, throttle
from matchcast.web.pages import drawing, live_token
from matchcast.web.session import current_actor, flash, log_in, log_out
from matchcast.web.templating import STATUS, error_page, render
from matchcast.web.throttle import too_many

# What an action does: (flash message, where to go next).
Run = Callable[[Request, Any, Actor, Any], Awaitable[tuple[str, str]]]
# Which tournament's page shows the outcome of an action on the object in the path (None: none).
Where = Callable[[Request, Any], Awaitable[int | None]]


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def csrf_refused(request: Request) -> Response:
    error = errors.forbidden("the form's security token is missing or out of date: reload the page and try again")
    return error_page(request, error)


# -- log in, log out --------------------------------------------------------------------------


async def home_of(db: Database, actor: Actor) -> str:
    """Where a user lands after logging in: organizers (staff, or organizing any tournament) on
    /organize/, players on their own page /me."""
    if actor.is_staff:
        return "/organize/"
    query = sa.select(tournaments_table.c.id).where(tournaments_table.c.organizer_id == actor.user_id).limit(1)
    return "/organize/" if await db.fetch_val(query) is not None else "/me"


async def login_page(request: Request) -> Response:
    actor = await current_actor(request)
    if actor is not None:
        return see_other(await home_of(request.app.state.realtime.db, actor))
    return render(request, "login.html", {"username": ""})


async def login(request: Request) -> Response:
    form = forms.bind(forms.LoginForm, request, await request.form())
    if not form.validate():
        if forms.csrf_failed(form):
            return csrf_refused(request)
        return render(
            request, "login.html", {"username": form.username.data or "", "error": forms.first_error(form)}, 400
        )
    user, wait = await throttle.authenticate(request, form.username.data, form.password.data)
    if wait:
        response = render(request, "login.html", {"username": form.username.data, "error": too_many(wait)}, 429)
        response.headers["Retry-After"] = str(wait)
        return response
    if user is None:
        return render(
            request, "login.html", {"username": form.username.data, "error": "wrong username or password"}, 401
        )
    actor = Actor(user.id, user.username, bool(user.is_staff), user.session_epoch)
    log_in(request, actor, user.session_epoch)
    flash(request, f"Logged in as {user.username}.")
    return see_other(await home_of(request.app.state.realtime.db, actor))


async def logout(request: Request) -> Response:
    form = forms.bind(forms.CSRFForm, request, await request.form())
    if not form.validate():
        return csrf_refused(request)
    await log_out(request)
    flash(request, "Logged out.")
    return see_other("/")


# -- pages --------------------------------------------------------------------------------------


async def index_page(request: Request, actor: Actor, error: str | None = None, status: int = 200) -> Response:
    rows = await tournaments.list_tournaments(request.app.state.realtime.db, actor)
    own = [t for t in rows if is_organizer(actor, t)]
    return render(request, "organize/index.html", {"tournaments": own, "error": error}, status)


async def manage_page(
    request: Request,
    actor: Actor,
    tournament_id: int,
    error: errors.DomainError | None = None,
) -> Response:
    db = request.app.state.realtime.db
    try:
        row = await tournaments.get_tournament(db, tournament_id)
    except errors.DomainError as exc:
        return error_page(request, exc)
    if not is_organizer(actor, row):
        return error_page(
            request, error or errors.forbidden("only the tournament's organizer or a staff user may manage it")
        )
    state = await snapshots.tournament_snapshot(db, tournament_id)
    players = await tournaments.registered_players(db, tournament_id)
    context = {
        "t": state,
        **drawing(state),
        "players": players,
        "open_disputes": [(m, d) for m in state["matches"] for d in m["disputes"]],
        "names": {p.id: p.username for p in players},
        "token": live_token(request, actor),
        "webhooks": await webhooks.list_webhooks(db, actor, tournament_id),
        "event_types": sorted(EVENT_TYPES),
        "limits": (MIN_PLAYERS, formats.get(state["format"]).max_players),
        "error": error.message if error else None,
    }
    return render(request, "organize/tournament.html", context, STATUS.get(error.code, 400) if error else 200)


async def index(request: Request) -> Response:
    actor = await current_actor(request)
    if actor is None:
        return see_other("/login")
    return await index_page(request, actor)


async def manage(request: Request) -> Response:
    actor = await current_actor(request)
    if actor is None:
        return see_other("/login")
    try:
        tournament_id = path_id(request)
    except errors.DomainError as exc:
        return error_page(request, exc)
    return await manage_page(request, actor, tournament_id)


async def create_tournament(request: Request) -> Response:
    actor = await current_actor(request)
    if actor is None:
        return see_other("/login")
    form = forms.bind(forms.TournamentForm, request, await request.form())
    try:
        if not form.validate():
            if forms.csrf_failed(form):
                return csrf_refused(request)
            raise errors.invalid(forms.first_error(form))
        db = request.app.state.realtime.db
        best_of = 1 if form.best_of.data is None else form.best_of.data
        chosen = form.format.data or formats.DEFAULT
        rounds = form.rounds.data if chosen == formats.SWISS else None  # the field stays filled in when hidden
        tournament_id = await tournaments.create_tournament(
            db, actor, form.name.data, bool(form.public.data), best_of, format=chosen, rounds=rounds
        )
    except errors.DomainError as exc:
        return await index_page(request, actor, exc.message, STATUS.get(exc.code, 400))
    flash(request, f"Tournament {form.name.data.strip()!r} created: register its players, then seed it.")
    return see_other(f"/organize/tournaments/{tournament_id}")


# -- actions ----------------------------------------------------------------------------------


def action(form_class: type[Form], run: Run, where: Where) -> Callable[[Request], Awaitable[Response]]:
    """A form endpoint: session, CSRF, then `run`; success flashes and redirects (303)."""

    async def endpoint(request: Request) -> Response:
        actor = await current_actor(request)
        if actor is None:
            return see_other("/login")
        rt = request.app.state.realtime
        form = forms.bind(form_class, request, await request.form())
        try:
            if not form.validate():
                if forms.csrf_failed(form):
                    return csrf_refused(request)
                raise errors.invalid(forms.first_error(form))
            message, url = await run(request, rt, actor, form)
        except errors.DomainError as exc:
            try:
                tournament_id = await where(request, rt)
            except errors.DomainError:
                tournament_id = None
            if tournament_id is None:
                return error_page(request, exc)
            return await manage_page(request, actor, tournament_id, exc)
        flash(request, message)
        return see_other(url)

    return endpoint


def manage_url(tournament_id: int, anchor: str = "") -> str:
    return f"/organize/tournaments/{tournament_id}" + (f"#{anchor}" if anchor else "")


async def in_tournament(request: Request, rt: Any) -> int | None:
    return path_id(request)


async def of_match(request: Request, rt: Any) -> int | None:
    row = await matches.reload(rt.db, path_id(request))
    return None if row is None else int(row.tournament_id)


async def of_dispute(request: Request, rt: Any) -> int | None:
    query = sa.select(disputes_table.c.match_id).where(disputes_table.c.id == path_id(request))
    match_id = await rt.db.fetch_val(query)
    row = None if match_id is None else await matches.reload(rt.db, match_id)
    return None if row is None else int(row.tournament_id)


async def register_existing(request: Request, rt: Any, actor: Actor, form: Any) -> tuple[str, str]:
    tournament_id = path_id(request)
    user = await users.find_user(rt.db, form.username.data.strip())
    if user is None:
        raise errors.not_found(f"there is no user {form.username.data.strip()!r}; create the player below instead")
    await tournaments.register_player(rt.db, actor, tournament_id, user.id)
    return f"Registered {user.username}.", manage_url(tournament_id, "players")


async def register_new(request: Request, rt: Any, actor: Actor, form: Any) -> tuple[str, str]:
    tournament_id = path_id(request)
    username = form.username.data.strip()
    await tournaments.register_new_player(rt.db, actor, tournament_id, username, form.password.data)
    return f"Created and registered {username}.", manage_url(tournament_id, "players")


async def seed(request: Request, rt: Any, actor: Actor, form: Any) -> tuple[str, str]:
    tournament_id = path_id(request)
    await tournaments.seed_bracket(rt.db, rt.publisher, actor, tournament_id)
    return "Bracket seeded: the first round is scheduled.", manage_url(tournament_id, "matches")


async def start(request: Request, rt: Any, actor: Actor, form: Any) -> tuple[str, str]:
    match = await matches.start_match(rt.db, rt.publisher, actor, path_id(request))
    return f"Match {match.id} is live.", manage_url(match.tournament_id, f"match-{match.id}")


async def score(request: Request, rt: Any, actor: Actor, form: Any) -> tuple[str, str]:
    # The organizer's form, like the organizer API: a participant scores only over the WebSocket
    # (running scores) and reports the result, never sets it here.
    match = await matches.update_score(
        rt.db,
        rt.publisher,
        actor,
        path_id(request),
        form.participant1_score.data,
        form.participant2_score.data,
        organizer_only=True,
    )
    message = f"Match {match.id}: {match.participant1_score}\u2013{match.participant2_score}."
    return message, manage_url(match.tournament_id, f"match-{match.id}")


async def complete(request: Request, rt: Any, actor: Actor, form: Any) -> tuple[str, str]:
    match = await matches.complete_match(rt.db, rt.publisher, actor, path_id(request), form.winner_id.data)
    names = await users.usernames(rt.db, [match.winner_id])
    message = f"Match {match.id} completed: {names.get(match.winner_id, 'the winner')} advances."
    return message, manage_url(match.tournament_id, f"match-{match.id}")


async def cancel(request: Request, rt: Any, actor: Actor, form: Any) -> tuple[str, str]:
    match = await matches.cancel_match(rt.db, rt.publisher, actor, path_id(request))
    return f"Match {match.id} cancelled.", manage_url(match.tournament_id, f"match-{match.id}")


async def resolve(request: Request, rt: Any, actor: Actor, form: Any) -> tuple[str, str]:
    score1, score2 = form.participant1_score.data, form.participant2_score.data
    dispute = await disputes.resolve_dispute(
        rt.db, rt.publisher, actor, path_id(request), form.resolution.data, score1, score2
    )
    match = await matches.reload(rt.db, dispute.match_id)
    if score1 is None:
        return f"Dispute {dispute.id} resolved.", manage_url(match.tournament_id, "disputes")
    message = f"Dispute {dispute.id} resolved: match {match.id} completed {score1}\u2013{score2}."
    return message, manage_url(match.tournament_id, f"match-{match.id}")


async def add_webhook(request: Request, rt: Any, actor: Actor, form: Any) -> tuple[str, str]:
    tournament_id = path_id(request)
    listed = [part.strip() for part in (form.events.data or "").split(",") if part.strip()]
    created = await webhooks.create_webhook(
        rt.db, actor, tournament_id, form.url.data.strip(), listed or None, rt.settings.webhook_allow_private
    )
    # The secret is shown this once: the receiver needs it to check signatures.
    message = f"Webhook {created['id']} added. Its signing secret (shown once, keep it): {created['secret']}"
    return message, manage_url(tournament_id, "webhooks")


async def remove_webhook(request: Request, rt: Any, actor: Actor, form: Any) -> tuple[str, str]:
    tournament_id = await of_webhook(request, rt)
    await webhooks.delete_webhook(rt.db, actor, path_id(request))
    return "Webhook removed.", manage_url(tournament_id or 0, "webhooks")


async def of_webhook(request: Request, rt: Any) -> int | None:
    query = sa.select(webhooks_table.c.tournament_id).where(webhooks_table.c.id == path_id(request))
    value = await rt.db.fetch_val(query)
    return None if value is None else int(value)


def routes() -> list[BaseRoute]:
    post = ["POST"]
    return [
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=post),
        Route("/logout", logout, methods=post),
        Route("/organize/", index, methods=["GET"]),
        Route("/organize/tournaments", create_tournament, methods=post),
        Route(f"/organize/tournaments/{ID}", manage, methods=["GET"]),
        Route(
            f"/organize/tournaments/{ID}/players",
            action(forms.RegisterForm, register_existing, in_tournament),
            methods=post,
        ),
        Route(
            f"/organize/tournaments/{ID}/players/new",
            action(forms.NewPlayerForm, register_new, in_tournament),
            methods=post,
        ),
        Route(f"/organize/tournaments/{ID}/seed", action(forms.CSRFForm, seed, in_tournament), methods=post),
        Route(f"/organize/matches/{ID}/start", action(forms.CSRFForm, start, of_match), methods=post),
        Route(f"/organize/matches/{ID}/score", action(forms.ScoreForm, score, of_match), methods=post),
        Route(f"/organize/matches/{ID}/complete", action(forms.CompleteForm, complete, of_match), methods=post),
        Route(f"/organize/matches/{ID}/cancel", action(forms.CSRFForm, cancel, of_match), methods=post),
        Route(f"/organize/disputes/{ID}/resolve", action(forms.ResolveForm, resolve, of_dispute), methods=post),
        Route(
            f"/organize/tournaments/{ID}/webhooks", action(forms.WebhookForm, add_webhook, in_tournament), methods=post
        ),
        Route(f"/organize/webhooks/{ID}/remove", action(forms.CSRFForm, remove_webhook, of_webhook), methods=post),
    ]
