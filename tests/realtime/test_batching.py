"""batching.py alone: ScoreBatcher on a fake clock with a fake send, and ScoreLedger.

The fake send plays the hub's `publish_now`: it records what went out, in order, and records it
in the ledger, as the hub does with what it stored. Timers are the fake clock's: a window closes
only when the test advances the clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from matchcast.protocol import (
    BRACKET_UPDATED,
    MATCH_CANCELLED,
    MATCH_COMPLETED,
    MATCH_STARTED,
    SCORE_UPDATED,
    Event,
)
from matchcast.realtime.batching import MAX_REMEMBERED_MATCHES, ScoreBatcher, ScoreLedger

WINDOW_MS = 100
WINDOW = WINDOW_MS / 1000


class FakeTimer:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """`call_later` for the batcher; `advance` runs the timers that fall due, in time order."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[FakeTimer] = []

    def call_later(self, delay: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(self.now + delay, callback)
        self.timers.append(timer)
        return timer

    async def advance(self, seconds: float) -> None:
        target = self.now + seconds
        while True:
            due = [t for t in self.timers if not t.cancelled and t.when <= target + 1e-9]
            if not due:
                break
            timer = min(due, key=lambda t: t.when)
            self.timers.remove(timer)
            self.now = timer.when
            timer.callback()
            await run_ready()  # the send the callback started, before the next timer
        self.now = target

    @property
    def armed(self) -> int:
        return sum(not t.cancelled for t in self.timers)


async def run_ready() -> None:
    """Let the tasks already scheduled run (a window's send); yields to the loop, waits for no time."""
    for _ in range(3):
        await asyncio.sleep(0)


class FakeHub:
    def __init__(self, ledger: ScoreLedger, clock: FakeClock) -> None:
        self.ledger = ledger
        self.clock = clock
        self.sent: list[Event] = []
        self.times: list[float] = []
        self.calls = 0

    async def send(self, events: Sequence[Event]) -> None:
        self.calls += 1
        self.ledger.record(events)  # as the hub records what it stored
        for event in events:
            self.sent.append(event)
            self.times.append(self.clock.now)

    @property
    def scores(self) -> list[tuple[int, int]]:
        """(match id, sequence) of every score sent, in order."""
        return [(e.data["match_id"], e.data["sequence"]) for e in self.sent if e.type == SCORE_UPDATED]

    @property
    def types(self) -> list[str]:
        return [e.type for e in self.sent]


def score(match_id: int, sequence: int) -> Event:
    data = {"match_id": match_id, "participant1_score": sequence, "participant2_score": 0, "sequence": sequence}
    return Event(SCORE_UPDATED, data, ("tournament_1", f"match_{match_id}"))


def ends(event_type: str, match_id: int) -> Event:
    return Event(event_type, {"match_id": match_id, "tournament_id": 1}, ("tournament_1", f"match_{match_id}"))


def other(event_type: str = BRACKET_UPDATED, **data: Any) -> Event:
    return Event(event_type, {"tournament_id": 1, **data}, ("tournament_1",))


def make(ledger: ScoreLedger | None = None) -> tuple[ScoreBatcher, FakeHub, FakeClock]:
    ledger = ledger if ledger is not None else ScoreLedger()
    clock = FakeClock()
    hub = FakeHub(ledger, clock)
    return ScoreBatcher(WINDOW_MS, hub.send, ledger, schedule=clock.call_later, clock=lambda: clock.now), hub, clock


# -- the leading edge and the window -------------------------------------------------------------


async def test_the_first_score_goes_out_at_once_and_opens_a_window() -> None:
    batcher, hub, clock = make()
    await batcher.submit(score(1, 1))
    assert hub.scores == [(1, 1)]  # sent before submit returned, no clock advanced
    assert batcher.open_windows == 1
    assert clock.armed == 0  # nothing waits in the window: no timer, the loop is not woken for it


async def test_a_score_waiting_in_the_window_arms_its_timer_for_the_windows_end() -> None:
    batcher, hub, clock = make()
    await batcher.submit(score(1, 1))
    await clock.advance(WINDOW * 0.3)
    await batcher.submit(score(1, 2))
    assert [t.when for t in clock.timers] == [pytest.approx(WINDOW)]  # the window's end, not 0.1 s from now
    await batcher.submit(score(1, 3))
    assert clock.armed == 1  # one timer per window
    await clock.advance(WINDOW)
    assert hub.scores == [(1, 1), (1, 3)]
    assert hub.times == [0.0, pytest.approx(WINDOW)]


async def test_a_window_that_ran_out_is_forgotten() -> None:
    batcher, hub, clock = make()
    for match_id in range(1, 101):
        await batcher.submit(score(match_id, 1))
    await clock.advance(WINDOW)
    assert batcher.open_windows == 0
    await batcher.submit(score(101, 1))
    assert len(hub.scores) == 101
    assert len(batcher._windows) == 1  # the ones that ran out went with the next submit


async def test_a_quiet_window_closes_and_the_next_score_is_a_leading_edge_again() -> None:
    batcher, hub, clock = make()
    await batcher.submit(score(1, 1))
    await clock.advance(WINDOW)
    assert batcher.open_windows == 0
    assert clock.armed == 0
    assert hub.scores == [(1, 1)]
    await clock.advance(5.0)
    await batcher.submit(score(1, 2))
    assert hub.scores == [(1, 1), (1, 2)]
    assert hub.times == [0.0, 5.0 + WINDOW]


async def test_scores_inside_a_window_coalesce_to_the_latest() -> None:
    batcher, hub, clock = make()
    await batcher.submit(score(1, 1))
    for sequence in (2, 3, 4):
        await clock.advance(WINDOW / 5)
        await batcher.submit(score(1, sequence))
    assert hub.scores == [(1, 1)]  # nothing more until the window closes
    await clock.advance(WINDOW)
    assert hub.scores == [(1, 1), (1, 4)]
    assert hub.times == [0.0, WINDOW]
    await clock.advance(WINDOW)  # the next window had nothing: closed
    assert batcher.open_windows == 0
    assert hub.scores == [(1, 1), (1, 4)]


async def test_out_of_order_scores_in_a_window_keep_the_newest() -> None:
    batcher, hub, clock = make()
    await batcher.submit(score(1, 1))
    await batcher.submit(score(1, 5))
    await batcher.submit(score(1, 3))  # a slower concurrent reporter
    await clock.advance(WINDOW)
    assert hub.scores == [(1, 1), (1, 5)]


async def test_a_continuous_stream_yields_one_score_per_window_and_the_last_value() -> None:
    batcher, hub, clock = make()
    step = WINDOW / 10
    updates = 95
    for sequence in range(1, updates + 1):
        await batcher.submit(score(1, sequence))
        await clock.advance(step)
    await clock.advance(3 * WINDOW)
    windows = int(updates * step / WINDOW)  # windows that closed while the stream ran
    assert len(hub.scores) == 1 + windows + 1  # the leading edge, one per window, the tail
    sequences = [s for _, s in hub.scores]
    assert sequences == sorted(sequences)
    assert len(set(sequences)) == len(sequences)
    assert sequences[-1] == updates  # the latest value always arrives
    gaps = [b - a for a, b in zip(hub.times, hub.times[1:], strict=False)]
    assert all(abs(gap - WINDOW) < 1e-6 for gap in gaps), gaps  # one per window, no faster
    assert batcher.open_windows == 0


async def test_matches_have_windows_of_their_own() -> None:
    batcher, hub, clock = make()
    await batcher.submit(score(1, 1))
    await batcher.submit(score(2, 1))  # another match: its own leading edge
    await batcher.submit(score(1, 2))
    await batcher.submit(score(2, 2))
    assert hub.scores == [(1, 1), (2, 1)]
    await clock.advance(WINDOW)
    assert sorted(hub.scores[2:]) == [(1, 2), (2, 2)]


# -- publish and flush ---------------------------------------------------------------------------


async def test_publish_sends_other_events_at_once_in_one_send() -> None:
    batcher, hub, _clock = make()
    await batcher.publish([other(MATCH_STARTED, match_id=1), other(BRACKET_UPDATED)])
    assert hub.types == [MATCH_STARTED, BRACKET_UPDATED]
    assert hub.calls == 1
    assert batcher.open_windows == 0


async def test_match_completed_flushes_the_pending_score_first() -> None:
    batcher, hub, clock = make()
    await batcher.publish([score(1, 1)])
    await batcher.publish([score(1, 2)])
    await batcher.publish([ends(MATCH_COMPLETED, 1)])
    assert hub.types == [SCORE_UPDATED, SCORE_UPDATED, MATCH_COMPLETED]
    assert hub.scores == [(1, 1), (1, 2)]
    assert batcher.open_windows == 0
    assert clock.armed == 0
    await clock.advance(10 * WINDOW)
    assert len(hub.sent) == 3


async def test_no_score_goes_out_after_match_completed() -> None:
    batcher, hub, clock = make()
    await batcher.publish([score(1, 1)])
    await batcher.publish([ends(MATCH_COMPLETED, 1)])
    await batcher.publish([score(1, 9)])  # built before the completion, published after it
    await clock.advance(10 * WINDOW)
    assert hub.types == [SCORE_UPDATED, MATCH_COMPLETED]


async def test_regression_match_cancelled_flushes_the_pending_score_and_nothing_follows() -> None:
    """Defect 1: only match_completed flushed, so a pending score went out after match_cancelled."""
    batcher, hub, clock = make()
    await batcher.publish([score(1, 1)])  # leading edge
    await batcher.publish([score(1, 2)])  # pending in the window
    await batcher.publish([ends(MATCH_CANCELLED, 1)])
    assert hub.types == [SCORE_UPDATED, SCORE_UPDATED, MATCH_CANCELLED]
    assert hub.scores == [(1, 1), (1, 2)]
    await clock.advance(10 * WINDOW)  # the window would have closed here
    await batcher.publish([score(1, 3)])  # submitted later: the match is over
    await clock.advance(10 * WINDOW)
    assert hub.types == [SCORE_UPDATED, SCORE_UPDATED, MATCH_CANCELLED]
    assert batcher.open_windows == 0


async def test_a_match_end_flushes_only_its_own_match() -> None:
    batcher, hub, clock = make()
    await batcher.publish([score(1, 1), score(2, 1)])
    await batcher.publish([score(1, 2), score(2, 2)])
    await batcher.publish([ends(MATCH_CANCELLED, 1)])
    assert hub.scores == [(1, 1), (2, 1), (1, 2)]
    assert batcher.open_windows == 1
    await clock.advance(WINDOW)
    assert hub.scores == [(1, 1), (2, 1), (1, 2), (2, 2)]
    assert hub.types[-2:] == [MATCH_CANCELLED, SCORE_UPDATED]


async def test_flush_sends_the_pending_score_now_and_closes_the_window() -> None:
    batcher, hub, clock = make()
    await batcher.submit(score(1, 1))
    await batcher.submit(score(1, 2))
    await batcher.flush(1)
    assert hub.scores == [(1, 1), (1, 2)]
    assert hub.times == [0.0, 0.0]
    assert batcher.open_windows == 0
    assert clock.armed == 0  # the window's timer cancelled
    await batcher.flush(1)  # nothing pending: nothing sent
    await batcher.flush(99)  # no window at all
    assert len(hub.sent) == 2


async def test_flush_all_sends_every_pending_score() -> None:
    batcher, hub, clock = make()
    for match_id in (1, 2, 3):
        await batcher.submit(score(match_id, 1))
        await batcher.submit(score(match_id, 2))
    await batcher.flush_all()
    assert sorted(hub.scores[3:]) == [(1, 2), (2, 2), (3, 2)]
    assert batcher.open_windows == 0
    assert clock.armed == 0


async def test_flush_waits_for_a_window_send_in_flight() -> None:
    release = asyncio.Event()
    order: list[int] = []
    ledger = ScoreLedger()
    clock = FakeClock()

    async def slow_send(events: Sequence[Event]) -> None:
        for event in events:
            if event.data["sequence"] == 2:
                await release.wait()  # the window's send is slow (the publish lock, the database)
            order.append(event.data["sequence"])
        ledger.record(events)

    batcher = ScoreBatcher(WINDOW_MS, slow_send, ledger, schedule=clock.call_later, clock=lambda: clock.now)
    await batcher.submit(score(1, 1))
    await batcher.submit(score(1, 2))
    clock.now = WINDOW
    clock.timers.pop(0).callback()  # the window closes: score 2's send starts, in a task
    await run_ready()
    await batcher.submit(score(1, 3))
    flushing = asyncio.create_task(batcher.flush(1))
    await run_ready()
    assert order == [1]  # flush waits for the send in flight ...
    release.set()
    await asyncio.wait_for(flushing, 1.0)
    assert order == [1, 2, 3]  # ... so the scores go out in order


# -- the ledger -----------------------------------------------------------------------------------


async def test_a_score_older_than_one_stored_is_skipped() -> None:
    ledger = ScoreLedger()
    batcher, hub, _clock = make(ledger)
    ledger.record([score(1, 5)])  # another reporter's newer score, stored already
    await batcher.submit(score(1, 4))
    await batcher.submit(score(1, 5))
    assert hub.scores == []
    assert batcher.open_windows == 0
    await batcher.submit(score(1, 6))
    assert hub.scores == [(1, 6)]


async def test_a_pending_score_overtaken_while_it_waits_is_dropped() -> None:
    ledger = ScoreLedger()
    batcher, hub, clock = make(ledger)
    await batcher.submit(score(1, 1))
    await batcher.submit(score(1, 2))
    ledger.record([score(1, 3)])  # a send rebuilt to the newest went out meanwhile
    await clock.advance(WINDOW)
    assert hub.scores == [(1, 1)]
    assert batcher.open_windows == 0
    await batcher.submit(score(1, 2))
    await batcher.flush(1)
    assert hub.scores == [(1, 1)]


def test_ledger_keeps_the_newest_sequence_per_match() -> None:
    ledger = ScoreLedger()
    ledger.record([score(1, 3), score(1, 2), score(2, 7)])  # out of order: the newest stays
    assert ledger.outdated(score(1, 3))
    assert not ledger.outdated(score(1, 4))
    assert ledger.outdated(score(2, 7))
    assert not ledger.outdated(score(3, 1))  # a match it never saw
    assert not ledger.outdated(other(BRACKET_UPDATED))  # only scores are ever outdated
    assert not ledger.outdated(ends(MATCH_COMPLETED, 1))
    assert len(ledger) == 2


def test_ledger_marks_both_ends_of_a_match() -> None:
    ledger = ScoreLedger()
    ledger.record([score(1, 3), ends(MATCH_COMPLETED, 1), ends(MATCH_CANCELLED, 2)])
    for match_id in (1, 2):
        assert ledger.outdated(score(match_id, 10**9)), match_id
    ledger.record([score(1, 10**12)])  # a score stored after the end does not reopen the match
    assert ledger.outdated(score(1, 10**12 + 1))


def test_ledger_ignores_events_without_a_score() -> None:
    ledger = ScoreLedger()
    ledger.record([other(BRACKET_UPDATED), other(MATCH_STARTED, match_id=1)])
    assert len(ledger) == 0


def test_regression_ledger_is_bounded() -> None:
    """Defect 2: every cancelled match, every match completed elsewhere, was remembered for ever."""
    ledger = ScoreLedger(limit=100)
    for match_id in range(1, 5001):
        ledger.record([ends(MATCH_CANCELLED if match_id % 2 else MATCH_COMPLETED, match_id)])
        ledger.record([score(match_id + 100_000, 1)])
        assert len(ledger) <= 100
    assert len(ledger) == 100


def test_ledger_default_bound() -> None:
    ledger = ScoreLedger()
    for match_id in range(MAX_REMEMBERED_MATCHES + 500):
        ledger.record([score(match_id, 1)])
    assert len(ledger) == MAX_REMEMBERED_MATCHES


def test_ledger_forgets_the_least_recently_stored_match() -> None:
    ledger = ScoreLedger(limit=3)
    ledger.record([score(1, 1), score(2, 1), score(3, 1)])
    ledger.record([score(1, 2)])  # match 1 used again: match 2 is now the oldest
    ledger.record([score(4, 1)])
    assert len(ledger) == 3
    assert not ledger.outdated(score(2, 1))  # forgotten
    assert ledger.outdated(score(1, 2))
    assert ledger.outdated(score(3, 1))
    assert ledger.outdated(score(4, 1))


async def test_the_batcher_keeps_working_past_the_ledger_bound() -> None:
    ledger = ScoreLedger(limit=10)
    batcher, hub, clock = make(ledger)
    for match_id in range(1, 51):
        await batcher.publish([score(match_id, 1)])
        await batcher.publish([score(match_id, 2)])
        await batcher.publish([ends(MATCH_CANCELLED, match_id)])
    assert len(ledger) == 10
    assert batcher.open_windows == 0
    assert len(hub.scores) == 100
    assert hub.types.count(MATCH_CANCELLED) == 50
    await clock.advance(WINDOW)
    assert len(hub.sent) == 150


async def test_a_failed_window_send_is_logged_and_the_batcher_goes_on() -> None:
    ledger = ScoreLedger()
    clock = FakeClock()
    sent: list[int] = []

    async def send(events: Sequence[Event]) -> None:
        if any(e.data["sequence"] == 2 for e in events):
            raise RuntimeError("database down")
        sent.extend(e.data["sequence"] for e in events)
        ledger.record(events)

    batcher = ScoreBatcher(WINDOW_MS, send, ledger, schedule=clock.call_later, clock=lambda: clock.now)
    await batcher.submit(score(1, 1))
    await batcher.submit(score(1, 2))
    await clock.advance(WINDOW)
    await batcher.submit(score(1, 3))
    await clock.advance(WINDOW)
    assert sent == [1, 3]
