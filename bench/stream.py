"""Score stream: a participant sends 50 updates a second for 10 s to N spectators.

Batching lets the first update of a quiet match through at once, then the latest one per window
(`MATCHCAST_SCORE_BATCH_WINDOW_MS`). Per spectator: frames per window over the stream, the longest
gap between two frames, and whether the last value sent is the last value seen.
"""

from __future__ import annotations

import itertools
import statistics
import time
from typing import Any

from bench.fanout import Values, percentile
from bench.loadgen import LoadGenerator
from bench.procstat import cpu_seconds
from bench.servers import Target


def run(
    load: LoadGenerator, target: Target, values: Values, rate: float, seconds: float, window_ms: float
) -> dict[str, Any]:
    group = target.name
    count = int(rate * seconds)
    first = values.take(count)
    last = first + count - 1
    load.record(group)
    cpu_before, started = cpu_seconds(target.pid), time.monotonic()
    driven = load.drive(group, first, count, 1 / rate)
    missing = load.wait_value(group, last, 10)
    server_cpu = cpu_seconds(target.pid) - cpu_before
    elapsed = time.monotonic() - started
    seen = load.collect(group)
    sent: dict[int, int] = driven["sent"]
    start_ns, end_ns = sent[first], sent[last]
    windows = (end_ns - start_ns) / 1e6 / window_ms
    per_window, gaps, last_latency = [], [], []
    for socket_values, socket_times in zip(seen["values"], seen["times"], strict=True):
        frames = [(v, t) for v, t in zip(socket_values, socket_times, strict=True) if first <= v <= last]
        per_window.append(len(frames) / windows if windows else float("nan"))
        times = [start_ns] + [t for _, t in frames]
        gaps.append(max((b - a) / 1e6 for a, b in itertools.pairwise(times)) if frames else float("inf"))
        if frames and frames[-1][0] == last:
            last_latency.append((frames[-1][1] - sent[last]) / 1e6)
    intact = sum(1 for value in seen["last"] if value == last)
    gaps.sort()
    result = {
        "spectators": len(seen["last"]),
        "updates_sent": count,
        "rate_per_s": rate,
        "window_ms": window_ms,
        "windows": windows,
        "frames_per_window_min": min(per_window) if per_window else float("nan"),
        "frames_per_window_median": statistics.median(per_window) if per_window else float("nan"),
        "max_gap_ms_median": percentile(gaps, 50),
        "max_gap_ms_worst": gaps[-1] if gaps else float("nan"),
        "last_value_intact": intact,
        "last_value_latency_p99_ms": percentile(sorted(last_latency), 99),
        "missing_at_end": missing,
        "closed_by_server": len(seen["closed"]),
        "participant_errors": driven["errors"][:5],
        "server_cpu_pct": 100 * server_cpu / elapsed,
    }
    print(
        f"  {target.name}: stream {rate:g}/s x {seconds:g}s to {result['spectators']}: frames/window min "
        f"{result['frames_per_window_min']:.2f} median {result['frames_per_window_median']:.2f}, last value "
        f"intact at {intact}/{result['spectators']}",
        flush=True,
    )
    return result
