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

Beside them, in the same rounds: logged-in users joining the server with the default interval
(a real account each, made in the stack's database, so each join reads its user), and the
baselines (bench/baseline*.py, bench/node), which count nothing and have no /metrics: for those
rows, and the logged-in one, the quiet windows are left out. Joins per second are those the load
generator saw answered with `connection_established`, from the first connect to the last.
"""

from __future__ import annotations

import math
import statistics
import time
import urllib.request
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import servers
from bench.loadgen import LoadGenerator
from bench.procstat import cpu_seconds, cpu_seconds_fine
from bench.servers import Target

OFF = 0


@dataclass(frozen=True)
class Row:
    """One row of the joins table: a server, and who joins it."""

    label: str
    target: Target
    interval_ms: int | None  # MATCHCAST_VIEWERS_INTERVAL_MS; None: a baseline, which counts nothing
    logged_in: bool = False

    @property
    def quiet_windows(self) -> bool:
        """Only the guest rows of matchcast measure a tick's cost: the baselines have none, and
        the logged-in row shares its server with a guest row that measures it."""
        return self.interval_ms is not None and not self.logged_in


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


def measure(
    load: LoadGenerator,
    row: Row,
    joins: int,
    concurrency: int,
    settle: float,
    window: float,
) -> Sample:
    """One sample: `joins` connects at `concurrency` per load generator process, then as many disconnects."""
    target = row.target
    group = row.label + " joins"
    tokens = target.user_tokens if row.logged_in else ()
    metrics = target.kind == "matchcast"
    before = scrape(target.port) if metrics else {}
    cpu_start = cpu_seconds(target.pid)
    opened = load.spectators(group, joins, target.match_url, target.secret, concurrency, tokens)
    if opened["open"] < joins:
        load.close(group)
        raise RuntimeError(f"{row.label}: only {opened['open']} of {joins} spectators connected: {opened['errors']}")
    time.sleep(settle)
    cpu_connected = cpu_seconds(target.pid)
    idle_open = quiet_cpu(target.pid, window) if row.quiet_windows else math.nan
    peak = scrape(target.port) if metrics else {}
    cpu_drop, dropped = cpu_seconds(target.pid), time.monotonic()
    load.close(group)
    close_seconds = time.monotonic() - dropped
    time.sleep(settle)
    cpu_end = cpu_seconds(target.pid)
    idle_anchors = quiet_cpu(target.pid, window) if row.quiet_windows else math.nan
    after = scrape(target.port) if metrics else {}
    frames = "matchcast_frames_out_total"
    return Sample(
        joins=joins,
        connect_cpu=cpu_connected - cpu_start,
        disconnect_cpu=cpu_end - cpu_drop,
        connect_seconds=opened["seconds"],
        close_seconds=close_seconds,
        viewers_frames=after.get(frames, math.nan) - before.get(frames, math.nan),
        idle_open=idle_open,
        idle_anchors=idle_anchors,
        open_at_peak=peak.get("matchcast_connections", math.nan),
        open_after_close=after.get("matchcast_connections", math.nan),
        connect_errors=opened["errors"],
    )


def figures(samples: list[Sample], row: Row, anchors: int) -> dict[str, Any]:
    """Pool one row's samples into the reported figures."""
    joins = sum(s.joins for s in samples)
    connect = sum(s.connect_cpu for s in samples)
    disconnect = sum(s.disconnect_cpu for s in samples)
    return {
        "server": row.label,
        "kind": row.target.kind,
        "logged_in": row.logged_in,
        "interval_ms": row.interval_ms,
        "counting": bool(row.interval_ms),
        "samples": len(samples),
        "joins": joins,
        "server_cpu_s": connect + disconnect,
        "us_per_connect": 1e6 * connect / joins,
        "us_per_disconnect": 1e6 * disconnect / joins,
        "us_per_join": 1e6 * (connect + disconnect) / joins,
        "us_per_join_samples": [1e6 * (s.connect_cpu + s.disconnect_cpu) / s.joins for s in samples],
        "connects_per_s": joins / sum(s.connect_seconds for s in samples),
        # What one process could accept with a whole core: the connects' own CPU, without the client's limits.
        "connects_per_cpu_s": joins / connect if connect > 0 else math.nan,
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


def counting_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """matchcast's guest rows, viewer counting off first: the comparison bench/joins.py was made for."""
    return [r for r in rows if r["kind"] == "matchcast" and not r["logged_in"]]


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each counting-on row over the counting-off row (matchcast's guests)."""
    rows = counting_rows(rows)
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
    baselines: Sequence[Target] = (),
    logged_in: bool = True,
) -> dict[str, Any]:
    """`intervals`: the MATCHCAST_VIEWERS_INTERVAL_MS values with counting on (0, off, is always
    measured too); `concurrency`: connects in flight over all the load generator's processes;
    `baselines`: running baselines (servers.baseline) sampled in the same rounds; `logged_in`: a row of
    logged-in users joining the server of the first interval given (the default one in the plan)."""
    configs = [OFF, *(i for i in intervals if i != OFF)]
    users_on = configs[1] if len(configs) > 1 else OFF
    per_process = max(1, concurrency // load.size)
    with ExitStack() as running:
        started = servers.start_together(
            running,
            [
                servers.matchcast(
                    stack,
                    workdir,
                    cpus,
                    gc_tuning,
                    settings={"MATCHCAST_VIEWERS_INTERVAL_MS": str(interval)},
                    label=label(interval),
                    # One account per socket: no join finds its user already loaded by another.
                    users=joins if logged_in and interval == users_on else 0,
                )
                for interval in configs
            ],
        )
        rows = [Row(t.name, t, interval) for t, interval in zip(started, configs, strict=True)]
        if logged_in:
            users_target = started[configs.index(users_on)]
            rows.append(Row(users_target.name + ", logged in", users_target, users_on, logged_in=True))
        rows += [Row(t.name, t, None) for t in baselines]
        for target in [*started, *baselines]:
            opened = load.spectators(target.name + " anchors", anchors, target.match_url, target.secret)
            if opened["open"] < anchors:
                raise RuntimeError(f"{target.name}: only {opened['open']} of {anchors} anchors: {opened['errors']}")
        time.sleep(settle)
        samples: dict[str, list[Sample]] = {row.label: [] for row in rows}
        for round_ in range(rounds):
            for row in rows if round_ % 2 == 0 else rows[::-1]:
                sample = measure(load, row, joins, per_process, settle, window)
                samples[row.label].append(sample)
                print(f"  {row.label}: {describe(sample, anchors)}", flush=True)
        for target in [*started, *baselines]:
            load.close(target.name + " anchors")
    figures_ = [figures(samples[row.label], row, anchors) for row in rows]
    return {
        "joins": joins,
        "anchors": anchors,
        "concurrency": per_process * load.size,
        "rounds": rounds,
        "settle_s": settle,
        "idle_window_s": window,
        "rows": figures_,
        "ratio": ratios(figures_),
    }


def describe(sample: Sample, anchors: int) -> str:
    joins = sample.joins
    text = (
        f"{joins} joins at {joins / sample.connect_seconds:.0f}/s: "
        f"{1e6 * (sample.connect_cpu + sample.disconnect_cpu) / joins:.0f} us CPU per connect+disconnect "
        f"({1e6 * sample.connect_cpu / joins:.0f} + {1e6 * sample.disconnect_cpu / joins:.0f})"
    )
    if not math.isnan(sample.idle_open):
        text += (
            f", {sample.viewers_frames:.0f} viewers frames, idle CPU {100 * sample.idle_open:.2f} % "
            f"with {joins + anchors} sockets, {100 * sample.idle_anchors:.2f} % with {anchors}"
        )
    return text
