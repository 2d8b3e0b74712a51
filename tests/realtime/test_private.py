"""A private tournament (not public) and its matches: only its organizer, staff and its registered
players may watch; everyone else, guests included, is closed 4003 and gets 404 from its pages and
its JSON snapshots (shared/spec/protocol.md, "Rooms and endpoints")."""

from __future__ import annotations

import httpx

from matchcast.services import matches
from tests.support.server import RunningServer


async def test_only_its_people_watch_a_private_tournament(server: RunningServer) -> None:
    t = await server.factory.seeded(4, public=False)
    stranger = await server.factory.user()
    staff = await server.factory.user(staff=True)
    match = next(m for m in await matches.matches_of(server.realtime.db, t.id) if m.participant1_id)
    bystander = next(p for p in t.players if p.user_id not in (match.participant1_id, match.participant2_id))
    rooms = (f"/ws/tournament/{t.id}/", f"/ws/match/{match.id}/")
    for path in rooms:
        for token in (server.guest_token(), server.token(stranger.user_id)):
            async with server.client(path, token) as ws:
                assert await ws.closed() == 4003, path
        for user_id in (t.organizer.user_id, staff.user_id, bystander.user_id, match.participant1_id):
            async with server.client(path, server.token(user_id)) as ws:
                assert (await ws.established())["state"]["id"] in (t.id, match.id)

    async with httpx.AsyncClient(base_url=server.http, timeout=5) as http:
        for path in (
            f"/tournaments/{t.id}",
            f"/matches/{match.id}",
            f"/api/tournaments/{t.id}",
            f"/api/matches/{match.id}",
        ):
            assert (await http.get(path)).status_code == 404, path
        stranger_header = {"Authorization": f"Bearer {server.token(stranger.user_id)}"}
        player_header = {"Authorization": f"Bearer {server.token(bystander.user_id)}"}
        for path in (f"/api/tournaments/{t.id}", f"/api/matches/{match.id}"):
            assert (await http.get(path, headers=stranger_header)).status_code == 404, path
            assert (await http.get(path, headers=player_header)).status_code == 200, path
        public = await server.factory.seeded(2)
        assert (await http.get(f"/api/tournaments/{public.id}")).status_code == 200
