"""The servers the benchmarks start: the three baselines answer alike, and the accounts made for
matchcast's logged-in joins are real users of its database."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from bench import servers
from bench.servers import BASELINES, Target

TIMEOUT = 10.0
SCORE = {"type": "score_update", "participant1_score": 3, "participant2_score": 1}


@pytest.fixture(scope="module")
def baselines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Target]]:
    workdir = tmp_path_factory.mktemp("baselines")
    with ExitStack() as running:
        started = servers.start_together(running, [servers.baseline(workdir, None, True, key) for key in BASELINES])
        yield dict(zip(BASELINES, started, strict=True))


async def receive(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(TIMEOUT):
        frame = json.loads(await ws.recv())
    assert isinstance(frame, dict)
    return frame


def url(target: Target, match_id: int) -> str:
    return f"ws://127.0.0.1:{target.port}/ws/match/{match_id}/?token=anything"


async def one_score(target: Target) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Two sockets on match 7 and one on match 8; a score sent on 7. Returns the welcomes and what
    each socket of match 7 received; the socket of match 8 receives only its own match's score."""
    async with (
        connect(url(target, 7), compression=None) as first,
        connect(url(target, 7).replace("/7/", "/7"), compression=None) as second,
        connect(url(target, 8), compression=None) as other,
    ):
        welcomes = [await receive(ws) for ws in (first, second, other)]
        await first.send(json.dumps(SCORE))
        scores = [await receive(ws) for ws in (first, second)]
        assert scores[0] == scores[1]
        await other.send(json.dumps({**SCORE, "participant1_score": 9}))
        assert (await receive(other))["data"]["participant1_score"] == 9  # not match 7's score
    return welcomes, scores[0]


async def test_every_baseline_sends_the_same_frames(baselines: dict[str, Target]) -> None:
    seen = {key: await one_score(target) for key, target in baselines.items()}
    for welcomes, score in seen.values():
        assert [w["data"]["room"] for w in welcomes] == ["match_7", "match_7", "match_8"]
        assert all(isinstance(w["data"].pop("server_time"), int) for w in welcomes)
        assert welcomes == seen["baseline"][0]
        assert score["type"] == "score_updated" and score["data"]["participant1_score"] == 3
        assert score["data"]["sequence"] == score["id"]
        assert score.keys() == seen["baseline"][1].keys() and score["data"].keys() == seen["baseline"][1]["data"].keys()


async def test_every_baseline_refuses_other_paths(baselines: dict[str, Target]) -> None:
    for target in baselines.values():
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"ws://127.0.0.1:{target.port}/ws/tournament/1/", open_timeout=TIMEOUT):
                pass
        assert refused.value.response.status_code in (403, 404)  # Starlette's 403, picows' and ours 404


def test_users_made_for_matchcast_join_as_themselves(tmp_path: Path) -> None:
    # Not a coroutine: the bench makes the users with asyncio.run(), outside any event loop.
    with servers.matchcast("memory-sqlite", tmp_path, None, users=2) as target:
        welcomes = [asyncio.run(welcome(f"{target.match_url}?token={token}")) for token in target.user_tokens]
    for frame in welcomes:
        assert frame["type"] == "connection_established" and frame["data"]["role"] == "spectator"
    ids = {frame["data"]["user_id"] for frame in welcomes}
    assert len(ids) == 2 and all(isinstance(user_id, int) for user_id in ids)


async def welcome(address: str) -> dict[str, Any]:
    async with connect(address, compression=None, open_timeout=TIMEOUT) as ws:
        return await receive(ws)


def test_starting_no_servers_together_starts_nothing() -> None:
    # `python -m bench.run --baselines ""` used to fail here: a pool of zero threads.
    with ExitStack() as running:
        assert servers.start_together(running, []) == []
