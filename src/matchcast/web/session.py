"""The organizer session: a signed cookie (Starlette's SessionMiddleware) holding the user id,
the CSRF secret of WTForms' SessionCSRF and the flash messages of the next page."""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from matchcast.services.actors import Actor, load_actor
from matchcast.settings import Settings

COOKIE = "matchcast_session"
MAX_AGE = 7 * 86400
USER_KEY = "user_id"
FLASH_KEY = "flashes"


class PageSessions(SessionMiddleware):
    """Sessions for HTTP requests only.

    WebSockets authenticate with a token and never read the session, yet SessionMiddleware would
    decode the cookie of every socket and run each frame sent through a wrapper of its own.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def middleware(settings: Settings) -> list[Middleware]:
    # The cookie is signed, not encrypted: it holds only ids and random values, never a secret
    # the user may not see. SameSite=lax keeps it off cross-site POSTs; CSRF tokens do the rest.
    return [
        Middleware(
            PageSessions,
            secret_key=settings.session_secret,
            session_cookie=COOKIE,
            max_age=MAX_AGE,
            same_site="lax",
            https_only=settings.session_cookie_secure,
        )
    ]


async def current_actor(request: Request) -> Actor | None:
    """The logged-in user (also left on `request.state.viewer` for the templates), else None."""
    if not hasattr(request.state, "viewer"):
        user_id = request.session.get(USER_KEY)
        actor = await load_actor(request.app.state.realtime.db, user_id) if isinstance(user_id, int) else None
        if actor is None and user_id is not None:
            request.session.pop(USER_KEY, None)  # the user was deleted: the session is over
        request.state.viewer = actor
    viewer: Actor | None = request.state.viewer
    return viewer


def log_in(request: Request, actor: Actor) -> None:
    request.session.clear()  # a fresh session: nothing chosen before login carries over
    request.session[USER_KEY] = actor.user_id
    request.state.viewer = actor


def log_out(request: Request) -> None:
    request.session.clear()
    request.state.viewer = None


def flash(request: Request, message: str, category: str = "success") -> None:
    request.session.setdefault(FLASH_KEY, []).append([category, message])


def pop_flashes(request: Request) -> list[tuple[str, str]]:
    if "session" not in request.scope or FLASH_KEY not in request.session:
        return []
    return [(category, message) for category, message in request.session.pop(FLASH_KEY)]
