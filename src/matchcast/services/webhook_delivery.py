"""Webhook delivery: each webhook gets its tournament room's events from the event log, in id order.

Driven from the log, not from the broadcast, so nothing published is ever skipped: a webhook's
position (`last_delivered_event_id`) is in the database and moves only after a 2xx answer.
Delivery is at least once: an answer lost on the way means the event is sent again.

One process delivers for a webhook at a time: it holds a lease on the row (renewed with every
step, and checked by every update of the position), so several instances neither deliver in
parallel nor out of order, and a killed instance's webhooks are taken over when its lease ends.
A failure (not 2xx, or no answer in `timeout`) is retried after 1 s, doubling to 10 min; after 24 h
of failures the webhook is disabled. Each process wakes when it publishes an event, and looks for
other instances' events at least every `max_sleep` seconds: two prepared queries, whatever the webhooks.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import httpx
import sqlalchemy as sa

from matchcast import errors
from matchcast.db.compiled import Prepared
from matchcast.db.database import Database, utcnow
from matchcast.db.tables import events, webhooks
from matchcast.protocol import Event, tournament_room
from matchcast.services.publisher import Publisher
from matchcast.services.webhooks import check_address
from matchcast.ticks import until_next_tick

log = logging.getLogger("matchcast.webhooks")
LEASE = timedelta(seconds=30)  # renewed every step; a step takes at most the 10 s timeout
BATCH = 50
BACKOFF_MAX = 600.0
DISABLE_AFTER = timedelta(hours=24)


# The two statements of the poll, which runs every `max_sleep` on every instance: built once
# (building and keying them was most of an idle server's CPU besides the loop itself).
_NOW = sa.bindparam("now", type_=webhooks.c.next_attempt_at.type)
_OWNER = sa.bindparam("owner", type_=webhooks.c.lease_owner.type)
# Tournaments with an enabled webhook: their events wake this process at once.
WATCHED = Prepared(sa.select(webhooks.c.tournament_id).where(webhooks.c.disabled.is_(False)).distinct())
_LAST_EVENT = (
    sa.select(sa.func.max(events.c.id))
    .where(
        events.c.room == sa.literal_column("'tournament_'", sa.String) + sa.cast(webhooks.c.tournament_id, sa.String)
    )
    .scalar_subquery()
)
# Webhooks with events past their position, not waiting for a retry, not leased by others.
DUE = Prepared(
    sa.select(webhooks.c.id).where(
        webhooks.c.disabled.is_(False),
        sa.or_(webhooks.c.next_attempt_at.is_(None), webhooks.c.next_attempt_at <= _NOW),
        sa.or_(webhooks.c.lease_until.is_(None), webhooks.c.lease_until < _NOW, webhooks.c.lease_owner == _OWNER),
        _LAST_EVENT > webhooks.c.last_delivered_event_id,
    )
)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def backoff(attempts: int) -> float:
    """Seconds before the next try after `attempts` failures in a row: 1, 2, 4, ... 600."""
    return float(min(2 ** max(attempts - 1, 0), BACKOFF_MAX))


class WebhookDispatcher:
    def __init__(
        self,
        db: Database,
        publisher: Publisher,
        allow_private: bool,
        timeout: float = 10.0,
        max_sleep: float = 2.0,
    ) -> None:
        self.db = db
        self.publisher = publisher
        self.allow_private = allow_private
        self.timeout = timeout
        self.max_sleep = max_sleep
        self.owner = uuid.uuid4().hex
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._delivering: dict[int, asyncio.Task[None]] = {}
        self._http: httpx.AsyncClient | None = None
        self._watched: set[str] = set()  # tournament rooms with an enabled webhook

    async def publish(self, batch: Sequence[Event]) -> None:
        """Pass the events on (to the hub); wake up if a watched tournament's event went by (most
        events, scores above all, concern no webhook: they cost a set lookup)."""
        await self.publisher.publish(batch)
        if self._watched and any(room in self._watched for event in batch for room in event.rooms):
            self._wake.set()

    def start(self) -> None:
        # No redirects: a 3xx to a private address would get round the address check.
        self._http = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._delivering.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()
        # Hand our webhooks over now rather than when the leases run out (a restart, a deploy).
        release = webhooks.update().where(webhooks.c.lease_owner == self.owner)
        try:
            await self.db.execute(release.values(lease_owner=None, lease_until=None))
        except Exception as exc:  # the database is down: the leases run out by themselves
            log.warning("could not release webhook leases at shutdown: %s", exc)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                self._watched = {tournament_room(row.tournament_id) for row in await self.db.fetch_all(WATCHED())}
                for row in await self.db.fetch_all(DUE(now=utcnow(), owner=self.owner)):
                    if row.id not in self._delivering:
                        self._delivering[row.id] = asyncio.create_task(self._deliver(row.id))
            except Exception:
                log.exception("looking for webhooks to call failed")
            try:
                await asyncio.wait_for(self._wake.wait(), until_next_tick(self.max_sleep))
            except TimeoutError:
                pass

    async def _claim(self, webhook_id: int) -> Any:
        """The webhook's row if this process holds (or now takes) its lease, else None."""
        now = utcnow()
        free = sa.or_(
            webhooks.c.lease_until.is_(None), webhooks.c.lease_until < now, webhooks.c.lease_owner == self.owner
        )
        query = (
            webhooks.update()
            .where(webhooks.c.id == webhook_id, webhooks.c.disabled.is_(False), free)
            .values(lease_owner=self.owner, lease_until=now + LEASE)
            .returning(*webhooks.c)
        )
        return await self.db.write_one(query)

    async def _deliver(self, webhook_id: int) -> None:
        try:
            while True:
                hook = await self._claim(webhook_id)
                if hook is None or (hook.next_attempt_at is not None and hook.next_attempt_at > utcnow()):
                    return
                batch = await self._events_after(hook)
                if not batch:
                    await self._release(webhook_id)
                    return
                for row in batch:
                    if not await self._send(hook, row):
                        return
        except Exception:
            log.exception("delivering webhook %d failed", webhook_id)
        finally:
            self._delivering.pop(webhook_id, None)

    async def _events_after(self, hook: Any) -> list[Any]:
        room = tournament_room(hook.tournament_id)
        query = (
            sa.select(events.c.id, events.c.type, events.c.payload)
            .where(events.c.room == room, events.c.id > hook.last_delivered_event_id)
            .order_by(events.c.id)
            .limit(BATCH)
        )
        return list(await self.db.fetch_all(query))

    async def _send(self, hook: Any, row: Any) -> bool:
        """POST one event (unless the webhook does not take its type); True when the position moved."""
        wanted = None if hook.events is None else set(json.loads(hook.events))
        if wanted is None or row.type in wanted:
            error = await self._post(hook, row)
            if error is not None:
                await self._failed(hook, error)
                return False
        return await self._advance(hook.id, row.id)

    async def _post(self, hook: Any, row: Any) -> str | None:
        """None on a 2xx answer, else what went wrong."""
        room = tournament_room(hook.tournament_id)
        body = f'{{"id":{row.id},"room":{json.dumps(room)},"type":{json.dumps(row.type)},"data":{row.payload}}}'
        data = body.encode()
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "X-Matchcast-Event": row.type,
            "X-Matchcast-Delivery": uuid.uuid4().hex,
            "X-Matchcast-Timestamp": str(timestamp),
            "X-Matchcast-Signature": signature(hook.secret, timestamp, data),
        }
        try:
            await check_address(hook.url, self.allow_private)  # DNS may have changed since creation
            assert self._http is not None
            answer = await self._http.post(hook.url, content=data, headers=headers)
        except errors.DomainError as exc:
            return exc.message
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if 200 <= answer.status_code < 300:
            return None
        return f"HTTP {answer.status_code}"

    async def _advance(self, webhook_id: int, event_id: int) -> bool:
        now = utcnow()
        query = (
            webhooks.update()
            .where(webhooks.c.id == webhook_id, webhooks.c.lease_owner == self.owner)
            .values(
                last_delivered_event_id=event_id,
                attempts=0,
                next_attempt_at=None,
                failing_since=None,
                last_error=None,
                lease_until=now + LEASE,
            )
            .returning(webhooks.c.id)
        )
        return await self.db.write_one(query) is not None  # None: the lease was lost; stop

    async def _failed(self, hook: Any, error: str) -> None:
        now = utcnow()
        failing_since = hook.failing_since or now
        attempts = hook.attempts + 1
        disabled = now - failing_since >= DISABLE_AFTER
        if disabled:
            log.warning("webhook %d disabled after 24 h of failures (%s)", hook.id, error)
        query = (
            webhooks.update()
            .where(webhooks.c.id == hook.id, webhooks.c.lease_owner == self.owner)
            .values(
                attempts=attempts,
                failing_since=failing_since,
                next_attempt_at=now + timedelta(seconds=backoff(attempts)),
                last_error=error[:300],
                disabled=disabled,
                lease_owner=None,
                lease_until=None,
            )
        )
        await self.db.write_one(query.returning(webhooks.c.id))
        # Come back when the retry is due, even if no event wakes this process before.
        asyncio.get_running_loop().call_later(backoff(attempts), self._wake.set)

    async def _release(self, webhook_id: int) -> None:
        query = (
            webhooks.update()
            .where(webhooks.c.id == webhook_id, webhooks.c.lease_owner == self.owner)
            .values(lease_owner=None, lease_until=None)
            .returning(webhooks.c.id)
        )
        await self.db.write_one(query)
