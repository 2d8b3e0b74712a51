"""Clients the load generator lacks: joins with any token, and score streams to many matches at once.

bench/loadgen.py opens guest spectators and drives one match at a time. The capacity scenario
also joins with users' tokens (a logged-in join reads its user), and drives many matches at once,
each from its own participant, to find how many events a second one instance stores and
broadcasts. Each call runs in a fresh process on the load generator's CPUs, on uvloop; every
wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import uvloop
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.backing import tree_cpu
from bench.fanout import percentile
from bench.loadgen import SCORE_PREFIX, raise_open_files_limit
from bench.procstat import cpu_seconds

CONNECT_TIMEOUT = 60.0
DRAIN_TIMEOUT = 10.0  # seconds the last update of a stream may take to reach its observer


def in_process(cpus: Sequence[int] | None, timeout: float, main: Callable[..., Any], *args: Any) -> Any:
    """`main(*args)` in a new process pinned to `cpus`; its result, or an error after `timeout` seconds."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1, initializer=_prepare, initargs=(list(cpus) if cpus else None,)) as pool:
        return pool.apply_async(main, args).get(timeout)


def _prepare(cpus: list[int] | None) -> None:
    if cpus:
        os.sched_setaffinity(0, cpus)
    raise_open_files_limit()


def _run(coroutine: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    return uvloop.run(coroutine)


async def _open(url: str, token: str) -> tuple[ClientConnection, dict[str, Any]]:
    """A socket admitted to its room, and its connection_established data."""
    async with asyncio.timeout(CONNECT_TIMEOUT):
        ws = await connect(
            f"{url}?token={token}", compression=None, ping_interval=None, close_timeout=1, max_queue=None, proxy=None
        )
        first = await ws.recv()
    frame = json.loads(first)
    if frame.get("type") != "connection_established":
        ws.transport.abort()
        raise RuntimeError(f"not admitted: {str(first)[:200]}")
    return ws, frame["data"]


# -- joins ------------------------------------------------------------------------------------------


def joins(url: str, tokens: list[str], concurrency: int) -> dict[str, Any]:
    """Join `url` once per token, `concurrency` handshakes in flight; then drop every socket at once."""
    return _run(_joins(url, tokens, concurrency))


async def _joins(url: str, tokens: list[str], concurrency: int) -> dict[str, Any]:
    gate = asyncio.Semaphore(concurrency)
    opened: list[ClientConnection] = []
    errors: dict[str, int] = {}
    roles: dict[str, int] = {}

    async def one(token: str) -> None:
        async with gate:
            try:
                ws, data = await _open(url, token)
            except Exception as exc:  # counted: the caller checks that every join was admitted
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                return
        opened.append(ws)
        role = f"{data['role']} ({'user' if data['user_id'] is not None else 'guest'})"
        roles[role] = roles.get(role, 0) + 1

    started = time.monotonic()
    await asyncio.gather(*(one(token) for token in tokens))
    seconds = time.monotonic() - started
    for ws in opened:
        ws.transport.abort()
    await asyncio.sleep(0)
    return {"open": len(opened), "errors": errors, "roles": roles, "seconds": seconds}


# -- score streams to many matches ------------------------------------------------------------------


def streams(
    port: int,
    matches: list[tuple[int, str]],
    guest_token: str,
    interval: float,
    seconds: float,
    first_value: int,
    watched: dict[str, tuple[int, bool]],
) -> dict[str, Any]:
    """For each (match id, participant token): one participant sending a score every `interval`
    seconds for `seconds`, and one guest observer noting when each value arrives. The matches'
    sends are spread evenly over the interval. `watched`: name -> (pid, with its children: as
    PostgreSQL's postmaster), whose CPU is read at the start and the end of the sending."""
    return _run(_streams(port, matches, guest_token, interval, seconds, first_value, watched))


async def _streams(
    port: int,
    matches: list[tuple[int, str]],
    guest_token: str,
    interval: float,
    seconds: float,
    first_value: int,
    watched: dict[str, tuple[int, bool]],
) -> dict[str, Any]:
    urls = [f"ws://127.0.0.1:{port}/ws/match/{match_id}/" for match_id, _ in matches]
    observers = [ws for ws, _ in await asyncio.gather(*(_open(url, guest_token) for url in urls))]
    participants = []
    for url, (_, token) in zip(urls, matches, strict=True):
        ws, data = await _open(url, token)
        if data["role"] != "participant":
            raise RuntimeError(f"{url}: admitted as {data['role']}, not as a participant")
        participants.append(ws)
    count = max(1, round(seconds / interval))
    last = first_value + count - 1
    arrivals: list[dict[int, int]] = [{} for _ in matches]
    errors: list[str] = []
    readers = [asyncio.create_task(_observe(ws, got, last)) for ws, got in zip(observers, arrivals, strict=True)]
    readers += [asyncio.create_task(_errors(ws, errors)) for ws in participants]
    sent: list[dict[int, int]] = [{} for _ in matches]
    cpu_before, started = {name: _cpu(*process) for name, process in watched.items()}, time.monotonic()
    await asyncio.gather(
        *(
            _send(ws, first_value, count, interval, i * interval / len(matches), times)
            for i, (ws, times) in enumerate(zip(participants, sent, strict=True))
        )
    )
    sending = time.monotonic() - started
    cpu = {name: _cpu(*process) - cpu_before[name] for name, process in watched.items()}
    await asyncio.wait(readers[: len(observers)], timeout=DRAIN_TIMEOUT)
    for task in readers:
        task.cancel()
    for ws in observers + participants:
        ws.transport.abort()
    latencies = sorted(
        (arrived - times[value]) / 1e6
        for got, times in zip(arrivals, sent, strict=True)
        for value, arrived in got.items()
        if value in times  # not a late event of an earlier stream
    )
    return {
        "matches": len(matches),
        "sent": count * len(matches),
        "delivered": len(latencies),  # distinct values that reached an observer: the events broadcast
        "last_value_everywhere": sum(1 for got in arrivals if last in got),
        "sending_s": sending,
        "cpu_s": cpu,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": latencies[-1] if latencies else float("nan"),
        "errors": errors[:5],
        "error_count": len(errors),
    }


def _cpu(pid: int, tree: bool) -> float:
    return tree_cpu(pid) if tree else cpu_seconds(pid)


async def _send(
    ws: ClientConnection, first: int, count: int, interval: float, offset: float, sent: dict[int, int]
) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time() + offset
    for n in range(count):
        delay = start + n * interval - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        value = first + n
        sent[value] = time.monotonic_ns()
        await ws.send(f'{{"type":"score_update","participant1_score":{value},"participant2_score":0}}')


async def _observe(ws: ClientConnection, arrivals: dict[int, int], last: int) -> None:
    """Note when each score value arrives, until the last one has."""
    try:
        async for text in ws:
            if isinstance(text, str) and text.startswith(SCORE_PREFIX):
                value = json.loads(text)["data"]["participant1_score"]
                arrivals.setdefault(value, time.monotonic_ns())
                if value == last:
                    return
    except ConnectionClosed:
        return


async def _errors(ws: ClientConnection, errors: list[str]) -> None:
    try:
        async for text in ws:
            if isinstance(text, str) and text.startswith('{"type":"error"'):
                errors.append(text[:200])
    except ConnectionClosed:
        return
