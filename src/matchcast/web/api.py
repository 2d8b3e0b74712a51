"""The organizer JSON API, snapshots, tokens, health and metrics (shared/spec/operations.md)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from matchcast import errors
from matchcast.ids import ID, path_id
from matchcast.protocol import is_int
from matchcast.security import TokenError, create_user_token, verify_token
from matchcast.services import disputes, matches, snapshots, webhooks
from matchcast.services.actors import REVOKED, Actor, load_actor, may_watch_tournament
from matchcast.web import throttle
from matchcast.web.throttle import too_many

STATUS = errors.HTTP_STATUS
MAX_BODY = 64 * 1024
TOKEN_TTL = 3600
# Every answer of ours is JSON or plain text: a browser must never sniff it into HTML or script.
NO_SNIFF = {"X-Content-Type-Options": "nosniff"}
# A bearer token must not be kept by the browser's or a proxy's cache (RFC 6749 section 5.1).
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def error_response(code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}},
        status_code=STATUS.get(code, 400),
        headers={**NO_SNIFF, **(headers or {})},
    )


async def json_body(request: Request) -> dict[str, Any]:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise errors.invalid(f"request body is larger than {MAX_BODY} bytes")
    try:
        data = json.loads(body or b"{}")
    except (ValueError, RecursionError):
        raise errors.invalid("request body must be a JSON object") from None
    if not isinstance(data, dict):
        raise errors.invalid("request body must be a JSON object")
    return data


async def bearer_actor(request: Request) -> Actor:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise errors.DomainError(errors.UNAUTHORIZED, "send Authorization: Bearer <token> (from POST /api/token)")
    try:
        subject = verify_token(request.app.state.realtime.settings.jwt_secret, token.strip())
    except TokenError as exc:
        raise errors.DomainError(errors.UNAUTHORIZED, str(exc)) from None
    db = request.app.state.realtime.db
    actor = await load_actor(db, subject.user_id, subject.epoch) if subject.user_id else None
    if actor is None:
        raise errors.DomainError(errors.UNAUTHORIZED, REVOKED if subject.user_id else "a guest token cannot act")
    return actor


Handler = Callable[[Request], Awaitable[Any]]


def api(handler: Handler, headers: dict[str, str] | None = None) -> Callable[[Request], Awaitable[Response]]:
    """Run a handler, turning DomainError into the contract's error JSON; every answer, refusals
    included, carries NO_SNIFF and `headers`."""
    extra = {**NO_SNIFF, **(headers or {})}

    async def endpoint(request: Request) -> Response:
        try:
            result = await handler(request)
        except errors.DomainError as exc:
            result = error_response(exc.code, exc.message)
        response = result if isinstance(result, Response) else JSONResponse(result)
        response.headers.update(extra)
        return response

    return endpoint


async def token(request: Request) -> Any:
    body = await json_body(request)
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise errors.invalid('send {"username": "...", "password": "..."}')
    rt = request.app.state.realtime
    user, wait = await throttle.authenticate(request, username, password)
    if wait:
        return error_response(errors.RATE_LIMITED, too_many(wait), {"Retry-After": str(wait)})
    if user is None:
        raise errors.DomainError(errors.UNAUTHORIZED, "wrong username or password")
    return {
        "access_token": create_user_token(rt.settings.jwt_secret, user.id, TOKEN_TTL, user.session_epoch),
        "token_type": "bearer",
        "expires_in": TOKEN_TTL,
    }


async def tournament_snapshot(request: Request) -> Any:
    tournament_id = path_id(request)
    await require_watchable(request, tournament_id)
    return await snapshots.tournament_snapshot(request.app.state.realtime.db, tournament_id)


async def match_snapshot(request: Request) -> Any:
    db = request.app.state.realtime.db
    state = await snapshots.match_snapshot(db, path_id(request))
    await require_watchable(request, state["tournament_id"])
    return state


async def require_watchable(request: Request, tournament_id: int) -> None:
    """A private tournament's snapshots answer 404 unless the Bearer token is its organizer's,
    staff's or a player's (no token: a guest)."""
    db = request.app.state.realtime.db
    actor = await bearer_actor(request) if "authorization" in request.headers else None
    if not await may_watch_tournament(db, actor, tournament_id):
        raise errors.not_found(
            f"tournament {tournament_id} does not exist (or is private: send its organizer's or a player's token)"
        )


async def start(request: Request) -> Any:
    rt = request.app.state.realtime
    match_id = path_id(request)
    actor = await bearer_actor(request)
    await matches.start_match(rt.db, rt.publisher, actor, match_id)
    return await snapshots.match_snapshot(rt.db, match_id)


async def score(request: Request) -> Any:
    rt = request.app.state.realtime
    match_id = path_id(request)
    actor = await bearer_actor(request)
    body = await json_body(request)
    await matches.update_score(
        rt.db,
        rt.publisher,
        actor,
        match_id,
        body.get("participant1_score"),
        body.get("participant2_score"),
        organizer_only=True,
    )
    return await snapshots.match_snapshot(rt.db, match_id)


async def complete(request: Request) -> Any:
    rt = request.app.state.realtime
    match_id = path_id(request)
    actor = await bearer_actor(request)
    body = await json_body(request)
    winner = body.get("winner_id")
    if winner is not None and not is_int(winner):
        raise errors.invalid("winner_id must be an integer user id")
    await matches.complete_match(rt.db, rt.publisher, actor, match_id, winner)
    return await snapshots.match_snapshot(rt.db, match_id)


async def resolve(request: Request) -> Any:
    rt = request.app.state.realtime
    dispute_id = path_id(request)
    actor = await bearer_actor(request)
    body = await json_body(request)
    dispute = await disputes.resolve_dispute(
        rt.db,
        rt.publisher,
        actor,
        dispute_id,
        body.get("resolution"),
        body.get("participant1_score"),
        body.get("participant2_score"),
    )
    return await snapshots.match_snapshot(rt.db, dispute.match_id)


async def create_webhook(request: Request) -> Any:
    rt = request.app.state.realtime
    tournament_id = path_id(request)
    actor = await bearer_actor(request)
    body = await json_body(request)
    allow_private = rt.settings.webhook_allow_private
    created = await webhooks.create_webhook(
        rt.db, actor, tournament_id, body.get("url"), body.get("events"), allow_private
    )
    return JSONResponse(created, status_code=201)


async def list_webhooks(request: Request) -> Any:
    rt = request.app.state.realtime
    tournament_id = path_id(request)
    return await webhooks.list_webhooks(rt.db, await bearer_actor(request), tournament_id)


async def delete_webhook(request: Request) -> Any:
    rt = request.app.state.realtime
    webhook_id = path_id(request)
    await webhooks.delete_webhook(rt.db, await bearer_actor(request), webhook_id)
    return Response(status_code=204)


async def healthz(request: Request) -> Response:
    rt = request.app.state.realtime
    report = {"status": "ok", "database": "ok", "broadcast": rt.hub.broker.health()}
    try:
        await rt.db.fetch_val("SELECT 1")
    except Exception as exc:
        report["database"] = f"unavailable: {type(exc).__name__}: {exc}"[:200]
    healthy = report["database"] == "ok" and report["broadcast"] == "ok"
    if not healthy:
        report["status"] = "degraded"
    return JSONResponse(report, status_code=200 if healthy else 503, headers=NO_SNIFF)


async def metrics(request: Request) -> Response:
    body = request.app.state.realtime.metrics.render()
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8", headers=NO_SNIFF)


routes = [
    Route("/api/token", api(token, NO_STORE), methods=["POST"]),
    Route(f"/api/tournaments/{ID}", api(tournament_snapshot), methods=["GET"]),
    Route(f"/api/matches/{ID}", api(match_snapshot), methods=["GET"]),
    Route(f"/api/matches/{ID}/start", api(start), methods=["POST"]),
    Route(f"/api/matches/{ID}/score", api(score), methods=["POST"]),
    Route(f"/api/matches/{ID}/complete", api(complete), methods=["POST"]),
    Route(f"/api/disputes/{ID}/resolve", api(resolve), methods=["POST"]),
    Route(f"/api/tournaments/{ID}/webhooks", api(create_webhook), methods=["POST"]),
    Route(f"/api/tournaments/{ID}/webhooks", api(list_webhooks), methods=["GET"]),
    Route(f"/api/webhooks/{ID}", api(delete_webhook), methods=["DELETE"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
