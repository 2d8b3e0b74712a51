"""The organizer session: a signed cookie (Starlette's SessionMiddleware) holding the user id and
the user's session epoch at login, the CSRF secret of WTForms' SessionCSRF and the flash messages
of the next page.

A signed cookie cannot be taken back, so the epoch is what ends it: logout and a password change
bump the user's `session_epoch` in the database, and a cookie carrying an older one is refused on
every instance (checked in the same query that loads the user)."""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from matchcast.services import users
from matchcast.services.actors import Actor
from matchcast.settings import Settings

COOKIE = "matchcast_session"
MAX_AGE = 7 * 86400
USER_KEY = "user_id"
EPOCH_KEY = "epoch"
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
        user_id, epoch = request.session.get(USER_KEY), request.session.get(EPOCH_KEY)
        db = request.app.state.realtime.db
        actor = await users.session_actor(db, user_id, epoch) if isinstance(user_id, int) else None
        if actor is None and user_id is not None:
            request.session.clear()  # the user was deleted or logged out since: the session is over
        request.state.viewer = actor
    viewer: Actor | None = request.state.viewer
    return viewer


def log_in(request: Request, actor: Actor, epoch: int) -> None:
    request.session.clear()  # a fresh session: nothing chosen before login carries over
    request.session[USER_KEY] = actor.user_id
    request.session[EPOCH_KEY] = epoch
    request.state.viewer = actor


async def log_out(request: Request) -> None:
    """End this session and every other one of the user (copies of the cookie included)."""
    actor = await current_actor(request)
    if actor is not None:
        await users.end_sessions(request.app.state.realtime.db, actor.user_id)
    request.session.clear()
    request.state.viewer = None


def flash(request: Request, message: str, category: str = "success") -> None:
    """Add a message for the next page shown; every message waiting is shown, in order.

    The list is assigned anew, never appended to in place: Starlette's Session writes the cookie
    only when one of its keys is set, so an in-place append to the waiting list was lost.
    """
    request.session[FLASH_KEY] = [*request.session.get(FLASH_KEY, []), [category, message]]


def pop_flashes(request: Request) -> list[tuple[str, str]]:
    if "session" not in request.scope or FLASH_KEY not in request.session:
        return []
    return [(category, message) for category, message in request.session.pop(FLASH_KEY)]
