"""Room snapshots: what `connection_established.state`, the JSON API and the pages show."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from matchcast import errors
from matchcast.db.database import Database, iso
from matchcast.db.tables import disputes, matches, registrations, reports, tournaments, users
from matchcast.services import formats
from matchcast.services.formats.base import GRAND_FINAL, LOSERS, Played, Slot
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
        "bracket": row.bracket,
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
        "loser_next_match_id": row.loser_next_match_id,
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
    parent = await db.fetch_one(
        sa.select(tournaments.c.best_of, tournaments.c.format).where(tournaments.c.id == row.tournament_id)
    )
    view = match_view(row, names, list(open_disputes), pending, int(parent.best_of))
    last = await db.fetch_val(
        sa.select(sa.func.max(matches.c.round)).where(
            matches.c.tournament_id == row.tournament_id, matches.c.bracket == row.bracket
        )
    )
    view["round_name"] = formats.get(parent.format).round_name(Slot(row.bracket, row.round, row.position), last)
    return view


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


def bracket_view(format_name: str, rows: list[Any], names: dict[int, str]) -> dict[str, Any]:
    """The tournament's structure for drawing it: `rounds` (the one bracket, the winners bracket,
    or the rounds of a table), plus `losers` and `grand_final` in double elimination."""
    fmt = formats.get(format_name)
    by_bracket: dict[str, list[Any]] = {}
    for row in sorted(rows, key=lambda r: (r.round, r.position)):
        by_bracket.setdefault(row.bracket, []).append(row)
    view: dict[str, Any] = {"format": format_name}
    for bracket_name, key in (
        ("main", "rounds"),
        ("winners", "rounds"),
        (LOSERS, "losers"),
        (GRAND_FINAL, "grand_final"),
    ):
        if bracket_name in by_bracket:
            view[key] = _rounds(fmt, by_bracket[bracket_name], names)
    view.setdefault("rounds", [])
    if format_name == formats.DOUBLE_ELIMINATION:
        view.setdefault("losers", [])
        view.setdefault("grand_final", [])
    return view


def _rounds(fmt: formats.TournamentFormat, rows: list[Any], names: dict[int, str]) -> list[dict[str, Any]]:
    last = max(r.round for r in rows)
    columns: dict[int, dict[str, Any]] = {}
    for row in rows:
        name = fmt.round_name(Slot(row.bracket, row.round, row.position), last)
        column = columns.setdefault(row.round, {"round": row.round, "name": name, "matches": []})
        view = match_view(row, names)
        column["matches"].append({key: view[key] for key in BRACKET_KEYS})
    return [columns[n] for n in sorted(columns)]


def standings_view(
    fmt: formats.TournamentFormat, players: list[int], rows: list[Any], names: dict[int, str]
) -> list[dict[str, Any]]:
    return [
        {
            "rank": rank,
            "participant": player(s.participant_id, names),
            "played": s.played,
            "wins": s.wins,
            "losses": s.losses,
            "points": s.points,
            "game_difference": s.game_difference,
            "tiebreaks": s.tiebreaks,
        }
        for rank, s in enumerate(fmt.standings(players, [Played.of(r) for r in rows]), start=1)
    ]


async def tournament_matches(db: Database, tournament_id: int) -> list[Any]:
    query = matches.select().where(matches.c.tournament_id == tournament_id)
    return list(await db.fetch_all(query.order_by(matches.c.bracket, matches.c.round, matches.c.position)))


async def seeded_players(db: Database, tournament_id: int) -> list[Any]:
    """The registered players (`id`, `username`, `seed`) in seed order (registration order where
    no seed is set)."""
    query = (
        sa.select(users.c.id, users.c.username, registrations.c.seed)
        .join(registrations, registrations.c.user_id == users.c.id)
        .where(registrations.c.tournament_id == tournament_id)
    )
    return list(await db.fetch_all(query.order_by(sa.func.coalesce(registrations.c.seed, 1 << 30), registrations.c.id)))


async def format_of(db: Database, tournament_id: int) -> str:
    return str(await db.fetch_val(sa.select(tournaments.c.format).where(tournaments.c.id == tournament_id)))


async def bracket(db: Database, tournament_id: int) -> dict[str, Any]:
    rows = await tournament_matches(db, tournament_id)
    names = await usernames(db, [i for r in rows for i in (r.participant1_id, r.participant2_id)])
    return bracket_view(await format_of(db, tournament_id), rows, names)


async def standings(db: Database, tournament_id: int) -> list[dict[str, Any]] | None:
    """The standings of a round robin or Swiss tournament; None for the other formats."""
    fmt = formats.get(await format_of(db, tournament_id))
    if not fmt.has_standings:
        return None
    players = await seeded_players(db, tournament_id)
    rows = await tournament_matches(db, tournament_id)
    return standings_view(fmt, [p.id for p in players], rows, {p.id: p.username for p in players})


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
    snapshot = {
        "id": row.id,
        "name": row.name,
        "status": row.status,
        "is_public": bool(row.is_public),
        "organizer_id": row.organizer_id,
        "format": row.format,
        "best_of": row.best_of,
        "rounds": row.rounds,
        "matches": [match_view(r, names, by_match.get(r.id, []), pending_of.get(r.id), row.best_of) for r in rows],
        "bracket": bracket_view(row.format, rows, names),
    }
    fmt = formats.get(row.format)
    if fmt.has_standings:
        players = await seeded_players(db, tournament_id)
        names.update({p.id: p.username for p in players})
        snapshot["standings"] = standings_view(fmt, [p.id for p in players], rows, names)
    return snapshot
