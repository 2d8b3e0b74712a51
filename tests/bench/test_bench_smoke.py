"""Every benchmark scenario at tiny sizes, on both stacks, so `bench/` never rots. No timing is asserted."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from bench import run

# Every scenario on both stacks starts 10 servers (the joins start three per stack): about 40 s on
# a quiet machine, over a minute when other runs share the two cores.
pytestmark = pytest.mark.timeout(240)


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
    assert results["baseline_idle"]


def test_fanout_delivers_every_frame_to_matchcast_and_baseline(results: dict[str, Any]) -> None:
    for stack in results["stacks"].values():
        for server in ("matchcast", "baseline"):
            for row in stack["fanout"][server]:
                assert row["delivery"] == 1.0, (server, row)
                assert row["duplicates"] == 0 and row["closed_by_server"] == 0
                assert row["participant_errors"] == []
        assert [r["spectators"] for r in stack["fanout"]["ratio"]] == run.SMOKE.fanout


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
        rows = {row["interval_ms"]: row for row in joins["rows"]}
        assert list(rows) == [0, *run.SMOKE.joins_intervals]
        for row in rows.values():
            assert row["joins"] == run.SMOKE.joins * run.SMOKE.rounds and row["connect_errors"] == []
            # The server counted every spectator, and saw every one go.
            assert row["open_at_peak"] == [run.SMOKE.joins + run.SMOKE.joins_anchors] * run.SMOKE.rounds
            assert row["open_after_close"] == [run.SMOKE.joins_anchors] * run.SMOKE.rounds
        assert rows[0]["viewers_frames"] == 0  # counting off: no viewers frame at all
        assert [r["interval_ms"] for r in joins["ratio"]] == run.SMOKE.joins_intervals


def test_targets_are_evaluated(results: dict[str, Any]) -> None:
    names = {t["target"] for t in results["targets"]}
    assert any("p99" in name for name in names) and any("KB per idle socket" in name for name in names)
    assert "CPU per join, counting on / off" in names
