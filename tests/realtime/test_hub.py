"""hub.py: shutdown stays within its bound whatever the clients do (a real database, the memory broker)."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator

import pytest

from matchcast.db.database import Database
from matchcast.protocol import WS_1012_SERVICE_RESTART
from matchcast.realtime import hub as hub_module
from matchcast.realtime.broadcast import BroadcastBroker
from matchcast.realtime.connection import Connection
from matchcast.realtime.hub import Hub
from matchcast.realtime.metrics import Metrics
from matchcast.realtime.ratelimit import TokenBucket
from matchcast.services import freshness
from matchcast.settings import RateLimit
from tests.support.server import test_settings as settings_for_tests

pytestmark = pytest.mark.timeout(30)


class NeverReads:
    """A client that takes no frame and no close frame."""

    def __init__(self) -> None:
        self.closed_with: int | None = None

    async def send_text(self, data: str) -> None:
        await asyncio.Event().wait()

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed_with = code
        await asyncio.Event().wait()


class Reads:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.closed_with: int | None = None

    async def send_text(self, data: str) -> None:
        self.sent.append(data)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed_with = code


@pytest.fixture
async def hub(db: Database) -> AsyncIterator[Hub]:
    broker = BroadcastBroker("memory://")
    await broker.connect()
    hub = Hub(settings_for_tests(), db, broker, Metrics(), functools.partial(freshness.refresh, db))
    await hub.start()
    try:
        yield hub
    finally:
        await broker.disconnect()


def connect(hub: Hub, socket: NeverReads | Reads) -> Connection:
    conn = Connection(socket, "match_1", "match", "spectator", None, 8, TokenBucket(RateLimit(20, 1)), hub.leave)
    return conn


async def test_stop_cuts_off_a_client_that_does_not_read_and_finishes(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression: stop() bounded the closes with wait_for(SETTLE_SECONDS) while a client that does
    # not read holds its close for CLOSE_GRACE: the TimeoutError escaped, and the heartbeat, the
    # pruner and the rooms' listeners were never stopped.
    monkeypatch.setattr(hub_module, "SETTLE_SECONDS", 0.2)
    stuck, fine = NeverReads(), Reads()
    for socket in (stuck, fine):
        conn = connect(hub, socket)
        await asyncio.wait_for(hub.establish(conn, snapshot, None, {"room": "match_1"}), 5)
    heartbeat = hub._heartbeat
    assert heartbeat is not None
    started = time.monotonic()
    await asyncio.wait_for(hub.stop(), 5)
    assert time.monotonic() - started < 2
    assert fine.closed_with == WS_1012_SERVICE_RESTART
    assert heartbeat.cancelling() or heartbeat.cancelled()
    assert hub.rooms == {}


async def snapshot() -> dict[str, object]:
    return {}
