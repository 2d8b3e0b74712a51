"""Shared assertions of the service tests: the contract's event fields, and refusals that change nothing."""

from __future__ import annotations

import re
from collections.abc import Awaitable
from typing import Any

import pytest

from matchcast.db.database import Database
from matchcast.errors import DomainError
from matchcast.protocol import Event, match_room, tournament_room
from matchcast.services.publisher import DiscardingPublisher
from tests.support.databases import dump

# shared/spec/protocol.md, "Server events": the data fields of each type.
EVENT_FIELDS = {
    "match_scheduled": {"match_id", "tournament_id", "round", "participant1", "participant2", "scheduled_at"},
    "match_started": {"match_id", "tournament_id", "started_at"},
    "score_updated": {"match_id", "participant1_score", "participant2_score", "sequence"},
    "match_completed": {
        "match_id",
        "tournament_id",
        "winner_id",
        "participant1_score",
        "participant2_score",
        "completed_at",
    },
    "dispute_created": {"dispute_id", "match_id", "tournament_id", "reported_by_id", "reason", "created_at"},
    "dispute_resolved": {"dispute_id", "match_id", "tournament_id", "resolution", "resolved_by_id", "resolved_at"},
    "bracket_updated": {"tournament_id", "bracket"},
    "standings_updated": {"tournament_id", "standings"},
    "result_reported": {
        "report_id",
        "match_id",
        "tournament_id",
        "reported_by_id",
        "participant1_score",
        "participant2_score",
        "confirm_by",
    },
    "result_confirmed": {
        "report_id",
        "match_id",
        "tournament_id",
        "participant1_score",
        "participant2_score",
        "by",
        "confirmed_at",
    },
    # ours, beyond the contract's table (docs/protocol.md): a match room must learn of it too
    "match_cancelled": {"match_id", "tournament_id", "cancelled_at"},
}
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def assert_event(event: Event, event_type: str, tournament_id: int, match_id: int | None = None) -> dict[str, Any]:
    """`event` is of `event_type`, has exactly the contract's data fields and goes to the right rooms."""
    assert event.type == event_type
    assert set(event.data) == EVENT_FIELDS[event_type], f"{event_type} fields: {sorted(event.data)}"
    if event_type == "bracket_updated":
        assert event.rooms == (tournament_room(tournament_id),)
        assert isinstance(event.data["bracket"]["rounds"], list)
    elif event_type == "standings_updated":
        assert event.rooms == (tournament_room(tournament_id),)
        assert isinstance(event.data["standings"], list)
    else:
        assert match_id is not None, f"{event_type} events belong to a match: pass its id"
        assert event.rooms == (tournament_room(tournament_id), match_room(match_id))
        assert event.data["match_id"] == match_id
    for key, value in event.data.items():
        if key.endswith("_at"):
            assert isinstance(value, str) and ISO_UTC.fullmatch(value), f"{key}={value!r} is not ISO 8601 UTC"
        elif key.endswith("_id") and value is not None:
            assert type(value) is int, f"{key}={value!r} is not an integer"
    if "tournament_id" in event.data:
        assert event.data["tournament_id"] == tournament_id
    return event.data


async def refused(db: Database, publisher: DiscardingPublisher, code: str, action: Awaitable[Any]) -> DomainError:
    """`action` fails with a DomainError of `code`, and neither a row nor an event results."""
    before = await dump(db)
    published = len(publisher.published)
    with pytest.raises(DomainError) as caught:
        await action
    assert caught.value.code == code, caught.value
    assert await dump(db) == before
    assert len(publisher.published) == published
    return caught.value
