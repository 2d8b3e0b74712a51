"""recent.py: a room's last delivered events, a contiguous window bounded by count and size."""

from __future__ import annotations

from matchcast.realtime.frames import Frame
from matchcast.realtime.hub import MAX_REPLAY_BYTES
from matchcast.realtime.recent import RECENT_CHARS, RecentEvents


def frames(ids: range, size: int = 10) -> list[tuple[int, Frame]]:
    return [(i, Frame(str(i).rjust(size, "x"))) for i in ids]


def filled(ids: range, **bounds: int) -> RecentEvents:
    recent = RecentEvents(**bounds)
    for event_id, frame in frames(ids):
        recent.add(event_id, frame)
    return recent


def ids_after(recent: RecentEvents, after: int, limit: int = 1000) -> list[int]:
    return [event_id for event_id, _ in recent.after(after, limit)]


def test_it_holds_the_newest_events_up_to_the_count() -> None:
    recent = filled(range(1, 21), max_events=8)
    assert len(recent) == 8
    assert not recent.holds(12) and recent.holds(13) and recent.holds(20) and not recent.holds(21)
    assert ids_after(recent, 12) == list(range(13, 21))


def test_it_holds_at_most_max_chars_of_frames() -> None:
    recent = filled(range(1, 21), max_chars=35)  # frames of 10 characters: three fit
    assert ids_after(recent, 17) == [18, 19, 20]
    assert not recent.holds(17)


def test_a_frame_larger_than_the_bound_is_not_held_and_the_window_starts_after_it() -> None:
    recent = filled(range(1, 4), max_chars=35)
    recent.add(4, Frame("y" * 36))
    assert len(recent) == 0 and not recent.holds(4)
    recent.add(5, Frame("z"))
    assert ids_after(recent, 4) == [5]


def test_a_hole_starts_the_window_afresh() -> None:
    recent = filled(range(1, 6))
    recent.add(9, Frame("nine"))  # 6..8 skipped by the room (pruned, never committed)
    assert not recent.holds(5)
    assert ids_after(recent, 8) == [9]
    assert ids_after(recent, 4) == []  # 5 is not held: the log must answer


def test_after_gives_pages_in_order_only_from_a_held_next_event() -> None:
    recent = filled(range(11, 31))
    assert ids_after(recent, 10, limit=4) == [11, 12, 13, 14]
    assert ids_after(recent, 26, limit=10) == [27, 28, 29, 30]
    assert ids_after(recent, 30) == []  # nothing newer held yet
    assert ids_after(recent, 9) == []  # 10 is older than the window
    texts = {event_id: frame for event_id, frame in frames(range(11, 31))}
    assert [frame.text for _, frame in recent.after(14, 2)] == [texts[15].text, texts[16].text]


def test_a_full_window_fits_one_replay_without_the_logs_size_check() -> None:
    assert RECENT_CHARS * 4 <= MAX_REPLAY_BYTES  # 4 bytes per character at most in UTF-8
