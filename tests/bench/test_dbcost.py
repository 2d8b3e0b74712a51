"""bench/dbcost.py's plumbing with a few calls, on both databases: every call really did its work
(a call that changed nothing would look cheap). No cost is asserted: `python -m bench.dbcost`
measures it."""

from __future__ import annotations

import pytest

from bench import dbcost


@pytest.mark.timeout(120)
@pytest.mark.parametrize("stack", ["memory-sqlite", "redis-postgres"])
def test_every_call_stores_what_a_score_update_stores(stack: str) -> None:
    result = dbcost.main(["--stack", stack, "--calls", "20", "--rounds", "2"])
    updates = 2 * (20 + 20 // 10)
    assert result["scores_stored"] == updates
    assert result["events_logged"] == updates  # one score event in the match's room per store
    assert set(result["us_per_call"]) == {"score UPDATE", "log store", "freshness read", "empty write transaction"}
    assert all(us > 0 for us in result["us_per_call"].values())
