"""Tournament formats, one module each behind `base.TournamentFormat`; `FORMATS` names them."""

from __future__ import annotations

from matchcast.services.formats.base import TournamentFormat
from matchcast.services.formats.double_elimination import DoubleElimination
from matchcast.services.formats.round_robin import RoundRobin
from matchcast.services.formats.single_elimination import SingleElimination
from matchcast.services.formats.swiss import Swiss
from matchcast.services.formats.swiss import default_rounds as swiss_default_rounds

FORMATS: dict[str, TournamentFormat] = {
    f.name: f for f in (SingleElimination(), DoubleElimination(), RoundRobin(), Swiss())
}
SINGLE_ELIMINATION, DOUBLE_ELIMINATION = SingleElimination.name, DoubleElimination.name
ROUND_ROBIN, SWISS = RoundRobin.name, Swiss.name
DEFAULT = SINGLE_ELIMINATION
__all__ = ["DEFAULT", "FORMATS", "TournamentFormat", "get", "swiss_default_rounds"]


def get(name: str) -> TournamentFormat:
    return FORMATS[name]
