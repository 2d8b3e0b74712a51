"""Everything the clients saw and did, for the checker: kept in memory, written to the results."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Stream:
    """One reader of one room (a WebSocket spectator or an SSE reader) across all its reconnections.

    `ids` are the event ids in the order received; `resets` the positions in `ids` where the reader
    took a partial snapshot (replay "partial") and the id it continued from; `received_at` the
    wall-clock time (as the log's created_at) of each id; `jumps` any id that did not follow the
    previous one (evidence).
    """

    name: str
    room: str
    ids: list[int] = field(default_factory=list)
    received_at: list[float] = field(default_factory=list)
    resets: list[tuple[int, int]] = field(default_factory=list)
    jumps: list[dict[str, Any]] = field(default_factory=list)
    connections: int = 0
    drops: list[dict[str, Any]] = field(default_factory=list)  # every connection: when, why it ended, replayed
    replayed: int = 0
    instance: int | None = None  # the instance it is connected to now

    @property
    def last(self) -> int:
        if self.resets and self.resets[-1][0] == len(self.ids):
            return self.resets[-1][1]
        return self.ids[-1] if self.ids else 0

    def ended(self, opened: float, reason: str, instance: int, replayed_before: int) -> None:
        """One connection is over: record when, why, and how much of it was replay."""
        self.instance = None
        self.drops.append(
            {
                "opened": opened,
                "ended": time.time(),
                "reason": reason,
                "instance": instance,
                "replayed": self.replayed - replayed_before,
            }
        )

    def receive(self, event_id: int, instance: int) -> bool:
        """Record one event; False when it does not follow the last one (the reader reconnects)."""
        expected = self.last + 1
        if event_id != expected:
            self.jumps.append({"expected": expected, "got": event_id, "instance": instance, "at": time.time()})
            return False
        self.ids.append(event_id)
        self.received_at.append(time.time())
        return True


@dataclass
class History:
    streams: list[Stream] = field(default_factory=list)
    api_ok: list[dict[str, Any]] = field(default_factory=list)  # every API call answered 2xx
    api_failed: dict[str, int] = field(default_factory=dict)  # by reason, for the report
    ws_ok: list[dict[str, Any]] = field(default_factory=list)  # player actions the server answered
    webhook: dict[int, list[int]] = field(default_factory=dict)  # tournament id -> ids as received
    webhook_ids: dict[int, int] = field(default_factory=dict)  # tournament id -> webhook id
    faults: list[dict[str, Any]] = field(default_factory=list)
    rss: dict[str, list[tuple[float, int]]] = field(default_factory=dict)  # "instance:pid" -> (t, KiB)

    def failed(self, reason: str) -> None:
        self.api_failed[reason] = self.api_failed.get(reason, 0) + 1
