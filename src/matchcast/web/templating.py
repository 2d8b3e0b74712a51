"""Jinja2 templates and static files (top-level `templates/` and `static/` of the repository)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from matchcast import errors
from matchcast.web.forms import csrf_token
from matchcast.web.session import pop_flashes

STATUS = errors.HTTP_STATUS
# Pages carry a token and session-bound forms: never cache them. The script is a file of ours and
# user data is only ever text, so the policy can forbid inline scripts and foreign origins.
HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def find_directory(name: str) -> Path:
    """`name` at the repository root (found from this package), else in the working directory."""
    candidates = [Path(__file__).resolve().parents[3] / name, Path.cwd() / name]
    return next((path for path in candidates if path.is_dir()), candidates[-1])


TEMPLATES_DIR = find_directory("templates")
STATIC_DIR = find_directory("static")
templates = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
)


def render(request: Request, name: str, context: dict[str, Any] | None = None, status_code: int = 200) -> Response:
    context = {"viewer": getattr(request.state, "viewer", None), **(context or {})}
    context.setdefault("error", None)
    context["flashes"] = pop_flashes(request)
    context["csrf_token"] = lambda: once_per_request(request)
    return templates.TemplateResponse(request, name, context, status_code=status_code, headers=HEADERS)


def once_per_request(request: Request) -> str:
    if not hasattr(request.state, "csrf_token"):
        request.state.csrf_token = csrf_token(request)
    return request.state.csrf_token


def error_page(request: Request, error: errors.DomainError) -> Response:
    return render(request, "error.html", {"error": error.message}, STATUS.get(error.code, 400))
