"""Phase 5 of bench/capacity.py: a second instance on the same Redis, database and channel prefix.
First what an event costs the instance that only receives it; then the spectators split between
the two, scores sent on the first: CPU, delivery and latency on each."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from bench import fanout, servers
from bench.cluster import Stack, instance
from bench.loadgen import LoadGenerator
from bench.meter import Meter, per_unit, prompt
from bench.procstat import cpu_seconds

if TYPE_CHECKING:
    from bench.capacity import Plan

WARMUP_UPDATES = fanout.WARMUP_UPDATES


def receive_cost(
    load: LoadGenerator, plan: Plan, meter: Meter, a: servers.Target, b: servers.Target, values: fanout.Values
) -> dict[str, Any]:
    """What an event costs B, which only receives it from Redis (A stores and publishes it)."""
    first = values.take(plan.cost_updates)
    last = first + plan.cost_updates - 1
    for group in (a.name, b.name):
        load.record(group)
    before = meter.read()
    driven = load.drive(a.name, first, plan.cost_updates, plan.cost_interval)
    missing = load.wait_value(a.name, last, 10) + load.wait_value(b.name, last, 10)
    change = meter.delta(before, meter.read())
    seen_at_a = load.collect(a.name)
    seen = load.collect(b.name)
    events = len({v for v in seen["values"][0] if v >= first})
    return {
        "spectators": {a.name: load.open[a.name], b.name: load.open[b.name]},
        "events": events,
        # What A's own spectators saw: two updates the load generator sent closer together than
        # the batching window (a delayed send under load) are one event on both instances.
        "events_at_a": len({v for v in seen_at_a["values"][0] if v >= first}),
        "missing_at_end": missing,
        "participant_errors": driven["errors"][:5],
        "per_event": per_unit(prompt(change), events),
    }


def split_sample(
    load: LoadGenerator, plan: Plan, a: servers.Target, b: servers.Target, values: fanout.Values
) -> dict[str, Any]:
    """One fan-out sample with the spectators split between A and B; scores sent on A."""
    groups = (a.name, b.name)
    warm = values.take(WARMUP_UPDATES)
    for group in groups:
        load.record(group)
    load.drive(a.name, warm, WARMUP_UPDATES, plan.interval)
    for group in groups:
        load.wait_value(group, warm + WARMUP_UPDATES - 1, 10)
    first = values.take(plan.updates)
    for group in groups:
        load.record(group)
    cpu_before = {t.name: cpu_seconds(t.pid) for t in (a, b)}
    driven = load.drive(a.name, first, plan.updates, plan.interval)
    missing = sum(load.wait_value(g, first + plan.updates - 1, max(10.0, plan.updates * plan.interval)) for g in groups)
    cpu = {t.name: cpu_seconds(t.pid) - cpu_before[t.name] for t in (a, b)}
    sent: dict[int, int] = driven["sent"]
    sample: dict[str, Any] = {"missing_at_end": missing, "participant_errors": driven["errors"][:5], "groups": {}}
    for group in groups:
        seen = load.collect(group)
        latencies = [
            (t - sent[v]) / 1e6
            for vs, ts in zip(seen["values"], seen["times"], strict=True)
            for v, t in zip(vs, ts, strict=True)
            if v in sent
        ]
        sample["groups"][group] = {
            "spectators": load.open[group],
            "cpu_s": cpu[group],
            "latencies": latencies,
            "closed": len(seen["closed"]),
        }
    return sample


def redis_commands(change: dict[str, float]) -> dict[str, float]:
    counts = {k[6:]: v for k, v in change.items() if k.startswith("redis.") and k != "redis.info"}
    return {k: v for k, v in counts.items() if v and k not in ("cpu_s", "bytes_in", "bytes_out")}


def two_instances(
    load: LoadGenerator, plan: Plan, stack_: Stack, a: servers.Target, values: fanout.Values
) -> dict[str, Any]:
    """Phase 5: B joins A on the same Redis, database and prefix; the receive cost, then the split."""
    channel = stack_.env["MATCHCAST_CHANNEL_PREFIX"] + f"match_{a.match_id}"
    with instance(stack_, "B") as b:
        meter = Meter(stack_.counters, [a, b])
        before = meter.read()
        fanout.connect(load, b, plan.few)
        time.sleep(plan.settle)
        opened = redis_commands(meter.delta(before, meter.read()))
        meter.quiet(plan.quiet)
        received = receive_cost(load, plan, meter, a, b, values)
        load.close(a.name)  # N on A become N/2 on A and N/2 on B
        fanout.connect(load, a, plan.spectators // 2)
        load.participant(a.name, a.participant_url)
        fanout.connect(load, b, plan.spectators - plan.spectators // 2)
        time.sleep(plan.settle)
        before = meter.read()
        samples = [split_sample(load, plan, a, b, values) for _ in range(plan.rounds)]
        change = meter.delta(before, meter.read())
        subscribers = stack_.counters.subscribers(channel)
    per_instance = {}
    for name in (a.name, b.name):
        latencies = sorted(ms for s in samples for ms in s["groups"][name]["latencies"])
        spectators = samples[0]["groups"][name]["spectators"]
        cpu = sum(s["groups"][name]["cpu_s"] for s in samples)
        expected = plan.rounds * plan.updates * spectators
        per_instance[name] = {
            "spectators": spectators,
            "delivered": len(latencies),
            "delivery": len(latencies) / expected if expected else math.nan,
            "closed_by_server": sum(s["groups"][name]["closed"] for s in samples),
            "p50_ms": fanout.percentile(latencies, 50),
            "p99_ms": fanout.percentile(latencies, 99),
            "server_cpu_s": cpu,
            "cpu_us_per_frame": 1e6 * cpu / max(1, len(latencies)),
        }
    return {
        "final_channel_subscribers": subscribers,
        "redis_commands_as_b_opened_the_final": opened,
        "receive": received,
        "events": plan.rounds * plan.updates,
        "instances": per_instance,
        "missing_at_end": sum(s["missing_at_end"] for s in samples),
        "participant_errors": [e for s in samples for e in s["participant_errors"]][:5],
        "per_event": {
            k: v
            for k, v in per_unit(prompt(change), plan.rounds * (plan.updates + WARMUP_UPDATES)).items()
            if not k.startswith("cpu.")
        },
    }
