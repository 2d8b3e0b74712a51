"""The organizer page's webhooks: add (the secret shown once), see the delivery state, remove."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.support.databases import dump, sqlite_url
from tests.support.processes import wait_until
from tests.support.server import RunningServer, running_server, test_settings
from tests.web.helpers import csrf_of, follow, log_in


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    settings = test_settings(database_url=sqlite_url(tmp_path), broadcast_url="memory://", webhook_allow_private=True)
    async with running_server(settings) as running:
        yield running


async def test_add_see_and_remove_a_webhook(server: RunningServer, client: httpx.AsyncClient) -> None:
    t = await server.factory.seeded(2)
    assert (await log_in(client, t.organizer.username)).status_code == 303
    page = await client.get(f"/organize/tournaments/{t.id}")
    assert "No webhooks." in page.text
    url = "http://127.0.0.1:9/hook"  # nobody listens: the delivery fails and says so
    added = await follow(
        client,
        await client.post(
            f"/organize/tournaments/{t.id}/webhooks",
            data={"csrf_token": csrf_of(page.text), "url": url, "events": "match_scheduled, match_completed"},
        ),
    )
    secret = re.search(r"signing secret \(shown once, keep it\): ([0-9a-f]{64})", added.text)
    assert secret, added.text[:3000]
    assert url in added.text and "match_completed, match_scheduled" in added.text
    again = await client.get(f"/organize/tournaments/{t.id}")
    assert secret.group(1) not in again.text  # shown once

    async def failing_shown() -> bool:
        return "failing since" in (await client.get(f"/organize/tournaments/{t.id}")).text

    await wait_until(failing_shown, 10, "the failing delivery shown on the organizer page")
    webhook_id = int(re.search(r'id="webhook-(\d+)"', again.text).group(1))  # type: ignore[union-attr]
    removed = await follow(
        client,
        await client.post(f"/organize/webhooks/{webhook_id}/remove", data={"csrf_token": csrf_of(again.text)}),
    )
    assert "Webhook removed." in removed.text and "No webhooks." in removed.text


async def test_a_bad_webhook_is_refused_in_words_and_changes_nothing(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    t = await server.factory.seeded(2)
    assert (await log_in(client, t.organizer.username)).status_code == 303
    page = await client.get(f"/organize/tournaments/{t.id}")
    before = await dump(server.realtime.db)
    for data, reason in (
        ({"url": "ftp://example.com/x"}, "http:// or https://"),
        ({"url": "http://127.0.0.1/x", "events": "nope"}, "unknown event types"),
    ):
        refused = await client.post(
            f"/organize/tournaments/{t.id}/webhooks", data={"csrf_token": csrf_of(page.text), **data}
        )
        assert refused.status_code == 400 and reason in refused.text
    no_csrf = await client.post(f"/organize/tournaments/{t.id}/webhooks", data={"url": "http://127.0.0.1/x"})
    assert no_csrf.status_code == 403
    assert await dump(server.realtime.db) == before
