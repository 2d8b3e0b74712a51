"""Jinja2 templates and static files: the packages `matchcast.templates` and `matchcast.static`.

In the repository they are the top-level `templates/` and `static/`; the build maps them into the
package (pyproject.toml, [tool.setuptools.package-dir]), so a wheel or an sdist installs them as
`matchcast/templates/` and `matchcast/static/` beside the code. Never looked up in the working directory.
"""

from __future__ import annotations

import importlib.util
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


def package_directory(name: str) -> Path:
    """The directory of the package `matchcast.<name>` (data only, no `__init__.py`).

    Installed from a wheel or an sdist, it is `matchcast/<name>/` inside the package. An editable
    install (`pip install -e`, as the Makefile does) maps `matchcast.<name>` to the repository's
    `<name>/`, but setuptools' editable finder cannot import a package without `__init__.py` under a
    regular package: there it is where that mapping puts it, `<name>/` beside the `src/` this
    package was imported from (also a copy of `src/` on PYTHONPATH, as docs/performance.md does).
    """
    spec = importlib.util.find_spec(f"matchcast.{name}")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    package = Path(__file__).resolve().parents[1]
    mapped = package.parent.parent / name
    if package.parent.name == "src" and mapped.is_dir():
        return mapped
    raise RuntimeError(
        f"matchcast.{name} is missing: neither {package / name} (an installed package) nor {mapped} "
        "(a source checkout) exists; reinstall matchcast (pip install . or pip install -e .)"
    )


TEMPLATES_DIR = package_directory("templates")
STATIC_DIR = package_directory("static")
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
    # Taken from the session only by a page that shows them (base.html), so a page without
    # them (the overlay) leaves them waiting for the next one.
    context["take_flashes"] = lambda: pop_flashes(request)
    context["csrf_token"] = lambda: once_per_request(request)
    return templates.TemplateResponse(request, name, context, status_code=status_code, headers=HEADERS)


def once_per_request(request: Request) -> str:
    if not hasattr(request.state, "csrf_token"):
        request.state.csrf_token = csrf_token(request)
    token: str = request.state.csrf_token
    return token


def error_page(request: Request, error: errors.DomainError) -> Response:
    return render(request, "error.html", {"error": error.message}, STATUS.get(error.code, 400))
