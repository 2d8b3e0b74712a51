"""Idle: authenticated spectator sockets on one match, nothing published; memory and CPU they cost,
and how often the server wakes up meanwhile.

RSS comes from /proc/<pid>/status of the server process: once a few warm-up sockets are open
(so one-off allocations of the first connections are not charged to the others), then at each
size. Per socket = (RSS at N - RSS after warm-up) / (N - warm-up). Idle CPU is the server's share
of a core over a few seconds with the sockets open and quiet; wakeups per second are its threads'
voluntary context switches over the same seconds (each sleep ends in one).
"""

from __future__ import annotations

import time
from typing import Any

from bench.loadgen import LoadGenerator
from bench.procstat import cpu_seconds, rss_kb, sleeps
from bench.servers import Target

WARMUP_SOCKETS = 20


def run(load: LoadGenerator, target: Target, sizes: list[int], settle: float, window: float) -> list[dict[str, Any]]:
    """`settle`: seconds after connecting before reading RSS; `window`: seconds of quiet for idle CPU."""
    group = target.name + " idle"
    warmup = min(WARMUP_SOCKETS, max(1, sizes[0] // 2))
    load.spectators(group, warmup, target.match_url, target.secret)
    time.sleep(settle)
    rss_before = rss_kb(target.pid)
    results: list[dict[str, Any]] = []
    for size in sizes:
        opened = load.spectators(group, size, target.match_url, target.secret)
        time.sleep(settle)
        rss = rss_kb(target.pid)
        cpu_start, sleeps_start, started = cpu_seconds(target.pid), sleeps(target.pid), time.monotonic()
        time.sleep(window)
        seconds = time.monotonic() - started
        idle_cpu = (cpu_seconds(target.pid) - cpu_start) / seconds
        wakeups = (sleeps(target.pid) - sleeps_start) / seconds
        results.append(
            {
                "sockets": opened["open"],
                "connect_errors": opened["errors"],
                "connect_per_s": (opened["open"] - (results[-1]["sockets"] if results else warmup)) / opened["seconds"],
                "rss_before_kb": rss_before,
                "rss_kb": rss,
                "kb_per_socket": (rss - rss_before) / max(1, opened["open"] - warmup),
                "idle_cpu_pct": 100 * idle_cpu,
                "wakeups_per_s": wakeups,
            }
        )
        r = results[-1]
        print(
            f"  {target.name}: idle {r['sockets']} sockets: {r['kb_per_socket']:.1f} KB each, "
            f"RSS {rss / 1024:.0f} MB, idle CPU {r['idle_cpu_pct']:.1f} %, {wakeups:.1f} wakeups/s",
            flush=True,
        )
    load.close(group)
    return results
