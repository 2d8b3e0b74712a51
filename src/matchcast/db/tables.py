"""All tables, as SQLAlchemy Core. The alembic migrations create exactly these."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite would hand out the highest deleted id again (a deleted user's token would open the next
# account, a deleted tournament's room log would greet the next one): AUTOINCREMENT never reuses
# one: every table with an integer id says `sqlite_autoincrement=True`. PostgreSQL's sequences
# never reuse an id anyway.

# Timestamps are naive UTC on both engines, so SQLite and PostgreSQL compare them alike.
users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("username", sa.String(50), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(200), nullable=False),
    sa.Column("is_staff", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    # Bumped by logout and a password change: a session cookie signed with an older value is over.
    # A server default only: `databases` sends a Python-side default as NULL.
    sa.Column("session_epoch", sa.Integer, nullable=False, server_default="0"),
    sqlite_autoincrement=True,  # never reuse a deleted id (above)
)

tournaments = sa.Table(
    "tournaments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("organizer_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("is_public", sa.Boolean, nullable=False, default=True),
    # draft (registering players) -> running (bracket seeded) -> completed (final played)
    sa.Column("status", sa.String(20), nullable=False),
    # Games a match is played to (1, 3, 5, 7): a result's winner has exactly ceil(best_of / 2).
    sa.Column("best_of", sa.Integer, nullable=False, default=1, server_default="1"),
    # single_elimination | double_elimination | round_robin | swiss (services/formats/)
    sa.Column(
        "format", sa.String(30), nullable=False, default="single_elimination", server_default="single_elimination"
    ),
    sa.Column("rounds", sa.Integer, nullable=True),  # Swiss: rounds to play; null: the format's default
    sa.Column("created_at", sa.DateTime, nullable=False),
    sqlite_autoincrement=True,  # never reuse a deleted id (above)
)

registrations = sa.Table(
    "registrations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tournament_id", sa.Integer, sa.ForeignKey("tournaments.id"), nullable=False),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("seed", sa.Integer, nullable=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint("tournament_id", "user_id", name="uq_registrations_tournament_user"),
    sqlite_autoincrement=True,  # never reuse a deleted id (above)
)

matches = sa.Table(
    "matches",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tournament_id", sa.Integer, sa.ForeignKey("tournaments.id"), nullable=False),
    # main (one bracket or a table) | winners | losers | grand_final (double elimination)
    sa.Column("bracket", sa.String(20), nullable=False, default="main", server_default="main"),
    sa.Column("round", sa.Integer, nullable=False),  # 1-based, within its bracket
    sa.Column("position", sa.Integer, nullable=False),  # 0-based, top to bottom in its round
    sa.Column("participant1_id", sa.Integer, sa.ForeignKey("users.id"), nullable=True),
    sa.Column("participant2_id", sa.Integer, sa.ForeignKey("users.id"), nullable=True),
    sa.Column("participant1_score", sa.Integer, nullable=False, default=0),
    sa.Column("participant2_score", sa.Integer, nullable=False, default=0),
    # +1 per accepted score update; kept here so it survives restarts and spans instances.
    sa.Column("sequence", sa.Integer, nullable=False, default=0),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("winner_id", sa.Integer, sa.ForeignKey("users.id"), nullable=True),
    sa.Column("is_bye", sa.Boolean, nullable=False, default=False),
    sa.Column("next_match_id", sa.Integer, sa.ForeignKey("matches.id"), nullable=True),
    sa.Column("next_slot", sa.Integer, nullable=True),  # 1 or 2: which side of next_match
    # Where the loser goes (double elimination: winners bracket into the losers bracket).
    sa.Column("loser_next_match_id", sa.Integer, sa.ForeignKey("matches.id"), nullable=True),
    sa.Column("loser_next_slot", sa.Integer, nullable=True),
    sa.Column("scheduled_at", sa.DateTime, nullable=True),
    sa.Column("started_at", sa.DateTime, nullable=True),
    sa.Column("completed_at", sa.DateTime, nullable=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint("tournament_id", "bracket", "round", "position", name="uq_matches_slot"),
    sqlite_autoincrement=True,  # never reuse a deleted id (above)
)

disputes = sa.Table(
    "disputes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("match_id", sa.Integer, sa.ForeignKey("matches.id"), nullable=False, index=True),
    sa.Column("reported_by_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("reason", sa.String(500), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # open | resolved
    sa.Column("resolution", sa.String(500), nullable=True),
    sa.Column("resolved_by_id", sa.Integer, sa.ForeignKey("users.id"), nullable=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("resolved_at", sa.DateTime, nullable=True),
    sqlite_autoincrement=True,  # never reuse a deleted id (above)
)

# A participant's claim of a match's final result, waiting for the opponent until `confirm_by`.
reports = sa.Table(
    "reports",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("match_id", sa.Integer, sa.ForeignKey("matches.id"), nullable=False, index=True),
    sa.Column("reported_by_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("participant1_score", sa.Integer, nullable=False),
    sa.Column("participant2_score", sa.Integer, nullable=False),
    # pending -> confirmed (by opponent | agreement | timeout), or set_aside (a dispute, a
    # conflicting report, the organizer), or replaced (the reporter reported again)
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("confirmed_by", sa.String(20), nullable=True),
    sa.Column("confirm_by", sa.DateTime, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("closed_at", sa.DateTime, nullable=True),
    # The deadline timer asks for the nearest pending deadline: one index range, whatever the count.
    sa.Index("ix_reports_status_confirm_by", "status", "confirm_by"),
    sqlite_autoincrement=True,  # never reuse a deleted id (above)
)

# An organizer's webhook: every event of the tournament room POSTed in id order, at least once.
# The position and the retry state are here, so restarts and instances neither skip nor reorder;
# `lease_*` names the one process delivering for it now.
webhooks = sa.Table(
    "webhooks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tournament_id", sa.Integer, sa.ForeignKey("tournaments.id"), nullable=False, index=True),
    sa.Column("url", sa.String(2000), nullable=False),
    sa.Column("secret", sa.String(100), nullable=False),
    sa.Column("events", sa.Text, nullable=True),  # JSON list of event types; null: all
    sa.Column("last_delivered_event_id", sa.Integer, nullable=False, default=0),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),  # failures in a row
    sa.Column("next_attempt_at", sa.DateTime, nullable=True),
    sa.Column("failing_since", sa.DateTime, nullable=True),
    sa.Column("last_error", sa.String(300), nullable=True),
    sa.Column("disabled", sa.Boolean, nullable=False, default=False),
    sa.Column("lease_owner", sa.String(40), nullable=True),
    sa.Column("lease_until", sa.DateTime, nullable=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sqlite_autoincrement=True,  # never reuse a deleted id (above)
)

# The event log: every broadcast event, numbered per room 1, 2, 3, ... with no holes.
events = sa.Table(
    "events",
    metadata,
    sa.Column("room", sa.String(64), primary_key=True),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("type", sa.String(40), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),  # the event's `data`, JSON-encoded once
    sa.Column("created_at", sa.DateTime, nullable=False, index=True),
)

# The last id given out per room; the row is locked while an event is numbered, so concurrent
# publishers (also on other instances) get contiguous ids. Survives pruning of `events`.
room_counters = sa.Table(
    "room_counters",
    metadata,
    sa.Column("room", sa.String(64), primary_key=True),
    sa.Column("last_id", sa.Integer, nullable=False),
)
