"""What a phase of bench/capacity.py is charged with: the backing services' counters and the
instances' CPU, before and after, with the background (what happens with nothing sent) taken off."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from bench import backing
from bench.procstat import cpu_seconds
from bench.servers import Target

T = TypeVar("T")


class Meter:
    """Counters of the backing services and CPU of the instances, with the background taken off."""

    def __init__(self, counters: backing.Counters, targets: list[Target]) -> None:
        self.counters = counters
        self.pids = {t.name: t.pid for t in targets}
        self.background: dict[str, float] = {}  # per second

    def read(self) -> dict[str, float]:
        found = self.counters.read()
        found.update({f"cpu.{name}": cpu_seconds(pid) for name, pid in self.pids.items()})
        found["seconds"] = time.monotonic()
        return found

    def quiet(self, seconds: float) -> None:
        """What happens with nothing sent: viewer-count reports, pings, idle CPU; per second."""
        before = self.read()
        time.sleep(seconds)
        change = self.counters.delta(before, self.read())
        self.background = {k: v / change["seconds"] for k, v in change.items() if periodic(k)}

    def delta(self, before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        change = self.counters.delta(before, after)
        window = change.get("seconds", 0.0)
        for key, rate in self.background.items():
            change[key] = change.get(key, 0.0) - rate * window
        return change


def periodic(key: str) -> bool:
    """Counters that move with nothing sent (no PostgreSQL work is periodic in these windows)."""
    return key.startswith(("redis.", "cpu."))


def late(key: str) -> bool:
    """pg_stat_database's counts, which arrive seconds late: only charged() waits for them."""
    return key.startswith("pg.") and key[3:] in backing.DATABASE_STATS


def prompt(change: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in change.items() if not late(k)}


def settled(meter: Meter, seconds: float) -> dict[str, float]:
    """A read of the late counts after `seconds` of quiet."""
    time.sleep(seconds)
    return {k: v for k, v in meter.read().items() if late(k)}


def charged(meter: Meter, pg_settle: float, work: Callable[[], T]) -> tuple[T, dict[str, float]]:
    """Run `work()`; what it changed: everything at once, pg_stat_database's counts after a settle."""
    slow_before = settled(meter, pg_settle)
    before = meter.read()
    result = work()
    change = meter.delta(before, meter.read())
    slow_after = settled(meter, pg_settle)
    change.update({k: v - slow_before.get(k, 0.0) for k, v in slow_after.items()})
    return result, change


def nonzero(change: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in change.items() if abs(v) > 1e-9}


def per_unit(change: dict[str, float], units: float) -> dict[str, float]:
    """`change` over `units` events or joins, CPU in microseconds; small noise rounded away."""
    if units <= 0:
        raise RuntimeError("nothing to charge the change to: no event or join got through")
    out: dict[str, float] = {}
    for key, value in change.items():
        if key == "seconds" or key == "redis.info":
            continue
        scaled = value / units
        if key.endswith("cpu_s") or key.startswith("cpu."):
            out[key.replace("cpu_s", "cpu_us") if key.endswith("cpu_s") else key + "_us"] = 1e6 * scaled
        elif abs(scaled) >= 0.005:
            out[key] = scaled
    return out
