"""Failed logins per client address: password guessing goes no faster than the configured rate.

The organizer form (POST /login) and POST /api/token share one count. Only failures count, so a
user who logs in is never held up by their own logins. The count lives in this process: with
several instances behind a balancer each keeps its own (docs/deployment.md).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from starlette.requests import Request

from matchcast.services import users
from matchcast.settings import RateLimit

NAMESPACE = "login"


class LoginThrottle:
    def __init__(self, limit: RateLimit) -> None:
        self._item = RateLimitItemPerSecond(limit.frames, max(1, math.ceil(limit.per_seconds)))
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._in_flight: Counter[str] = Counter()  # attempts still checking their password

    @asynccontextmanager
    async def attempt(self, address: str) -> AsyncIterator[Attempt]:
        """One login attempt from `address`: refused (`wait` seconds) or let through.

        Attempts still hashing count against the limit too: a burst of simultaneous guesses would
        otherwise all pass the check before the first failure is recorded (argon2 takes ~0.1 s).
        Set `failed` when the password was wrong.
        """
        if not await self._limiter.test(self._item, NAMESPACE, address, cost=self._in_flight[address] + 1):
            stats = await self._limiter.get_window_stats(self._item, NAMESPACE, address)
            yield Attempt(wait=max(1, math.ceil(stats.reset_time - time.time())))
            return
        attempt = Attempt(wait=0)
        self._in_flight[address] += 1
        try:
            yield attempt
        finally:
            self._in_flight[address] -= 1
            if not self._in_flight[address]:
                del self._in_flight[address]
            if attempt.failed:
                await self._limiter.hit(self._item, NAMESPACE, address)


@dataclass
class Attempt:
    wait: int  # seconds until the address may try again; 0: this attempt goes ahead
    failed: bool = False


async def authenticate(request: Request, username: str, password: str) -> tuple[Any, int]:
    """The user (None: wrong username or password) and 0, or None and the seconds the client's
    address must wait before trying again: then the password was not checked."""
    async with request.app.state.login_throttle.attempt(client_address(request)) as attempt:
        if attempt.wait:
            return None, attempt.wait
        user = await users.authenticate(request.app.state.realtime.db, username, password)
        attempt.failed = user is None
    return user, 0


def client_address(request: Request) -> str:
    """The client's address as uvicorn saw it (behind a proxy: from X-Forwarded-For, when
    `--forwarded-allow-ips` trusts that proxy)."""
    return request.client.host if request.client else "unknown"


def too_many(seconds: int) -> str:
    return f"too many failed logins from your address; try again in {seconds} s"
