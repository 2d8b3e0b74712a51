"""Periodic work wakes on shared boundaries of the loop's clock (matchcast.ticks)."""

from __future__ import annotations

import asyncio

import pytest

from matchcast.ticks import EARLY, sleep_to_tick, until_tick


@pytest.mark.parametrize(
    ("period", "now", "expected"),
    [
        (1.0, 100.25, 0.75),  # mid-period: to the next whole second
        (1.0, 100.0, 1.0),  # on a boundary: the next one, not now
        (2.0, 101.5, 0.5),
        (2.0, 100.5, 1.5),
        (1.0, 100.999, 1.001),  # woke a millisecond early: this boundary is the one just served
    ],
)
def test_until_tick_ends_on_the_next_multiple_of_the_period(period: float, now: float, expected: float) -> None:
    assert until_tick(period, now) == pytest.approx(expected)


def test_jobs_whose_periods_divide_each_other_share_their_wakeups() -> None:
    # A 1 s job and a 2 s job started at different phases: every wakeup of the 2 s job is one of
    # the 1 s job's, so the loop wakes once for both.
    one, two = 17.3, 18.9
    ones, twos = set(), set()
    for _ in range(10):
        two += until_tick(2.0, two)
        twos.add(round(two, 6))
    while one < two:
        one += until_tick(1.0, one)
        ones.add(round(one, 6))
    assert len(twos) == 10 and twos <= ones


def test_a_wait_is_never_shorter_than_the_early_margin() -> None:
    for now in (0.0, 0.996, 0.9999, 5.0 - EARLY, 5.0 - EARLY / 2):
        assert EARLY < until_tick(1.0, now) <= 1.0 + EARLY


async def test_sleep_to_tick_sleeps_until_the_loops_clock_reaches_the_boundary() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    boundary = started + until_tick(0.05, started)
    await asyncio.wait_for(sleep_to_tick(0.05), 5)
    assert loop.time() >= boundary - EARLY
