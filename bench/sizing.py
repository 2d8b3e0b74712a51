"""The capacity model: bench/capacity.py's measurements as constants, the two-instance run's
prediction, and what a final of 100k or 1M spectators takes.

The model (CPU in seconds; f = server CPU per delivered frame, beyond an event's own cost):

    publishing instance, per second:  e * (c_event + n * f)        e events/s, n spectators on it
    any other instance, per second:   e * (c_receive + n * f)
    spectators per core:              n_cpu = (u - e * c_receive) / (e * f)      at utilization u
                                      n_lat = L / f      an event's last socket within L of its first
                                      n_storm = T / c_join    everyone back within T after a restart
    instances:                        ceil(S / min(n_cpu, n_lat, n_storm))
    Redis, per second:                e * p PUBLISH (p rooms per event), e * p * I messages out
                                      (one per subscribed instance), I / t viewer-count reports
                                      in and I * I / t out (t: the viewer-count interval)
    PostgreSQL, per second:           e * q statements (q per event, whatever the spectators),
                                      J * q_join during a storm of J joins/s
"""

from __future__ import annotations

import math
from typing import Any

FINALS = (100_000, 1_000_000)
EVENT_RATE = 2.0  # score events/s of a final at its peak
UTILIZATION = 0.7
LATENCY_BUDGET = 0.25  # seconds from an event's first socket to its last, on one instance
STORM_SECONDS = 10.0  # every spectator back within this after a restart (issue 17's target for 10k)
KB_PER_SOCKET = 25.3  # idle memory per socket at 10k on redis-postgres (docs/performance.md, make bench)
POOL_SIZE = 10  # MATCHCAST_DATABASE_POOL_SIZE's default: PostgreSQL connections per instance
VIEWERS_INTERVAL = 2.0


def constants(results: dict[str, Any], few: int) -> dict[str, Any]:
    a, b = "cpu.matchcast A_us", "cpu.matchcast B_us"
    event = results["event"]["per_event"]
    received = results["two_instances"]["receive"]["per_event"]
    frame = results["fanout"]["marginal_us_per_frame"]
    joins = results["joins"]
    return {
        "frame_us": frame,
        "frame_total_us": results["fanout"]["cpu_us_per_frame"],
        "fanout_spectators": results["fanout"]["spectators"],
        # Less the few spectators' frames that were open while the event was measured.
        "event_us": event.get(a, math.nan) - few * frame,
        "receive_us": received.get(b, math.nan) - few * frame,
        "join_us": {kind: join["per_join"].get(a, math.nan) for kind, join in joins.items()},
        "joins_per_s_per_core": {kind: join["joins_per_s_per_core"] for kind, join in joins.items()},
        "events_per_s_max": results["events_per_s"]["max_sustained_per_s"],
        "per_event": {k: v for k, v in event.items() if not k.startswith(("cpu.", "pg.sql."))},
        "sql_per_event": {k[7:]: v for k, v in event.items() if k.startswith("pg.sql.")},
        "per_join": {
            kind: {k: v for k, v in join["per_join"].items() if not k.startswith("cpu.")}
            for kind, join in joins.items()
        },
    }


def check(model: dict[str, Any], two: dict[str, Any]) -> dict[str, Any]:
    """Each instance's CPU in the two-instance run, measured and as the model predicts it."""
    events = two["events"]
    rows = {}
    for name, fixed in (("matchcast A", model["event_us"]), ("matchcast B", model["receive_us"])):
        measured = two["instances"][name]
        frames = measured["delivered"]
        predicted = (events * fixed + frames * model["frame_us"]) / 1e6
        rows[name] = {
            "frames": frames,
            "measured_cpu_s": measured["server_cpu_s"],
            "predicted_cpu_s": predicted,
            "measured_us_per_frame": measured["cpu_us_per_frame"],
            "predicted_us_per_frame": 1e6 * predicted / max(1, frames),
            "measured_over_predicted": measured["server_cpu_s"] / predicted if predicted else math.nan,
        }
    return rows


def size(
    model: dict[str, Any],
    spectators: int,
    rate: float = EVENT_RATE,
    utilization: float = UTILIZATION,
    budget: float = LATENCY_BUDGET,
    storm: float = STORM_SECONDS,
) -> dict[str, Any]:
    frame, receive = model["frame_us"] / 1e6, model["receive_us"] / 1e6
    join = model["join_us"]["guest"] / 1e6
    per_core = {
        "cpu": _ratio(utilization - rate * receive, rate * frame),
        "latency": _ratio(budget, frame),
        "storm": _ratio(storm, join),
    }
    # A bound the measurements cannot give (tiny smoke sizes: a noise-level or negative f) drops out.
    instances = {why: math.ceil(spectators / n) for why, n in per_core.items() if n > 0 and math.isfinite(n)}
    if not instances:
        instances = {"nothing measured": 1}
    count = max(instances.values())
    steady = max([n for why, n in instances.items() if why != "storm"] or [count])
    event, joins = model["per_event"], model["per_join"]
    publishes = event.get("redis.publish", math.nan)
    storm_joins = spectators / max(storm, spectators / count * join)  # joins/s the instances can take
    return {
        "spectators": spectators,
        "event_rate": rate,
        "spectators_per_core": per_core,
        "instances_for": instances,
        "instances": count,
        "bound_by": max(instances, key=lambda why: instances[why]),
        "per_instance": spectators / count,
        "memory_gb_per_instance": spectators / count * KB_PER_SOCKET / 1e6,
        "storm_seconds": spectators / count * join,
        "instances_steady": steady,  # enough for the events, not for the storm
        "storm_seconds_steady": spectators / steady * join,
        "redis": {
            "publish_per_s": rate * publishes,
            "messages_out_per_s": rate * publishes * count,  # every instance subscribes the final's rooms
            "bytes_out_per_s": rate * event.get("redis.bytes_out", math.nan) * count,
            "viewer_reports_in_per_s": count / VIEWERS_INTERVAL,
            "viewer_reports_out_per_s": count * count / VIEWERS_INTERVAL,
            "subscribes_in_a_storm": 2 * count,  # the final's match and tournament rooms, once per instance
        },
        "postgres": {
            "statements_per_s": rate * event.get("pg.statements", math.nan),
            "transactions_per_s": rate * event.get("pg.xact_commit", math.nan),
            "wal_kb_per_s": rate * event.get("pg.wal_bytes", math.nan) / 1000,
            "cpu_cores": rate * event.get("pg.cpu_us", math.nan) / 1e6,
            "storm_joins_per_s": storm_joins,
            "storm_statements_per_s": {k: storm_joins * j.get("pg.statements", 0.0) for k, j in joins.items()},
            "storm_cpu_cores": {k: storm_joins * j.get("pg.cpu_us", 0.0) / 1e6 for k, j in joins.items()},
            "connections": count * POOL_SIZE,
        },
    }


# -- the printed report ---------------------------------------------------------------------------------


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, or infinity where a smoke run's cost rounds to zero CPU ticks."""
    return numerator / denominator if denominator > 0 else math.inf


def _n(value: float, digits: int = 1) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:,.{digits}f}"


def _counts(per: dict[str, float], prefix: str) -> str:
    items = sorted(((k[len(prefix) :], v) for k, v in per.items() if k.startswith(prefix)), key=lambda kv: -kv[1])
    return ", ".join(f"{name} {_n(v, 2)}" for name, v in items) or "none"


def _redis_commands(per: dict[str, float]) -> str:
    skip = ("redis.cpu_us", "redis.bytes_in", "redis.bytes_out")
    return _counts({k: v for k, v in per.items() if k not in skip}, "redis.")


def _backing(per: dict[str, float]) -> list[str]:
    return [
        f"    Redis: {_redis_commands(per)}; {_n(per.get('redis.bytes_in', math.nan), 0)} bytes in, "
        f"{_n(per.get('redis.bytes_out', math.nan), 0)} out; {_n(per.get('redis.cpu_us', math.nan))} us CPU",
        f"    PostgreSQL: {_n(per.get('pg.statements', math.nan), 2)} statements "
        f"({_n(per.get('pg.reset_statements', math.nan), 2)} of them pool resets), "
        f"{_n(per.get('pg.xact_commit', math.nan), 2)} transactions, "
        f"{_n(per.get('pg.tup_inserted', math.nan), 2)} rows inserted, "
        f"{_n(per.get('pg.tup_updated', math.nan), 2)} updated, {_n(per.get('pg.tup_fetched', math.nan), 2)} fetched, "
        f"{_n(per.get('pg.wal_bytes', math.nan), 0)} WAL bytes; {_n(per.get('pg.cpu_us', math.nan))} us CPU",
    ]


def _sql(per: dict[str, float], limit: int = 12) -> list[str]:
    items = sorted(((k[7:], v) for k, v in per.items() if k.startswith("pg.sql.")), key=lambda kv: -kv[1])
    return [f"      {v:5.2f}  {query[:110]}" for query, v in items[:limit]]


def report(results: dict[str, Any]) -> str:
    meta = results["meta"]
    a = "matchcast A"
    event, joins, fan = results["event"], results["joins"], results["fanout"]
    lines = [
        f"Capacity: {meta['command']}, {meta['date']}, load average "
        f"{_n(meta['load_average_at_start'][0], 2)} -> {_n(meta['load_average_at_end'][0], 2)}",
        "",
        f"Per event (one score update, {event['spectators']} spectators, {event['events']} events of "
        f"{event['updates']} updates; background taken off)",
        f"    {a}: {_n(event['per_event'].get(f'cpu.{a}_us', math.nan) / 1000, 2)} ms CPU",
        *_backing(event["per_event"]),
        "    statements per event:",
        *_sql(event["per_event"]),
        "",
    ]
    for kind, join in joins.items():
        per = join["per_join"]
        lines += [
            f"Per join, {kind} ({join['joins']} joins, {join['concurrency']} in flight, roles {join['roles']})",
            f"    {a}: {_n(per.get(f'cpu.{a}_us', math.nan), 0)} us CPU per connect + disconnect: "
            f"{_n(join['joins_per_s_per_core'], 0)} joins/s per core ({_n(join['joins_per_s_seen'], 0)}/s seen)",
            *_backing(per),
            *_sql(per, 6),
        ]
    lines += [
        "",
        f"Fan-out to {fan['spectators']}: {_n(fan['cpu_us_per_frame'])} us CPU per delivered frame "
        f"({_n(fan['marginal_us_per_frame'])} marginal), p50 {_n(fan['p50_ms'])} ms, p99 {_n(fan['p99_ms'])} ms, "
        f"delivery {_n(fan['delivery'], 4)}",
        *_backing(fan["per_event"]),
        "",
        "Events per second on one instance (each match <= "
        f"{_n(results['events_per_s']['per_match_max_per_s'], 0)}/s: one per batching window)",
        "    matches  offered/s  broadcast/s  server CPU %  PG CPU %  Redis CPU %  ms/event  p50 ms  p99 ms  errors",
    ]
    for s in results["events_per_s"]["steps"]:
        lines.append(
            f"    {s['matches']:7d}  {s['offered_per_s']:9.0f}  {s['events_per_s']:11.0f}  {s['server_cpu_pct']:12.0f}"
            f"  {s['postgres_cpu_pct']:8.0f}  {s['redis_cpu_pct']:11.0f}  {s['server_ms_per_event']:8.2f}"
            f"  {s['p50_ms']:6.1f}  {s['p99_ms']:6.1f}  {s['error_count']:6d}"
        )
    lines.append(f"    max sustained: {_n(results['events_per_s']['max_sustained_per_s'], 0)} events/s")
    lines += _two(results)
    lines += _sizing(results)
    return "\n".join(lines)


def _two(results: dict[str, Any]) -> list[str]:
    two, model, check_ = results["two_instances"], results["model"], results["check"]
    lines = [
        "",
        f"Two instances on one Redis and one database (the final's channel has "
        f"{two['final_channel_subscribers']} subscribers); scores sent on A",
        f"    an event on B, which only receives it: {_n(model['receive_us'] / 1000, 2)} ms CPU "
        f"(on A, which stores and publishes it: {_n(model['event_us'] / 1000, 2)} ms)",
        "    instance     spectators  delivery  p50 ms  p99 ms  CPU s  predicted s  us/frame  predicted"
        "  measured/predicted",
    ]
    for name, row in two["instances"].items():
        c = check_[name]
        lines.append(
            f"    {name:11s}  {row['spectators']:10d}  {row['delivery']:8.4f}"
            f"  {row['p50_ms']:6.1f}  {row['p99_ms']:6.1f}"
            f"  {c['measured_cpu_s']:5.2f}  {c['predicted_cpu_s']:11.2f}  {c['measured_us_per_frame']:8.1f}"
            f"  {c['predicted_us_per_frame']:9.1f}  {c['measured_over_predicted']:18.2f}"
        )
    one = results["fanout"]["per_event"]
    opened = ", ".join(f"{k} {v:g}" for k, v in two["redis_commands_as_b_opened_the_final"].items())
    lines += [
        f"    Redis commands as B's first spectators joined the final: {opened}",
        "    per event, one instance then two:",
        *_backing(one),
        *_backing(two["per_event"]),
    ]
    return lines


def _sizing(results: dict[str, Any]) -> list[str]:
    model = results["model"]
    lines = [
        "",
        f"Model: f = {_n(model['frame_us'])} us per frame, c_event = {_n(model['event_us'] / 1000, 2)} ms, "
        f"c_receive = {_n(model['receive_us'] / 1000, 2)} ms, c_join = {_n(model['join_us']['guest'] / 1000, 2)} ms "
        f"(guest), {_n(model['join_us']['user'] / 1000, 2)} ms (logged in)",
    ]
    for s in results["sizing"]:
        pg, redis_ = s["postgres"], s["redis"]
        per_core = s["spectators_per_core"]
        lines += [
            f"A final of {s['spectators']:,} spectators at {_n(s['event_rate'], 0)} events/s: "
            f"{s['instances']} instances (bound by {s['bound_by']}; "
            f"CPU {UTILIZATION:.0%}: {s['instances_for'].get('cpu', '-')}, "
            f"fan-out within {LATENCY_BUDGET * 1000:.0f} ms: {s['instances_for'].get('latency', '-')}, "
            f"back within {STORM_SECONDS:.0f} s: {s['instances_for'].get('storm', '-')})",
            f"    spectators per core: {_n(per_core['cpu'], 0)} (CPU), {_n(per_core['latency'], 0)} (latency), "
            f"{_n(per_core['storm'], 0)} (storm); {_n(s['per_instance'], 0)} per instance, "
            f"{_n(s['memory_gb_per_instance'], 2)} GB; a storm takes {_n(s['storm_seconds'])} s "
            f"({_n(s['storm_seconds_steady'])} s on the {s['instances_steady']} instances the events alone need)",
            f"    Redis: {_n(redis_['publish_per_s'], 0)} PUBLISH/s, "
            f"{_n(redis_['messages_out_per_s'], 0)} messages/s out ({_n(redis_['bytes_out_per_s'] / 1000)} KB/s); "
            f"viewer counts {_n(redis_['viewer_reports_in_per_s'], 0)} in, "
            f"{_n(redis_['viewer_reports_out_per_s'], 0)} out per s",
            f"    PostgreSQL: {_n(pg['statements_per_s'], 0)} statements/s, {_n(pg['wal_kb_per_s'])} KB WAL/s, "
            f"{_n(pg['cpu_cores'], 3)} cores; storm {_n(pg['storm_joins_per_s'], 0)} joins/s: "
            f"{_n(pg['storm_statements_per_s']['guest'], 0)} statements/s and {_n(pg['storm_cpu_cores']['guest'], 2)} "
            f"cores (guests), {_n(pg['storm_statements_per_s']['user'], 0)} and {_n(pg['storm_cpu_cores']['user'], 2)} "
            f"(logged in); {pg['connections']} connections",
        ]
    return lines
