"""The reconnect storm (bench/storm.py) at a few hundred sockets, on both stacks, through real
`matchcast serve` processes: every spectator resumes after the SIGTERM restart with its complete,
ordered log. No timing is asserted (`python -m bench.storm` measures it)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from bench import servers
from bench.resuming import check_log
from bench.storm import Plan, measure
from matchcast.settings import Settings

CLIENTS = 240
LATE = 0.1  # a tenth reconnect only once a score was stored past the restart: they must replay it
# Each storm stops the server (SIGTERM, under 2 s) and starts it again: about 10 s a stack.
pytestmark = pytest.mark.timeout(300)


def pool_size() -> int:
    return int(next(f.default for f in dataclasses.fields(Settings) if f.name == "database_pool_size"))  # type: ignore[arg-type]


@pytest.fixture(scope="module", params=servers.STACKS)
def result(request: pytest.FixtureRequest) -> dict[str, Any]:
    return measure(Plan(stack=request.param, clients=CLIENTS, interval=0.1, processes=2, late=LATE, timeout=120))


def test_every_spectator_resumes_with_its_complete_ordered_log(result: dict[str, Any]) -> None:
    assert result["connected"] == result["resumed"] == CLIENTS
    assert result["complete"] == CLIENTS, result["incomplete_examples"]
    assert (result["missing_events"], result["duplicate_events"], result["unordered_events"]) == (0, 0, 0)
    assert result["unfinished"] == 0 and result["resumed_seconds"] is not None


def test_scores_keep_coming_after_the_storm(result: dict[str, Any]) -> None:
    assert result["stalled"] is None  # the participant's last score came back as the room's last event


def test_the_resume_replays_what_was_stored_meanwhile(result: dict[str, Any]) -> None:
    assert result["replaying_clients"] >= CLIENTS * LATE  # the late ones at least
    assert result["partial_replays"] == 0
    assert result["first_score_after_restart_seconds"] is not None  # scores kept coming


def test_the_sigterm_closes_1012_and_nothing_closes_1011(result: dict[str, Any]) -> None:
    assert result["close_at_sigterm"] == {1012: CLIENTS}
    assert result["closed_1011"] == 0


def test_database_connections_stay_within_the_pool(result: dict[str, Any]) -> None:
    storm = result["db_connections"]["storm"]
    assert storm["samples"] > 0
    # SQLite: the pool plus the writer's reserved connection (db/database.py); PostgreSQL: the pool.
    assert 0 < storm["connections"] <= pool_size() + 1, result["db_connections"]


def test_a_spectator_that_forgets_last_event_id_is_caught() -> None:
    """The verification can fail: reconnecting without last_event_id loses what was stored meanwhile."""
    clients = 40
    forgetful = measure(Plan(clients=clients, interval=0.1, processes=2, late=0.5, resume=False, timeout=120))
    assert forgetful["connected"] == forgetful["resumed"] == clients
    assert forgetful["complete"] <= clients // 2  # every late one, at least, misses the first score after the restart
    assert forgetful["missing_events"] >= clients // 2 and forgetful["replayed_events"] == 0


def test_a_log_is_complete_only_if_every_id_is_there_once_in_order() -> None:
    assert check_log([5, 6, 7], 5, 7)["complete"]
    assert check_log([], 8, 7)["complete"]  # nothing happened after it connected
    assert check_log([5, 7], 5, 7) == {"complete": False, "missing": 1, "duplicates": 0, "unordered": 0}
    assert check_log([5, 6, 6, 7], 5, 7) == {"complete": False, "missing": 0, "duplicates": 1, "unordered": 0}
    assert check_log([5, 7, 6], 5, 7) == {"complete": False, "missing": 0, "duplicates": 0, "unordered": 1}
    assert not check_log([5, 6], 5, 7)["complete"]  # the last event never came
