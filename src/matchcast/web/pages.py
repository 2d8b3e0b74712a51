"""Spectator pages: the tournament list, a tournament's bracket, one match, a match's streaming
overlay; and a player's own page.

Each page renders the room's snapshot on the server (right before any script runs, readable
without JavaScript) and carries a token for `static/live.js`, which keeps it live over the
room's WebSocket: a short-lived guest token, or a user token for a logged-in user. A match's
participants also get their controls (score, report, confirm, dispute), which act over that
same socket, so the token of a logged-in viewer is always their own, never a guest's.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from matchcast import errors
from matchcast.db import tables
from matchcast.db.database import Database
from matchcast.ids import ID, path_id
from matchcast.security import create_guest_token, create_user_token
from matchcast.services import formats, snapshots, tournaments
from matchcast.services.actors import Actor, may_watch, may_watch_tournament
from matchcast.services.formats.base import BRACKETS, GRAND_FINAL, LOSERS, MAIN, WINNERS
from matchcast.services.users import usernames
from matchcast.web.session import current_actor
from matchcast.web.templating import STATIC_DIR, error_page, render

RECENT_COMPLETED = 10  # completed matches /me shows, newest first
MAX_ROOMS = 20  # tournament rooms /me follows live (a player's running tournaments)


def live_token(request: Request, viewer: Actor | None) -> str:
    settings = request.app.state.realtime.settings
    if viewer is not None:
        return create_user_token(settings.jwt_secret, viewer.user_id, settings.guest_token_ttl, viewer.session_epoch)
    return create_guest_token(settings.jwt_secret, settings.guest_token_ttl)


def may_manage(viewer: Actor | None, organizer_id: int) -> bool:
    return viewer is not None and (viewer.is_staff or viewer.user_id == organizer_id)


def side_of(viewer: Actor | None, state: dict[str, Any]) -> int | None:
    """1 or 2 when the viewer plays in the match (their controls are shown), else None."""
    for n in (1, 2):
        player = state[f"participant{n}"]
        if viewer is not None and player is not None and player["id"] == viewer.user_id:
            return n
    return None


FORMAT_NAMES = {
    formats.SINGLE_ELIMINATION: "Single elimination",
    formats.DOUBLE_ELIMINATION: "Double elimination",
    formats.ROUND_ROBIN: "Round robin",
    formats.SWISS: "Swiss",
}
# The standings' tiebreak columns, in the order the contract breaks ties ("Formats"); known
# before any standing exists, so a page seeded while open gets the same columns.
TIEBREAKS = {
    formats.ROUND_ROBIN: (("head_to_head", "Head-to-head"), ("game_difference", "Game difference")),
    formats.SWISS: (("buchholz", "Buchholz"), ("game_difference", "Game difference")),
}
# Where the bracket JSON keeps each bracket's rounds; `rounds` is the winners bracket in double
# elimination, else the only bracket (or the rounds of a table). The titles are live.js's PARTS.
PARTS = (("rounds", "Winners bracket"), ("losers", "Losers bracket"), ("grand_final", "Grand final"))


def format_label(state: dict[str, Any]) -> str:
    """What the page heads say about the format: "Double elimination", "Swiss · 4 rounds"."""
    label = FORMAT_NAMES[state["format"]]
    return f"{label} · {state['rounds']} rounds" if state["format"] == formats.SWISS and state["rounds"] else label


def bracket_of(state: dict[str, Any], key: str) -> str:
    """The matches' `bracket` value of the bracket JSON's `key`."""
    if key == "rounds":
        return WINNERS if state["format"] == formats.DOUBLE_ELIMINATION else MAIN
    return LOSERS if key == "losers" else GRAND_FINAL


def bracket_parts(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The brackets to draw, each {"key", "title", "columns"}: a column per round, with the full
    match views (scores, disputes). Double elimination has three titled parts (none empty), the
    other formats one untitled part (the rounds of a Swiss table, say)."""
    by_id = {m["id"]: m for m in state["matches"]}
    double = state["format"] == formats.DOUBLE_ELIMINATION
    parts = []
    for key, title in PARTS if double else PARTS[:1]:
        columns = [
            {"name": c["name"], "matches": [by_id[m["id"]] for m in c["matches"] if m["id"] in by_id]}
            for c in state["bracket"].get(key, [])
        ]
        if columns:
            parts.append({"key": key, "title": title if double else "", "columns": columns})
    return parts


def round_names(state: dict[str, Any]) -> dict[tuple[str, int], str]:
    """Each round's title by (bracket, round), from the bracket JSON: the match lists' labels."""
    return {
        (bracket_of(state, key), column["round"]): column["name"]
        for key, _ in PARTS
        for column in state["bracket"].get(key, [])
    }


def in_play_order(matches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Bracket by bracket (winners, losers, grand final), then round and position."""
    return sorted(matches, key=lambda m: (BRACKETS.index(m["bracket"]), m["round"], m["position"]))


def cross_table(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Round robin: a row per player in rank order, each with a cell per player in that same
    order: {"match", "side"} (the row player's side in the match between them), or None."""
    meetings: dict[tuple[int, int], dict[str, Any]] = {}
    for m in state["matches"]:
        if m["participant1"] and m["participant2"]:
            one, two = m["participant1"]["id"], m["participant2"]["id"]
            meetings[one, two] = {"match": m, "side": 1}
            meetings[two, one] = {"match": m, "side": 2}
    order = [s["participant"] for s in state.get("standings", [])]
    return [{"player": p, "cells": [meetings.get((p["id"], q["id"])) for q in order]} for p in order]


def drawing(state: dict[str, Any]) -> dict[str, Any]:
    """What the tournament and organizer pages need to draw any format (templates/_macros.html)."""
    return {
        "format_label": format_label(state),
        "parts": bracket_parts(state),
        "round_names": round_names(state),
        "matches": in_play_order(state["matches"]),
        "cross_table": cross_table(state) if state["format"] == formats.ROUND_ROBIN else [],
        "tiebreaks": TIEBREAKS.get(state["format"], ()),
    }


async def require_watchable(db: Database, viewer: Actor | None, tournament_id: int) -> None:
    """A private tournament (and its matches) is not found for anyone but its organizer, staff
    and its players: its existence is not given away either."""
    if not await may_watch_tournament(db, viewer, tournament_id):
        raise errors.not_found(f"tournament {tournament_id} does not exist (or is private: log in to see it)")


async def index(request: Request) -> Response:
    rt = request.app.state.realtime
    viewer = await current_actor(request)
    return render(request, "index.html", {"tournaments": await tournaments.list_tournaments(rt.db, viewer)})


async def tournament(request: Request) -> Response:
    rt = request.app.state.realtime
    viewer = await current_actor(request)
    try:
        tournament_id = path_id(request)
        await require_watchable(rt.db, viewer, tournament_id)
        state = await snapshots.tournament_snapshot(rt.db, tournament_id)
    except errors.DomainError as exc:
        return error_page(request, exc)
    context = {
        "t": state,
        **drawing(state),
        "players": await tournaments.registered_players(rt.db, state["id"]),
        "token": live_token(request, viewer),
        "can_manage": may_manage(viewer, state["organizer_id"]),
    }
    return render(request, "tournament.html", context)


async def match(request: Request) -> Response:
    rt = request.app.state.realtime
    viewer = await current_actor(request)
    try:
        state = await snapshots.match_snapshot(rt.db, path_id(request))
        await require_watchable(rt.db, viewer, state["tournament_id"])
    except errors.DomainError as exc:
        return error_page(request, exc)
    parent = await tournaments.get_tournament(rt.db, state["tournament_id"])
    context = {
        "m": state,
        "tournament": parent,
        "names": {p["id"]: p["name"] for p in (state["participant1"], state["participant2"]) if p},
        "token": live_token(request, viewer),
        "can_manage": may_manage(viewer, parent.organizer_id),
        "side": side_of(viewer, state),
    }
    return render(request, "match.html", context)


# -- a player's own page ------------------------------------------------------------------------


async def my_matches(db: Database, user_id: int) -> list[dict[str, Any]]:
    """The user's matches as the room snapshots show them, plus `tournament_name`: live, then
    scheduled, then the most recently completed (byes and cancelled matches left out)."""
    m = tables.matches
    mine = sa.select(m).where(sa.or_(m.c.participant1_id == user_id, m.c.participant2_id == user_id))
    mine = mine.where(m.c.is_bye.is_(False))
    current = await db.fetch_all(
        mine.where(m.c.status.in_(("live", "scheduled"))).order_by(m.c.status, m.c.tournament_id, m.c.round)
    )  # "live" sorts before "scheduled"
    done = await db.fetch_all(
        mine.where(m.c.status == "completed").order_by(m.c.completed_at.desc(), m.c.id.desc()).limit(RECENT_COMPLETED)
    )
    return await match_views(db, [*current, *done])


async def match_views(db: Database, rows: list[Any]) -> list[dict[str, Any]]:
    d, r, t = tables.disputes, tables.reports, tables.tournaments
    ids = [row.id for row in rows]
    open_disputes = await db.fetch_all(d.select().where(d.c.match_id.in_(ids), d.c.status == "open").order_by(d.c.id))
    pending = await db.fetch_all(r.select().where(r.c.match_id.in_(ids), r.c.status == "pending"))
    parents = await db.fetch_all(
        sa.select(t.c.id, t.c.name, t.c.best_of).where(t.c.id.in_({row.tournament_id for row in rows}))
    )
    names = await usernames(db, [i for row in rows for i in (row.participant1_id, row.participant2_id)])
    parent_of = {p.id: p for p in parents}
    report_of = {report.match_id: report for report in pending}
    views = []
    for row in rows:
        parent = parent_of[row.tournament_id]
        own = [x for x in open_disputes if x.match_id == row.id]
        view = snapshots.match_view(row, names, own, report_of.get(row.id), parent.best_of)
        views.append({**view, "tournament_name": parent.name})
    return views


async def followed_tournaments(db: Database, user_id: int, shown: list[dict[str, Any]]) -> list[int]:
    """The rooms /me follows: the user's tournaments that are not over (new matches appear there)."""
    t, reg = tables.tournaments, tables.registrations
    registered = await db.fetch_all(
        sa.select(t.c.id)
        .join(reg, reg.c.tournament_id == t.c.id)
        .where(reg.c.user_id == user_id, t.c.status != "completed")
    )
    ids = {row.id for row in registered} | {m["tournament_id"] for m in shown if m["status"] != "completed"}
    return sorted(ids, reverse=True)[:MAX_ROOMS]


async def me(request: Request) -> Response:
    viewer = await current_actor(request)
    if viewer is None:
        return RedirectResponse("/login", status_code=303)
    db = request.app.state.realtime.db
    rows = await my_matches(db, viewer.user_id)
    context = {
        "rows": rows,
        "rooms": await followed_tournaments(db, viewer.user_id, rows),
        "token": live_token(request, viewer),
    }
    return render(request, "me.html", context)


THEMES = ("dark", "light")
SCALES = (0.5, 3.0)
SCALE = re.compile(r"[0-9]{1,2}(\.[0-9]{1,3})?")


def overlay_options(request: Request) -> tuple[str, float]:
    """?theme= and ?scale=, checked: a typo in an OBS source should say so, not render oddly."""
    theme = request.query_params.get("theme", THEMES[0])
    if theme not in THEMES:
        raise errors.invalid(f"theme must be dark or light, got {theme[:20]!r}")
    raw = request.query_params.get("scale", "1")
    low, high = SCALES
    if not SCALE.fullmatch(raw) or not low <= float(raw) <= high:
        raise errors.invalid(f"scale must be a number from {low:g} to {high:g} (like 1.5), got {raw[:20]!r}")
    return theme, float(raw)


async def overlay(request: Request) -> Response:
    """The streaming overlay of a match (an OBS browser source): names, score and status, live."""
    rt = request.app.state.realtime
    viewer = await current_actor(request)
    try:
        state = await snapshots.match_snapshot(rt.db, path_id(request))
        if not await may_watch(rt.db, viewer, await tournaments.get_tournament(rt.db, state["tournament_id"])):
            raise errors.not_found("no such match (a private tournament's overlays are for its organizer and players)")
        theme, scale = overlay_options(request)
    except errors.DomainError as exc:
        return error_page(request, exc)
    context = {"m": state, "token": live_token(request, viewer), "theme": theme, "scale": f"{scale:g}"}
    return render(request, "overlay.html", context)


def routes() -> list[BaseRoute]:
    return [
        Route("/", index, methods=["GET"]),
        Route("/me", me, methods=["GET"]),
        Route(f"/tournaments/{ID}", tournament, methods=["GET"]),
        Route(f"/matches/{ID}", match, methods=["GET"]),
        Route(f"/overlay/matches/{ID}", overlay, methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
