"""The one-instance phases of bench/capacity.py: what an event, a join and a delivered frame cost,
and how many events a second one instance carries."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from bench import drivers, fanout, servers
from bench.cluster import Stack
from bench.loadgen import LoadGenerator
from bench.meter import Meter, charged, nonzero, per_unit, prompt
from matchcast.security import create_guest_token
from matchcast.settings import Settings

if TYPE_CHECKING:
    from bench.capacity import Plan

WARMUP_UPDATES = fanout.WARMUP_UPDATES  # fanout.measure() sends these before each sample


def event_cost(
    load: LoadGenerator, plan: Plan, meter: Meter, target: servers.Target, values: fanout.Values
) -> dict[str, Any]:
    """Phase 1: an event's cost besides its fan-out, everywhere."""
    group = target.name
    load.record(group)
    warm = values.take(WARMUP_UPDATES)
    load.drive(group, warm, WARMUP_UPDATES, plan.cost_interval)
    load.wait_value(group, warm + WARMUP_UPDATES - 1, 10)
    meter.quiet(plan.quiet)
    first = values.take(plan.cost_updates)

    def work() -> dict[str, Any]:
        load.record(group)
        driven = load.drive(group, first, plan.cost_updates, plan.cost_interval)
        missing = load.wait_value(group, first + plan.cost_updates - 1, 10)
        return {"missing": missing, "errors": driven["errors"], "seen": load.collect(group)}

    done, change = charged(meter, plan.pg_settle, work)
    # Each update is one event unless the window coalesced it: count what a spectator saw.
    events = len({v for v in done["seen"]["values"][0] if v >= first})
    return {
        "spectators": load.open[group],
        "updates": plan.cost_updates,
        "events": events,
        "missing_at_end": done["missing"],
        "participant_errors": done["errors"][:5],
        "background_per_s": meter.background,
        "per_event": per_unit(change, events),
        "total": nonzero(change),
    }


def join_cost(
    load_cpus: list[int] | None, plan: Plan, meter: Meter, target: servers.Target, tokens: list[str]
) -> dict[str, Any]:
    """Phase 2: what a join (connect, connection_established, disconnect) costs, everywhere."""

    def work() -> dict[str, Any]:
        timeout = drivers.CONNECT_TIMEOUT * (2 + len(tokens) / plan.joins_concurrency)
        done: dict[str, Any] = drivers.in_process(
            load_cpus, timeout, drivers.joins, target.match_url, tokens, plan.joins_concurrency
        )
        time.sleep(plan.settle)  # the server sees every socket go
        return done

    done, change = charged(meter, plan.pg_settle, work)
    if done["open"] < len(tokens):
        raise RuntimeError(f"only {done['open']} of {len(tokens)} joins were admitted: {done['errors']}")
    cpu = change[f"cpu.{target.name}"]
    return {
        "joins": len(tokens),
        "roles": done["roles"],
        "concurrency": plan.joins_concurrency,
        "joins_per_s_seen": len(tokens) / done["seconds"],
        "joins_per_s_per_core": len(tokens) / cpu if cpu > 0 else math.nan,
        "per_join": per_unit(change, len(tokens)),
        "total": nonzero(change),
    }


def fanout_cost(
    load: LoadGenerator, plan: Plan, meter: Meter, target: servers.Target, values: fanout.Values, fixed_ms: float
) -> dict[str, Any]:
    """Phase 3: N spectators on the final; CPU per delivered frame, and Redis/PostgreSQL per event again."""
    opened = fanout.connect(load, target, plan.spectators)
    print(f"  {target.name}: {opened['open']} spectators open ({opened['seconds']:.1f} s)", flush=True)
    time.sleep(plan.settle)
    before = meter.read()
    samples = [fanout.measure(load, target, values, plan.updates, plan.interval) for _ in range(plan.rounds)]
    change = meter.delta(before, meter.read())
    figures = fanout.figures(samples)
    figures.pop("latency_cdf")
    events = plan.rounds * (plan.updates + WARMUP_UPDATES)
    figures["marginal_us_per_frame"] = (
        1e6 * (figures["server_cpu_s"] / figures["updates"] - fixed_ms / 1000) / figures["spectators"]
    )
    figures["per_event"] = {k: v for k, v in per_unit(prompt(change), events).items() if not k.startswith("cpu.")}
    return figures


def events_per_second(
    plan: Plan, stack_: Stack, target: servers.Target, client_cpus: list[int] | None
) -> dict[str, Any]:
    """Phase 4: scores streamed to k matches at once, k growing, until A no longer keeps up."""
    streams = [
        (m["id"], stack_.token_of(made, m["participant1_id"]))
        for made in stack_.demos
        for m in made["matches"]
        if m["id"] != stack_.final["id"]
    ]
    per_match = 1 / plan.cost_interval
    steps: list[dict[str, Any]] = []
    first_value = 1
    for rate in plan.rates:
        k = math.ceil(rate / per_match)
        if k > len(streams):
            print(f"  {rate} events/s would need {k} matches; {len(streams)} are live (--demos)", flush=True)
            break
        seconds = plan.step_seconds
        step: dict[str, Any] = drivers.in_process(
            client_cpus,
            seconds + drivers.CONNECT_TIMEOUT + 60,
            drivers.streams,
            target.port,
            streams[:k],
            create_guest_token(target.secret or "", 3600),
            plan.cost_interval,
            seconds,
            first_value,
            {
                "server": (target.pid, False),
                "redis": (stack_.redis_pid, False),
                "postgres": (stack_.postgres_pid, True),
            },
        )
        first_value += step["sent"]
        step["offered_per_s"] = k * per_match
        step["events_per_s"] = step["delivered"] / step["sending_s"]
        for name, cpu in step["cpu_s"].items():
            step[f"{name}_cpu_pct"] = 100 * cpu / step["sending_s"]
        step["server_ms_per_event"] = 1000 * step["cpu_s"]["server"] / max(1, step["delivered"])
        step["kept_up"] = step["delivered"] >= 0.95 * step["sent"] and step["error_count"] == 0 and step["p99_ms"] < 500
        steps.append(step)
        print(
            f"  {k} matches, {step['offered_per_s']:.0f} events/s offered: {step['events_per_s']:.0f} broadcast, "
            f"CPU: server {step['server_cpu_pct']:.0f} %, PostgreSQL {step['postgres_cpu_pct']:.0f} %, "
            f"Redis {step['redis_cpu_pct']:.0f} %; p99 {step['p99_ms']:.0f} ms, errors {step['error_count']}",
            flush=True,
        )
        if not step["kept_up"]:
            break
    kept = [s["events_per_s"] for s in steps if s["kept_up"]]
    return {
        "steps": steps,
        "max_sustained_per_s": max(kept) if kept else math.nan,
        # The batching window lets one score event per window out of each match.
        "per_match_max_per_s": 1000 / Settings.score_batch_window_ms,
    }
