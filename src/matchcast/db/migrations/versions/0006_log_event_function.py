"""log an event in one statement: PostgreSQL's matchcast_log_event()

Storing one event in the log took five round trips on PostgreSQL (BEGIN, the rooms' counters,
the freshness read, the insert, COMMIT), each a wait the event loop wakes up from. This function
does the same in one statement, with the same guarantees (realtime/eventlog.py): the counters'
rows are locked in sorted room order, then a later statement, whose snapshot holds everything
committed before those locks were granted, asks whether the event went stale meanwhile (a query
handed over by the caller: two integer parameters, one boolean answer). A stale event raises
SQLSTATE MCSTL, which undoes the numbering; the caller then refreshes the event and stores it
the ordinary way. SQLite needs nothing: it runs the ordinary way, one writer at a time.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

LOG_EVENT = """
CREATE FUNCTION matchcast_log_event(
    p_rooms text[], p_type text, p_payload text, p_created_at timestamp,
    p_stale_query text, p_stale_args integer[],
    OUT numbered_rooms text[], OUT numbered_ids integer[]
) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    stale boolean;
BEGIN
    -- Number: each room's counter advanced by one, its row locked until commit, in sorted order
    -- (two publishers never deadlock). COLLATE "C" is code point order, Python's sorted() of the
    -- ordinary path, whatever the database's collation.
    WITH advanced AS (
        INSERT INTO room_counters AS counter (room, last_id)
        SELECT wanted.room, 1 FROM unnest(p_rooms) AS wanted(room) ORDER BY wanted.room COLLATE "C"
        ON CONFLICT (room) DO UPDATE SET last_id = counter.last_id + 1
        RETURNING counter.room, counter.last_id
    )
    SELECT array_agg(advanced.room), array_agg(advanced.last_id)
    INTO numbered_rooms, numbered_ids FROM advanced;
    -- Under READ COMMITTED each statement of a volatile function takes a new snapshot: this one
    -- sees every event stored before ours, so "stale" here means what the ordinary path's
    -- freshness read means.
    IF p_stale_query IS NOT NULL THEN
        EXECUTE p_stale_query INTO stale USING p_stale_args[1], p_stale_args[2];
        IF stale THEN
            RAISE EXCEPTION 'the event went stale before it was logged' USING ERRCODE = 'MCSTL';
        END IF;
    END IF;
    INSERT INTO events (room, id, type, payload, created_at)
    SELECT numbered.room, numbered.id, p_type, p_payload, p_created_at
    FROM unnest(numbered_rooms, numbered_ids) AS numbered(room, id);
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(LOG_EVENT)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION matchcast_log_event(text[], text, text, timestamp, text, integer[])")
