"""Joins: what a spectator's connect and disconnect cost the server, with viewer counting on and off.

Viewer counts (src/matchcast/realtime/viewers.py) must cost per interval, not per socket of an
event. Identical `matchcast serve` processes of one stack run side by side, differing only in
MATCHCAST_VIEWERS_INTERVAL_MS: 0 (counting off), the default 2000 ms, and a short interval (200 ms)
so that many ticks fall inside each measured window. Each keeps a few anchor sockets open on the
match throughout, so its room (and the room's broker subscription) lives from sample to sample.

One sample, on one server: N guest spectators connect to the match at a fixed concurrency, then
`settle` seconds; M = N + anchors sockets sit quiet for a window; the N are dropped at once (the
client aborts them), then `settle` seconds; the anchors alone sit quiet for a window. Server CPU
(utime + stime of /proc/<pid>/stat, every thread) from the first connect to the end of the settle
after them is the connects' cost, from the drop to the end of the settle after it the disconnects':
so the viewer-count ticks the joins cause (a `viewers` frame to every socket of the room) are
charged to them. The settle is longer than the default interval, so at least one tick falls inside
each. The quiet windows are read from the threads' schedstat (nanoseconds): the cost of a tick with
nothing changed, with M sockets and with the anchors alone. The servers are sampled in turn, the
order reversed every round, so that background load on this shared machine weighs on all alike.
"""

from __future__ import annotations

import math
import statistics
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import servers
from bench.loadgen import LoadGenerator
from bench.procstat import cpu_seconds, cpu_seconds_fine
from bench.servers import Target

OFF = 0


@dataclass
class Sample:
    joins: int
    connect_cpu: float  # server CPU seconds from the first connect to the end of the settle after them
    disconnect_cpu: float  # ... from the drop to the end of the settle after it
    connect_seconds: float  # until every socket had its connection_established
    close_seconds: float
    viewers_frames: float  # frames the server queued meanwhile: viewers frames only (no event, no ping)
    idle_open: float  # share of a core, M sockets open and quiet
    idle_anchors: float  # share of a core, the anchors alone
    open_at_peak: float  # sockets the server counted (its /metrics) with the N open
    open_after_close: float  # ... after the drop and the settle: the anchors, if every disconnect was seen
    connect_errors: dict[str, int] = field(default_factory=dict)


def scrape(port: int) -> dict[str, float]:
    """The server's /metrics, each metric summed over its labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    found: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0]
        found[name] = found.get(name, 0.0) + float(value)
    return found


def quiet_cpu(pid: int, window: float) -> float:
    """The server's share of a core over `window` seconds in which nothing is sent to it."""
    before, started = cpu_seconds_fine(pid), time.monotonic()
    time.sleep(window)
    return (cpu_seconds_fine(pid) - before) / (time.monotonic() - started)


def measure(load: LoadGenerator, target: Target, joins: int, concurrency: int, settle: float, window: float) -> Sample:
    """One sample: `joins` connects at `concurrency` per load generator process, then as many disconnects."""
    group = target.name + " joins"
    before = scrape(target.port)
    cpu_start = cpu_seconds(target.pid)
    opened = load.spectators(group, joins, target.match_url, target.secret, concurrency)
    if opened["open"] < joins:
        load.close(group)
        raise RuntimeError(f"{target.name}: only {opened['open']} of {joins} spectators connected: {opened['errors']}")
    time.sleep(settle)
    cpu_connected = cpu_seconds(target.pid)
    idle_open = quiet_cpu(target.pid, window)
    peak = scrape(target.port)
    cpu_drop, dropped = cpu_seconds(target.pid), time.monotonic()
    load.close(group)
    close_seconds = time.monotonic() - dropped
    time.sleep(settle)
    cpu_end = cpu_seconds(target.pid)
    idle_anchors = quiet_cpu(target.pid, window)
    after = scrape(target.port)
    frames = "matchcast_frames_out_total"
    return Sample(
        joins=joins,
        connect_cpu=cpu_connected - cpu_start,
        disconnect_cpu=cpu_end - cpu_drop,
        connect_seconds=opened["seconds"],
        close_seconds=close_seconds,
        viewers_frames=after.get(frames, 0.0) - before.get(frames, 0.0),
        idle_open=idle_open,
        idle_anchors=idle_anchors,
        open_at_peak=peak.get("matchcast_connections", math.nan),
        open_after_close=after.get("matchcast_connections", math.nan),
        connect_errors=opened["errors"],
    )


def figures(samples: list[Sample], interval_ms: int, anchors: int) -> dict[str, Any]:
    """Pool one server's samples into the reported figures."""
    joins = sum(s.joins for s in samples)
    connect = sum(s.connect_cpu for s in samples)
    disconnect = sum(s.disconnect_cpu for s in samples)
    return {
        "interval_ms": interval_ms,
        "counting": interval_ms > 0,
        "samples": len(samples),
        "joins": joins,
        "server_cpu_s": connect + disconnect,
        "us_per_connect": 1e6 * connect / joins,
        "us_per_disconnect": 1e6 * disconnect / joins,
        "us_per_join": 1e6 * (connect + disconnect) / joins,
        "us_per_join_samples": [1e6 * (s.connect_cpu + s.disconnect_cpu) / s.joins for s in samples],
        "connects_per_s": joins / sum(s.connect_seconds for s in samples),
        "close_seconds": statistics.fmean(s.close_seconds for s in samples),
        "viewers_frames": sum(s.viewers_frames for s in samples),
        "viewers_frames_per_join": sum(s.viewers_frames for s in samples) / joins,
        "idle_sockets": samples[0].joins + anchors,
        "anchors": anchors,
        "idle_cpu_pct_open": 100 * statistics.fmean(s.idle_open for s in samples),
        "idle_cpu_pct_anchors": 100 * statistics.fmean(s.idle_anchors for s in samples),
        "open_at_peak": [s.open_at_peak for s in samples],
        "open_after_close": [s.open_after_close for s in samples],
        "connect_errors": [s.connect_errors for s in samples if s.connect_errors],
    }


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each counting-on row over the counting-off row."""
    off = next(r for r in rows if not r["counting"])
    return [
        {
            "interval_ms": row["interval_ms"],
            **{
                key: row[key] / off[key] if off[key] > 0 else math.nan
                for key in ("us_per_join", "us_per_connect", "us_per_disconnect")
            },
        }
        for row in rows
        if row["counting"]
    ]


def label(interval_ms: int) -> str:
    return "viewers off" if interval_ms == OFF else f"viewers {interval_ms} ms"


def start_together(running: ExitStack, servers_: list[AbstractContextManager[Target]]) -> list[Target]:
    """Enter every server's context at once (each start is seconds of `matchcast demo` and imports);
    `running` stops those that started, even when another failed."""
    with ThreadPoolExecutor(len(servers_)) as pool:
        futures = [pool.submit(server.__enter__) for server in servers_]
    for server, future in zip(servers_, futures, strict=True):
        if future.exception() is None:
            running.push(server)
    return [future.result() for future in futures]  # the first failure, if any, raises here


def run(
    load: LoadGenerator,
    stack: str,
    workdir: Path,
    cpus: list[int] | None,
    *,
    joins: int,
    intervals: list[int],
    rounds: int,
    concurrency: int,
    anchors: int,
    settle: float,
    window: float,
    gc_tuning: bool = True,
) -> dict[str, Any]:
    """`intervals`: the MATCHCAST_VIEWERS_INTERVAL_MS values with counting on (0, off, is always
    measured too); `concurrency`: connects in flight over all the load generator's processes."""
    configs = [OFF, *(i for i in intervals if i != OFF)]
    per_process = max(1, concurrency // load.size)
    samples: dict[int, list[Sample]] = {interval: [] for interval in configs}
    with ExitStack() as running:
        started = start_together(
            running,
            [
                servers.matchcast(
                    stack,
                    workdir,
                    cpus,
                    gc_tuning,
                    settings={"MATCHCAST_VIEWERS_INTERVAL_MS": str(interval)},
                    label=label(interval),
                )
                for interval in configs
            ],
        )
        targets = dict(zip(configs, started, strict=True))
        for target in targets.values():
            opened = load.spectators(target.name + " anchors", anchors, target.match_url, target.secret)
            if opened["open"] < anchors:
                raise RuntimeError(f"{target.name}: only {opened['open']} of {anchors} anchors: {opened['errors']}")
        time.sleep(settle)
        for round_ in range(rounds):
            for interval in configs if round_ % 2 == 0 else configs[::-1]:
                target = targets[interval]
                sample = measure(load, target, joins, per_process, settle, window)
                samples[interval].append(sample)
                print(
                    f"  {target.name}: {joins} joins: "
                    f"{1e6 * (sample.connect_cpu + sample.disconnect_cpu) / joins:.0f} us CPU per connect+disconnect "
                    f"({1e6 * sample.connect_cpu / joins:.0f} + {1e6 * sample.disconnect_cpu / joins:.0f}), "
                    f"{sample.viewers_frames:.0f} viewers frames, idle CPU {100 * sample.idle_open:.2f} % "
                    f"with {joins + anchors} sockets, {100 * sample.idle_anchors:.2f} % with {anchors}",
                    flush=True,
                )
        for target in targets.values():
            load.close(target.name + " anchors")
    rows = [figures(samples[interval], interval, anchors) for interval in configs]
    return {
        "joins": joins,
        "anchors": anchors,
        "concurrency": per_process * load.size,
        "rounds": rounds,
        "settle_s": settle,
        "idle_window_s": window,
        "rows": rows,
        "ratio": ratios(rows),
    }
