"""bench/capacity.py at tiny sizes, so its plumbing never rots: every phase runs and its counters
are read and charged (a PUBLISH per event, statements and WAL in PostgreSQL, CPU per join).
No timing is asserted. And the model's arithmetic on known constants."""

from __future__ import annotations

import json
import math
from typing import Any, cast

import pytest

from bench import capacity, sizing

# A private Redis and PostgreSQL cluster, two demos' worth of set-up, two instances: about 45 s on
# a quiet machine, longer when other runs share the two cores.
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("capacity") / "capacity.json"
    capacity.main(["--smoke", "--out", str(out)])
    return cast(dict[str, Any], json.loads(out.read_text()))


def test_an_event_is_published_and_stored(results: dict[str, Any]) -> None:
    event = results["event"]
    assert event["events"] == event["updates"] == capacity.SMOKE.cost_updates  # none coalesced
    assert event["missing_at_end"] == 0 and event["participant_errors"] == []
    per = event["per_event"]
    assert per["redis.publish"] >= 1
    assert per["pg.statements"] >= 1 and per["pg.wal_bytes"] > 0
    assert sum(v for k, v in per.items() if k.startswith("pg.sql.INSERT")) >= 1  # the event log grew
    # CPU is charged (the idle background is taken off, so on a busy machine it can dip below 0).
    assert math.isfinite(per["cpu.matchcast A_us"])


def test_joins_of_guests_and_users_are_charged(results: dict[str, Any]) -> None:
    joins = results["joins"]
    assert joins["guest"]["roles"] == {"spectator (guest)": capacity.SMOKE.joins}
    assert joins["user"]["roles"] == {"spectator (user)": capacity.SMOKE.joins}
    for join in joins.values():
        assert math.isfinite(join["per_join"]["cpu.matchcast A_us"])


def test_fanout_and_events_per_second_deliver(results: dict[str, Any]) -> None:
    fanout = results["fanout"]
    # Delivery within the sample's bounded wait: under a loaded machine's stalls, not all of it.
    assert fanout["delivered"] > 0 and fanout["closed_by_server"] == 0
    assert fanout["per_event"]["redis.publish"] >= 1
    steps = results["events_per_s"]["steps"]
    assert steps and steps[0]["delivered"] > 0 and steps[0]["last_value_everywhere"] == steps[0]["matches"]


def test_two_instances_share_the_final_and_both_deliver(results: dict[str, Any]) -> None:
    two = results["two_instances"]
    assert two["final_channel_subscribers"] == 2  # one subscription per instance, whatever its sockets
    receive = two["receive"]
    # B, which only hears from Redis, shows every event A broadcast (a send delayed under load can
    # coalesce two updates into one event on both, so not always one per update).
    assert receive["missing_at_end"] == 0
    assert 0 < receive["events"] == receive["events_at_a"] <= capacity.SMOKE.cost_updates
    for row in two["instances"].values():
        assert row["spectators"] > 0 and row["delivery"] == 1.0 and row["closed_by_server"] == 0
    assert set(results["check"]) == {"matchcast A", "matchcast B"}
    assert [s["spectators"] for s in results["sizing"]] == list(sizing.FINALS)


def test_the_model_sizes_a_final_by_its_tightest_bound() -> None:
    model: dict[str, Any] = {
        "frame_us": 20.0,
        "receive_us": 1000.0,
        "join_us": {"guest": 1000.0, "user": 1500.0},
        "per_event": {"redis.publish": 2.0, "redis.bytes_out": 500.0, "pg.statements": 10.0, "pg.cpu_us": 300.0},
        "per_join": {"guest": {"pg.statements": 1.0}, "user": {"pg.statements": 2.0}},
    }
    found = sizing.size(model, 100_000, rate=2.0, utilization=0.7, budget=0.25, storm=10.0)
    per_core = found["spectators_per_core"]
    assert per_core["cpu"] == pytest.approx((0.7 - 2 * 0.001) / (2 * 20e-6))  # 17,450
    assert per_core["latency"] == pytest.approx(12_500)
    assert per_core["storm"] == pytest.approx(10_000)
    assert found["instances"] == 10 and found["bound_by"] == "storm"
    assert found["redis"]["messages_out_per_s"] == 2 * 2 * 10
    assert found["postgres"]["statements_per_s"] == 20
    assert found["postgres"]["storm_statements_per_s"] == {"guest": 10_000, "user": 20_000}
    assert math.isclose(found["storm_seconds"], 10.0)


def test_a_cost_that_rounds_to_zero_cpu_ticks_drops_out_of_the_sizing() -> None:
    # A smoke run's few guest joins can cost less than one CPU tick: that bound is unmeasured, not a crash.
    model: dict[str, Any] = {
        "frame_us": 20.0,
        "receive_us": 1000.0,
        "join_us": {"guest": 0.0, "user": 0.0},
        "per_event": {},
        "per_join": {"guest": {}, "user": {}},
    }
    found = sizing.size(model, 100_000, rate=2.0, utilization=0.7, budget=0.25, storm=10.0)
    assert found["spectators_per_core"]["storm"] == math.inf
    assert "storm" not in found["instances_for"] and found["bound_by"] == "latency"
