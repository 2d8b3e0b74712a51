"""Failed logins per client address: password guessing goes no faster than the configured rate.

The organizer form (POST /login) and POST /api/token share one count. Only failures count, so a
user who logs in is never held up by their own logins. The count lives in this process: with
several instances behind a balancer each keeps its own (docs/deployment.md).
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from starlette.requests import Request

from matchcast.settings import RateLimit

NAMESPACE = "login"


class LoginThrottle:
    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._item = RateLimitItemPerSecond(limit.frames, max(1, math.ceil(limit.per_seconds)))
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    async def wait_seconds(self, address: str) -> int:
        """Seconds until `address` may try again; 0: it may now."""
        if await self._limiter.test(self._item, NAMESPACE, address):
            return 0
        stats = await self._limiter.get_window_stats(self._item, NAMESPACE, address)
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def failed(self, address: str) -> None:
        await self._limiter.hit(self._item, NAMESPACE, address)


def client_address(request: Request) -> str:
    """The client's address as uvicorn saw it (behind a proxy: from X-Forwarded-For, when
    `--forwarded-allow-ips` trusts that proxy)."""
    return request.client.host if request.client else "unknown"


def too_many(seconds: int) -> str:
    return f"too many failed logins from your address; try again in {seconds} s"
