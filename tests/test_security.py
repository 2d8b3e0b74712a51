import base64
import json
import time
from typing import Any

import pytest
from jose import jws, jwt

from matchcast.security import (
    TokenError,
    TokenSubject,
    create_guest_token,
    create_token,
    create_user_token,
    hash_password,
    parse_subject,
    verify_password,
    verify_token,
)

SECRET = "a-test-secret-of-more-than-32-bytes!"


def b64(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "12", "iat": now, "exp": now + 60} | overrides


def test_user_token_round_trip() -> None:
    token = create_user_token(SECRET, 12, 60)
    assert verify_token(SECRET, token) == TokenSubject(user_id=12)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    decoded = jwt.get_unverified_claims(token)
    assert decoded["exp"] - decoded["iat"] == 60


def test_guest_token_round_trip() -> None:
    subject = verify_token(SECRET, create_guest_token(SECRET, 60))
    assert subject.user_id is None and subject.guest and len(subject.guest) == 16


def test_expired_token() -> None:
    with pytest.raises(TokenError, match="expired"):
        verify_token(SECRET, create_token(SECRET, "12", -10))
    with pytest.raises(TokenError, match="expired"):
        verify_token(SECRET, create_token(SECRET, "12", -1))


def test_a_token_is_valid_through_its_expiry_second_and_carries_its_epoch() -> None:
    now = int(time.time())
    token = jwt.encode(claims(exp=now + 1, nbf=now, sep=3), SECRET, algorithm="HS256")
    assert verify_token(SECRET, token) == TokenSubject(user_id=12, epoch=3)


def test_wrong_secret() -> None:
    with pytest.raises(TokenError):
        verify_token(SECRET, create_user_token("another-secret-of-32-bytes-or-more", 12, 60))


@pytest.mark.parametrize(
    "token",
    [
        jwt.encode(claims(), SECRET, algorithm="HS512"),
        jwt.encode(claims(), SECRET, algorithm="HS384"),
        # alg none: a header and claims with no signature at all
        b64({"alg": "none", "typ": "JWT"}) + "." + b64(claims()) + ".",
        # an RS256 header over an HMAC-signed body: python-jose raises JWKError for these
        b64({"alg": "RS256", "typ": "JWT"}) + "." + b64(claims()) + "." + "c2lnbmF0dXJl",
        "garbage",
        "a.b.c",
        "",
        None,
        jwt.encode({"sub": "12", "iat": int(time.time())}, SECRET, algorithm="HS256"),  # no exp
        jwt.encode({"exp": int(time.time()) + 60}, SECRET, algorithm="HS256"),  # no sub
        jwt.encode(claims(sub=12), SECRET, algorithm="HS256"),  # sub not a string
        jwt.encode(claims(sub="abc"), SECRET, algorithm="HS256"),
        jwt.encode(claims(sub="0"), SECRET, algorithm="HS256"),
        jwt.encode(claims(sub="-1"), SECRET, algorithm="HS256"),
        jwt.encode(claims(sub="guest:"), SECRET, algorithm="HS256"),
        jwt.encode(claims(sub="1.5"), SECRET, algorithm="HS256"),
        jwt.encode(claims(sub=" 12"), SECRET, algorithm="HS256"),
        jwt.encode(claims(sub="\u0661\u0662"), SECRET, algorithm="HS256"),  # Arabic-Indic digits
        jwt.encode(claims(exp="soon"), SECRET, algorithm="HS256"),
        jwt.encode(claims(exp=True), SECRET, algorithm="HS256"),
        jwt.encode(claims(iat="now"), SECRET, algorithm="HS256"),
        jwt.encode(claims(nbf=int(time.time()) + 600), SECRET, algorithm="HS256"),  # not valid yet
        jwt.encode(claims(sep=-1), SECRET, algorithm="HS256"),
        jwt.encode(claims(sep="1"), SECRET, algorithm="HS256"),
        b64({"alg": "HS256", "typ": "JWT"}) + "." + b64(claims())[:-2] + ".c2lnbmF0dXJl",  # body changed
        jws.sign(b"[1, 2]", SECRET, algorithm="HS256"),  # signed, but no claims object
        jws.sign(b"not json", SECRET, algorithm="HS256"),
    ],
    ids=[
        "hs512",
        "hs384",
        "alg-none",
        "rs256-header",
        "garbage",
        "three-dots",
        "empty",
        "none",
        "no-exp",
        "no-sub",
        "int-sub",
        "sub-abc",
        "sub-0",
        "sub-minus-1",
        "sub-guest-empty",
        "sub-fraction",
        "sub-space",
        "sub-unicode-digits",
        "exp-text",
        "exp-bool",
        "iat-text",
        "nbf-future",
        "epoch-negative",
        "epoch-text",
        "body-changed",
        "claims-a-list",
        "claims-not-json",
    ],
)
def test_invalid_tokens_are_refused(token: str | None) -> None:
    with pytest.raises(TokenError):
        verify_token(SECRET, token)


@pytest.mark.parametrize(
    ("sub", "expected"), [("1", TokenSubject(1)), ("007", TokenSubject(7)), ("guest:abc", TokenSubject(None, "abc"))]
)
def test_parse_subject(sub: str, expected: TokenSubject) -> None:
    assert parse_subject(sub) == expected


@pytest.mark.parametrize("sub", ["abc", "0", "-1", "guest:", "", None, 12, "9" * 19])
def test_parse_subject_refuses(sub: object) -> None:
    with pytest.raises(TokenError):
        parse_subject(sub)


def test_password_hashing() -> None:
    hashed = hash_password("hunter2-but-longer")
    assert hashed != "hunter2-but-longer" and hashed.startswith("$argon2")
    assert verify_password(hashed, "hunter2-but-longer") is True
    assert verify_password(hashed, "hunter3-but-longer") is False
    assert verify_password(None, "hunter2-but-longer") is False
    assert verify_password("not-a-hash", "hunter2-but-longer") is False
    assert hash_password("same-password") != hash_password("same-password")  # salted
