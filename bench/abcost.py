"""Two trees of matchcast's `src/` on one stack, side by side: server CPU per score update, or per
idle second, rounds alternating which goes first so that the machine's drift weighs on both alike.

What a change to the update's path buys is a few percent of an update, under this machine's
run-to-run spread of ±30 %: only a paired comparison sees it. Both servers run at once, pinned
to the first CPU (the load generator gets the others), each with a participant and `--spectators`
guests on its demo match; CPU is read from the server's threads' schedstat (nanoseconds). Two
runs of one tree against itself (8 rounds of 30 updates) differ by up to 6 %.

    git worktree add --detach /tmp/base HEAD~1     # the tree to compare with (src/, templates/, static/)
    python -m bench.abcost --stack memory-sqlite --base /tmp/base/src
    python -m bench.abcost --stack redis-postgres --base /tmp/base/src --idle
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from bench import fanout, servers, spy
from bench.loadgen import LoadGenerator
from bench.procstat import cpu_seconds_fine, sleeps
from bench.run import cpu_split


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.abcost", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="memory-sqlite", choices=servers.STACKS)
    parser.add_argument("--base", type=Path, required=True, help="the other tree's src/ (A); this checkout is B")
    parser.add_argument("--spectators", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--updates", type=int, default=30, help="per round (or, with --idle, seconds per round)")
    parser.add_argument("--interval", type=float, default=0.105, help="seconds between updates")
    parser.add_argument("--idle", action="store_true", help="measure CPU per idle second instead")
    parser.add_argument(
        "--profile",
        type=Path,
        help="py-spy's raw samples of B's server during the rounds go here, and the top functions are "
        "printed (sampling costs B some CPU: its figures are then not comparable with A's)",
    )
    args = parser.parse_args(argv)
    if not (args.base / "matchcast").is_dir():
        parser.error(f"{args.base} holds no matchcast package: give the other tree's src/")
    server_cpus, load_cpus = cpu_split()
    unit = "ms CPU per idle second" if args.idle else "ms CPU per update"
    figures: dict[str, list[float]] = {"A": [], "B": []}
    wakeups: dict[str, list[float]] = {"A": [], "B": []}
    with ExitStack() as running, LoadGenerator(2, cpus=load_cpus) as load:
        workdir = Path(running.enter_context(tempfile.TemporaryDirectory(prefix="abcost-")))
        targets = {}
        for key, pythonpath in (("A", str(args.base.resolve())), ("B", "")):
            servers.SERVER_PYTHONPATH = pythonpath  # read when the server's environment is made
            target = running.enter_context(servers.matchcast(args.stack, workdir, server_cpus, label=key))
            targets[key] = target
            load.participant(target.name, target.participant_url)
            fanout.connect(load, target, args.spectators)
        values = {key: fanout.Values() for key in targets}
        time.sleep(2.0)  # the joins' work done
        profiler = spy.record(targets["B"].pid, args.profile) if args.profile else None
        for round_ in range(args.rounds):
            for key in ("A", "B") if round_ % 2 == 0 else ("B", "A"):
                target = targets[key]
                cpu, slept, started = cpu_seconds_fine(target.pid), sleeps(target.pid), time.monotonic()
                if args.idle:
                    time.sleep(args.updates)
                    units = time.monotonic() - started
                else:
                    first = values[key].take(args.updates)
                    load.record(target.name)
                    load.drive(target.name, first, args.updates, args.interval)
                    if load.wait_value(target.name, first + args.updates - 1, 10):
                        raise SystemExit(f"{target.name}: spectators missed updates")
                    load.collect(target.name)
                    units = args.updates
                figures[key].append(1000 * (cpu_seconds_fine(target.pid) - cpu) / units)
                wakeups[key].append((sleeps(target.pid) - slept) / units)
        if profiler is not None:
            spy.finish(profiler)
    for key, name in (("A", f"A {args.base}"), ("B", "B this checkout")):
        print(
            f"{name}: {unit} median {statistics.median(figures[key]):.3f}, "
            f"rounds {' '.join(f'{x:.3f}' for x in figures[key])}; "
            f"wakeups per {'second' if args.idle else 'update'} {statistics.median(wakeups[key]):.2f}"
        )
    print(f"B / A (medians): {statistics.median(figures['B']) / statistics.median(figures['A']):.3f}")
    if args.profile:
        found = spy.summary(args.profile, top=25)
        print(f"B's profile ({found['samples']} samples, {args.profile}), self % and inclusive %:")
        for (own, own_pct), (anywhere, anywhere_pct) in zip(found["self_pct"], found["inclusive_pct"], strict=False):
            print(f"  {own_pct:5.1f}  {own:<55}  {anywhere_pct:5.1f}  {anywhere}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
