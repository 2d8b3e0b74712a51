"""The run: start the cluster, load it, inject faults, let it settle, check, write the results.

Settings (environment): CHAOS_SECONDS (300), CHAOS_SEED (1), CHAOS_SPECTATORS (200),
CHAOS_SSE (6), CHAOS_TOURNAMENTS (1 + CHAOS_SECONDS // 50, started one after another),
CHAOS_RESULTS (chaos/results/latest.json).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg

from chaos import checker
from chaos.cluster import ROOT, Cluster, rss_kib
from chaos.faults import KINDS, Faults, run_faults
from chaos.history import History, Stream
from chaos.players import Api, Organizer
from chaos.readers import WebhookReceiver, spectate, sse_read
from matchcast.security import create_guest_token

FORMATS = ("round_robin", "single_elimination", "double_elimination", "swiss")
SETTLE_SECONDS = 60.0
GUEST_TTL = 3600


def setting(name: str, default: int) -> int:
    raw = os.environ.get(name, str(default))
    if not raw.isdigit() or int(raw) <= 0:
        raise SystemExit(f"{name} must be a positive integer, got {raw!r}")
    return int(raw)


async def run() -> int:
    seconds = setting("CHAOS_SECONDS", 300)
    seed = setting("CHAOS_SEED", 1)
    spectators = setting("CHAOS_SPECTATORS", 200)
    sse_readers = setting("CHAOS_SSE", 6)
    tournaments = setting("CHAOS_TOURNAMENTS", 1 + seconds // 50)
    results = Path(os.environ.get("CHAOS_RESULTS", ROOT / "chaos" / "results" / "latest.json"))
    rng = random.Random(seed)
    history = History()
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="chaos-")))
    began = time.monotonic()
    try:
        await cluster.start()
        print(f"chaos: cluster up in {time.monotonic() - began:.1f}s (logs in {cluster.log_dir})", flush=True)
        demos = [
            json.loads(await asyncio.to_thread(cluster.cli, "demo", "--json", "--format", FORMATS[n % len(FORMATS)]))
            for n in range(tournaments)
        ]
        receiver = await WebhookReceiver(history).start()
        for demo in demos:
            await register_webhook(cluster, history, receiver, demo, rng)
        violations, summary = await load_and_check(cluster, history, demos, rng, seconds, spectators, sse_readers)
        await receiver.close()
    finally:
        await cluster.stop()
    summary["seconds_total"] = round(time.monotonic() - began, 1)
    summary["seed"] = seed
    summary["violations"] = violations
    await asyncio.to_thread(write_results, results, summary)
    faults = sum(summary["faults_by_kind"].values())
    print(f"chaos: {faults} faults, {summary['events_checked']} events, {len(violations)} violations", flush=True)
    return 1 if violations else 0


def write_results(path: Path, summary: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n")


async def register_webhook(
    cluster: Cluster, history: History, receiver: WebhookReceiver, demo: dict[str, Any], rng: random.Random
) -> None:
    api = Api(cluster.instances, history, demo["organizer"]["token"], rng)
    try:
        tournament_id = int(demo["tournament_id"])
        result = await api.call(
            "POST", f"/api/tournaments/{tournament_id}/webhooks", {"url": receiver.url(tournament_id)}
        )
        if result is None or result[0] != 201:
            raise RuntimeError(f"webhook for tournament {tournament_id} not created: {result}")
        created: dict[str, Any] = result[1]
        history.webhook_ids[tournament_id] = int(created["id"])
    finally:
        await api.close()


async def load_and_check(
    cluster: Cluster,
    history: History,
    demos: list[dict[str, Any]],
    rng: random.Random,
    seconds: int,
    spectators: int,
    sse_readers: int,
) -> tuple[list[Any], dict[str, Any]]:
    stop_load, stop_readers, stop_sampling = asyncio.Event(), asyncio.Event(), asyncio.Event()

    def guest() -> str:
        return str(create_guest_token(cluster.jwt_secret, GUEST_TTL))

    readers = []
    for n in range(spectators):
        demo = demos[n % len(demos)]
        if n % 2 == 0 or not demo["matches"]:
            room, path = f"tournament_{demo['tournament_id']}", f"/ws/tournament/{demo['tournament_id']}/"
        else:
            match_id = rng.choice(demo["matches"])["id"]
            room, path = f"match_{match_id}", f"/ws/match/{match_id}/"
        stream = Stream(f"ws-{n}", room)
        history.streams.append(stream)
        readers.append(spectate(stream, path, guest, cluster.instances, stop_readers, rng.randrange(1 << 30)))
    for n in range(sse_readers):
        tournament_id = demos[n % len(demos)]["tournament_id"]
        stream = Stream(f"sse-{n}", f"tournament_{tournament_id}")
        history.streams.append(stream)
        path = f"/sse/tournaments/{tournament_id}"
        readers.append(sse_read(stream, path, guest, cluster.instances, stop_readers, rng.randrange(1 << 30)))
    reader_tasks = [asyncio.create_task(r) for r in readers]
    sampler = asyncio.create_task(sample_memory(cluster, history, stop_sampling))
    stagger = 0.8 * seconds / len(demos)
    organizers = [
        Organizer(demo, cluster.instances, history, stop_load, rng.randrange(1 << 30), 3, n * stagger)
        for n, demo in enumerate(demos)
    ]
    organizer_tasks = [asyncio.create_task(o.run()) for o in organizers]
    fault_stop = asyncio.Event()
    await run_faults(Faults(cluster, history, rng), seconds, rng, fault_stop)
    stop_load.set()
    await asyncio.wait_for(asyncio.gather(*organizer_tasks, return_exceptions=True), SETTLE_SECONDS)
    settled = await settle(cluster, history)
    stop_readers.set()
    await asyncio.wait_for(asyncio.gather(*reader_tasks, return_exceptions=True), 30)
    stop_sampling.set()
    await sampler
    log, matches, stored = await checker.read_log(cluster.database_url)
    violations = checker.check(history, log, matches)
    return violations, summarize(history, log, stored, settled)


async def settle(cluster: Cluster, history: History) -> float:
    """Wait until no report is pending (its deadline confirms it), every reader has its room's last
    id and every webhook its tournament's; return how long that took."""
    started = time.monotonic()
    deadline = started + SETTLE_SECONDS
    conn = await asyncpg.connect(cluster.database_url)
    try:
        while time.monotonic() < deadline:
            pending = await conn.fetchval("SELECT count(*) FROM reports WHERE status = 'pending'")
            lasts = {r["room"]: r["last_id"] for r in await conn.fetch("SELECT room, last_id FROM room_counters")}
            behind = [s for s in history.streams if s.last < lasts.get(s.room, 0)]
            hooks = [
                t for t in history.webhook_ids if max(history.webhook.get(t, [0])) < lasts.get(f"tournament_{t}", 0)
            ]
            if not pending and not behind and not hooks:
                break
            await asyncio.sleep(0.5)  # the poll interval, bounded by the deadline above
    finally:
        await conn.close()
    return time.monotonic() - started


async def sample_memory(cluster: Cluster, history: History, stop: asyncio.Event) -> None:
    while not stop.is_set():
        for instance in cluster.instances:
            pid = instance.pid
            kib = rss_kib(pid) if pid is not None else None
            if pid is not None and kib is not None:
                history.rss.setdefault(f"instance-{instance.index}:{pid}", []).append((time.time(), kib))
        try:
            await asyncio.wait_for(stop.wait(), 2.0)
        except TimeoutError:
            pass


def summarize(
    history: History, log: dict[str, Any], stored: dict[tuple[str, int], float], settled: float
) -> dict[str, Any]:
    by_kind = {kind: 0 for kind in KINDS}
    for fault in history.faults:
        by_kind[fault["kind"]] += 1
    return {
        "faults_by_kind": by_kind,
        "events_checked": sum(len(events) for events in log.values()),
        "rooms": len(log),
        "readers": len(history.streams),
        "reader_events_received": sum(len(s.ids) for s in history.streams),
        "reader_reconnections": sum(s.connections for s in history.streams) - len(history.streams),
        "events_replayed": sum(s.replayed for s in history.streams),
        "partial_snapshots": sum(len(s.resets) for s in history.streams),
        "api_calls_ok": len(history.api_ok),
        "api_calls_failed": history.api_failed,
        "player_actions_ok": len(history.ws_ok),
        "webhook_deliveries": sum(len(ids) for ids in history.webhook.values()),
        "webhook_duplicates": checker.webhook_duplicates(history),
        "settle_seconds": round(settled, 1),
        "fault_costs": fault_costs(history, stored),
        "memory_kib": {p: {"first": s[0][1], "peak": max(k for _, k in s)} for p, s in history.rss.items()},
        "faults": [{**f, "start": round(f["start"], 2), "end": round(f["end"], 2)} for f in history.faults],
    }


def fault_costs(history: History, stored: dict[tuple[str, int], float]) -> dict[str, Any]:
    """Per fault kind: how long events stored during the fault (or the 5 s after it, until the next
    fault) took to reach the WebSocket spectators of their room (the time a room looks silent), why
    readers' connections ended then, and how many events their reconnections replayed."""
    silences: dict[str, list[float]] = {}
    worst: dict[str, float] = {}
    ended: dict[str, Counter[str]] = {}
    replays: dict[str, list[int]] = {}
    busy = [s for s in history.streams if s.name.startswith("ws-")]
    starts = [f["start"] for f in history.faults[1:]] + [float("inf")]
    for fault, next_start in zip(history.faults, starts, strict=True):
        # What happens before the next fault starts is this fault's cost (faults come one at a time).
        kind, start, end = fault["kind"], fault["start"], min(fault["end"] + 5, next_start)
        gaps = []
        for stream in busy:
            lags = [
                received - stored[(stream.room, event_id)]
                for event_id, received in zip(stream.ids, stream.received_at, strict=True)
                if start <= stored.get((stream.room, event_id), 0.0) < end
            ]
            if lags:
                gaps.append(max(lags))
        if gaps:
            silences.setdefault(kind, []).append(statistics.median(gaps))
            worst[kind] = max(worst.get(kind, 0.0), max(gaps))
        for stream in history.streams:
            for n, connection in enumerate(stream.drops):
                if start <= connection["ended"] < end and connection["reason"] != "stopped":
                    ended.setdefault(kind, Counter())[connection["reason"]] += 1
                if n and start <= connection["opened"] < end:
                    replays.setdefault(kind, []).append(connection["replayed"])
    return {
        kind: {
            "median_delay_s": round(statistics.median(silences.get(kind, [0.0])), 2),
            "worst_delay_s": round(worst.get(kind, 0.0), 2),
            "connections_ended": dict(ended.get(kind, Counter())),
            "reconnections": len(replays.get(kind, [])),
            "replayed_per_reconnection_max": max(replays.get(kind, [0])),
            "replayed_total": sum(replays.get(kind, [])),
        }
        for kind in sorted({f["kind"] for f in history.faults})
    }


def main() -> None:
    raise SystemExit(asyncio.run(run()))
