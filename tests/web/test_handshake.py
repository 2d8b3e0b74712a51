"""Request heads of 8 KB or more are answered 431, promptly, WebSocket upgrades included (the
contract's check 2); smaller ones go on to the app (web/handshake.py, web/websocket_protocol.py)."""

from __future__ import annotations

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from matchcast.web.handshake import BODY, MAX_REQUEST_HEAD
from tests.support.server import RunningServer


def padded_token(server: RunningServer, head_bytes: int) -> str:
    """A guest token followed by junk, so that the request head is about `head_bytes` long."""
    token = server.guest_token()
    return token + "x" * max(0, head_bytes - len(token) - 200)


async def test_a_websocket_handshake_of_8_kb_is_answered_431(server: RunningServer) -> None:
    _t, match = await server.factory.live_match()
    with pytest.raises(InvalidStatus) as refused:
        async with server.client(f"/ws/match/{match.id}/", padded_token(server, MAX_REQUEST_HEAD + 100)):
            pass
    assert refused.value.response.status_code == 431
    assert refused.value.response.body == BODY
    async with server.client(f"/ws/match/{match.id}/", padded_token(server, MAX_REQUEST_HEAD - 600)) as ws:
        assert await ws.closed() == 4001  # heard out: the token (with junk after it) is not valid


async def test_an_http_request_of_8_kb_is_answered_431(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.http, timeout=5) as http:
        long = await http.get("/healthz", headers={"x-padding": "x" * MAX_REQUEST_HEAD})
        assert long.status_code == 431 and long.content == BODY
        short = await http.get("/healthz", headers={"x-padding": "x" * (MAX_REQUEST_HEAD - 600)})
        assert short.status_code == 200
