"""The writers: an organizer per tournament (JSON API) and its players (WebSocket).

The organizer starts the tournament's playable matches, scores them for a while, and ends each in one
of five ways: completing it through the API, a report confirmed by the opponent, a report confirmed
by agreement, a report left to its deadline, or a dispute the organizer resolves with a score. Every
call goes to a random instance that is up; a call that fails (the instance died, a link hung) is
retried or given up; only answers are recorded, so the checker holds the server to what it said.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from chaos.cluster import Instance
from chaos.history import History
from chaos.readers import pick

API_TIMEOUT = 5.0
ENDINGS = ("complete", "confirm", "agreement", "timeout", "dispute")
PLAYER_WAIT = 8.0


class Api:
    def __init__(self, instances: list[Instance], history: History, token: str, rng: random.Random) -> None:
        self.instances = instances
        self.history = history
        self.headers = {"Authorization": f"Bearer {token}"}
        self.rng = rng
        self.client = httpx.AsyncClient(timeout=API_TIMEOUT)

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any] | None:
        instance = pick(self.instances, self.rng)
        try:
            reply = await self.client.request(method, instance.http + path, headers=self.headers, json=body)
        except (httpx.HTTPError, OSError) as exc:
            self.history.failed(type(exc).__name__)
            return None
        answer = reply.json() if reply.headers.get("content-type", "").startswith("application/json") else reply.text
        if 200 <= reply.status_code < 300:
            record: dict[str, Any] = {"method": method, "path": path, "body": body, "status": reply.status_code}
            record["at"] = time.time()
            if isinstance(answer, dict):
                record["answer"] = {k: answer.get(k) for k in ("id", "status", "sequence", "winner_id")}
            self.history.api_ok.append(record)
        else:
            self.history.failed(f"http {reply.status_code}")
        return reply.status_code, answer

    async def match(self, match_id: int) -> dict[str, Any] | None:
        result = await self.call("GET", f"/api/matches/{match_id}")
        return result[1] if result and result[0] == 200 and isinstance(result[1], dict) else None

    async def close(self) -> None:
        await self.client.aclose()


def playable(snapshot: Any) -> list[dict[str, Any]]:
    """Every match in a tournament snapshot (wherever the format puts it) with both players known."""
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if {"id", "status", "participant1", "participant2", "is_bye"} <= node.keys():
                if node["participant1"] and node["participant2"] and node["status"] in ("scheduled", "live"):
                    found.append(node)
                return
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(snapshot)
    return list({m["id"]: m for m in found}.values())


class Organizer:
    def __init__(
        self,
        demo: dict[str, Any],
        instances: list[Instance],
        history: History,
        stop: asyncio.Event,
        seed: int,
        concurrency: int,
        delay: float = 0.0,
    ) -> None:
        self.tournament_id = int(demo["tournament_id"])
        self.tokens = {int(p["id"]): str(p["token"]) for p in demo["players"]}
        self.instances = instances
        self.history = history
        self.stop = stop
        self.rng = random.Random(seed)
        self.api = Api(instances, history, demo["organizer"]["token"], self.rng)
        self.concurrency = concurrency
        self.busy: set[int] = set()
        self.delay = delay  # tournaments start one after another, so play lasts the whole run

    async def run(self) -> None:
        tasks: set[asyncio.Task[None]] = set()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), self.delay)
            while not self.stop.is_set():
                result = await self.api.call("GET", f"/api/tournaments/{self.tournament_id}")
                if result and result[0] == 200:
                    free = [m for m in playable(result[1]) if m["id"] not in self.busy]
                    self.rng.shuffle(free)
                    for match in free[: self.concurrency - len(self.busy)]:
                        self.busy.add(match["id"])
                        task = asyncio.create_task(self.play(match))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                await asyncio.sleep(self.rng.uniform(0.5, 1.5))  # look for playable matches now and then
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            await self.api.close()

    async def play(self, match: dict[str, Any]) -> None:
        match_id = int(match["id"])
        p1, p2 = int(match["participant1"]["id"]), int(match["participant2"]["id"])
        try:
            if match["status"] == "scheduled":
                await self.api.call("POST", f"/api/matches/{match_id}/start", {})
            until = time.monotonic() + self.rng.uniform(3, 10)
            score = [0, 0]
            while time.monotonic() < until and not self.stop.is_set():
                score[self.rng.randrange(2)] += 1
                body = {"participant1_score": score[0], "participant2_score": score[1]}
                await self.api.call("POST", f"/api/matches/{match_id}/score", body)
                await asyncio.sleep(self.rng.uniform(0.2, 0.6))  # the pace of a live game
            await self.end(match_id, p1, p2, self.rng.choice(ENDINGS))
        finally:
            self.busy.discard(match_id)

    async def end(self, match_id: int, p1: int, p2: int, how: str) -> None:
        result = {"participant1_score": 1, "participant2_score": 0}
        if how == "confirm":
            reported = await self.player(match_id, p1, {"type": "report_result", **result}, "result_reported")
            if reported is not None:
                report_id = reported["data"]["report_id"]
                await self.player(match_id, p2, {"type": "confirm_result", "report_id": report_id}, "result_confirmed")
        elif how == "agreement":
            if await self.player(match_id, p1, {"type": "report_result", **result}, "result_reported"):
                await self.player(match_id, p2, {"type": "report_result", **result}, "result_confirmed")
        elif how == "timeout":
            await self.player(match_id, p1, {"type": "report_result", **result}, "result_reported")
        elif how == "dispute":
            message = {"type": "report_dispute", "reason": "chaos: the opponent disconnected"}
            dispute = await self.player(match_id, p2, message, "dispute_created")
            if dispute is not None:
                ruling = {"resolution": "chaos ruling", **result}
                await self.api.call("POST", f"/api/disputes/{dispute['data']['dispute_id']}/resolve", ruling)
        await self.until_completed(match_id, p1)

    async def until_completed(self, match_id: int, winner: int) -> None:
        """Wait for the match to complete (a deadline may confirm it); complete it through the API
        if it does not, so the tournament goes on whatever was lost."""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline or not self.stop.is_set():
            state = await self.api.match(match_id)
            if state is not None and state.get("status") in ("completed", "cancelled"):
                return
            if time.monotonic() > deadline and state is not None:
                await self.api.call("POST", f"/api/matches/{match_id}/complete", {"winner_id": winner})
            if self.stop.is_set() and time.monotonic() > deadline:
                return
            await asyncio.sleep(0.5)  # the poll interval, bounded by the deadline above

    async def player(self, match_id: int, user_id: int, message: dict[str, Any], expect: str) -> dict[str, Any] | None:
        """Send one frame as a player, on a fresh socket to a random instance; the matching event
        (by this player's action) or None. Retried on another instance if the socket fails."""
        for _attempt in range(3):
            instance = pick(self.instances, self.rng)
            url = f"{instance.ws}/ws/match/{match_id}/?token={self.tokens[user_id]}"
            try:
                async with connect(url, open_timeout=5, close_timeout=1, max_size=None) as ws:
                    await asyncio.wait_for(ws.recv(), 5)  # connection_established
                    await ws.send(json.dumps(message))
                    frame = await asyncio.wait_for(self._answer(ws, user_id, expect), PLAYER_WAIT)
            except (OSError, TimeoutError, WebSocketException):
                continue
            if frame.get("type") == "error":
                self.history.failed("ws " + frame["data"]["code"])
                return None
            self.history.ws_ok.append({"match_id": match_id, "user_id": user_id, "sent": message, "frame": frame})
            return frame
        return None

    @staticmethod
    async def _answer(ws: Any, user_id: int, expect: str) -> dict[str, Any]:
        while True:
            frame: dict[str, Any] = json.loads(await ws.recv())
            if frame.get("type") == "error":
                return frame
            data = frame.get("data") or {}
            mine = data.get("reported_by_id", user_id) == user_id
            if frame.get("type") == expect and (expect == "result_confirmed" or mine):
                return frame
