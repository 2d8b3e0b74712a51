"""The last events a room delivered, kept as the frames it sent, so a resume replays from memory.

After a deploy every spectator comes back at once with its `last_event_id`. Read from the
database, each resume cost three queries through the pool (the oldest stored id, the replay's
size, then its pages) and rebuilt every replayed frame per socket: in a 10k reconnect storm those
reads were most of the server's time, and the longer the storm lasted the more each late client
had to replay (docs/performance.md). A room's recent events are the same for everyone resuming,
so they are held once, as the `Frame`s already sent live (built once for every socket).

The window only ever holds a contiguous run of ids, so whatever it holds is exactly the log
between its ends: a hole the room skipped (events pruned, or never committed) starts it afresh.
"""

from __future__ import annotations

from collections import deque
from itertools import islice

from matchcast.realtime.frames import Frame

RECENT_EVENTS = 256  # per room: a few minutes of a busy match; older resumes read the log
# Per room, in characters of frame text: tournament rooms carry whole brackets (~50 KB each), so the
# count alone could hold megabytes. Below the hub's MAX_REPLAY_BYTES even at 4 bytes a character,
# so a replay from here never needs the log's size check.
RECENT_CHARS = 512 * 1024


class RecentEvents:
    __slots__ = ("_chars", "_first", "_frames", "max_chars", "max_events")

    def __init__(self, max_events: int = RECENT_EVENTS, max_chars: int = RECENT_CHARS) -> None:
        self.max_events = max_events
        self.max_chars = max_chars
        self._frames: deque[Frame] = deque()
        self._first = 0  # the id of _frames[0]
        self._chars = 0

    def add(self, event_id: int, frame: Frame) -> None:
        """The room delivered `event_id`: keep it, dropping the oldest past either bound."""
        if self._frames and event_id != self._first + len(self._frames):
            self.clear()  # a hole: what is held would no longer run up to the newest
        if not self._frames:
            self._first = event_id
        self._frames.append(frame)
        self._chars += len(frame.text)
        while len(self._frames) > self.max_events or self._chars > self.max_chars:
            self._chars -= len(self._frames.popleft().text)
            self._first += 1

    def clear(self) -> None:
        self._frames.clear()
        self._chars = 0

    def holds(self, event_id: int) -> bool:
        return self._first <= event_id < self._first + len(self._frames)

    def after(self, after_id: int, limit: int) -> list[tuple[int, Frame]]:
        """Up to `limit` events after `after_id`, oldest first, if the next one is held; else none."""
        if not self.holds(after_id + 1):
            return []
        start = after_id + 1 - self._first
        return list(enumerate(islice(self._frames, start, start + limit), start=after_id + 1))

    def __len__(self) -> int:
        return len(self._frames)
