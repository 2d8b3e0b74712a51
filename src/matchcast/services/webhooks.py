"""Organizers' webhooks: create, list, remove; and the address rule every delivery checks again.

A webhook URL must be http(s) and its host must resolve to public addresses only: a tournament
organizer must not be able to make this server call into its own network (loopback, private,
link-local, metadata services) — unless the operator allows it (`MATCHCAST_WEBHOOK_ALLOW_PRIVATE`,
for tests and one-host set-ups). DNS can change after creation, so delivery checks again.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import secrets
import socket
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from matchcast import errors
from matchcast.db.database import Database, iso, utcnow
from matchcast.db.tables import webhooks
from matchcast.protocol import EVENT_TYPES, is_int
from matchcast.services.actors import Actor, require_organizer
from matchcast.services.tournaments import get_tournament

MAX_URL = 2000
MAX_PER_TOURNAMENT = 20


async def check_address(url: str, allow_private: bool) -> None:
    """Refuse a URL that is not http(s), or whose host resolves to a non-public address."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise errors.invalid("url must be an http:// or https:// URL with a host")
    if allow_private:
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError) as exc:
        raise errors.invalid(f"url's host {parts.hostname!r} does not resolve: {exc}"[:200]) from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not address.is_global:
            raise errors.invalid(
                f"url's host {parts.hostname!r} resolves to {address}, which is not a public address; "
                "webhooks call public servers only (an operator may set MATCHCAST_WEBHOOK_ALLOW_PRIVATE=true)"
            )


def validate_events(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise errors.invalid("events must be a non-empty list of event types (or left out: all events)")
    unknown = sorted(set(value) - EVENT_TYPES)
    if unknown:
        raise errors.invalid(f"unknown event types {unknown[:5]}; use some of {sorted(EVENT_TYPES)}"[:300])
    return sorted(set(value))


async def create_webhook(
    db: Database, actor: Actor | None, tournament_id: Any, url: Any, event_types: Any, allow_private: bool
) -> dict[str, Any]:
    """A new webhook; the answer carries its secret, which is shown this once."""
    require_organizer(actor, await get_tournament(db, tournament_id))
    if not isinstance(url, str) or not 0 < len(url) <= MAX_URL or not url.isprintable():
        raise errors.invalid(f"url must be a URL of at most {MAX_URL} characters")
    selected = validate_events(event_types)
    await check_address(url, allow_private)
    secret = secrets.token_hex(32)
    async with db.write():
        tournament = await get_tournament(db, tournament_id, lock=True)
        count = await db.fetch_val(
            sa.select(sa.func.count()).select_from(webhooks).where(webhooks.c.tournament_id == tournament.id)
        )
        if count >= MAX_PER_TOURNAMENT:
            raise errors.invalid_state(f"a tournament has at most {MAX_PER_TOURNAMENT} webhooks; remove one first")
        query = webhooks.insert().values(
            tournament_id=tournament.id,
            url=url,
            secret=secret,
            events=None if selected is None else json.dumps(selected),
            last_delivered_event_id=0,
            attempts=0,
            disabled=False,
            created_at=utcnow(),
        )
        webhook_id = await db.fetch_val(query.returning(webhooks.c.id))
    return {"id": webhook_id, "url": url, "events": selected, "secret": secret}


async def list_webhooks(db: Database, actor: Actor | None, tournament_id: Any) -> list[dict[str, Any]]:
    require_organizer(actor, await get_tournament(db, tournament_id))
    rows = await db.fetch_all(
        webhooks.select().where(webhooks.c.tournament_id == tournament_id).order_by(webhooks.c.id)
    )
    return [webhook_view(row) for row in rows]


def webhook_view(row: Any) -> dict[str, Any]:
    """A webhook's delivery state (never its secret)."""
    return {
        "id": row.id,
        "url": row.url,
        "events": None if row.events is None else json.loads(row.events),
        "last_delivered_event_id": row.last_delivered_event_id,
        "failing_since": iso(row.failing_since),
        "last_error": row.last_error,
        "disabled": bool(row.disabled),
    }


async def delete_webhook(db: Database, actor: Actor | None, webhook_id: Any) -> None:
    if not is_int(webhook_id):
        raise errors.invalid("webhook id must be an integer")
    async with db.write():
        row = await db.fetch_one(webhooks.select().where(webhooks.c.id == webhook_id))
        if row is None:
            raise errors.not_found(f"webhook {webhook_id} does not exist")
        require_organizer(actor, await get_tournament(db, row.tournament_id))
        await db.execute(webhooks.delete().where(webhooks.c.id == webhook_id))
