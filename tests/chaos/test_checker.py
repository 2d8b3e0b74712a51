"""The chaos checker finds what it must: each promise broken once in a made-up history is reported."""

from __future__ import annotations

from typing import Any

from chaos import checker
from chaos.history import History, Stream


def events(room_ids: list[int], type_: str = "score_updated", **data: Any) -> list[tuple[int, str, dict[str, Any]]]:
    return [(i, type_, {"sequence": i, "participant1_score": i, "participant2_score": 0, **data}) for i in room_ids]


def stream(room: str, ids: list[int]) -> Stream:
    s = Stream("ws-0", room)
    for event_id in ids:
        s.receive(event_id, 0)
    return s


def match(id_: int, sequence: int, p1: int) -> dict[str, Any]:
    return {"id": id_, "participant1_score": p1, "participant2_score": 0, "sequence": sequence, "status": "live"}


def checks(found: list[Any]) -> list[str]:
    return [v["check"] for v in found]


def test_a_clean_history_has_no_violation() -> None:
    history = History(streams=[stream("match_1", [1, 2, 3])])
    assert checker.check(history, {"match_1": events([1, 2, 3])}, [match(1, 3, 3)]) == []


def test_a_reader_missing_an_event_or_seeing_a_jump_is_reported() -> None:
    history = History(streams=[stream("match_1", [1, 2]), stream("match_1", [1, 3])])
    found = checker.check(history, {"match_1": events([1, 2, 3])}, [match(1, 3, 3)])
    assert checks(found) == ["client_view", "client_view", "client_contiguous"]


def test_a_partial_snapshot_excuses_what_came_before_it() -> None:
    s = Stream("ws-0", "match_1")
    s.receive(1, 0)
    s.resets.append((1, 5))  # replay "partial": the snapshot is at id 5
    s.receive(6, 0)
    assert checker.check(History(streams=[s]), {"match_1": events([1, 2, 3, 4, 5, 6])}, [match(1, 6, 6)]) == []


def test_a_hole_in_the_log_a_double_confirmation_and_an_unlogged_score_are_reported() -> None:
    log = {
        "match_1": events([1, 3]),
        "match_2": [(1, "result_confirmed", {"report_id": 7}), (2, "result_confirmed", {"report_id": 7})],
    }
    found = checker.check(History(), log, [match(1, 4, 4)])
    assert sorted(checks(found)) == ["confirmed_once", "log_contiguous", "stored_score_logged", "stored_score_logged"]


def test_an_acknowledged_call_missing_from_the_log_is_reported() -> None:
    history = History(
        api_ok=[{"method": "POST", "path": "/api/matches/1/score", "answer": {"sequence": 4}, "body": {}}]
    )
    found = checker.check(history, {"match_1": events([1, 2, 3])}, [match(1, 3, 3)])
    assert checks(found) == ["acknowledged_in_log"]


def test_a_webhook_missing_an_event_is_reported_and_repeats_are_counted() -> None:
    history = History(webhook={1: [1, 2, 2, 4]}, webhook_ids={1: 10})
    found = checker.check(history, {"tournament_1": events([1, 2, 3, 4])}, [])
    assert checks(found) == ["webhook"] and found[0]["missing"] == [3]
    assert checker.webhook_duplicates(history) == 1


def test_memory_that_keeps_growing_is_reported() -> None:
    growing = [(float(t), 100_000 + t * 3_000) for t in range(0, 60, 2)]
    settling = [(float(t), min(20_000 + t * 20_000, 180_000)) for t in range(0, 60, 2)]  # fills up, then flat
    history = History(rss={"instance-0:1": growing, "instance-1:2": settling})
    found = checker.check(history, {}, [])
    assert checks(found) == ["memory"] and found[0]["process"] == "instance-0:1"
