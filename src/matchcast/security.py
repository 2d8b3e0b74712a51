"""Access tokens (python-jose, HS256 only) and password hashing (argon2).

The command line, `POST /api/token`, the guest tokens of the spectator pages and the WebSocket
endpoints all go through these functions, so a token is minted by the code that verifies it.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from functools import cache, lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from jose import jwk, jws, jwt
from jose.backends.base import Key
from jose.exceptions import JOSEError

ALGORITHM = "HS256"
GUEST_PREFIX = "guest:"
_hasher = PasswordHasher()


@cache
def _dummy_hash() -> str:
    """Verified against when the username does not exist, so a wrong name costs as long as a wrong
    password and response times do not reveal which usernames exist. Made on first use: hashing at
    import would add ~0.1 s to every command-line call."""
    return _hasher.hash("matchcast-dummy-password")


class TokenError(Exception):
    """The token is missing, malformed, forged or expired; the message says which."""


@dataclass(frozen=True)
class TokenSubject:
    user_id: int | None  # None for a guest spectator
    guest: str | None = None
    # The user's session epoch when the token was minted: logout and a password change bump the
    # user's, which revokes the token (services.actors.load_actor). 0 in tokens from before epochs.
    epoch: int = 0


EPOCH_CLAIM = "sep"


def create_token(secret: str, subject: str, ttl_seconds: int, **extra: int) -> str:
    now = int(time.time())
    claims = {"sub": subject, "iat": now, "exp": now + ttl_seconds, **extra}
    return str(jwt.encode(claims, secret, algorithm=ALGORITHM))


def create_user_token(secret: str, user_id: int, ttl_seconds: int, epoch: int = 0) -> str:
    """A user's token, valid until it expires or the user's session epoch moves past `epoch`."""
    return create_token(secret, str(user_id), ttl_seconds, **{EPOCH_CLAIM: epoch})


def create_guest_token(secret: str, ttl_seconds: int) -> str:
    return create_token(secret, GUEST_PREFIX + secrets.token_hex(8), ttl_seconds)


def verify_token(secret: str, token: str | None) -> TokenSubject:
    if not token:
        raise TokenError("no token: pass ?token=<JWT> or Authorization: Bearer <JWT>")
    try:
        # The signature and its algorithm are python-jose's to check; the claims, few and all
        # ours, are checked below: jwt.decode's generic claim checks and its key set-up on each
        # call were two thirds of a token's CPU, itself a tenth of a WebSocket join's.
        claims = json.loads(jws.verify(token, _hmac_key(secret), [ALGORITHM]))
    except (JOSEError, AttributeError, TypeError, ValueError):
        # python-jose raises JWKError (not a JWTError) for some forged headers: catch the base.
        raise TokenError(INVALID) from None
    now = time.time()
    if not isinstance(claims, dict) or not _whole(claims.get("exp")) or not _whole(claims.get("iat", 0)):
        raise TokenError(INVALID)
    if claims["exp"] < int(now):
        raise TokenError("token expired: get a new one from POST /api/token")
    if _whole(claims.get("nbf")) and claims["nbf"] > now:
        raise TokenError(INVALID)  # not valid yet (this server mints none such)
    subject = parse_subject(claims.get("sub"))
    epoch = claims.get(EPOCH_CLAIM, 0)
    if not _whole(epoch) or not 0 <= epoch < 1 << 62:
        raise TokenError(INVALID)
    return TokenSubject(subject.user_id, subject.guest, epoch)


INVALID = "token is not valid: it must be an HS256 JWT signed by this server"


@lru_cache(maxsize=8)
def _hmac_key(secret: str) -> Key:
    """The secret as python-jose's key object, made once (a few microseconds each time otherwise)."""
    return jwk.construct(secret, ALGORITHM)


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_subject(sub: object) -> TokenSubject:
    if isinstance(sub, str):
        if sub.startswith(GUEST_PREFIX) and len(sub) > len(GUEST_PREFIX):
            return TokenSubject(user_id=None, guest=sub[len(GUEST_PREFIX) :])
        if sub.isascii() and sub.isdigit() and len(sub) <= 18 and int(sub) > 0:
            return TokenSubject(user_id=int(sub))
    raise TokenError('token subject must be a user id ("12") or "guest:<name>"')


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False
