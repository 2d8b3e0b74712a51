"""Builders of the contract's server events (shared/spec/protocol.md, "Server events")."""

from __future__ import annotations

from typing import Any

from matchcast.db.database import iso
from matchcast.protocol import (
    BRACKET_UPDATED,
    DISPUTE_CREATED,
    DISPUTE_RESOLVED,
    MATCH_CANCELLED,
    MATCH_COMPLETED,
    MATCH_SCHEDULED,
    MATCH_STARTED,
    RESULT_CONFIRMED,
    RESULT_REPORTED,
    SCORE_UPDATED,
    STANDINGS_UPDATED,
    Event,
    match_room,
    tournament_room,
)
from matchcast.services.snapshots import player


def _both(match: Any) -> tuple[str, ...]:
    return (tournament_room(match.tournament_id), match_room(match.id))


def match_scheduled(match: Any, names: dict[int, str]) -> Event:
    return Event(
        MATCH_SCHEDULED,
        {
            "match_id": match.id,
            "tournament_id": match.tournament_id,
            "round": match.round,
            "participant1": player(match.participant1_id, names),
            "participant2": player(match.participant2_id, names),
            "scheduled_at": iso(match.scheduled_at),
        },
        _both(match),
    )


def match_started(match: Any) -> Event:
    return Event(
        MATCH_STARTED,
        {
            "match_id": match.id,
            "tournament_id": match.tournament_id,
            "started_at": iso(match.started_at),
        },
        _both(match),
    )


def score_updated(match: Any) -> Event:
    return Event(
        SCORE_UPDATED,
        {
            "match_id": match.id,
            "participant1_score": match.participant1_score,
            "participant2_score": match.participant2_score,
            "sequence": match.sequence,
        },
        _both(match),
    )


def match_completed(match: Any) -> Event:
    return Event(
        MATCH_COMPLETED,
        {
            "match_id": match.id,
            "tournament_id": match.tournament_id,
            "winner_id": match.winner_id,
            "participant1_score": match.participant1_score,
            "participant2_score": match.participant2_score,
            "completed_at": iso(match.completed_at),
        },
        _both(match),
    )


def match_cancelled(match: Any) -> Event:
    return Event(
        MATCH_CANCELLED,
        {
            "match_id": match.id,
            "tournament_id": match.tournament_id,
            "cancelled_at": iso(match.updated_at),
        },
        _both(match),
    )


def dispute_created(dispute: Any, match: Any) -> Event:
    return Event(
        DISPUTE_CREATED,
        {
            "dispute_id": dispute.id,
            "match_id": match.id,
            "tournament_id": match.tournament_id,
            "reported_by_id": dispute.reported_by_id,
            "reason": dispute.reason,
            "created_at": iso(dispute.created_at),
        },
        _both(match),
    )


def dispute_resolved(dispute: Any, match: Any) -> Event:
    return Event(
        DISPUTE_RESOLVED,
        {
            "dispute_id": dispute.id,
            "match_id": match.id,
            "tournament_id": match.tournament_id,
            "resolution": dispute.resolution,
            "resolved_by_id": dispute.resolved_by_id,
            "resolved_at": iso(dispute.resolved_at),
        },
        _both(match),
    )


def bracket_updated(tournament_id: int, bracket: dict[str, Any]) -> Event:
    return Event(
        BRACKET_UPDATED, {"tournament_id": tournament_id, "bracket": bracket}, (tournament_room(tournament_id),)
    )


def standings_updated(tournament_id: int, standings: list[dict[str, Any]]) -> Event:
    return Event(
        STANDINGS_UPDATED, {"tournament_id": tournament_id, "standings": standings}, (tournament_room(tournament_id),)
    )


def result_reported(report: Any, match: Any) -> Event:
    return Event(
        RESULT_REPORTED,
        {
            "report_id": report.id,
            "match_id": match.id,
            "tournament_id": match.tournament_id,
            "reported_by_id": report.reported_by_id,
            "participant1_score": report.participant1_score,
            "participant2_score": report.participant2_score,
            "confirm_by": iso(report.confirm_by),
        },
        _both(match),
    )


def result_confirmed(report: Any, match: Any) -> Event:
    return Event(
        RESULT_CONFIRMED,
        {
            "report_id": report.id,
            "match_id": match.id,
            "tournament_id": match.tournament_id,
            "participant1_score": report.participant1_score,
            "participant2_score": report.participant2_score,
            "by": report.confirmed_by,
            "confirmed_at": iso(report.closed_at),
        },
        _both(match),
    )
