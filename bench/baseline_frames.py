"""The frames every baseline sends, shaped like matchcast's: the load generator cannot tell them apart.

bench/node/server.js builds the same two frames in JavaScript.
"""

from __future__ import annotations

import itertools
import json
import time

_sequence = itertools.count(1)


def welcome(match_id: int) -> str:
    data = {
        "room": f"match_{match_id}",
        "user_id": None,
        "role": "spectator",
        "heartbeat_interval": 25,
        "heartbeat_timeout": 50,
        "server_time": int(time.time() * 1000),
        "last_event_id": 0,
        "replay": "complete",
        "state": {"id": match_id},
    }
    return json.dumps({"type": "connection_established", "data": data}, separators=(",", ":"))


def score_frame(match_id: int, fields: dict[str, object]) -> str:
    sequence = next(_sequence)
    data = {
        "match_id": match_id,
        "participant1_score": fields.get("participant1_score"),
        "participant2_score": fields.get("participant2_score"),
        "sequence": sequence,
    }
    return json.dumps({"type": "score_updated", "id": sequence, "data": data}, separators=(",", ":"))
