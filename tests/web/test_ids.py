"""Ids are never reused: a deleted user's token must not open the next account (SQLite handed out
the highest deleted id again before AUTOINCREMENT; PostgreSQL's sequences never did)."""

from __future__ import annotations

import httpx
import sqlalchemy as sa

from matchcast.services import users
from matchcast.services.actors import REVOKED
from tests.support.factories import PASSWORD
from tests.support.server import running_server, test_settings


async def test_a_deleted_users_id_is_never_given_again_and_its_token_is_refused(database_url: str) -> None:
    settings = test_settings(database_url=database_url, broadcast_url="memory://")
    async with running_server(settings) as server:
        db = server.realtime.db
        ids = [await users.create_user(db, f"user{n}", PASSWORD) for n in (1, 2, 3)]
        assert ids == [1, 2, 3]
        deleted_token = server.token(3)
        await db.execute(sa.text("DELETE FROM users WHERE id = 3"))

        assert await users.create_user(db, "newcomer", PASSWORD) == 4

        async with httpx.AsyncClient(base_url=server.http, timeout=5) as http:
            response = await http.get(
                "/api/tournaments/1/webhooks", headers={"Authorization": f"Bearer {deleted_token}"}
            )
            assert response.status_code == 401, response.text
            assert response.json()["error"]["message"] == REVOKED
