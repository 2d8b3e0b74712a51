"""rooms.py alone: a room's ordering, driven with a fake log, a fake clock and fake sockets.

The hub's listener calls `receive` for each broker message and `fill_gap` once `wait()` has
passed; here the test plays the broker and the listener, and advances the clock itself.
"""

from __future__ import annotations

import asyncio
import json

from matchcast.protocol import encode_event
from matchcast.realtime.eventlog import StoredEvent
from matchcast.realtime.frames import Frame
from matchcast.realtime.rooms import CATCH_UP_BATCH, Room

ROOM = "match_1"
GAP_WAIT = 0.25  # exact in binary: the fake clock's sums compare exactly


def frame(event_id: int) -> str:
    return encode_event("score_updated", event_id, json.dumps({"match_id": 1, "sequence": event_id}))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1024.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeLog:
    """The room's stored events; `read_log(after, limit)` as eventlog.read_after answers it."""

    def __init__(self, ids: range | list[int] = range(0)) -> None:
        self.events: dict[int, StoredEvent] = {}
        self.reads: list[tuple[int, int]] = []
        for event_id in ids:
            self.store(event_id)

    def store(self, event_id: int) -> None:
        self.events[event_id] = StoredEvent(ROOM, event_id, "score_updated", frame(event_id))

    async def read_log(self, after: int, limit: int) -> list[StoredEvent]:
        self.reads.append((after, limit))
        return [self.events[i] for i in sorted(self.events) if i > after][:limit]


class FakeReceiver:
    def __init__(self) -> None:
        self.got: list[tuple[int, str]] = []

    def offer(self, event_id: int, frame: Frame) -> None:
        self.got.append((event_id, frame.text))

    @property
    def ids(self) -> list[int]:
        return [event_id for event_id, _ in self.got]


def make_room(
    log: FakeLog, clock: FakeClock, receivers: int = 1, next_id: int = 1
) -> tuple[Room[FakeReceiver], list[FakeReceiver]]:
    room: Room[FakeReceiver] = Room(ROOM, log.read_log, GAP_WAIT, clock=clock)
    sockets = [FakeReceiver() for _ in range(receivers)]
    for receiver in sockets:
        room.add(receiver)
    room.start_at(next_id)
    return room, sockets


async def test_start_at_lets_sockets_join() -> None:
    room: Room[FakeReceiver] = Room(ROOM, FakeLog().read_log, GAP_WAIT, clock=FakeClock())
    assert not room.ready.is_set()
    room.start_at(8)
    assert room.ready.is_set()
    assert room.next_id == 8
    assert room.wait() is None  # nothing missing


async def test_in_order_events_reach_every_socket_once_with_their_frame() -> None:
    log, clock = FakeLog(), FakeClock()
    room, sockets = make_room(log, clock, receivers=3)
    for event_id in (1, 2, 3):
        await room.receive(event_id, frame(event_id), 0)
    for socket in sockets:
        assert socket.got == [(i, frame(i)) for i in (1, 2, 3)]
    assert room.next_id == 4
    assert room.wait() is None
    assert log.reads == []  # the log is read only for a gap or a large frame


async def test_duplicates_are_dropped_delivered_or_waiting() -> None:
    room, [socket] = make_room(FakeLog(), FakeClock())
    await room.receive(1, frame(1), 0)
    await room.receive(1, frame(1), 0)  # delivered already
    await room.receive(3, frame(3), 0)
    await room.receive(3, "a second copy", 0)  # waiting its turn
    await room.receive(2, frame(2), 0)
    await room.receive(2, frame(2), 0)
    assert socket.got == [(1, frame(1)), (2, frame(2)), (3, frame(3))]


async def test_events_before_the_start_are_dropped() -> None:
    room, [socket] = make_room(FakeLog(), FakeClock(), next_id=10)
    await room.receive(9, frame(9), 0)  # stored before the room subscribed: in the snapshot
    await room.receive(10, frame(10), 0)
    assert socket.ids == [10]


async def test_out_of_order_events_wait_and_go_in_order() -> None:
    room, [socket] = make_room(FakeLog(), FakeClock())
    for event_id in (3, 2, 5, 4):
        await room.receive(event_id, frame(event_id), 0)
    assert socket.ids == []
    assert room.wait() == GAP_WAIT  # event 1 is missing
    await room.receive(1, frame(1), 0)
    assert socket.ids == [1, 2, 3, 4, 5]
    assert room.wait() is None


async def test_a_gap_is_filled_from_the_log_after_the_wait() -> None:
    log, clock = FakeLog(range(1, 6)), FakeClock()
    room, [socket] = make_room(log, clock)
    await room.receive(1, frame(1), 0)
    await room.receive(4, frame(4), 0)  # 2 and 3 lost by the broker
    assert socket.ids == [1]
    assert room.wait() == GAP_WAIT
    clock.advance(GAP_WAIT / 2)
    assert room.wait() == GAP_WAIT / 2  # counts down on the injected clock
    await room.receive(5, frame(5), 0)  # later arrivals wait too, and do not restart the wait
    assert room.wait() == GAP_WAIT / 2
    clock.advance(GAP_WAIT)
    assert room.wait() == 0.0  # never negative
    await room.fill_gap()
    assert socket.got == [(i, frame(i)) for i in range(1, 6)]
    assert log.reads == [(1, 4)]  # one read: from the hole up to the newest waiting
    assert room.wait() is None
    assert room.next_id == 6


async def test_a_missing_event_that_arrives_before_the_wait_ends_cancels_the_fill() -> None:
    log, clock = FakeLog(), FakeClock()
    room, [socket] = make_room(log, clock)
    await room.receive(2, frame(2), 0)
    await room.receive(1, frame(1), 0)
    assert room.wait() is None
    await room.fill_gap()  # a listener that timed out just as the event arrived: nothing to do
    assert socket.ids == [1, 2]
    assert log.reads == []


async def test_a_hole_the_log_lacks_is_skipped() -> None:
    log, clock = FakeLog([1, 4, 5]), FakeClock()  # 2 and 3 pruned
    room, [socket] = make_room(log, clock)
    await room.receive(1, frame(1), 0)
    await room.receive(5, frame(5), 0)
    clock.advance(GAP_WAIT)
    await room.fill_gap()
    assert socket.ids == [1, 4, 5]  # 4 from the log, the hole skipped: the room does not stall
    assert room.next_id == 6
    assert room.wait() is None
    await room.receive(6, frame(6), 0)
    await room.receive(3, frame(3), 0)  # too late: skipped for good, never out of order
    assert socket.ids == [1, 4, 5, 6]


async def test_a_hole_the_log_lacks_entirely_is_skipped() -> None:
    log, clock = FakeLog([1]), FakeClock()  # 2 never reached the log (nor 3, the broker had it)
    room, [socket] = make_room(log, clock)
    await room.receive(1, frame(1), 0)
    await room.receive(3, frame(3), 0)
    clock.advance(GAP_WAIT)
    await room.fill_gap()
    assert socket.ids == [1, 3]


async def test_a_large_frame_is_read_from_the_log() -> None:
    log, clock = FakeLog(range(1, 4)), FakeClock()
    room, [socket] = make_room(log, clock)
    await room.receive(1, frame(1), 0)
    await room.receive(2, None, 0)  # too large for the broker: the message carries only the id
    await room.receive(3, frame(3), 0)
    assert socket.got == [(i, frame(i)) for i in (1, 2, 3)]
    assert log.reads == [(1, 1)]


async def test_a_large_frame_ahead_of_a_gap_waits_its_turn() -> None:
    log, clock = FakeLog(range(1, 4)), FakeClock()
    room, [socket] = make_room(log, clock)
    await room.receive(3, None, 0)
    assert socket.ids == []
    await room.receive(2, frame(2), 0)
    await room.receive(1, frame(1), 0)
    assert socket.got == [(i, frame(i)) for i in (1, 2, 3)]


async def test_a_large_frame_already_pruned_is_skipped_by_the_gap_fill() -> None:
    log, clock = FakeLog([1, 3]), FakeClock()
    room, [socket] = make_room(log, clock)
    await room.receive(1, frame(1), 0)
    await room.receive(2, None, 0)  # not in the log any more
    assert room.wait() is None  # nothing waits: there is nothing to deliver yet
    await room.receive(3, frame(3), 0)
    clock.advance(GAP_WAIT)
    await room.fill_gap()
    assert socket.ids == [1, 3]


async def test_a_duplicate_large_frame_is_not_read_again() -> None:
    log, clock = FakeLog(range(1, 3)), FakeClock()
    room, [socket] = make_room(log, clock)
    await room.receive(1, None, 0)
    await room.receive(1, None, 0)
    assert socket.ids == [1]
    assert log.reads == [(0, 1)]


async def test_catch_up_after_resubscribe_delivers_what_the_broker_missed() -> None:
    total = 2 * CATCH_UP_BATCH + 7  # several pages
    log, clock = FakeLog(range(1, 4)), FakeClock()
    room, [socket] = make_room(log, clock)
    for event_id in (1, 2, 3):
        await room.receive(event_id, frame(event_id), 0)
    for event_id in range(4, total + 1):  # stored while the broker was down
        log.store(event_id)
    await room.catch_up()
    assert socket.ids == list(range(1, total + 1))
    assert socket.got[-1] == (total, frame(total))
    assert log.reads == [(3, CATCH_UP_BATCH), (3 + CATCH_UP_BATCH, CATCH_UP_BATCH), (3 + 2 * CATCH_UP_BATCH, 500)]
    assert room.wait() is None
    # The new subscription may still bring some of them: duplicates, dropped.
    await room.receive(total, frame(total), 0)
    await room.receive(total + 1, frame(total + 1), 0)
    assert socket.ids == list(range(1, total + 2))


async def test_catch_up_keeps_events_that_arrived_live_meanwhile() -> None:
    log, clock = FakeLog(range(1, 6)), FakeClock()
    room, [socket] = make_room(log, clock)
    await room.receive(6, frame(6), 0)  # live, on the new subscription, ahead of the catch-up
    await room.catch_up()
    assert socket.ids == [1, 2, 3, 4, 5, 6]
    assert room.wait() is None


async def test_catch_up_with_an_event_missing_everywhere_waits_then_skips() -> None:
    log, clock = FakeLog([1, 2]), FakeClock()
    room, [socket] = make_room(log, clock)
    await room.receive(4, frame(4), 0)  # live; 3 was never stored
    await room.catch_up()
    assert socket.ids == [1, 2]
    assert room.wait() == GAP_WAIT
    clock.advance(GAP_WAIT)
    await room.fill_gap()
    assert socket.ids == [1, 2, 4]


async def test_catch_up_skips_a_pruned_hole_followed_by_a_full_page() -> None:
    # Regression: with the hole at next_id and a whole page after it, catch_up read the same page
    # for ever (the room never went live again).
    log, clock = FakeLog(range(2, CATCH_UP_BATCH + 10)), FakeClock()  # 1 pruned while the room was away
    room, [socket] = make_room(log, clock)
    await asyncio.wait_for(room.catch_up(), 5)
    assert socket.ids == list(range(2, CATCH_UP_BATCH + 10))
    assert len(log.reads) <= 3


async def test_sockets_that_join_later_get_only_later_events() -> None:
    room, [first] = make_room(FakeLog(), FakeClock())
    await room.receive(1, frame(1), 0)
    second = FakeReceiver()
    room.add(second)
    await room.receive(2, frame(2), 0)
    room.discard(first)
    await room.receive(3, frame(3), 0)
    assert first.ids == [1, 2]
    assert second.ids == [2, 3]


async def test_delivered_reports_sockets_reached_and_publish_time() -> None:
    reports: list[tuple[int, int]] = []
    log, clock = FakeLog(), FakeClock()
    room: Room[FakeReceiver] = Room(
        ROOM, log.read_log, GAP_WAIT, clock=clock, delivered=lambda n, ns: reports.append((n, ns))
    )
    room.add(FakeReceiver())
    room.add(FakeReceiver())
    room.start_at(1)
    await room.receive(2, frame(2), 222)
    await room.receive(1, frame(1), 111)
    assert reports == [(2, 111), (2, 222)]


# -- recent events (realtime/recent.py): what resumes replay from memory --------------------------


async def test_delivered_events_become_the_rooms_recent_ones_the_same_frames_sent() -> None:
    room, (socket,) = make_room(FakeLog(), FakeClock())
    for event_id in (1, 2, 3):
        await room.receive(event_id, frame(event_id), 0)
    assert [(i, f.text) for i, f in room.recent.after(0, 10)] == socket.got


async def test_start_at_keeps_the_stored_events_that_run_up_to_the_start() -> None:
    room: Room[FakeReceiver] = Room(ROOM, FakeLog().read_log, GAP_WAIT, clock=FakeClock())
    room.start_at(11, [(i, Frame(frame(i))) for i in range(5, 11)])
    assert [i for i, _ in room.recent.after(4, 10)] == list(range(5, 11))
    await room.receive(11, frame(11), 0)
    assert room.recent.holds(11) and room.recent.holds(5)


async def test_start_at_keeps_nothing_when_the_stored_events_stop_short_of_the_start() -> None:
    room: Room[FakeReceiver] = Room(ROOM, FakeLog().read_log, GAP_WAIT, clock=FakeClock())
    room.start_at(11, [(i, Frame(frame(i))) for i in range(5, 9)])  # 9 and 10 missing
    assert len(room.recent) == 0


async def test_a_skipped_hole_starts_the_recent_events_afresh() -> None:
    clock = FakeClock()
    room, (socket,) = make_room(FakeLog(), clock)
    await room.receive(1, frame(1), 0)
    await room.receive(3, frame(3), 0)  # 2 never committed
    clock.advance(GAP_WAIT)
    await room.fill_gap()
    assert socket.ids == [1, 3]
    assert not room.recent.holds(1) and room.recent.holds(3)
