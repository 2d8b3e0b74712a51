"""What the hub rebuilds under the lock of an event's rooms, just before numbering it.

Events are built after their transaction commits, so a concurrent action (another reporter,
maybe on another instance) can have made one stale by the time it is stored. Handed to the hub at
wiring time (app.py): the hub never imports the services.
"""

from __future__ import annotations

from matchcast.db.database import Database
from matchcast.db.staleness import NEVER_STALE, StaleCheck
from matchcast.protocol import BRACKET_UPDATED, SCORE_UPDATED, Event
from matchcast.services import events
from matchcast.services.matches import reload, stored_sequence
from matchcast.services.snapshots import bracket


async def refresh(db: Database, event: Event) -> Event:
    """A bracket rebuilt; a score older than the match's stored one replaced by the stored one,
    so the log's scores never go back. Anything else as it was."""
    if event.type == BRACKET_UPDATED:
        tournament_id = int(event.data["tournament_id"])
        return events.bracket_updated(tournament_id, await bracket(db, tournament_id))
    if event.type == SCORE_UPDATED:
        match_id = int(event.data["match_id"])
        sequence = await stored_sequence(db, match_id)
        if sequence is not None and sequence > event.data["sequence"]:
            match = await reload(db, match_id)
            if match is not None:
                return events.score_updated(match)
    return event


# PostgreSQL, run under the rooms' lock (realtime/eventlog.py): true when `refresh` would replace
# the score ($1: the match, $2: the event's sequence). No row: false, as refresh keeps it too.
SCORE_IS_STALE = "SELECT sequence > $2 FROM matches WHERE id = $1"


def stale_check(event: Event) -> StaleCheck | None:
    """What the database checks instead of `refresh`: nothing for the events refresh keeps as
    they are, the stored sequence for a score; a bracket is rebuilt every time (None)."""
    if event.type == BRACKET_UPDATED:
        return None
    if event.type == SCORE_UPDATED:
        return StaleCheck(SCORE_IS_STALE, (int(event.data["match_id"]), int(event.data["sequence"])))
    return NEVER_STALE
