"""`make bench`: every scenario, on each stack, against the baselines from the same run.

    python -m bench.run                  # the full plan (about 12 minutes on this 2-core machine)
    python -m bench.run --stacks memory-sqlite --fanout 1000,3000
    python -m bench.run --stacks memory-sqlite --idle "" --fanout "" --joins 1000   # viewer counting's cost
    python -m bench.run --smoke --out /tmp/bench   # tiny sizes: what tests/bench runs

The server under test gets the first CPU, the load generator's processes share the others. For
each stack: the three baselines (uvicorn + Starlette, picows, Node.js `ws`: servers.BASELINES) and
`matchcast serve` start side by side; idle sockets are measured on each first (then dropped; the
baselines' once per run); then the fan-out grows size by size on all four, and at each size they
are measured in turn, the order reversed every round, so that background load on a shared
machine weighs on all alike; the score stream runs on matchcast at the first size. Then matchcast
stops, and the joins (bench/joins.py) run on fresh servers of the stack (viewer counting off and
on, guests and logged-in users) and on the baselines, in the same rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench import fanout, idle, joins, report, servers, storm, stream
from bench.loadgen import LoadGenerator, raise_open_files_limit
from matchcast.server import WS_IMPLEMENTATION

RESULTS = Path(__file__).parent / "results"


@dataclass
class Plan:
    stacks: list[str] = field(default_factory=lambda: list(servers.STACKS))
    idle: list[int] = field(default_factory=lambda: [1000, 5000, 10000])
    fanout: list[int] = field(default_factory=lambda: [1000, 3000, 5000])
    updates: int = 20  # per sample
    interval: float = 0.3  # seconds between updates: wider than the 100 ms batching window
    rounds: int = 2  # samples per server and size, alternating which server goes first
    cost_spectators: int = 10  # the update cost is measured with this few spectators ...
    cost_updates: int = 60  # ... over this many updates ...
    cost_interval: float = 0.105  # ... this far apart: just wider than the batching window, none coalesced
    stream_rate: float = 50.0
    stream_seconds: float = 10.0
    batch_window_ms: float = 100.0
    processes: int = 4
    baselines: list[str] = field(default_factory=lambda: list(servers.BASELINES))  # keys of servers.BASELINES
    baseline_idle: bool = True
    profile: Path | None = None  # where py-spy's flame graphs of matchcast at the largest size go
    gc_tuning: bool = True  # False: both servers leave Python's collector as it is (the GC comparison)
    settle: float = 2.0  # seconds after a burst of connections before measuring (the server freezes its survivors)
    idle_settle: float = 3.0
    idle_window: float = 4.0  # seconds of quiet over which idle CPU is measured
    joins: int = 2000  # spectators connected then dropped per joins sample (0: no joins scenario)
    joins_intervals: list[int] = field(default_factory=lambda: [2000, 200])  # viewer counting on, ms; 0 is added
    joins_concurrency: int = 32  # connects in flight, over all the load generator's processes
    joins_anchors: int = 10  # sockets that stay open on each joins server, so the room lives throughout
    joins_settle: float = 2.5  # after the connects and after the drop: longer than the default 2 s interval
    joins_logged_in: bool = True  # a row of logged-in users (one account each) joining beside the guests
    storm: int = 10_000  # spectators of the reconnect storm (bench/storm.py; 0: no storm)


SMOKE = Plan(
    idle=[4, 8],
    fanout=[3, 6],
    updates=3,
    interval=0.3,  # as the full plan: at 0.15 a loaded machine delays two updates into one 100 ms window (coalesced)
    rounds=1,
    stream_rate=50,
    stream_seconds=1,
    processes=2,
    settle=0.2,
    idle_settle=0.2,
    idle_window=0.5,
    cost_spectators=2,
    cost_updates=3,
    joins=6,
    joins_intervals=[2000],  # one counting interval: the 200 ms row is the same code, one server start more per stack
    joins_concurrency=4,
    joins_anchors=1,
    joins_settle=0.2,
    storm=20,
)


def cpu_split() -> tuple[list[int] | None, list[int] | None]:
    """The first CPU for the server, the others for the load generator (no pinning on one CPU)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return cpus[:1], cpus[1:]


def gc_summary(log: Path | None) -> str | None:
    if log is None or not log.exists():
        return None
    found = re.findall(r"gc: \d+ full collections.*", log.read_text(errors="replace"))
    return found[-1] if found else None


def measure_fanout(
    load: LoadGenerator, plan: Plan, targets: dict[str, servers.Target], stack_results: dict[str, Any]
) -> None:
    """`targets`: matchcast and the baselines, by their key in the results."""
    values = {key: fanout.Values() for key in targets}
    rows: dict[str, list[dict[str, Any]]] = {key: [] for key in targets}
    costs = {}
    for key, target in targets.items():
        fanout.connect(load, target, plan.cost_spectators)
        time.sleep(plan.settle)
        costs[key] = fanout.update_cost(load, target, values[key], plan.cost_updates, plan.cost_interval)
        print(
            f"  {target.name}: {costs[key]['ms_per_update']:.2f} ms CPU per update "
            f"(with {plan.cost_spectators} spectators)",
            flush=True,
        )
    stack_results["update_cost"] = costs
    for size in plan.fanout:
        for target in targets.values():
            opened = fanout.connect(load, target, size)
            print(f"  {target.name}: {size} spectators open ({opened['seconds']:.1f} s)", flush=True)
        time.sleep(plan.settle)
        samples: dict[str, list[fanout.Sample]] = {key: [] for key in targets}
        order = list(targets)
        for round_ in range(plan.rounds):
            for key in order if round_ % 2 == 0 else order[::-1]:
                spy = profiler(plan, targets[key], size, round_, stack_results)
                samples[key].append(fanout.measure(load, targets[key], values[key], plan.updates, plan.interval))
                if spy is not None:
                    spy.wait(plan.updates * plan.interval + 30)
        for key, target in targets.items():
            figures = fanout.figures(samples[key])
            rows[key].append(figures)
            print(
                f"  {target.name}: fan-out to {size}: p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms,"
                f" {figures['cpu_us_per_frame']:.1f} us CPU/frame, delivery {figures['delivery']:.4f}, "
                f"closed {figures['closed_by_server']}",
                flush=True,
            )
        if size == plan.fanout[0] and plan.stream_seconds > 0:
            mine = targets["matchcast"]
            stack_results["stream"] = stream.run(
                load, mine, values["matchcast"], plan.stream_rate, plan.stream_seconds, plan.batch_window_ms
            )
    for key in rows:
        for row in rows[key]:
            # What each delivered frame costs once the update itself is paid for.
            fixed = costs[key]["ms_per_update"] / 1000
            row["marginal_us_per_frame"] = 1e6 * (row["server_cpu_s"] / row["updates"] - fixed) / row["spectators"]
    ratio = {key: report.ratios(rows["matchcast"], rows[key]) for key in rows if key != "matchcast"}
    stack_results["fanout"] = {**rows, "ratio": ratio}


def profiler(
    plan: Plan, target: servers.Target, size: int, round_: int, stack_results: dict[str, Any]
) -> subprocess.Popen[bytes] | None:
    """py-spy recording `target` through one fan-out sample at the largest size, if asked."""
    if plan.profile is None or size != plan.fanout[-1] or round_ != 0 or target.kind == "node":
        return None  # py-spy reads Python processes only
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        raise SystemExit("--profile needs py-spy: pip install py-spy (it is in the dev extras)")
    plan.profile.mkdir(parents=True, exist_ok=True)
    name = target.name.replace(" ", "-")
    out = plan.profile / f"profile-{name}-{size}.svg"
    stack_results.setdefault("profiles", []).append(str(out))
    seconds = int(plan.updates * plan.interval + 3)
    command = [
        spy,
        "record",
        "--pid",
        str(target.pid),
        "--duration",
        str(seconds),
        "--rate",
        "250",
        "--nonblocking",
        "--output",
        str(out),
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def measure_against_baselines(
    stack: str,
    plan: Plan,
    load: LoadGenerator,
    workdir: Path,
    server_cpus: list[int] | None,
    baselines: dict[str, servers.Target],
    results: dict[str, Any],
    stack_results: dict[str, Any],
) -> None:
    """Idle sockets, then the fan-out, update cost and stream: matchcast beside the running baselines."""
    with servers.matchcast(stack, workdir, server_cpus, plan.gc_tuning) as mine:
        targets = {"matchcast": mine, **baselines}
        for key, target in targets.items():
            load.participant(target.name, target.participant_url, role="participant" if key == "matchcast" else None)
        if plan.idle:
            stack_results["idle"] = idle.run(load, mine, plan.idle, plan.idle_settle, plan.idle_window)
            for key, target in baselines.items():
                if plan.baseline_idle and key not in results["baselines_idle"]:
                    results["baselines_idle"][key] = idle.run(
                        load, target, plan.idle, plan.idle_settle, plan.idle_window
                    )
        if plan.fanout:
            measure_fanout(load, plan, targets, stack_results)
        for target in targets.values():
            load.close(target.name)
    stack_results["gc"] = {"matchcast": gc_summary(mine.log)}


def storm_result(stack: str, plan: Plan, cpus: tuple[list[int] | None, list[int] | None]) -> dict[str, Any] | None:
    """The reconnect storm's figures on `stack` (bench/storm.py), for its issue-17 target: on a
    server of its own (it restarts it), with a load generator of its own, after the other scenarios."""
    if plan.storm <= 0:
        return None
    print(f"  reconnect storm of {plan.storm} spectators", flush=True)
    result = storm.measure(storm.Plan(stack=stack, clients=plan.storm, processes=plan.processes), cpus)
    print(
        f"  reconnect storm: {result['complete']}/{result['clients']} complete, resumed in "
        f"{storm.shown(result['resumed_seconds'])} s, {result['closed_1011']} closed 1011, "
        f"at most {result['max_db_connections']} database connections",
        flush=True,
    )
    return result


def run_stack(
    stack: str,
    plan: Plan,
    load: LoadGenerator,
    workdir: Path,
    cpus: tuple[list[int] | None, list[int] | None],
    results: dict[str, Any],
) -> None:
    """The stack's scenarios; the baselines start first and serve them all (they keep no state)."""
    print(f"== {stack}", flush=True)
    stack_results: dict[str, Any] = {}
    server_cpus = cpus[0]
    with ExitStack() as running:
        started = servers.start_together(
            running, [servers.baseline(workdir, server_cpus, plan.gc_tuning, key) for key in plan.baselines]
        )
        baselines = dict(zip(plan.baselines, started, strict=True))
        if plan.idle or plan.fanout:
            measure_against_baselines(stack, plan, load, workdir, server_cpus, baselines, results, stack_results)
        if plan.joins > 0:
            stack_results["joins"] = joins.run(
                load,
                stack,
                workdir,
                server_cpus,
                joins=plan.joins,
                intervals=plan.joins_intervals,
                rounds=plan.rounds,
                concurrency=plan.joins_concurrency,
                anchors=plan.joins_anchors,
                settle=plan.joins_settle,
                window=plan.idle_window,
                gc_tuning=plan.gc_tuning,
                baselines=started,
                logged_in=plan.joins_logged_in,
            )
    # Each Python server logs its collector's summary as it stops.
    stack_results.setdefault("gc", {}).update({key: gc_summary(target.log) for key, target in baselines.items()})
    stormed = storm_result(stack, plan, cpus)
    if stormed is not None:
        stack_results["storm"] = stormed
    results["stacks"][stack] = stack_results


def meta(plan: Plan, argv: list[str]) -> dict[str, Any]:
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python -m bench.run " + " ".join(argv),
        "machine": f"{os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}",
        "load_average_at_start": os.getloadavg(),
        "versions": {
            **{name: version(name) for name in ("uvicorn", "starlette", "wsproto", "websockets", "uvloop", "picows")},
            **node_versions(),
        },
        "ws_implementation": WS_IMPLEMENTATION,
        "plan": asdict(plan),
    }


def node_versions() -> dict[str, str]:
    """Node.js and the `ws` that bench/node runs (what npm ci installed from the lock file)."""
    found: dict[str, str] = {}
    node = shutil.which("node")
    if node is not None:
        found["node"] = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    package = servers.NODE_DIR / "node_modules" / "ws" / "package.json"
    if package.exists():
        found["ws"] = json.loads(package.read_text())["version"]
    return found


def run(plan: Plan, out: Path, argv: list[str], draw: bool = True) -> dict[str, Any]:
    raise_open_files_limit()
    server_cpus, client_cpus = cpu_split()
    started = time.monotonic()
    results: dict[str, Any] = {"meta": meta(plan, argv), "stacks": {}, "baselines_idle": {}}
    with (
        tempfile.TemporaryDirectory(prefix="matchcast-bench-") as tmp,
        LoadGenerator(plan.processes, client_cpus) as load,
    ):
        for stack in plan.stacks:
            run_stack(stack, plan, load, Path(tmp), (server_cpus, client_cpus), results)
    results["meta"]["seconds"] = time.monotonic() - started
    results["meta"]["load_average_at_end"] = os.getloadavg()
    results["targets"] = report.targets(results)
    print()
    print(report.table(results))
    report.write_json(results, out / "latest.json")
    if draw:
        report.plot(results, out / "plot.png")
    print(
        f"\nwrote {out / 'latest.json'}"
        + (f" and {out / 'plot.png'}" if draw else "")
        + f" in {results['meta']['seconds']:.0f} s",
        flush=True,
    )
    return results


def sizes(raw: str) -> list[int]:
    return [int(part) for part in raw.split(",") if part.strip()]


def names(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


def count(raw: str) -> int:
    """A number of sockets; empty: 0 (skip)."""
    return int(raw) if raw.strip() else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds (tests/bench)")
    parser.add_argument("--stacks", help=f"comma-separated, of {', '.join(servers.STACKS)}")
    parser.add_argument("--idle", type=sizes, help="idle sizes, e.g. 1000,5000,10000 (empty: skip)")
    parser.add_argument("--fanout", type=sizes, help="fan-out sizes, e.g. 1000,3000,5000 (empty: skip)")
    parser.add_argument(
        "--joins", type=count, help="spectators per joins sample, viewer counting on and off, e.g. 2000 (empty: skip)"
    )
    parser.add_argument("--rounds", type=int, help="samples per server and size")
    parser.add_argument("--storm", type=count, help="spectators of the reconnect storm, e.g. 10000 (empty: skip)")
    parser.add_argument(
        "--baselines",
        type=names,
        help=f"comma-separated, of {', '.join(servers.BASELINES)} (all by default; empty: none)",
    )
    parser.add_argument(
        "--no-gc-tuning",
        action="store_true",
        help="run the servers without the GC tuning (matchcast via bench/untuned.py)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="record py-spy flame graphs of matchcast and the Python baselines during the largest fan-out into DIR",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where latest.json and plot.png go")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    plan = replace(SMOKE) if args.smoke else Plan()
    if args.stacks:
        plan.stacks = [s.strip() for s in args.stacks.split(",") if s.strip()]
        unknown = set(plan.stacks) - set(servers.STACKS)
        if unknown:
            parser.error(f"unknown stack {', '.join(sorted(unknown))}; use {', '.join(servers.STACKS)}")
    unknown = set(args.baselines or ()) - set(servers.BASELINES)
    if unknown:
        parser.error(f"unknown baseline {', '.join(sorted(unknown))}; use {', '.join(servers.BASELINES)}")
    for name in ("idle", "fanout", "joins", "rounds", "baselines", "storm"):
        if getattr(args, name) is not None:
            setattr(plan, name, getattr(args, name))
    plan.gc_tuning = not args.no_gc_tuning
    plan.profile = args.profile
    run(plan, args.out, argv, draw=not args.no_plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
