import logging
from pathlib import Path

import pytest

from matchcast.settings import _PARSERS, DEV_JWT_SECRET, RateLimit, Settings, SettingsError

SECRET = "a-test-secret-of-more-than-32-bytes!"


def from_env(tmp_path: Path, **variables: str) -> Settings:
    environ = {"MATCHCAST_" + name: value for name, value in variables.items()}
    return Settings.from_env(environ, env_file=str(tmp_path / "missing.env"))


def test_defaults(tmp_path: Path) -> None:
    settings = from_env(tmp_path)
    assert settings.database_url == "sqlite:///./matchcast.db"
    assert settings.broadcast_url == "memory://" and not settings.shared_broadcast
    assert settings.jwt_secret == DEV_JWT_SECRET and settings.using_dev_secret
    assert settings.session_secret and settings.session_secret != settings.jwt_secret
    assert settings.allowed_origins == ()
    assert (settings.heartbeat_interval, settings.heartbeat_timeout) == (25, 50)
    assert settings.score_batch_window_ms == 100
    assert settings.rate_limit == RateLimit(20, 1.0) and str(settings.rate_limit) == "20/1s"
    assert (settings.max_message_bytes, settings.max_pending, settings.event_retention) == (65536, 1024, 86400)
    assert settings.channel_prefix == ""


def test_every_variable_is_parsed(tmp_path: Path) -> None:
    settings = from_env(
        tmp_path,
        DATABASE_URL="postgres://u@db.example/mc",
        BROADCAST_URL="redis://127.0.0.1:6379",
        JWT_SECRET=SECRET,
        SESSION_SECRET="another-secret-16+",
        ALLOWED_ORIGINS="https://a.example, http://b.example:8000/",
        HEARTBEAT_INTERVAL="2.5",
        HEARTBEAT_TIMEOUT="7",
        SCORE_BATCH_WINDOW_MS="250",
        RATE_LIMIT="50/2s",
        MAX_MESSAGE_BYTES="4096",
        MAX_PENDING="16",
        EVENT_RETENTION="60",
        GAP_FILL_WAIT_MS="0",
        MAX_REPLAY_EVENTS="10",
        CHANNEL_PREFIX="run_42",
        LOGIN_RATE_LIMIT="5/300s",
        SESSION_COOKIE_SECURE="yes",
    )
    assert settings.database_url == "postgresql://u@db.example/mc"
    assert settings.broadcast_url == "redis://127.0.0.1:6379" and settings.shared_broadcast
    assert settings.jwt_secret == SECRET and not settings.using_dev_secret
    assert settings.session_secret == "another-secret-16+"
    assert settings.allowed_origins == ("https://a.example", "http://b.example:8000")
    assert (settings.heartbeat_interval, settings.heartbeat_timeout) == (2.5, 7.0)
    assert settings.score_batch_window_ms == 250
    assert settings.rate_limit == RateLimit(50, 2.0)
    assert (settings.max_message_bytes, settings.max_pending, settings.event_retention) == (4096, 16, 60)
    assert (settings.gap_fill_wait_ms, settings.max_replay_events) == (0, 10)
    assert settings.channel_prefix == "run_42"
    assert settings.login_rate_limit == RateLimit(5, 300.0) and settings.session_cookie_secure


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
        ("postgresql://u@h/d", "postgresql://u@h/d"),
        ("postgres://u@h/d", "postgresql://u@h/d"),
    ],
)
def test_database_urls(tmp_path: Path, url: str, expected: str) -> None:
    assert from_env(tmp_path, DATABASE_URL=url).database_url == expected


@pytest.mark.parametrize("url", ["memory://", "redis://h:6379", "rediss://h:6380", "postgres://u@h/d"])
def test_broadcast_urls(tmp_path: Path, url: str) -> None:
    assert from_env(tmp_path, BROADCAST_URL=url).broadcast_url == url


def test_rate_limit_without_a_period_means_per_second(tmp_path: Path) -> None:
    assert from_env(tmp_path, RATE_LIMIT="5/s").rate_limit == RateLimit(5, 1.0)


BAD_VALUES = [
    ("DATABASE_URL", "mysql://u@h/d"),
    ("DATABASE_URL", "sqlite://relative.db"),
    ("BROADCAST_URL", "kafka://h"),
    ("BROADCAST_URL", "memory"),
    ("JWT_SECRET", "short"),
    ("SESSION_SECRET", "short"),
    ("ALLOWED_ORIGINS", "example.org"),
    ("ALLOWED_ORIGINS", "https://a.example/path"),
    ("HEARTBEAT_INTERVAL", "abc"),
    ("HEARTBEAT_INTERVAL", "0"),
    ("HEARTBEAT_INTERVAL", "-5"),
    ("HEARTBEAT_INTERVAL", "nan"),
    ("HEARTBEAT_TIMEOUT", "inf"),
    ("SCORE_BATCH_WINDOW_MS", "0"),
    ("SCORE_BATCH_WINDOW_MS", "1.5"),
    ("RATE_LIMIT", "20"),
    ("RATE_LIMIT", "0/1s"),
    ("RATE_LIMIT", "20/0s"),
    ("RATE_LIMIT", "fast"),
    ("MAX_MESSAGE_BYTES", "10"),
    ("MAX_MESSAGE_BYTES", "64k"),
    ("MAX_PENDING", "0"),
    ("MAX_PENDING", "-1"),
    ("EVENT_RETENTION", "forever"),
    ("GAP_FILL_WAIT_MS", "x"),
    ("MAX_REPLAY_EVENTS", "0"),
    ("CHANNEL_PREFIX", "has-dash"),
    ("CHANNEL_PREFIX", "x" * 21),
    ("LOGIN_RATE_LIMIT", "10 per minute"),
    ("LOGIN_RATE_LIMIT", "0/60s"),
    ("SESSION_COOKIE_SECURE", "maybe"),
    ("CONFIRM_TIMEOUT", "soon"),
    ("DEADLINE_MAX_SLEEP", "0"),
    ("VIEWERS_INTERVAL_MS", "10"),
    ("WEBHOOK_ALLOW_PRIVATE", "perhaps"),
    ("DATABASE_POOL_SIZE", "0"),
    ("DATABASE_POOL_SIZE", "many"),
    ("REQUEST_HEAD_TIMEOUT", "0"),
    ("REQUEST_HEAD_TIMEOUT", "10s"),
    ("FORWARDED_ALLOW_IPS", "nginx.internal"),
    ("FORWARDED_ALLOW_IPS", "127.0.0.1, 10.0.0.0/33"),
    ("MAX_SOCKETS_PER_USER", "0"),
    ("MAX_SOCKETS_PER_ADDRESS", "many"),
    ("USER_RATE_LIMIT", "40"),
]


def test_socket_caps_and_user_rate_limit(tmp_path: Path) -> None:
    assert (Settings().max_sockets_per_user, Settings().max_sockets_per_address) == (20, 200)
    settings = from_env(tmp_path, MAX_SOCKETS_PER_USER="5", MAX_SOCKETS_PER_ADDRESS="50", USER_RATE_LIMIT="30/2s")
    assert (settings.max_sockets_per_user, settings.max_sockets_per_address) == (5, 50)
    assert settings.user_rate_limit == RateLimit(30, 2.0)


@pytest.mark.parametrize(("name", "value"), BAD_VALUES)
def test_a_bad_value_names_its_variable(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        from_env(tmp_path, **{name: value})
    message = str(caught.value)
    assert ("MATCHCAST_" + name) in message and "\n" not in message


def test_every_parsed_variable_has_a_bad_value_case() -> None:
    assert set(_PARSERS) == {name for name, _ in BAD_VALUES}


@pytest.mark.parametrize(("interval", "timeout"), [("30", "30"), ("60", None), ("10", "5")])
def test_heartbeat_timeout_must_exceed_interval(tmp_path: Path, interval: str, timeout: str | None) -> None:
    variables = {"HEARTBEAT_INTERVAL": interval} | ({"HEARTBEAT_TIMEOUT": timeout} if timeout else {})
    with pytest.raises(SettingsError, match=r"MATCHCAST_HEARTBEAT_TIMEOUT.*MATCHCAST_HEARTBEAT_INTERVAL"):
        from_env(tmp_path, **variables)


def test_dev_secret_warns_loudly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="matchcast.settings"):
        from_env(tmp_path)
    assert any("MATCHCAST_JWT_SECRET" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="matchcast.settings"):
        from_env(tmp_path, JWT_SECRET=SECRET)
    assert not caplog.records


def test_session_secret_is_derived_from_the_jwt_secret(tmp_path: Path) -> None:
    one, two = from_env(tmp_path, JWT_SECRET=SECRET), from_env(tmp_path, JWT_SECRET=SECRET + "x")
    assert one.session_secret != two.session_secret
    assert one.session_secret == from_env(tmp_path, JWT_SECRET=SECRET).session_secret
    assert SECRET not in one.session_secret


def test_env_file_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text('# comment\nMATCHCAST_MAX_PENDING="7"\nMATCHCAST_EVENT_RETENTION=9\n')
    settings = Settings.from_env({"MATCHCAST_EVENT_RETENTION": "11"}, env_file=str(env_file))
    assert (settings.max_pending, settings.event_retention) == (7, 11)


def test_blank_values_mean_the_default(tmp_path: Path) -> None:
    assert from_env(tmp_path, MAX_PENDING="  ").max_pending == 1024


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = from_env(tmp_path)
    with pytest.raises(AttributeError):
        settings.max_pending = 3  # type: ignore[misc]
    assert settings.with_(max_pending=3).max_pending == 3 and settings.max_pending == 1024


def test_env_file_quotes_are_parsed_as_a_shell_would(tmp_path: Path) -> None:
    # The old hand-written reader stripped every quote character at both ends, so a secret ending
    # in a quote lost it, and `export` lines were not understood.
    env_file = tmp_path / ".env"
    env_file.write_text(f'export MATCHCAST_JWT_SECRET=\'{SECRET}"\'\nMATCHCAST_CHANNEL_PREFIX="blue_" # a comment\n')
    settings = Settings.from_env({}, env_file=str(env_file))
    assert settings.jwt_secret == SECRET + '"'
    assert settings.channel_prefix == "blue_"


@pytest.mark.parametrize(("raw", "expected"), [("0", 0), ("50", 50), ("2000", 2000)])
def test_viewers_interval_is_off_or_at_least_50_ms(tmp_path: Path, raw: str, expected: int) -> None:
    assert from_env(tmp_path, VIEWERS_INTERVAL_MS=raw).viewers_interval_ms == expected


@pytest.mark.parametrize("raw", ["10", "-1", "2s", "600001"])
def test_viewers_interval_refusals_name_the_variable(tmp_path: Path, raw: str) -> None:
    with pytest.raises(SettingsError, match="MATCHCAST_VIEWERS_INTERVAL_MS"):
        from_env(tmp_path, VIEWERS_INTERVAL_MS=raw)


@pytest.mark.parametrize("raw", ["0", "-5", "nan", "2592001"])
def test_confirm_timeout_refusals_name_the_variable(tmp_path: Path, raw: str) -> None:
    with pytest.raises(SettingsError, match="MATCHCAST_CONFIRM_TIMEOUT"):
        from_env(tmp_path, CONFIRM_TIMEOUT=raw)


def test_the_database_pool_size(tmp_path: Path) -> None:
    assert from_env(tmp_path).database_pool_size == 10
    assert from_env(tmp_path, DATABASE_POOL_SIZE="3").database_pool_size == 3


def test_the_request_head_timeout(tmp_path: Path) -> None:
    assert from_env(tmp_path).request_head_timeout == 10
    assert from_env(tmp_path, REQUEST_HEAD_TIMEOUT="2.5").request_head_timeout == 2.5


def test_forwarded_headers_are_believed_from_nobody_unless_named(tmp_path: Path) -> None:
    assert from_env(tmp_path).forwarded_allow_ips == ()
    named = from_env(tmp_path, FORWARDED_ALLOW_IPS="127.0.0.1, 10.0.0.0/8,::1").forwarded_allow_ips
    assert named == ("127.0.0.1", "10.0.0.0/8", "::1")
    assert from_env(tmp_path, FORWARDED_ALLOW_IPS="*").forwarded_allow_ips == ("*",)


def test_uvicorn_s_own_variable_is_ignored_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings.from_env({"FORWARDED_ALLOW_IPS": "10.0.0.5"}, env_file=str(tmp_path / ".env"))
    assert settings.forwarded_allow_ips == ()
    assert "Set MATCHCAST_FORWARDED_ALLOW_IPS" in caplog.text
