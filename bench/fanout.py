"""Fan-out: N spectators of one match, a participant sending scores spaced wider than the batching window.

Per size: publish -> receive latency percentiles over every (socket, update), delivered frames
per second while fanning out, server CPU per delivered frame, delivery ratio, sockets the server
closed. Sizes grow on the same server (1k, then 2k more for 3k, ...), as in a real match. Each
`measure()` is one sample; `figures()` pools several (the runner alternates the server measured,
so background load on this shared machine falls on both alike).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from bench.loadgen import LoadGenerator
from bench.procstat import cpu_seconds, cpu_times
from bench.servers import Target

WARMUP_UPDATES = 2


class Values:
    """Hands out score values: unique over a server's life, so every frame names its update."""

    def __init__(self) -> None:
        self.next = 1

    def take(self, count: int) -> int:
        first, self.next = self.next, self.next + count
        return first


@dataclass
class Sample:
    spectators: int
    updates: int
    latencies: list[float] = field(default_factory=list)  # ms, one per (socket, update) delivered
    bursts: list[float] = field(default_factory=list)  # ms, per update: send -> its last arrival
    duplicates: int = 0
    missing: int = 0  # spectators still without the last update when the wait ended
    closed: list[int] = field(default_factory=list)  # close codes of sockets the server closed
    errors: list[str] = field(default_factory=list)  # error frames the participant got
    server_cpu: float = 0.0
    server_sys: float = 0.0  # the part of server_cpu spent in the kernel (socket writes)
    client_cpu: float = 0.0
    window: float = 0.0


def percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return float("nan")
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(min(len(ordered), rank)) - 1]


def connect(load: LoadGenerator, target: Target, size: int) -> dict[str, Any]:
    opened = load.spectators(target.name, size, target.match_url, target.secret)
    if opened["open"] < size:
        raise RuntimeError(f"{target.name}: only {opened['open']} of {size} spectators connected: {opened['errors']}")
    return opened


def measure(load: LoadGenerator, target: Target, values: Values, updates: int, interval: float) -> Sample:
    """Drive `updates` score updates to the spectators of `target` now open."""
    group = target.name
    warm = values.take(WARMUP_UPDATES)
    load.record(group)
    load.drive(group, warm, WARMUP_UPDATES, interval)
    load.wait_value(group, warm + WARMUP_UPDATES - 1, 10)
    first = values.take(updates)
    load.record(group)
    (user_before, sys_before), client_before, started = cpu_times(target.pid), load.cpu(), time.monotonic()
    driven = load.drive(group, first, updates, interval)
    missing = load.wait_value(group, first + updates - 1, max(10.0, updates * interval))
    (user_after, sys_after), client_after, ended = cpu_times(target.pid), load.cpu(), time.monotonic()
    seen = load.collect(group)
    sample = Sample(
        load.open[group],
        updates,
        missing=missing,
        closed=seen["closed"],
        errors=driven["errors"],
        server_cpu=user_after + sys_after - user_before - sys_before,
        server_sys=sys_after - sys_before,
        client_cpu=client_after - client_before,
        window=ended - started,
    )
    sent: dict[int, int] = driven["sent"]
    last_arrival: dict[int, int] = {}
    for socket_values, socket_times in zip(seen["values"], seen["times"], strict=True):
        got: set[int] = set()
        for value, arrived in zip(socket_values, socket_times, strict=True):
            if value not in sent:
                continue
            if value in got:
                sample.duplicates += 1
                continue
            got.add(value)
            sample.latencies.append((arrived - sent[value]) / 1e6)
            last_arrival[value] = max(last_arrival.get(value, 0), arrived)
    sample.bursts = [(last_arrival[v] - sent[v]) / 1e6 for v in sorted(last_arrival)]
    return sample


def update_cost(load: LoadGenerator, target: Target, values: Values, count: int, interval: float) -> dict[str, Any]:
    """Server CPU per score update with the few spectators now open: what an update costs besides
    its fan-out (for matchcast: the frame parsed, the score and the event stored, the broker)."""
    group = target.name
    first = values.take(count)
    load.record(group)
    cpu_before = cpu_seconds(target.pid)
    driven = load.drive(group, first, count, interval)
    missing = load.wait_value(group, first + count - 1, 10)
    cpu = cpu_seconds(target.pid) - cpu_before
    seen = load.collect(group)
    sent: dict[int, int] = driven["sent"]
    firsts = sorted(
        (t - sent[v]) / 1e6
        for vs, ts in zip(seen["values"], seen["times"], strict=True)
        for v, t in zip(vs, ts, strict=True)
        if v in sent
    )
    return {
        "spectators": load.open[group],
        "updates": count,
        "ms_per_update": 1000 * cpu / count,
        "latency_p50_ms": percentile(firsts, 50),
        "latency_p99_ms": percentile(firsts, 99),
        "missing_at_end": missing,
        "participant_errors": driven["errors"][:5],
    }


def figures(samples: list[Sample]) -> dict[str, Any]:
    """Pool samples of one server at one size into the reported figures."""
    latencies = sorted(ms for s in samples for ms in s.latencies)
    delivered = len(latencies)
    expected = sum(s.updates * s.spectators for s in samples)
    busy = sum(ms for s in samples for ms in s.bursts) / 1000
    window = sum(s.window for s in samples)
    server_cpu = sum(s.server_cpu for s in samples)
    return {
        "spectators": samples[0].spectators,
        "updates": sum(s.updates for s in samples),
        "samples": len(samples),
        "delivered": delivered,
        "expected": expected,
        "delivery": delivered / expected if expected else float("nan"),
        "duplicates": sum(s.duplicates for s in samples),
        "missing_at_end": sum(s.missing for s in samples),
        "closed_by_server": sum(len(s.closed) for s in samples),
        "close_codes": sorted({code for s in samples for code in s.closed}),
        "participant_errors": [e for s in samples for e in s.errors][:5],
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
        "max_ms": latencies[-1] if latencies else float("nan"),
        # Frames over the time during which an update was on its way (send -> its last arrival).
        "frames_per_s": delivered / busy if busy > 0 else float("nan"),
        "burst_ms": 1000 * busy / max(1, sum(len(s.bursts) for s in samples)),
        "server_cpu_s": server_cpu,
        "cpu_us_per_frame": 1e6 * server_cpu / max(1, delivered),
        "sys_us_per_frame": 1e6 * sum(s.server_sys for s in samples) / max(1, delivered),
        "server_cpu_pct": 100 * server_cpu / window if window else float("nan"),
        "client_cpu_pct": 100 * sum(s.client_cpu for s in samples) / window if window else float("nan"),
        "latency_cdf": [round(percentile(latencies, q), 2) for q in range(1, 101)],
    }
