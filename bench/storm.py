"""A reconnect storm: every spectator of one match closed by a SIGTERM restart, all resuming at once.

`matchcast serve` runs on a fresh stack (bench/servers.py); N guest spectators of one live match
connect, and its participant sends a score every `interval` seconds throughout. The server gets
SIGTERM (the contract: pending scores flushed, every socket closed 1012) and, the moment it has
exited, is started again on the same port, database and settings. Each spectator reconnects at
once with `?last_event_id=<the last id it has>` (a refused connect is retried every 10 ms) and
is *resumed* when it holds every event up to the `last_event_id` its new connection_established
named; the participant keeps scoring, its sends failing while the server is down. Once every
spectator has resumed, a few more scores, then one last one: its event is the room's last, and
every spectator's log must then be exactly one past the room's last id at its first connect, ...,
that last id: none missing, none twice, in order (bench/resuming.py).

Timing starts when the restarted server answers again (its port accepts a connection, probed
every 5 ms, or a spectator got in, whichever came first). Database connections are sampled
throughout (bench/dbconns.py). `python -m bench.storm --help` for the command.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import servers, spy, stuck
from bench.dbconns import ConnectionSampler
from bench.loadgen import CONNECT_TIMEOUT, LoadGenerator, raise_open_files_limit
from bench.procstat import cpu_seconds
from bench.restarting import RestartingServer
from bench.resuming import open_socket
from matchcast.security import create_guest_token
from matchcast.settings import Settings

SIGTERM_CLOSE = 1012  # the contract's close code of a graceful shutdown


@dataclass
class Plan:
    stack: str = "memory-sqlite"
    clients: int = 10_000
    interval: float = 0.5  # seconds between the participant's scores (a batching window is 0.1)
    processes: int = 4  # spectator processes of the load generator
    concurrency: int = 32  # first connections in flight per process (the storm itself: all at once)
    late: float = 0.0  # share of spectators that reconnect only once a join is told of a score stored past the restart
    resume: bool = True  # False: reconnect without last_event_id (checks that the verification fails)
    tail_events: int = 3  # score events after the last resume, before the last score
    timeout: float = 120.0  # seconds the resume may take before the run stops waiting
    profile: Path | None = None  # py-spy of the restarted server, answering -> every spectator resumed
    logs: Path | None = None  # where the server's log is copied (both runs of it)


def listen_queue_drops() -> dict[str, int]:
    """This machine's TCP counters of connections the listen queues could not take (every socket's)."""
    lines = [line.split() for line in Path("/proc/net/netstat").read_text().splitlines() if line.startswith("TcpExt:")]
    counters = dict(zip(lines[0][1:], map(int, lines[1][1:]), strict=True))
    return {name: counters.get(name, 0) for name in ("ListenOverflows", "ListenDrops")}


def per_second(seconds: list[float]) -> list[int]:
    """How many of `seconds` fall in each whole second from 0."""
    counts = [0] * (int(max(seconds, default=0)) + 1)
    for value in seconds:
        counts[max(0, int(value))] += 1
    return counts


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def wait_resumed(load: LoadGenerator, since_ns: int, expected: int, timeout: float) -> int:
    """Poll the workers until `expected` spectators are resumed on the restarted server; how many are."""
    end = time.monotonic() + timeout
    while True:
        resumed = sum(int(r["resumed"]) for r in load.broadcast("crowd_status", since_ns=since_ns))
        if resumed >= expected or time.monotonic() > end:
            return resumed
        time.sleep(0.05)


def measure(plan: Plan, cpus: tuple[list[int] | None, list[int] | None] = (None, None)) -> dict[str, Any]:
    """One storm on `plan.stack`; the figures and the verdicts (see the module's docstring)."""
    raise_open_files_limit()
    server_cpus, client_cpus = cpus
    result: dict[str, Any] = {}
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="matchcast-storm-")))
        server = RestartingServer(plan.stack, workdir, server_cpus)
        # Once the server has stopped (its last log line is its GC summary), before the directory goes:
        stack.callback(read_log, server.log, result, plan.logs)
        stack.enter_context(server)
        load = stack.enter_context(LoadGenerator(plan.processes, client_cpus))
        sampler = stack.enter_context(ConnectionSampler(server.database_url, lambda: server.pid))
        result.update(storm(plan, server, load, sampler))
    return result


def joined_after(url: str, secret: str, event_id: int, timeout: float) -> None:
    """Wait until a guest joining the room is told a `last_event_id` of at least `event_id`."""

    async def probe() -> None:
        token = create_guest_token(secret, 3600)
        async with asyncio.timeout(timeout):
            while True:
                ws, data = await open_socket(f"{url}?token={token}")
                await ws.close()
                if int(data["last_event_id"]) >= event_id:
                    return
                await asyncio.sleep(0.05)  # the room's shared snapshot is renewed within a second

    asyncio.run(probe())


def read_log(log: Path, result: dict[str, Any], keep: Path | None) -> None:
    """The GC summary of each run of the server (the stopped one, then the restarted one); a copy in `keep`."""
    if not log.exists():
        return
    result["gc"] = re.findall(r"gc: \d+ full collections.*", log.read_text(errors="replace"))
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(log, keep / log.name)


def storm(plan: Plan, server: RestartingServer, load: LoadGenerator, sampler: ConnectionSampler) -> dict[str, Any]:
    late = [round(n * plan.late) for n in load.shares(plan.clients)]
    opened = load.each(
        "crowd",
        CONNECT_TIMEOUT * (1 + plan.clients / (plan.concurrency * plan.processes)),
        [
            {"url": server.match_url, "secret": server.secret, "count": n, "concurrency": plan.concurrency}
            | {"late": k, "resume": plan.resume}
            for n, k in zip(load.shares(plan.clients), late, strict=True)
        ],
    )
    connected = sum(r["open"] for r in opened)
    if connected < plan.clients:
        errors = Counter[str]()
        for r in opened:
            errors.update(r["errors"])
        raise RuntimeError(f"only {connected} of {plan.clients} spectators connected: {dict(errors)}")
    load.on_driver("score", url=server.participant_url, interval=plan.interval)
    # Mid-stream: every spectator holds a live event when the server is stopped.
    load.on_driver("score_after", 60, seconds=60)
    before_id = load.on_driver("score_last_id")
    if sum(load.broadcast("crowd_wait", 60, event_id=before_id, seconds=60)):
        raise RuntimeError("not every spectator received the first scores before the restart")
    client_cpu = load.cpu()

    drops = listen_queue_drops()
    times = server.restart()
    answer_ns = times["answer_ns"]
    cpu_answer = cpu_seconds(server.pid)
    profiler = spy.record(server.pid, plan.profile / f"storm-{plan.stack}.txt") if plan.profile else None
    stored_after_ns = 0
    if plan.late:  # released once a score is stored past the restart: their resume has events to replay
        stored_after_ns = load.on_driver("score_after", plan.timeout, after_ns=times["exit_ns"], seconds=plan.timeout)
        # ... and once a join's snapshot holds it: a snapshot shared since before it would hand
        # them the score as a replay even without last_event_id (realtime/snapshots.py).
        joined_after(server.match_url, server.secret, load.on_driver("score_last_id"), plan.timeout)
        load.broadcast("crowd_release")
    resumed = wait_resumed(load, times["exit_ns"], connected, plan.timeout)
    all_resumed_ns = time.monotonic_ns()
    cpu_resumed = cpu_seconds(server.pid)
    drops = {name: n - drops[name] for name, n in listen_queue_drops().items()}
    client_cpu = load.cpu() - client_cpu
    if profiler is not None:
        spy.finish(profiler)

    if not stored_after_ns:
        stored_after_ns = load.on_driver("score_after", 60, after_ns=times["exit_ns"], seconds=60)
    tail_from = load.on_driver("score_last_id")
    tail_wait = plan.tail_events * plan.interval + 30
    load.on_driver("score_after", tail_wait, event_id=tail_from + plan.tail_events - 1, seconds=tail_wait)
    scorer = load.on_driver("score_finish", 90, seconds=60)
    stalled = None
    final_id = scorer["final_id"]
    if final_id is None:  # the server stopped publishing: what it was doing; the logs checked up to what it stored
        stalled = stuck.diagnose(server.database_url, server.match_id, server.port, server.pid)
        if not isinstance(stalled["stored"], dict):
            raise RuntimeError(f"the last score did not come back: {json.dumps(stalled, default=str)}")
        final_id = stalled["stored"]["last_event"]
    unfinished = sum(load.broadcast("crowd_wait", 60, event_id=final_id, seconds=60))
    clients = [
        c for chunk in load.broadcast("crowd_report", 60, final_id=final_id, since_ns=times["exit_ns"]) for c in chunk
    ]
    # A spectator may have got in before the probe saw the port open: the earlier of the two.
    firsts = [c["first_established_ns"] for c in clients if c["first_established_ns"]]
    answer_ns = times["answer_ns"] = min([answer_ns, *firsts])

    result = figures(clients, times)
    result.update(
        {
            "stack": plan.stack,
            "clients": plan.clients,
            "resumed": resumed,
            "unfinished": unfinished,
            "final_event_id": final_id,
            "events_from_sigterm_to_end": final_id - before_id,
            "server_cpu_seconds": cpu_resumed - cpu_answer,
            "server_cpu_share": (cpu_resumed - cpu_answer) / max(1e-9, (all_resumed_ns - answer_ns) / 1e9),
            "client_cpu_seconds": client_cpu,
            "listen_queue_drops": drops,  # machine-wide, SIGTERM -> every spectator resumed
            "first_score_after_restart_seconds": (stored_after_ns - answer_ns) / 1e9 if stored_after_ns else None,
            "scorer": scorer,
            "stalled": stalled,  # None, or what the server was doing when the last score did not come back
            "db_connections": db_connections(sampler, times["sigterm_ns"], time.monotonic_ns()),
            "profile": spy.summary(plan.profile / f"storm-{plan.stack}.txt") if plan.profile else None,
            "plan": {**asdict(plan), "profile": str(plan.profile) if plan.profile else None},
            "load_average": os.getloadavg(),
        }
    )
    result["max_db_connections"] = result["db_connections"]["storm"]["connections"]
    result["db_connection_limit"] = db_connection_limit(plan.stack)
    return result


def db_connection_limit(stack: str) -> int:
    """What the server may hold at most: its pool, plus on SQLite the writer's own connection
    (db/database.py), so the storm's bound is the pool's, not the size of the storm."""
    pool = Settings().database_pool_size  # the storm's server runs with the default
    return pool + 1 if stack.endswith("sqlite") else pool


def figures(clients: list[dict[str, Any]], times: dict[str, int]) -> dict[str, Any]:
    """The storm's figures from every spectator's summary (bench/resuming.py)."""
    answer_ns = times["answer_ns"]
    resumes = [(c["resumed_ns"] - answer_ns) / 1e9 for c in clients if c["resumed_ns"]]
    connects = [(c["established_ns"] - answer_ns) / 1e9 for c in clients if c["established_ns"]]
    # When the attempt that got each client in began: a late start is the client's own wait (a
    # refused connect, its retry), a long attempt is the server's (or its kernel's) queue.
    attempted = [(c["attempted_ns"] - answer_ns) / 1e9 for c in clients if c["established_ns"]]
    handshakes = [(c["established_ns"] - c["attempted_ns"]) / 1e9 for c in clients if c["established_ns"]]
    closes: Counter[int] = Counter()
    failures: Counter[str] = Counter()
    for c in clients:
        closes.update(c["closes"])
        failures.update(c["failures"])
    attempts = [float(c["attempts"]) for c in clients]
    return {
        "connected": len(clients),
        "complete": sum(1 for c in clients if c["complete"]),
        "resumed_seconds": max(resumes) if len(resumes) == len(clients) else None,
        "resume_p50_seconds": percentile(resumes, 50),
        "resume_p99_seconds": percentile(resumes, 99),
        "connected_seconds": max(connects, default=None),
        "connect_p50_seconds": percentile(connects, 50),
        # Handshakes completed in each second after answering: waves 1, 3, 7, 15 s... are SYNs retried
        # by the clients' kernels after the listen queue overflowed.
        "connects_per_second": per_second(connects),
        "attempts_began_per_second": per_second(attempted),
        "handshake_p50_seconds": percentile(handshakes, 50),
        "handshake_max_seconds": max(handshakes, default=None),
        "closed_1011": sum(1 for c in clients if 1011 in c["closes"]),
        "close_at_sigterm": dict(Counter(c["closes"][0] if c["closes"] else None for c in clients)),
        "closes": dict(closes),
        "failures": dict(failures),
        "attempts_p50": percentile(attempts, 50),
        "attempts_max": max(attempts, default=None),
        "replayed_events": sum(c["replayed"] for c in clients),
        "replaying_clients": sum(1 for c in clients if c["replayed"]),
        "partial_replays": sum(1 for c in clients if c["partial"]),
        "missing_events": sum(c["missing"] for c in clients),
        "duplicate_events": sum(c["duplicates"] for c in clients),
        "unordered_events": sum(c["unordered"] for c in clients),
        "incomplete_examples": [c for c in clients if not c["complete"]][:3],
        "shutdown_seconds": (times["exit_ns"] - times["sigterm_ns"]) / 1e9,
        "startup_seconds": (answer_ns - times["exit_ns"]) / 1e9,
    }


def db_connections(sampler: ConnectionSampler, storm_ns: int, end_ns: int) -> dict[str, Any]:
    return {
        "what": sampler.what,
        "before": sampler.peak(0, storm_ns),
        "storm": sampler.peak(storm_ns, end_ns),
    }


def shown(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else "-" if value is None else str(value)


def table(result: dict[str, Any]) -> str:
    """The figures that answer the target, one a line."""
    db = result["db_connections"]
    rows = [
        ("clients connected / complete ordered logs", f"{result['connected']} / {result['complete']}"),
        ("resumed, seconds after answering (all)", result["resumed_seconds"]),
        ("  per client p50 / p99", f"{shown(result['resume_p50_seconds'])} / {shown(result['resume_p99_seconds'])}"),
        (
            "  connection_established p50 / last",
            f"{shown(result['connect_p50_seconds'])} / {shown(result['connected_seconds'])}",
        ),
        ("  handshakes completed per second", result["connects_per_second"]),
        ("  their attempts began per second", result["attempts_began_per_second"]),
        (
            "  attempt -> connection_established p50 / max",
            f"{shown(result['handshake_p50_seconds'])} / {shown(result['handshake_max_seconds'])}",
        ),
        (
            "listen queue overflows / drops (machine)",
            "{ListenOverflows} / {ListenDrops}".format(**result["listen_queue_drops"]),
        ),
        ("closed 1011", result["closed_1011"]),
        ("close codes at the SIGTERM", result["close_at_sigterm"]),
        ("every close seen / failed attempts", f"{result['closes']} / {result['failures']}"),
        ("handshake attempts per client p50 / max", f"{result['attempts_p50']} / {result['attempts_max']}"),
        ("events replayed (clients)", f"{result['replayed_events']} ({result['replaying_clients']})"),
        (
            "missing / duplicate / unordered events",
            f"{result['missing_events']} / {result['duplicate_events']} / {result['unordered_events']}",
        ),
        ("max db connections before / storm", f"{db['before']['connections']} / {db['storm']['connections']}"),
        ("  (server threads before / storm)", f"{db['before']['threads']} / {db['storm']['threads']}"),
        (
            "server CPU s answering -> resumed (share)",
            f"{result['server_cpu_seconds']:.2f} ({result['server_cpu_share']:.0%})",
        ),
        ("load generator CPU s, SIGTERM -> resumed", f"{result['client_cpu_seconds']:.2f}"),
        ("shutdown / start-up seconds", f"{result['shutdown_seconds']:.2f} / {result['startup_seconds']:.2f}"),
        ("first score stored after answering, s", result["first_score_after_restart_seconds"]),
        (
            "scores sent / failed (the scorer's closes)",
            f"{result['scorer']['sent']} / {result['scorer']['failed']} ({result['scorer']['closes']})",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"reconnect storm, {result['stack']}, {result['clients']} spectators ({db['what']})"]
    for name, value in rows:
        lines.append(f"  {name:<{width}}  {shown(value)}")
    if result["stalled"]:
        lines.append(f"  STALLED: the last score did not come back; the server: {json.dumps(result['stalled'])}")
    for summary in result.get("gc", []):
        lines.append(f"  server {summary}")
    if result["profile"]:
        lines.append(f"  py-spy, {result['profile']['samples']} samples, self %: {result['profile']['self_pct'][:8]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.storm",
        description=__doc__.splitlines()[0],
        epilog="Another src/ tree: MATCHCAST_BENCH_SERVER_PYTHONPATH=/that/src python -m bench.storm ...",
    )
    default = Plan()
    parser.add_argument(
        "--stack", default=default.stack, help=f"one or more of {', '.join(servers.STACKS)}, comma-separated"
    )
    parser.add_argument("--clients", type=int, default=default.clients)
    parser.add_argument("--interval", type=float, default=default.interval, help="seconds between scores")
    parser.add_argument("--processes", type=int, default=default.processes, help="spectator processes")
    parser.add_argument(
        "--late",
        type=float,
        default=default.late,
        help="share of spectators held back until a score is stored after the restart",
    )
    parser.add_argument("--timeout", type=float, default=default.timeout, help="seconds to wait for every resume")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="py-spy the restarted server into DIR (raw stacks)")
    parser.add_argument("--logs", type=Path, metavar="DIR", help="keep the server's log in DIR")
    parser.add_argument("--out", type=Path, help="write every figure as JSON here")
    args = parser.parse_args(argv)
    from bench.run import cpu_split

    results = []
    for stack in args.stack.split(","):
        if stack not in servers.STACKS:
            parser.error(f"unknown stack {stack}; use {', '.join(servers.STACKS)}")
        plan = Plan(
            stack,
            args.clients,
            args.interval,
            args.processes,
            late=args.late,
            timeout=args.timeout,
            profile=args.profile,
            logs=args.logs,
        )
        results.append(measure(plan, cpu_split()))
        print(table(results[-1]), flush=True)
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "command": "python -m bench.storm " + " ".join(sys.argv[1:] if argv is None else argv),
                    "server_pythonpath": servers.SERVER_PYTHONPATH,
                    "results": results,
                },
                indent=1,
                default=str,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
