"""The checker: every promise, over everything recorded and the database as it ends.

Each violation is a dict with `check` (which promise) and its evidence.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import defaultdict
from datetime import UTC
from typing import Any

import asyncpg

from chaos.history import History, Stream

# A process fills up as its readers arrive (after a restart, hundreds at once), then settles. One that
# still grows by more than this in the second half of its life than it ever had in the first leaks.
RSS_GROWTH_LIMIT_KIB = 64 * 1024
RSS_MIN_LIFE = 30.0  # seconds of samples needed to tell settling from growing
MATCH_PATH = re.compile(r"^/api/matches/(\d+)/(start|score|complete)$")
RESOLVE_PATH = re.compile(r"^/api/disputes/(\d+)/resolve$")


Log = dict[str, list[tuple[int, str, dict[str, Any]]]]


async def read_log(database_url: str) -> tuple[Log, list[Any], dict[tuple[str, int], float]]:
    """Each room's events, the matches as stored, and when each event was stored (Unix time)."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT room, id, type, payload, created_at FROM events ORDER BY room, id")
        matches = await conn.fetch("SELECT id, participant1_score, participant2_score, sequence, status FROM matches")
    finally:
        await conn.close()
    log: Log = defaultdict(list)
    stored: dict[tuple[str, int], float] = {}
    for row in rows:
        log[row["room"]].append((row["id"], row["type"], json.loads(row["payload"])))
        stored[(row["room"], row["id"])] = row["created_at"].replace(tzinfo=UTC).timestamp()
    return log, list(matches), stored


def check(history: History, log: dict[str, list[tuple[int, str, dict[str, Any]]]], matches: list[Any]) -> list[Any]:
    violations: list[dict[str, Any]] = []
    violations += check_log(log)
    violations += [v for stream in history.streams for v in check_stream(stream, log.get(stream.room, []))]
    violations += check_api(history, log)
    violations += check_scores(log, matches)
    violations += check_confirmations(log)
    violations += check_webhooks(history, log)
    violations += check_memory(history)
    return violations


def check_log(log: dict[str, list[tuple[int, str, dict[str, Any]]]]) -> list[dict[str, Any]]:
    found = []
    for room, events in log.items():
        ids = [e[0] for e in events]
        if ids != list(range(1, len(ids) + 1)):
            holes = sorted(set(range(1, max(ids) + 1)) - set(ids))
            found.append({"check": "log_contiguous", "room": room, "holes": holes[:20], "count": len(ids)})
    return found


def check_stream(stream: Stream, events: list[tuple[int, str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The reader's view equals the log: 1..K in order, or from a partial snapshot's id to K."""
    found: list[dict[str, Any]] = []
    last = events[-1][0] if events else 0
    start = stream.resets[-1][1] + 1 if stream.resets else 1
    tail = stream.ids[stream.resets[-1][0] :] if stream.resets else stream.ids
    expected = list(range(start, last + 1))
    if tail != expected:
        found.append(
            {
                "check": "client_view",
                "client": stream.name,
                "room": stream.room,
                "log_last": last,
                "view_last": stream.ids[-1] if stream.ids else 0,
                "missing": sorted(set(expected) - set(tail))[:20],
                "extra": sorted(set(tail) - set(expected))[:20],
                "duplicates": len(tail) - len(set(tail)),
            }
        )
    for jump in stream.jumps:
        found.append({"check": "client_contiguous", "client": stream.name, "room": stream.room, **jump})
    return found


def check_api(history: History, log: dict[str, list[tuple[int, str, dict[str, Any]]]]) -> list[dict[str, Any]]:
    """Every call answered 2xx left its event: start, complete, a score (or a later one), a ruling."""
    found = []
    for call in history.api_ok:
        if call["method"] != "POST":
            continue
        matched = MATCH_PATH.match(call["path"])
        resolved = RESOLVE_PATH.match(call["path"])
        if matched:
            match_id, action = int(matched[1]), matched[2]
            events = log.get(f"match_{match_id}", [])
            if action == "start":
                ok = any(t == "match_started" for _, t, _ in events)
            elif action == "complete":
                ok = any(t == "match_completed" for _, t, _ in events)
            else:
                sequence = (call.get("answer") or {}).get("sequence") or 0
                ok = any(t == "score_updated" and d["sequence"] >= sequence for _, t, d in events)
        elif resolved:
            dispute_id = int(resolved[1])
            ok = any(t == "dispute_resolved" and d["dispute_id"] == dispute_id for e in log.values() for _, t, d in e)
        else:
            continue
        if not ok:
            found.append({"check": "acknowledged_in_log", "call": call})
    return found


def check_scores(log: dict[str, list[tuple[int, str, dict[str, Any]]]], matches: list[Any]) -> list[dict[str, Any]]:
    """The stored score is the last logged one; no logged sequence exceeds the stored one."""
    found = []
    for match in matches:
        events = log.get(f"match_{match['id']}", [])
        updates = [d for _, t, d in events if t == "score_updated"]
        completed = [d for _, t, d in events if t == "match_completed"]
        stored = (match["participant1_score"], match["participant2_score"])
        if any(d["sequence"] > match["sequence"] for d in updates):
            found.append({"check": "sequence_grows", "match_id": match["id"], "stored_sequence": match["sequence"]})
        if completed:
            last = (completed[-1]["participant1_score"], completed[-1]["participant2_score"])
        elif updates:
            top = max(updates, key=lambda d: d["sequence"])
            last = (top["participant1_score"], top["participant2_score"])
            if top["sequence"] != match["sequence"]:
                found.append(
                    {
                        "check": "stored_score_logged",
                        "match_id": match["id"],
                        "stored_sequence": match["sequence"],
                        "last_logged_sequence": top["sequence"],
                    }
                )
        else:
            last = (0, 0)
        if last != stored:
            found.append({"check": "stored_score_logged", "match_id": match["id"], "stored": stored, "logged": last})
    return found


def check_confirmations(log: dict[str, list[tuple[int, str, dict[str, Any]]]]) -> list[dict[str, Any]]:
    found = []
    for room, events in log.items():
        if not room.startswith("match_"):
            continue
        counts: dict[int, list[int]] = defaultdict(list)
        for event_id, type_, data in events:
            if type_ == "result_confirmed":
                counts[data["report_id"]].append(event_id)
        for report_id, ids in counts.items():
            if len(ids) > 1:
                found.append({"check": "confirmed_once", "room": room, "report_id": report_id, "event_ids": ids})
    return found


def check_webhooks(history: History, log: dict[str, list[tuple[int, str, dict[str, Any]]]]) -> list[dict[str, Any]]:
    """In first-arrival order the receiver saw 1..K of its tournament room; repeats are allowed."""
    found = []
    for tournament_id in history.webhook_ids:
        received = history.webhook.get(tournament_id, [])
        last = len(log.get(f"tournament_{tournament_id}", []))
        seen: list[int] = []
        for event_id in received:
            if event_id not in seen:
                seen.append(event_id)
        if seen != list(range(1, last + 1)):
            missing = sorted(set(range(1, last + 1)) - set(seen))
            out_of_order = [b for a, b in itertools.pairwise(seen) if b != a + 1][:10]
            found.append(
                {"check": "webhook", "tournament_id": tournament_id, "missing": missing[:20], "jumps": out_of_order}
            )
    return found


def webhook_duplicates(history: History) -> int:
    return sum(len(ids) - len(set(ids)) for ids in history.webhook.values())


def check_memory(history: History) -> list[dict[str, Any]]:
    """Within each process's life, RSS settles: the second half's peak stays near the first half's."""
    found = []
    for process, samples in history.rss.items():
        begin, end = samples[0][0], samples[-1][0]
        if end - begin < RSS_MIN_LIFE:
            continue
        middle = (begin + end) / 2
        first_half = max(kib for t, kib in samples if t <= middle)
        second_half = max(kib for t, kib in samples if t > middle)
        if second_half - first_half > RSS_GROWTH_LIMIT_KIB:
            found.append(
                {"check": "memory", "process": process, "first_half_peak_kib": first_half, "peak_kib": second_half}
            )
    return found
