"""Refuse oversized requests before anything else reads them.

The contract answers a handshake whose request line or headers reach 8 KB with an HTTP 4xx,
promptly. uvicorn's wsproto implementation accepts such requests, so the app measures them.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

MAX_REQUEST_HEAD = 8 * 1024
BODY = b"Request line and headers must be under 8 KB; pass a shorter token.\n"


class RequestHeadLimit:
    def __init__(self, app: ASGIApp, limit: int = MAX_REQUEST_HEAD) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and self._size(scope) >= self.limit:
            prefix = "websocket.http." if scope["type"] == "websocket" else "http."
            headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(BODY)).encode())]
            await send({"type": prefix + "response.start", "status": 431, "headers": headers})
            await send({"type": prefix + "response.body", "body": BODY})
            return
        await self.app(scope, receive, send)

    @staticmethod
    def _size(scope: Scope) -> int:
        line = len(scope.get("raw_path") or scope["path"].encode()) + len(scope.get("query_string", b""))
        return line + sum(len(name) + len(value) + 4 for name, value in scope.get("headers", []))
