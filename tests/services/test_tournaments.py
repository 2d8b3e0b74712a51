import asyncio

import pytest

from matchcast import errors
from matchcast.db.database import Database
from matchcast.errors import CONFLICT, FORBIDDEN, INVALID_STATE, NOT_FOUND, VALIDATION_ERROR
from matchcast.services import matches, tournaments
from matchcast.services.publisher import DiscardingPublisher
from matchcast.services.snapshots import tournament_snapshot
from tests.services.checks import assert_event, refused
from tests.support.factories import Factory


async def test_create_tournament(db: Database, factory: Factory) -> None:
    organizer = await factory.user()
    tournament_id = await tournaments.create_tournament(db, organizer, "  Spring Cup  ", is_public=False)
    row = await tournaments.get_tournament(db, tournament_id)
    assert (row.name, row.organizer_id, row.is_public, row.status) == ("Spring Cup", organizer.user_id, False, "draft")


async def test_create_tournament_refuses_bad_names(
    db: Database, factory: Factory, publisher: DiscardingPublisher
) -> None:
    organizer = await factory.user()
    # A NUL made PostgreSQL fail (HTTP 500); every control character but newline and tab is refused.
    for name in ("", "   ", "x" * 201, None, 42, "nul\x00cup", "bell\x07", "c1\x85"):
        await refused(db, publisher, VALIDATION_ERROR, tournaments.create_tournament(db, organizer, name))


async def test_create_tournament_needs_a_user(db: Database, publisher: DiscardingPublisher) -> None:
    await refused(db, publisher, FORBIDDEN, tournaments.create_tournament(db, None, "Cup"))


async def test_get_tournament_errors(db: Database, publisher: DiscardingPublisher) -> None:
    await refused(db, publisher, NOT_FOUND, tournaments.get_tournament(db, 12345))
    await refused(db, publisher, VALIDATION_ERROR, tournaments.get_tournament(db, "1"))


async def test_list_tournaments_hides_private_ones_from_others(db: Database, factory: Factory) -> None:
    owner, other, staff = await factory.user(), await factory.user(), await factory.user(staff=True)
    public = await tournaments.create_tournament(db, owner, "Open", is_public=True)
    private = await tournaments.create_tournament(db, owner, "Closed", is_public=False)
    assert [t.id for t in await tournaments.list_tournaments(db)] == [public]
    assert [t.id for t in await tournaments.list_tournaments(db, other)] == [public]
    assert [t.id for t in await tournaments.list_tournaments(db, owner)] == [private, public]
    assert [t.id for t in await tournaments.list_tournaments(db, staff)] == [private, public]


async def test_register_players_in_order(db: Database, factory: Factory) -> None:
    tournament = await factory.tournament(3)
    registered = await tournaments.registered_players(db, tournament.id)
    assert [p.id for p in registered] == [p.user_id for p in tournament.players]


async def test_register_refusals_change_nothing(db: Database, factory: Factory, publisher: DiscardingPublisher) -> None:
    tournament = await factory.tournament(1)
    outsider, player = await factory.user(), tournament.players[0]
    organizer = tournament.organizer
    await refused(db, publisher, CONFLICT, tournaments.register_player(db, organizer, tournament.id, player.user_id))
    await refused(db, publisher, FORBIDDEN, tournaments.register_player(db, outsider, tournament.id, outsider.user_id))
    await refused(db, publisher, FORBIDDEN, tournaments.register_player(db, None, tournament.id, outsider.user_id))
    await refused(db, publisher, NOT_FOUND, tournaments.register_player(db, organizer, tournament.id, 999_999))
    await refused(db, publisher, NOT_FOUND, tournaments.register_player(db, organizer, tournament.id, "2"))
    await refused(db, publisher, NOT_FOUND, tournaments.register_player(db, organizer, 999_999, outsider.user_id))


async def test_staff_may_register_and_seed(db: Database, factory: Factory, publisher: DiscardingPublisher) -> None:
    staff = await factory.user(staff=True)
    tournament = await factory.tournament(1)
    extra = await factory.user()
    await tournaments.register_player(db, staff, tournament.id, extra.user_id)
    assert len(await tournaments.seed_bracket(db, publisher, staff, tournament.id)) == 1


async def test_seed_eight_players(db: Database, factory: Factory, publisher: DiscardingPublisher) -> None:
    tournament = await factory.tournament(8)
    ids = await tournaments.seed_bracket(db, publisher, tournament.organizer, tournament.id)
    rows = await matches.matches_of(db, tournament.id)
    assert sorted(ids) == sorted(r.id for r in rows) and len(rows) == 7
    assert (await tournaments.get_tournament(db, tournament.id)).status == "running"
    first = [r for r in rows if r.round == 1]
    seeds = [p.user_id for p in tournament.players]
    assert [(r.participant1_id, r.participant2_id) for r in first] == [
        (seeds[0], seeds[7]),
        (seeds[3], seeds[4]),
        (seeds[1], seeds[6]),
        (seeds[2], seeds[5]),
    ]
    assert all(r.status == "scheduled" and r.scheduled_at is not None and not r.is_bye for r in first)
    later = [r for r in rows if r.round > 1]
    assert all(r.participant1_id is None and r.participant2_id is None and r.scheduled_at is None for r in later)
    assert all(r.next_match_id is not None for r in rows if r.round < 3)
    assert [e.type for e in publisher.published] == ["match_scheduled"] * 4 + ["bracket_updated"]
    scheduled = assert_event(publisher.published[0], "match_scheduled", tournament.id, first[0].id)
    assert scheduled["round"] == 1
    assert scheduled["participant1"] == {"id": seeds[0], "name": tournament.players[0].username}
    assert scheduled["participant2"] == {"id": seeds[7], "name": tournament.players[7].username}
    bracket = assert_event(publisher.published[-1], "bracket_updated", tournament.id)["bracket"]
    assert [len(r["matches"]) for r in bracket["rounds"]] == [4, 2, 1]
    assert [r["name"] for r in bracket["rounds"]] == ["Quarterfinals", "Semifinals", "Final"]


async def test_seed_five_players_advances_byes(db: Database, factory: Factory, publisher: DiscardingPublisher) -> None:
    tournament = await factory.tournament(5)
    await tournaments.seed_bracket(db, publisher, tournament.organizer, tournament.id)
    s = [p.user_id for p in tournament.players]
    rows = {(r.round, r.position): r for r in await matches.matches_of(db, tournament.id)}
    byes = [r for r in rows.values() if r.is_bye]
    assert sorted(r.winner_id for r in byes) == sorted(s[:3])
    assert all(r.status == "completed" and r.completed_at is not None for r in byes)
    assert rows[(1, 1)].status == "scheduled" and (rows[(1, 1)].participant1_id, rows[(1, 1)].participant2_id) == (
        s[3],
        s[4],
    )
    # Seeds 2 and 3 both had byes: their round-2 match is scheduled at once.
    assert (rows[(2, 1)].participant1_id, rows[(2, 1)].participant2_id) == (s[1], s[2])
    assert rows[(2, 1)].scheduled_at is not None
    # Seed 1 waits for the winner of 4 v 5.
    assert (rows[(2, 0)].participant1_id, rows[(2, 0)].participant2_id) == (s[0], None)
    assert rows[(2, 0)].scheduled_at is None
    scheduled = [e for e in publisher.published if e.type == "match_scheduled"]
    assert sorted(e.data["match_id"] for e in scheduled) == sorted([rows[(1, 1)].id, rows[(2, 1)].id])
    assert_event(
        next(e for e in scheduled if e.data["match_id"] == rows[(2, 1)].id),
        "match_scheduled",
        tournament.id,
        rows[(2, 1)].id,
    )


async def test_seed_three_players_gives_seed_one_a_bye_into_the_final(
    db: Database, factory: Factory, publisher: DiscardingPublisher
) -> None:
    tournament = await factory.tournament(3)
    await tournaments.seed_bracket(db, publisher, tournament.organizer, tournament.id)
    s = [p.user_id for p in tournament.players]
    rows = {(r.round, r.position): r for r in await matches.matches_of(db, tournament.id)}
    assert rows[(1, 0)].is_bye and rows[(1, 0)].winner_id == s[0]
    assert (rows[(1, 1)].participant1_id, rows[(1, 1)].participant2_id) == (s[1], s[2])
    assert (rows[(2, 0)].participant1_id, rows[(2, 0)].participant2_id, rows[(2, 0)].status) == (
        s[0],
        None,
        "scheduled",
    )


async def test_seed_refusals_change_nothing(db: Database, factory: Factory, publisher: DiscardingPublisher) -> None:
    lonely = await factory.tournament(1)
    await refused(db, publisher, INVALID_STATE, tournaments.seed_bracket(db, publisher, lonely.organizer, lonely.id))
    empty = await factory.tournament(0)
    await refused(db, publisher, INVALID_STATE, tournaments.seed_bracket(db, publisher, empty.organizer, empty.id))
    tournament = await factory.tournament(4)
    player = tournament.players[0]
    await refused(db, publisher, FORBIDDEN, tournaments.seed_bracket(db, publisher, player, tournament.id))
    await refused(db, publisher, FORBIDDEN, tournaments.seed_bracket(db, publisher, None, tournament.id))
    await tournaments.seed_bracket(db, publisher, tournament.organizer, tournament.id)
    error = await refused(
        db, publisher, INVALID_STATE, tournaments.seed_bracket(db, publisher, tournament.organizer, tournament.id)
    )
    assert "already seeded" in error.message
    late = await factory.user()
    await refused(
        db, publisher, INVALID_STATE, tournaments.register_player(db, tournament.organizer, tournament.id, late.user_id)
    )
    await refused(db, publisher, NOT_FOUND, tournaments.seed_bracket(db, publisher, tournament.organizer, 999_999))


async def test_snapshot_after_seeding(db: Database, factory: Factory) -> None:
    tournament = await factory.seeded(4)
    snapshot = await tournament_snapshot(db, tournament.id)
    assert snapshot["id"] == tournament.id and snapshot["status"] == "running"
    assert len(snapshot["matches"]) == 3 and snapshot["bracket"]["rounds"][0]["name"] == "Semifinals"
    with pytest.raises(errors.DomainError):
        await tournament_snapshot(db, 999_999)


async def test_concurrent_seeding_seeds_once(db: Database, factory: Factory, publisher: DiscardingPublisher) -> None:
    t = await factory.tournament(4)
    results = await asyncio.gather(
        *(tournaments.seed_bracket(db, publisher, t.organizer, t.id) for _ in range(3)), return_exceptions=True
    )
    seeded = [r for r in results if isinstance(r, list)]
    refusals = [r for r in results if isinstance(r, errors.DomainError)]
    assert len(seeded) == 1 and len(refusals) == 2, results
    assert all(r.code == INVALID_STATE for r in refusals)
    assert len(await matches.matches_of(db, t.id)) == 3


async def test_concurrent_registration_registers_once(
    db: Database, factory: Factory, publisher: DiscardingPublisher
) -> None:
    t = await factory.tournament(0)
    player = await factory.user()
    results = await asyncio.gather(
        *(tournaments.register_player(db, t.organizer, t.id, player.user_id) for _ in range(3)), return_exceptions=True
    )
    assert sorted(type(r).__name__ for r in results) == ["DomainError", "DomainError", "NoneType"], results
    assert [p.id for p in await tournaments.registered_players(db, t.id)] == [player.user_id]
