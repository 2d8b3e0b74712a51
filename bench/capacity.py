"""Capacity: what an event, a join and a delivered frame cost matchcast, Redis and PostgreSQL; how
many events a second one instance carries; and two instances on one Redis and one database,
checked against what the one-instance figures predict.

    python -m bench.capacity                              # about 5 minutes on this 2-core machine
    python -m bench.capacity --spectators 3000 --joins 2000 --rounds 3
    python -m bench.capacity --smoke --out /tmp/capacity   # tiny sizes: what tests/bench runs

Real `matchcast serve` processes on the redis-postgres stack, against a private redis-server and
a private PostgreSQL cluster (bench/backing.py: nobody else's commands in the counts), holding
`matchcast demo --format round_robin` tournaments with every match started. Instance A has the
first CPU; the load generator, Redis and PostgreSQL the others. In order, on A:

1. event: a few spectators on the final (one match); scores 105 ms apart (none coalesced by the
   100 ms window). Per event: server CPU, Redis commands, bytes and CPU, PostgreSQL statements,
   transactions, rows, WAL and CPU. The background (viewer-count reports, pings, idle CPU) is
   measured over a quiet window first and taken off.
2. joins: guests, then logged-in users (other players' tokens), join the final and leave; per join.
3. fan-out: N spectators on the final; server CPU per delivered frame, total and marginal.
4. events/s: scores streamed to more and more other matches at once until A no longer keeps up.
5. two instances: B starts on the same Redis, database and channel prefix; first what an event
   costs B, which only receives it; then the N spectators split between A and B, scores sent
   on A: CPU, delivery and latency on each, beside the model's prediction.

Phases 1-4 are in bench/costs.py, 5 in bench/twoinstances.py; bench/meter.py charges each phase
its counters, bench/cluster.py starts the instances, bench/drivers.py holds the clients the load
generator lacks. Then bench/sizing.py turns the constants into instances, Redis and PostgreSQL
for a final of 100k and 1M spectators (docs/performance.md, "Capacity"). The JSON goes to
bench/results/capacity.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bench import backing, costs, fanout, sizing, twoinstances
from bench.cluster import Stack, instance, spectator_tokens, stack, start_matches
from bench.loadgen import LoadGenerator, raise_open_files_limit
from bench.meter import Meter
from bench.run import cpu_split
from matchcast.security import create_guest_token

RESULTS = Path(__file__).parent / "results" / "capacity.json"


@dataclass
class Plan:
    spectators: int = 2000  # the fan-out's N; the two-instance check splits it in two
    few: int = 10  # spectators while an event's cost besides its fan-out is measured
    cost_updates: int = 60
    cost_interval: float = 0.105  # just wider than the batching window: no update coalesced
    updates: int = 20  # per fan-out sample
    interval: float = 0.3
    rounds: int = 2
    joins: int = 1000  # per kind of join (guest, logged-in)
    joins_concurrency: int = 32
    rates: list[int] = field(default_factory=lambda: [25, 50, 75, 100, 150, 200, 300, 400])  # events/s offered to A
    step_seconds: float = 8.0
    demos: int = 2  # round-robin tournaments of 8 players: 28 live matches each
    processes: int = 4
    settle: float = 2.5  # after connects or drops: longer than the 2 s viewer-count interval
    quiet: float = 5.0  # seconds of background measured before the event phase
    pg_settle: float = backing.PG_STATS_DELAY  # for pg_stat_database's transaction and row counts


SMOKE = Plan(
    spectators=6,
    few=2,
    cost_updates=4,
    updates=3,
    interval=0.3,  # as the full plan: at 0.15 a loaded machine delays two updates into one 100 ms window (coalesced)
    rounds=1,
    joins=6,
    joins_concurrency=4,
    rates=[10, 20],
    step_seconds=1.0,
    demos=1,
    processes=2,
    settle=0.3,
    quiet=0.5,
    pg_settle=0.0,
)


def measure(load: LoadGenerator, plan: Plan, stack_: Stack, client_cpus: list[int] | None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    values = fanout.Values()
    with instance(stack_, "A") as a:
        start_matches(stack_, a)
        meter = Meter(stack_.counters, [a])
        fanout.connect(load, a, plan.few)
        load.participant(a.name, a.participant_url)
        time.sleep(plan.settle)
        print("== 1. an event's cost besides its fan-out", flush=True)
        results["event"] = costs.event_cost(load, plan, meter, a, values)
        print("== 2. joins: guests, then logged-in users", flush=True)
        guests = [create_guest_token(a.secret or "", 3600) for _ in range(plan.joins)]
        results["joins"] = {
            "guest": costs.join_cost(client_cpus, plan, meter, a, guests),
            "user": costs.join_cost(client_cpus, plan, meter, a, spectator_tokens(stack_, plan.joins)),
        }
        print("== 3. fan-out", flush=True)
        fixed_ms = results["event"]["per_event"][f"cpu.{a.name}_us"] / 1000
        results["fanout"] = costs.fanout_cost(load, plan, meter, a, values, fixed_ms)
        print("== 4. events per second on one instance", flush=True)
        results["events_per_s"] = costs.events_per_second(plan, stack_, a, client_cpus)
        print("== 5. two instances", flush=True)
        results["two_instances"] = twoinstances.two_instances(load, plan, stack_, a, values)
    return results


def run(plan: Plan, out: Path, argv: list[str]) -> dict[str, Any]:
    raise_open_files_limit()
    server_cpus, client_cpus = cpu_split()
    started = time.monotonic()
    results: dict[str, Any] = {
        "meta": {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "command": "python -m bench.capacity " + " ".join(argv),
            "load_average_at_start": os.getloadavg(),
            "plan": asdict(plan),
        }
    }
    with (
        tempfile.TemporaryDirectory(prefix="matchcast-capacity-") as tmp,
        LoadGenerator(plan.processes, client_cpus) as load,
        stack(Path(tmp), server_cpus, client_cpus, plan.demos) as stack_,
    ):
        results.update(measure(load, plan, stack_, client_cpus))
    results["meta"]["seconds"] = time.monotonic() - started
    results["meta"]["load_average_at_end"] = os.getloadavg()
    write(results, out)  # the measurements are kept even if the model below fails
    results["model"] = sizing.constants(results, plan.few)
    results["check"] = sizing.check(results["model"], results["two_instances"])
    results["sizing"] = [sizing.size(results["model"], spectators) for spectators in sizing.FINALS]
    print()
    print(sizing.report(results))
    write(results, out)
    print(f"\nwrote {out} in {results['meta']['seconds']:.0f} s", flush=True)
    return results


def write(results: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=str) + "\n")


def rates(raw: str) -> list[int]:
    return [int(part) for part in raw.split(",") if part.strip()]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, about a minute (tests/bench)")
    parser.add_argument("--spectators", type=int, help="fan-out size N (the two-instance check splits it)")
    parser.add_argument("--joins", type=int, help="joins per kind (guest, logged-in)")
    parser.add_argument("--rounds", type=int, help="fan-out samples")
    parser.add_argument("--rates", type=rates, help="events/s offered to one instance, in steps, e.g. 100,200,300")
    parser.add_argument("--step-seconds", type=float, help="length of each events/s step")
    parser.add_argument("--demos", type=int, help="round-robin tournaments (28 live matches each)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    plan = replace(SMOKE) if args.smoke else Plan()
    for name in ("spectators", "joins", "rounds", "rates", "step_seconds", "demos"):
        if getattr(args, name) is not None:
            setattr(plan, name, getattr(args, name))
    run(plan, args.out, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
