"""The `{id:id}` path parameter: digits only, and never an integer Python refuses to build.

Starlette's `int` convertor calls int() on any run of digits: past 4300 digits that raises and
the request ends in a 500. Ids here are 32-bit, so longer ones are clamped to one past the
largest, which no row has: the answer is an ordinary 404 (or close 4404 on a WebSocket).
"""

from __future__ import annotations

from starlette.convertors import Convertor, register_url_convertor

MAX_ID = 2**31 - 1
ID = "{id:id}"  # use in route paths: f"/api/matches/{ID}"


class IdConvertor(Convertor[int]):
    regex = "[0-9]+"

    def convert(self, value: str) -> int:
        return int(value) if len(value) <= 10 else MAX_ID + 1

    def to_string(self, value: int) -> str:
        return str(value)


register_url_convertor("id", IdConvertor())
