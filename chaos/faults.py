"""The faults, one at a time at seeded random moments. Each returns when the cluster is whole again.

Kinds (every one is injected at least once in any run, in a seeded order, then drawn at random):
kill9 (an instance killed and restarted), pause_instance (SIGSTOP, then SIGCONT), pause_redis,
restart_redis, cut_postgres / hang_postgres and cut_redis / hang_redis (through the proxies), and
rolling_restart (SIGTERM each instance in turn, clients get 1012, restart).
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from chaos.cluster import Cluster, Instance
from chaos.history import History

KINDS = (
    "kill9",
    "pause_instance",
    "pause_redis",
    "restart_redis",
    "cut_postgres",
    "hang_postgres",
    "cut_redis",
    "hang_redis",
    "rolling_restart",
)


QUIET = (4.0, 7.0)  # seconds between two faults
SHORT_QUIET = (1.0, 3.0)


class Faults:
    def __init__(self, cluster: Cluster, history: History, rng: random.Random) -> None:
        self.cluster = cluster
        self.history = history
        self.rng = rng

    def hold(self) -> float:
        """How long a pause or hang lasts: short enough to keep the run moving, long enough to hurt."""
        return self.rng.uniform(1.0, 6.0)

    async def inject(self, kind: str) -> None:
        action: Callable[[], Awaitable[dict[str, Any]]] = getattr(self, kind)
        started = time.time()
        detail = await action()
        self.history.faults.append({"kind": kind, "start": started, "end": time.time(), **detail})

    def busiest(self) -> Instance:
        """The instance with the most readers connected: where a fault costs most."""
        counts = Counter(s.instance for s in self.history.streams if s.instance is not None)
        return max(self.cluster.instances, key=lambda i: (counts[i.index], self.rng.random()))

    async def kill9(self) -> dict[str, Any]:
        instance = self.busiest()
        await instance.kill()
        await asyncio.sleep(self.rng.uniform(0.5, 3.0))  # the time it stays dead
        await instance.start()
        return {"instance": instance.index}

    async def pause_instance(self) -> dict[str, Any]:
        instance = self.busiest()
        held = self.hold()
        instance.signal(signal.SIGSTOP)
        instance.up = False  # clients go elsewhere, as a load balancer's health check would make them
        await asyncio.sleep(held)  # the pause itself
        instance.signal(signal.SIGCONT)
        instance.up = True
        return {"instance": instance.index, "seconds": round(held, 2)}

    async def pause_redis(self) -> dict[str, Any]:
        held = self.hold()
        self.cluster.redis.signal(signal.SIGSTOP)
        await asyncio.sleep(held)  # the pause itself
        self.cluster.redis.signal(signal.SIGCONT)
        return {"seconds": round(held, 2)}

    async def restart_redis(self) -> dict[str, Any]:
        await self.cluster.redis.stop()
        await asyncio.sleep(self.rng.uniform(0.5, 3.0))  # the time it stays down
        await self.cluster.redis.start()
        return {}

    async def cut_postgres(self) -> dict[str, Any]:
        assert self.cluster.pg_proxy is not None
        return {"connections": self.cluster.pg_proxy.cut()}

    async def cut_redis(self) -> dict[str, Any]:
        assert self.cluster.redis_proxy is not None
        return {"connections": self.cluster.redis_proxy.cut()}

    async def hang_postgres(self) -> dict[str, Any]:
        assert self.cluster.pg_proxy is not None
        return await self._hang(self.cluster.pg_proxy)

    async def hang_redis(self) -> dict[str, Any]:
        assert self.cluster.redis_proxy is not None
        return await self._hang(self.cluster.redis_proxy)

    async def _hang(self, proxy: Any) -> dict[str, Any]:
        held = self.hold()
        proxy.hang()
        await asyncio.sleep(held)  # the hang itself
        proxy.resume()
        return {"seconds": round(held, 2)}

    async def rolling_restart(self) -> dict[str, Any]:
        codes = []
        for instance in self.cluster.instances:
            codes.append(await instance.terminate())
            await instance.start()
        return {"exit_codes": codes}


def schedule(rng: random.Random) -> list[str]:
    """Every kind once, in a seeded order; the run continues with kinds drawn at random."""
    first = list(KINDS)
    rng.shuffle(first)
    return first


async def run_faults(faults: Faults, seconds: float, rng: random.Random, stop: asyncio.Event) -> None:
    order = schedule(rng)
    deadline = time.monotonic() + seconds
    # Past the deadline only to inject a kind not yet seen: every run has every kind.
    while (time.monotonic() < deadline or order) and not stop.is_set():
        # A quiet spell between faults, so each one's cost can be told apart (a short run, which
        # only checks, keeps them short to stay well inside its test's time limit).
        await asyncio.sleep(rng.uniform(*(QUIET if seconds >= 120 else SHORT_QUIET)))
        kind = order.pop(0) if order else rng.choice(KINDS)
        await faults.inject(kind)
