"""What one user or one address may hold and send across all its sockets, on this instance.

The contract's limits are per connection; a user with forty sockets had forty times the rate and
a guest could open thousands. `SocketQuota` caps open sockets per user and per address;
`SharedBuckets` is one token bucket per user (guests: per address) over all its sockets. Both are
per instance: behind a balancer a user's sockets on other instances are not counted.
"""

from __future__ import annotations

import time
from collections import Counter

from matchcast.realtime.ratelimit import TokenBucket
from matchcast.settings import RateLimit


class SocketQuota:
    def __init__(self, per_user: int, per_address: int) -> None:
        self.per_user = per_user
        self.per_address = per_address
        self.users: Counter[str] = Counter()
        self.addresses: Counter[str] = Counter()

    def acquire(self, user: str, address: str) -> str | None:
        """Count one more socket of `user` from `address`; the reason it is refused, or None."""
        if self.users[user] >= self.per_user:
            return f"too many connections for this user (at most {self.per_user}); close some"
        if self.addresses[address] >= self.per_address:
            return f"too many connections from this address (at most {self.per_address}); close some"
        self.users[user] += 1
        self.addresses[address] += 1
        return None

    def release(self, user: str, address: str) -> None:
        for counts, key in ((self.users, user), (self.addresses, address)):
            counts[key] -= 1
            if counts[key] <= 0:
                del counts[key]  # entries live only while their sockets do


class SharedBuckets:
    """One token bucket per key; a bucket idle long enough to be full again is forgotten."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self.buckets: dict[str, TokenBucket] = {}
        self.idle_after = max(1.0, limit.per_seconds)  # a bucket refills completely in per_seconds
        self.swept = time.monotonic()

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        if now - self.swept >= self.idle_after:
            self._sweep(now)
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = TokenBucket(self.limit)
        return bucket.allow()

    def _sweep(self, now: float) -> None:
        self.swept = now
        idle = [key for key, bucket in self.buckets.items() if now - bucket.stamp >= self.idle_after]
        for key in idle:
            del self.buckets[key]  # as full as a new one: nothing is lost
