"""Who may read a tournament: everyone when it is public; else its organizer, staff and players."""

from matchcast.db.database import Database
from matchcast.services import tournaments
from matchcast.services.actors import may_watch
from tests.support.factories import Factory


async def test_anyone_may_watch_a_public_tournament(db: Database, factory: Factory) -> None:
    t = await factory.tournament(1)
    row = await tournaments.get_tournament(db, t.id)
    for actor in (None, await factory.user(), t.players[0], t.organizer):
        assert await may_watch(db, actor, row)


async def test_a_private_tournament_is_for_its_organizer_staff_and_players_only(db: Database, factory: Factory) -> None:
    t = await factory.tournament(1, public=False)
    row = await tournaments.get_tournament(db, t.id)
    for actor in (t.organizer, await factory.user(staff=True), t.players[0]):
        assert await may_watch(db, actor, row), actor
    for outsider in (None, await factory.user()):
        assert not await may_watch(db, outsider, row), outsider
