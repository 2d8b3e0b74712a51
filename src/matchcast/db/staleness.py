"""How the database judges that an event went stale before it was logged (migration 0006).

The services know what makes an event stale (services/freshness.py); the event log
(realtime/eventlog.py) runs the check under its rooms' lock. Both meet here, in the layer under them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from matchcast.protocol import Event


@dataclass(frozen=True)
class StaleCheck:
    """A PostgreSQL query answering true when the event went stale ($1 and $2 from `args`); no
    query: the event cannot go stale."""

    query: str | None
    args: tuple[int, int] = (0, 0)


NEVER_STALE = StaleCheck(None)
StaleChecks = Callable[[Event], StaleCheck | None]  # None: only a refresh can tell (it rebuilds the event)
STALE = "MCSTL"  # the SQLSTATE matchcast_log_event raises for a stale event, its numbering undone
