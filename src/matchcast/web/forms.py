"""The organizer forms (WTForms), each protected by a session-bound CSRF token.

WTForms' SessionCSRF keeps a random value in the session and puts an expiring HMAC of it in
every form; a token from another session, or none, fails. Fields only parse; the services
validate what the values mean, with the same messages as the JSON API.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from typing import Any, TypeVar, cast

from starlette.requests import Request
from wtforms import BooleanField, Form, IntegerField, PasswordField, StringField
from wtforms.csrf.session import SessionCSRF
from wtforms.validators import InputRequired, Optional, ValidationError

CSRF_TIME_LIMIT = timedelta(hours=12)  # an organizer's page may stay open through an event day
F = TypeVar("F", bound=Form)


class ConstantTimeSessionCSRF(SessionCSRF):
    """SessionCSRF, but the HMAC is compared in constant time."""

    def validate_csrf_token(self, form: Form, field: Any) -> None:
        expires, _, given = (field.data or "").partition("##")
        if not given:
            raise ValidationError("CSRF token missing.")
        expected = hmac.new(self.form_meta.csrf_secret, (self.session["csrf"] + expires).encode(), hashlib.sha1)
        if not hmac.compare_digest(expected.hexdigest(), given):
            raise ValidationError("CSRF failed.")
        if self.now().strftime(self.TIME_FORMAT) > expires:
            raise ValidationError("CSRF token expired: reload the page and send the form again.")


class CSRFForm(Form):
    """A form with only the CSRF token: the buttons (seed, start, cancel, log out)."""

    class Meta:
        csrf = True
        csrf_class = ConstantTimeSessionCSRF
        csrf_time_limit = CSRF_TIME_LIMIT


class LoginForm(CSRFForm):
    username = StringField("Username", [InputRequired("enter your username")])
    password = PasswordField("Password", [InputRequired("enter your password")])


class TournamentForm(CSRFForm):
    name = StringField("Name", [InputRequired("give the tournament a name")])
    public = BooleanField("Listed publicly", default=True)
    best_of = IntegerField("Best of", [Optional()], default=1)  # the service says which are allowed
    format = StringField("Format", [Optional()], default="single_elimination")
    rounds = IntegerField("Swiss rounds", [Optional()])  # empty: the format's default


class RegisterForm(CSRFForm):
    username = StringField("Username", [InputRequired("enter the username of the player to register")])


class NewPlayerForm(CSRFForm):
    username = StringField("Username", [InputRequired("enter a username for the new player")])
    password = PasswordField("Password", [InputRequired("enter a password for the new player")])


class ScoreForm(CSRFForm):
    participant1_score = IntegerField("Player 1", [InputRequired("enter both scores")])
    participant2_score = IntegerField("Player 2", [InputRequired("enter both scores")])


class CompleteForm(CSRFForm):
    winner_id = IntegerField("Winner", [Optional()])  # empty: the scores decide


class WebhookForm(CSRFForm):
    url = StringField("URL", [InputRequired("enter the URL to POST the events to")])
    # Event types, comma-separated; empty: every event of the tournament.
    events = StringField("Events", [Optional()])


class ResolveForm(CSRFForm):
    resolution = StringField("Resolution", [InputRequired("describe how the dispute was resolved")])
    # Both or neither (the service says so): with both, the match completes with this result.
    participant1_score = IntegerField("Player 1 score", [Optional()])
    participant2_score = IntegerField("Player 2 score", [Optional()])


def csrf_secret(request: Request) -> bytes:
    secret = request.app.state.realtime.settings.session_secret.encode()
    return hashlib.sha256(b"matchcast-csrf:" + secret).digest()


def bind(form_class: type[F], request: Request, formdata: Any = None) -> F:
    meta = {"csrf_secret": csrf_secret(request), "csrf_context": request.session}
    return cast(F, form_class(formdata, meta=meta))


def csrf_token(request: Request) -> str:
    return str(bind(CSRFForm, request).csrf_token.current_token)


def csrf_failed(form: Form) -> bool:
    return bool(form.csrf_token.errors)


def first_error(form: Form) -> str:
    for field in form:
        if field.errors:
            return f"{field.label.text}: {field.errors[0]}"
    return "the form is not valid"
