"""The interface through which services hand events to the realtime layer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from matchcast.protocol import Event


class Publisher(Protocol):
    async def publish(self, events: Sequence[Event]) -> None:
        """Deliver `events`, in order, to every room each names.

        Called only after the state change that produced them has committed. The realtime
        implementation stores each event in its rooms' logs (contiguous ids per room) before
        broadcasting it; `score_updated` events may be coalesced by the batching window, the
        latest always delivered. Never raises for delivery problems of individual sockets.
        """
        ...


class DiscardingPublisher:
    """For work done with no live audience (tests of pure domain rules)."""

    def __init__(self) -> None:
        self.published: list[Event] = []

    async def publish(self, events: Sequence[Event]) -> None:
        self.published.extend(events)
