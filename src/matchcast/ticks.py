"""Periodic work wakes on shared boundaries of the event loop's clock.

Waking an idle process costs far more CPU than the little work it then does: on the 2-core
machine of docs/performance.md one sleep-and-wake of a uvloop loop costs ~190 us of CPU (the
kernel's sleep and wake, then the loop's code run with cold caches). With each periodic job on
its own phase (uvicorn's 0.1 s tick, the GC watch, the webhook poll, viewer counts, the broker's
pings) an idle server woke 12-26 times a second: 0.2-0.5 % of a core, up to a microsecond of
every delivered frame at 1000 spectators. Sleeping to the next multiple of the period instead
puts every job whose period divides another's in the same loop iteration: one wakeup a second.
"""

from __future__ import annotations

import asyncio

# A timer may fire a little before its deadline (libuv counts whole milliseconds): a wait that
# would end this close to now is taken as the boundary just passed, and runs to the next one.
EARLY = 0.005


def until_tick(period: float, now: float) -> float:
    """Seconds from `now` to the next multiple of `period` (on the same clock): at most `period`,
    or a little more when `now` is just short of a multiple."""
    delay = period - now % period
    return delay + period if delay <= EARLY else delay


def until_next_tick(period: float) -> float:
    """`until_tick` on the running loop's clock (the one its timers use)."""
    return until_tick(period, asyncio.get_running_loop().time())


async def sleep_to_tick(period: float) -> None:
    """Sleep until the loop's clock reaches the next multiple of `period`."""
    await asyncio.sleep(until_next_tick(period))
