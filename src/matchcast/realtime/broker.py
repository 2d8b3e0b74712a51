"""The broker: cross-process pub/sub of stored events, as the hub needs it.

A small interface, so the hub never depends on broadcaster (realtime/broadcast.py implements it)
and a test can hand the hub a broker of its own. Redis PUB/SUB and NOTIFY are at-most-once: the
hub's log fills whatever a broker loses, so a broker promises no delivery, only to say when it
cannot deliver.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol


class BrokerUnavailable(ConnectionError):
    """The broker connection is down; the Broker is reconnecting."""


@dataclass(frozen=True)
class BrokerMessage:
    event_id: int
    published_ns: int
    frame: str | None  # None: too large for the broker, read it from the log


class Subscription(Protocol):
    async def get(self) -> BrokerMessage:
        """The next message published on the channel, in the order this process received them.
        Raises BrokerUnavailable, waiting or not, as soon as the connection is lost: never silent."""
        ...


class Broker(Protocol):
    async def connect(self) -> None:
        """Connect, or keep trying in the background: returns after the first attempt either way,
        so the server serves while the broker is down."""
        ...

    async def disconnect(self) -> None:
        """Stop reconnecting and close the connection; subscriptions end."""
        ...

    async def publish(self, channel: str, event_id: int, frame: str) -> None:
        """Hand the event to every process subscribed to `channel`, at most once.
        Raises BrokerUnavailable while the broker is down (the event stays in the log)."""
        ...

    async def publish_all(self, events: Sequence[tuple[str, int, str]]) -> None:
        """`publish` for each (channel, event_id, frame), in order; in one round trip where the
        backend can (Redis pipelines them: a score's two rooms cost one wait, not two)."""
        ...

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[Subscription]:
        """Messages published on `channel` from the moment this is entered (the subscription is
        in place when it returns). Raises BrokerUnavailable while the broker is down; a lost
        connection is not carried over: subscribe again."""
        ...

    def health(self) -> str:
        """ "ok", or "unavailable: <what went wrong>" (shown by /healthz). Never blocks."""
        ...

    async def wait_available(self, seconds: float) -> bool:
        """Wait until the broker is connected (at once if it is), at most `seconds`."""
        ...


def pack(event_id: int, frame: str, max_payload: int | None) -> str:
    """The text a broker carries: the event id and the publish time, then the frame; the frame is
    left out when it would make the message longer than `max_payload` bytes."""
    head = f"{event_id} {time.time_ns()}\n"
    if max_payload is not None and len(frame.encode()) + len(head) > max_payload:
        return head
    return head + frame


def unpack(message: str) -> BrokerMessage:
    head, _, frame = message.partition("\n")
    event_id, _, published = head.partition(" ")
    return BrokerMessage(int(event_id), int(published), frame or None)
