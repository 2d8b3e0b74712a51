"""Room snapshots: what `connection_established.state`, the JSON API and the pages show."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from matchcast import errors
from matchcast.db.database import Database, iso
from matchcast.db.tables import disputes, matches, reports, tournaments
from matchcast.services.brackets import round_name
from matchcast.services.users import usernames


def player(user_id: int | None, names: dict[int, str]) -> dict[str, Any] | None:
    return None if user_id is None else {"id": user_id, "name": names.get(user_id, f"user {user_id}")}


def dispute_view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "match_id": row.match_id,
        "reported_by_id": row.reported_by_id,
        "reason": row.reason,
        "status": row.status,
        "resolution": row.resolution,
        "created_at": iso(row.created_at),
        "resolved_at": iso(row.resolved_at),
    }


def report_view(row: Any | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {
        "report_id": row.id,
        "reported_by_id": row.reported_by_id,
        "participant1_score": row.participant1_score,
        "participant2_score": row.participant2_score,
        "confirm_by": iso(row.confirm_by),
    }


def match_view(
    row: Any,
    names: dict[int, str],
    open_disputes: list[Any] | None = None,
    pending: Any | None = None,
    best_of: int | None = None,
) -> dict[str, Any]:
    """A match as the protocol shows it; the room snapshot passes the disputes, the pending
    report and best_of (the bracket's entries leave them out)."""
    view = {
        "id": row.id,
        "tournament_id": row.tournament_id,
        "round": row.round,
        "position": row.position,
        "status": row.status,
        "is_bye": bool(row.is_bye),
        "participant1": player(row.participant1_id, names),
        "participant2": player(row.participant2_id, names),
        "participant1_score": row.participant1_score,
        "participant2_score": row.participant2_score,
        "sequence": row.sequence,
        "winner_id": row.winner_id,
        "next_match_id": row.next_match_id,
        "scheduled_at": iso(row.scheduled_at),
        "started_at": iso(row.started_at),
        "completed_at": iso(row.completed_at),
    }
    if open_disputes is not None:
        view["disputes"] = [dispute_view(d) for d in open_disputes]
        view["pending_report"] = report_view(pending)
        view["best_of"] = best_of
    return view


async def match_snapshot(db: Database, match_id: int) -> dict[str, Any]:
    row = await db.fetch_one(matches.select().where(matches.c.id == match_id))
    if row is None:
        raise errors.not_found(f"match {match_id} does not exist")
    open_disputes = await db.fetch_all(
        disputes.select().where(disputes.c.match_id == match_id, disputes.c.status == "open").order_by(disputes.c.id)
    )
    names = await usernames(db, [row.participant1_id, row.participant2_id])
    pending = await db.fetch_one(
        reports.select().where(reports.c.match_id == match_id, reports.c.status == "pending").order_by(reports.c.id)
    )
    best_of = await db.fetch_val(sa.select(tournaments.c.best_of).where(tournaments.c.id == row.tournament_id))
    return match_view(row, names, list(open_disputes), pending, int(best_of))


BRACKET_KEYS = (
    "id",
    "position",
    "status",
    "is_bye",
    "participant1",
    "participant2",
    "participant1_score",
    "participant2_score",
    "winner_id",
)


def bracket_view(rows: list[Any], names: dict[int, str]) -> dict[str, Any]:
    rounds = max((r.round for r in rows), default=0)
    columns: list[dict[str, Any]] = [
        {"round": n, "name": round_name(n, rounds), "matches": []} for n in range(1, rounds + 1)
    ]
    for row in sorted(rows, key=lambda r: (r.round, r.position)):
        view = match_view(row, names)
        columns[row.round - 1]["matches"].append({key: view[key] for key in BRACKET_KEYS})
    return {"rounds": columns}


async def tournament_matches(db: Database, tournament_id: int) -> list[Any]:
    query = matches.select().where(matches.c.tournament_id == tournament_id)
    return list(await db.fetch_all(query.order_by(matches.c.round, matches.c.position)))


async def bracket(db: Database, tournament_id: int) -> dict[str, Any]:
    rows = await tournament_matches(db, tournament_id)
    names = await usernames(db, [i for r in rows for i in (r.participant1_id, r.participant2_id)])
    return bracket_view(rows, names)


async def tournament_snapshot(db: Database, tournament_id: int) -> dict[str, Any]:
    row = await db.fetch_one(tournaments.select().where(tournaments.c.id == tournament_id))
    if row is None:
        raise errors.not_found(f"tournament {tournament_id} does not exist")
    rows = await tournament_matches(db, tournament_id)
    names = await usernames(db, [i for r in rows for i in (r.participant1_id, r.participant2_id)])
    open_disputes = await db.fetch_all(
        sa.select(disputes)
        .join(matches, matches.c.id == disputes.c.match_id)
        .where(matches.c.tournament_id == tournament_id, disputes.c.status == "open")
        .order_by(disputes.c.id)
    )
    by_match: dict[int, list[Any]] = {}
    for d in open_disputes:
        by_match.setdefault(d.match_id, []).append(d)
    pending = await db.fetch_all(
        sa.select(reports)
        .join(matches, matches.c.id == reports.c.match_id)
        .where(matches.c.tournament_id == tournament_id, reports.c.status == "pending")
    )
    pending_of = {report.match_id: report for report in pending}
    return {
        "id": row.id,
        "name": row.name,
        "status": row.status,
        "is_public": bool(row.is_public),
        "organizer_id": row.organizer_id,
        "best_of": row.best_of,
        "matches": [match_view(r, names, by_match.get(r.id, []), pending_of.get(r.id), row.best_of) for r in rows],
        "bracket": bracket_view(rows, names),
    }
