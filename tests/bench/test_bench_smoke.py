"""Every benchmark scenario at tiny sizes, on both stacks and every baseline, so `bench/` never rots.
No timing is asserted."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from bench import run
from bench.servers import BASELINES

# Every scenario on both stacks starts 12 servers (per stack: the three baselines, which serve every
# scenario, matchcast, then two of matchcast for the joins, counting off and on): about a minute on
# a quiet machine, two or more when other runs share the two cores.
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench")
    run.main(["--smoke", "--out", str(out)])
    assert (out / "plot.png").stat().st_size > 0
    return cast(dict[str, Any], json.loads((out / "latest.json").read_text()))


def test_every_stack_ran_every_scenario(results: dict[str, Any]) -> None:
    assert set(results["stacks"]) == {"memory-sqlite", "redis-postgres"}
    for stack in results["stacks"].values():
        assert {"idle", "update_cost", "fanout", "stream", "joins"} <= set(stack)
        assert set(stack["update_cost"]) == {"matchcast", *BASELINES}
        assert all(stack["gc"][key] for key in ("matchcast", "baseline", "picows")), stack["gc"]  # logged at exit
    assert set(results["baselines_idle"]) == set(BASELINES)
    for rows in results["baselines_idle"].values():
        assert [r["sockets"] for r in rows] == run.SMOKE.idle and all(r["rss_kb"] > 0 for r in rows)


def test_fanout_delivers_every_frame_to_matchcast_and_every_baseline(results: dict[str, Any]) -> None:
    for stack in results["stacks"].values():
        for server in ("matchcast", *BASELINES):
            assert [row["spectators"] for row in stack["fanout"][server]] == run.SMOKE.fanout
            for row in stack["fanout"][server]:
                assert row["delivery"] == 1.0, (server, row)
                assert row["duplicates"] == 0 and row["closed_by_server"] == 0
                assert row["participant_errors"] == []
        assert set(stack["fanout"]["ratio"]) == set(BASELINES)
        for ratios in stack["fanout"]["ratio"].values():
            assert [r["spectators"] for r in ratios] == run.SMOKE.fanout


def test_stream_ends_on_the_last_value_everywhere(results: dict[str, Any]) -> None:
    for stack in results["stacks"].values():
        stream = stack["stream"]
        assert stream["last_value_intact"] == stream["spectators"] == run.SMOKE.fanout[0]
        assert stream["frames_per_window_min"] > 0


def test_idle_reports_memory_per_socket(results: dict[str, Any]) -> None:
    for stack in results["stacks"].values():
        assert [r["sockets"] for r in stack["idle"]] == run.SMOKE.idle
        assert all(r["rss_kb"] > 0 for r in stack["idle"])


def test_joins_measure_counting_off_and_on(results: dict[str, Any]) -> None:
    for stack in results["stacks"].values():
        joins = stack["joins"]
        guests = [row for row in joins["rows"] if row["kind"] == "matchcast" and not row["logged_in"]]
        rows = {row["interval_ms"]: row for row in guests}
        assert list(rows) == [0, *run.SMOKE.joins_intervals]
        for row in rows.values():
            assert row["joins"] == run.SMOKE.joins * run.SMOKE.rounds and row["connect_errors"] == []
            # The server counted every spectator, and saw every one go.
            assert row["open_at_peak"] == [run.SMOKE.joins + run.SMOKE.joins_anchors] * run.SMOKE.rounds
            assert row["open_after_close"] == [run.SMOKE.joins_anchors] * run.SMOKE.rounds
        assert rows[0]["viewers_frames"] == 0  # counting off: no viewers frame at all
        assert [r["interval_ms"] for r in joins["ratio"]] == run.SMOKE.joins_intervals


def test_joins_measure_logged_in_users_and_every_baseline(results: dict[str, Any]) -> None:
    for stack in results["stacks"].values():
        rows = stack["joins"]["rows"]
        logged_in = [row for row in rows if row["logged_in"]]
        assert [row["interval_ms"] for row in logged_in] == run.SMOKE.joins_intervals[:1]
        assert logged_in[0]["open_at_peak"] == [run.SMOKE.joins + run.SMOKE.joins_anchors] * run.SMOKE.rounds
        assert sorted(row["kind"] for row in rows if row["kind"] != "matchcast") == sorted(BASELINES)
        for row in rows:
            assert row["joins"] == run.SMOKE.joins * run.SMOKE.rounds and row["connect_errors"] == [], row
            assert row["connects_per_s"] > 0


def test_targets_are_evaluated(results: dict[str, Any]) -> None:
    old = {t["target"] for t in results["targets"] if t["issue"] == "benchmarks issue"}
    assert any("p99" in name for name in old) and any("KB per idle socket" in name for name in old)
    assert "CPU per join, counting on / off" in old
    new = [t for t in results["targets"] if t["issue"] == "issue 17"]
    for stack in results["stacks"]:
        names = {t["target"] for t in new if t["stack"] == stack}
        assert {f"CPU us per frame at {size}, <= picows + 1" for size in run.SMOKE.fanout} <= names
        assert {"joins per CPU second, guests", "joins per CPU second, logged in", "p99 at 6, x picows"} <= names
    # The storm ran on each stack, tiny: every spectator came back with its whole log (its target's
    # time is not asserted here; tests/bench/test_storm.py checks the storm itself at 240).
    storm = [t for t in new if t["target"].startswith("reconnect storm")]
    assert len(storm) == len(results["stacks"]) and all(t["value"] is not None for t in storm)
    for stack, figures in results["stacks"].items():
        assert figures["storm"]["complete"] == figures["storm"]["clients"] == run.SMOKE.storm, stack
        assert figures["storm"]["closed_1011"] == 0
