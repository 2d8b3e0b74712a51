"""Per-connection token bucket, and the flooding rule that turns into close 4008."""

from __future__ import annotations

import time
from collections import deque

from matchcast.settings import RateLimit

FLOOD_ANSWERS = 3  # rate_limited answers tolerated ...
FLOOD_WINDOW = 10.0  # ... within this many seconds; one more refused frame closes 4008


class TokenBucket:
    __slots__ = ("capacity", "rate", "refusals", "stamp", "tokens")

    def __init__(self, limit: RateLimit) -> None:
        self.capacity = float(limit.frames)
        self.rate = limit.frames / limit.per_seconds
        self.tokens = self.capacity
        self.stamp = time.monotonic()
        self.refusals: deque[float] = deque()

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def flooding(self) -> bool:
        """Record one refusal; True when the client already had its FLOOD_ANSWERS warnings."""
        now = time.monotonic()
        while self.refusals and now - self.refusals[0] > FLOOD_WINDOW:
            self.refusals.popleft()
        if len(self.refusals) >= FLOOD_ANSWERS:
            return True
        self.refusals.append(now)
        return False
