"""Settings: every variable of the operations contract, read once and validated.

`Settings.from_env()` is called by the command line; the result is frozen and passed to
`create_app(settings)`, so two configurations can run side by side in one test process.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from dotenv import dotenv_values

log = logging.getLogger("matchcast.settings")

DEV_JWT_SECRET = "matchcast-development-secret-do-not-use-in-production"
PREFIX = "MATCHCAST_"
MAX_CONFIRM_TIMEOUT = 30 * 86400


class SettingsError(ValueError):
    """A bad configuration value; the message is the one line start-up prints."""


@dataclass(frozen=True)
class RateLimit:
    frames: int
    per_seconds: float

    def __str__(self) -> str:
        return f"{self.frames}/{self.per_seconds:g}s"


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///./matchcast.db"
    broadcast_url: str = "memory://"
    jwt_secret: str = DEV_JWT_SECRET
    session_secret: str = ""
    allowed_origins: tuple[str, ...] = ()
    heartbeat_interval: float = 25.0
    heartbeat_timeout: float = 50.0
    score_batch_window_ms: int = 100
    rate_limit: RateLimit = RateLimit(20, 1.0)
    max_message_bytes: int = 65536
    max_pending: int = 1024
    # Beyond the contract (issue 16): per user and per address on one instance.
    max_sockets_per_user: int = 20  # WebSocket and SSE connections of one user (a guest token: its own)
    max_sockets_per_address: int = 200  # ... from one client address, every user and guest together
    user_rate_limit: RateLimit = RateLimit(40, 1.0)  # frames of one user (guests: one address), all sockets
    event_retention: int = 86400
    confirm_timeout: float = 600.0  # seconds a reported result waits for the opponent
    viewers_interval_ms: int = 2000  # how often a room's viewer count may be sent; 0: counting off
    # Not in the contract's table: knobs the tests and the benchmarks turn.
    gap_fill_wait_ms: int = 200
    max_replay_events: int = 5000
    guest_token_ttl: int = 3600
    # How long the deadline timer may sleep before looking for reports other instances made.
    deadline_max_sleep: float = 30.0
    # Failed logins (form and POST /api/token) per client address and window.
    login_rate_limit: RateLimit = RateLimit(10, 60.0)
    # Mark the session cookie Secure (sent over HTTPS only): set it when TLS ends in front of us.
    session_cookie_secure: bool = False
    # Webhooks may call loopback and private addresses (tests, one-host set-ups); never by default.
    webhook_allow_private: bool = False
    webhook_timeout: float = 10.0  # seconds a receiver has to answer (the contract's 10)
    webhook_max_sleep: float = 2.0  # how late another instance's events may be noticed for webhooks
    # Prefix of broker channel names, so deployments (or test runs) sharing one Redis or
    # PostgreSQL never hear each other's rooms.
    channel_prefix: str = ""
    # Database connections one process uses at most; requests past it wait for one to come back.
    database_pool_size: int = 10
    # Seconds a client has to send a request's whole head (request line and headers); then 408.
    request_head_timeout: float = 10.0
    # Addresses (or networks) of the proxies whose X-Forwarded-For/-Proto are believed; empty:
    # nobody's, so a client cannot choose the address the login throttle counts.
    forwarded_allow_ips: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.session_secret:
            derived = hashlib.sha256(b"matchcast-session:" + self.jwt_secret.encode()).hexdigest()
            object.__setattr__(self, "session_secret", derived)

    @property
    def using_dev_secret(self) -> bool:
        return self.jwt_secret == DEV_JWT_SECRET

    @property
    def shared_broadcast(self) -> bool:
        """True when several processes can share this broadcast (redis or postgres)."""
        return not self.broadcast_url.startswith("memory://")

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, env_file: str = ".env") -> Settings:
        values = dict(_read_env_file(Path(env_file)))
        values.update(os.environ if environ is None else environ)

        def get(name: str) -> str:
            return values.get(PREFIX + name, "").strip()

        kwargs: dict[str, object] = {}
        for name, parse in _PARSERS.items():
            raw = get(name)
            if raw:
                kwargs[name.lower()] = parse(PREFIX + name, raw)
        settings = cls(**kwargs)  # type: ignore[arg-type]
        if settings.heartbeat_timeout <= settings.heartbeat_interval:
            raise SettingsError(
                "MATCHCAST_HEARTBEAT_TIMEOUT must be greater than MATCHCAST_HEARTBEAT_INTERVAL "
                f"(got {settings.heartbeat_timeout:g} <= {settings.heartbeat_interval:g})"
            )
        if settings.confirm_timeout > MAX_CONFIRM_TIMEOUT:
            raise SettingsError(
                f"MATCHCAST_CONFIRM_TIMEOUT must be at most {MAX_CONFIRM_TIMEOUT} seconds (30 days), "
                f"got {settings.confirm_timeout:g}"
            )
        if values.get("FORWARDED_ALLOW_IPS") and not settings.forwarded_allow_ips:
            log.warning(
                "FORWARDED_ALLOW_IPS is ignored: matchcast passes its own to uvicorn. "
                "Set MATCHCAST_FORWARDED_ALLOW_IPS to your proxy's address instead"
            )
        if settings.using_dev_secret:
            log.warning(
                "MATCHCAST_JWT_SECRET is not set: using the public development secret. "
                "Anyone can forge tokens. Set MATCHCAST_JWT_SECRET to 32+ random bytes in production."
            )
        return settings


def _read_env_file(path: Path) -> dict[str, str]:
    # python-dotenv parses quotes, escapes, `export` and comments as shells do; a key without a
    # value (None) is left to the environment.
    if not path.is_file():
        return {}
    return {key: value for key, value in dotenv_values(path).items() if value is not None}


def _positive_number(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a positive number of seconds, got {raw!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise SettingsError(f"{name} must be a positive number of seconds, got {raw!r}")
    return value


def _int_in(low: int, high: int) -> Callable[[str, str], int]:
    def parse(name: str, raw: str) -> int:
        if not re.fullmatch(r"\d+", raw) or not low <= int(raw) <= high:
            raise SettingsError(f"{name} must be a whole number from {low} to {high}, got {raw!r}")
        return int(raw)

    return parse


def _database_url(name: str, raw: str) -> str:
    if raw.startswith("postgres://"):
        raw = "postgresql://" + raw[len("postgres://") :]
    if re.match(r"^(sqlite:///.+|postgresql://.+)$", raw):
        return raw
    raise SettingsError(f"{name} must be sqlite:///PATH or postgresql://USER@HOST/DB, got {raw!r}")


def _broadcast_url(name: str, raw: str) -> str:
    if raw == "memory://" or re.match(r"^(redis|rediss|postgres|postgresql)://.+$", raw):
        return raw
    raise SettingsError(f"{name} must be memory://, redis://HOST:PORT or postgres://USER@HOST/DB, got {raw!r}")


def _secret(name: str, raw: str) -> str:
    if len(raw.encode()) < 16:
        raise SettingsError(f"{name} must be at least 16 bytes (32 random bytes recommended)")
    return raw


def _origins(name: str, raw: str) -> tuple[str, ...]:
    origins = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    for origin in origins:
        if not re.fullmatch(r"https?://[^/\s]+", origin):
            raise SettingsError(f"{name} must be comma-separated origins like https://example.org, got {origin!r}")
    return origins


def _channel_prefix(name: str, raw: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_]{1,20}", raw):
        raise SettingsError(f"{name} must be 1 to 20 letters, digits or '_', got {raw!r}")
    return raw


def _rate_limit(name: str, raw: str) -> RateLimit:
    match = re.fullmatch(r"(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*s", raw)
    if not match or int(match.group(1)) < 1 or float(match.group(2) or 1) <= 0:
        raise SettingsError(f"{name} must look like 20/1s (how many per how many seconds), got {raw!r}")
    return RateLimit(int(match.group(1)), float(match.group(2) or 1))


def _bool(name: str, raw: str) -> bool:
    value = raw.lower()
    if value not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise SettingsError(f"{name} must be true or false, got {raw!r}")
    return value in ("1", "true", "yes", "on")


def _forwarded_allow_ips(name: str, raw: str) -> tuple[str, ...]:
    # uvicorn silently takes anything it cannot parse as a name that never matches: refuse it here.
    entries = tuple(entry.strip() for entry in raw.split(",") if entry.strip())
    if entries == ("*",):
        return entries
    for entry in entries:
        try:
            ipaddress.ip_network(entry) if "/" in entry else ipaddress.ip_address(entry)
        except ValueError:
            raise SettingsError(
                f"{name} must be comma-separated proxy addresses or networks (127.0.0.1, 10.0.0.0/8, ::1) "
                f"or * (every client: only when nothing but the proxy reaches the server), got {entry!r}"
            ) from None
    return entries


def _viewers_interval(name: str, raw: str) -> int:
    value = _int_in(0, 600_000)(name, raw)
    if 0 < value < 50:
        raise SettingsError(f"{name} must be 0 (counting off) or from 50 to 600000 milliseconds, got {value}")
    return value


_PARSERS = {
    "DATABASE_URL": _database_url,
    "BROADCAST_URL": _broadcast_url,
    "JWT_SECRET": _secret,
    "SESSION_SECRET": _secret,
    "ALLOWED_ORIGINS": _origins,
    "HEARTBEAT_INTERVAL": _positive_number,
    "HEARTBEAT_TIMEOUT": _positive_number,
    "SCORE_BATCH_WINDOW_MS": _int_in(1, 60_000),
    "RATE_LIMIT": _rate_limit,
    "MAX_MESSAGE_BYTES": _int_in(256, 16 * 1024 * 1024),
    "MAX_PENDING": _int_in(1, 1_000_000),
    "MAX_SOCKETS_PER_USER": _int_in(1, 1_000_000),
    "MAX_SOCKETS_PER_ADDRESS": _int_in(1, 1_000_000),
    "USER_RATE_LIMIT": _rate_limit,
    "EVENT_RETENTION": _int_in(1, 10 * 365 * 86400),
    "CONFIRM_TIMEOUT": _positive_number,
    "VIEWERS_INTERVAL_MS": _viewers_interval,
    "DEADLINE_MAX_SLEEP": _positive_number,
    "GAP_FILL_WAIT_MS": _int_in(0, 60_000),
    "MAX_REPLAY_EVENTS": _int_in(1, 1_000_000),
    "CHANNEL_PREFIX": _channel_prefix,
    "LOGIN_RATE_LIMIT": _rate_limit,
    "SESSION_COOKIE_SECURE": _bool,
    "WEBHOOK_ALLOW_PRIVATE": _bool,
    "DATABASE_POOL_SIZE": _int_in(1, 1000),
    "REQUEST_HEAD_TIMEOUT": _positive_number,
    "FORWARDED_ALLOW_IPS": _forwarded_allow_ips,
}
