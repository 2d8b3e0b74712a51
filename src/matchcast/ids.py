"""The `{id:id}` path parameter: digits only, and never an integer Python refuses to build.

Starlette's `int` convertor calls int() on any run of digits: past 4300 digits that raises and
the request ends in a 500. Ids here are 32-bit, so longer ones are clamped to one past the
largest, which no row has: the answer is an ordinary 404 (or close 4404 on a WebSocket).
"""

from __future__ import annotations

from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import HTTPConnection

from matchcast import errors
from matchcast.protocol import MAX_ID

ID = "{id:id}"  # use in route paths: f"/api/matches/{ID}"


class IdConvertor(Convertor[int]):
    regex = "[0-9]+"

    def convert(self, value: str) -> int:
        return int(value) if len(value) <= 10 else MAX_ID + 1

    def to_string(self, value: int) -> str:
        return str(value)


register_url_convertor("id", IdConvertor())


def path_id(connection: HTTPConnection) -> int:
    """The `{id:id}` of a request's or a WebSocket's path: the one place that parses it."""
    value = int(connection.path_params["id"])
    if value > MAX_ID:
        raise errors.not_found(f"nothing has the id you asked for: ids are at most {MAX_ID}")
    return value
