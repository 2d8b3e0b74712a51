"""The wire contract (shared/spec/protocol.md) in one place.

Event and error names, close codes, parsing of client frames, and the encode-once functions:
an event is turned into its JSON text once per room, and that same text is sent to every socket.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from matchcast.errors import INVALID_JSON, INVALID_MESSAGE, UNSUPPORTED_TYPE, VALIDATION_ERROR, DomainError

# Close codes.
WS_1009_MESSAGE_TOO_BIG = 1009
WS_1011_INTERNAL_ERROR = 1011  # the database or broker is unreachable; retry
WS_1012_SERVICE_RESTART = 1012
WS_4001_AUTHENTICATION_FAILED = 4001
WS_4003_FORBIDDEN = 4003
WS_4004_HEARTBEAT_TIMEOUT = 4004
WS_4008_RATE_LIMITED = 4008
WS_4009_SLOW_CONSUMER = 4009
WS_4029_TOO_MANY_CONNECTIONS = 4029  # beyond the contract: the per-user or per-address socket cap
WS_4404_NOT_FOUND = 4404

# Server events: every one goes to the tournament room and the match room, except
# bracket_updated (tournament room only).
MATCH_SCHEDULED = "match_scheduled"
MATCH_STARTED = "match_started"
SCORE_UPDATED = "score_updated"
MATCH_COMPLETED = "match_completed"
MATCH_CANCELLED = "match_cancelled"  # beyond the contract's list: a match room must learn it too
DISPUTE_CREATED = "dispute_created"
DISPUTE_RESOLVED = "dispute_resolved"
BRACKET_UPDATED = "bracket_updated"
RESULT_REPORTED = "result_reported"
RESULT_CONFIRMED = "result_confirmed"
STANDINGS_UPDATED = "standings_updated"
EVENT_TYPES = frozenset(
    {
        MATCH_SCHEDULED,
        MATCH_STARTED,
        SCORE_UPDATED,
        MATCH_COMPLETED,
        MATCH_CANCELLED,
        DISPUTE_CREATED,
        DISPUTE_RESOLVED,
        BRACKET_UPDATED,
        RESULT_REPORTED,
        RESULT_CONFIRMED,
        STANDINGS_UPDATED,
    }
)


MAX_SCORE = 1_000_000
MAX_REASON_CHARS = 500

ORGANIZER = "organizer"
PARTICIPANT = "participant"
SPECTATOR = "spectator"


def tournament_room(tournament_id: int) -> str:
    return f"tournament_{tournament_id}"


def match_room(match_id: int) -> str:
    return f"match_{match_id}"


@dataclass(frozen=True)
class Event:
    """A server event before it is stored: its type, its data and the rooms it goes to."""

    type: str
    data: dict[str, Any]
    rooms: tuple[str, ...] = field(default=())


def encode(obj: Any) -> str:
    # Compact separators: a few bytes less on every frame to every spectator.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def encode_event(event_type: str, event_id: int, data_json: str) -> str:
    """The frame text of a stored event; `data_json` is already encoded (stored as such)."""
    return f'{{"type":{json.dumps(event_type)},"id":{event_id},"data":{data_json}}}'


def encode_ping(timestamp_ms: int) -> str:
    return f'{{"type":"ping","timestamp":{timestamp_ms}}}'


def encode_pong(timestamp: int) -> str:
    return f'{{"type":"pong","timestamp":{timestamp}}}'


def encode_error(code: str, message: str) -> str:
    return encode({"type": "error", "data": {"code": code, "message": message}})


# Server-sent events (`/sse/...`): the same frames, as text/event-stream messages.
SSE_HEARTBEAT = ": ping\n\n"  # a comment line: keeps proxies from timing the stream out
_EVENT_ID = ',"id":'
_EVENT_DATA = ',"data":'
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_decoder = json.JSONDecoder()


def sse_message(frame: str) -> str | None:
    """The text/event-stream message of a frame, or None for frames readers do not get (pong, error).

    An event frame is cut along the layout encode_event() gives it (`{"type":T,"id":N,"data":D}`),
    so its data, which may be a whole bracket, is not parsed again. connection_established becomes
    `event: state` with the snapshot plus `last_event_id` and `replay`; a ping, a comment line.
    """
    event_type, end = _decoder.raw_decode(frame, len('{"type":'))
    if frame.startswith(_EVENT_ID, end):
        data_at = frame.index(_EVENT_DATA, end)
        return _sse(frame[end + len(_EVENT_ID) : data_at], event_type, frame[data_at + len(_EVENT_DATA) : -1])
    if event_type == "ping":
        return SSE_HEARTBEAT
    if event_type == "connection_established":
        welcome = json.loads(frame)["data"]
        state = {**welcome["state"], "last_event_id": welcome["last_event_id"], "replay": welcome["replay"]}
        return _sse(None, "state", encode(state))
    return None


def _sse(event_id: str | None, event_type: str, data: str) -> str:
    # JSON text has no raw line breaks; were one ever stored, it must not end the data line
    # (a forged "event:" could follow it), so it is split into data lines as the format says.
    if "\n" in data or "\r" in data:
        data = "\ndata: ".join(_LINE_BREAK.split(data))
    head = "" if event_id is None else f"id: {event_id}\n"
    return f"{head}event: {event_type}\ndata: {data}\n\n"


@dataclass(frozen=True)
class ClientFrame:
    type: str
    fields: dict[str, Any]


CLIENT_TYPES = ("ping", "pong", "score_update", "report_result", "confirm_result", "report_dispute")
MAX_ID = 2**31 - 1  # ids are 32-bit on both databases


def parse_client_frame(text: str | None) -> ClientFrame:
    """Parse and validate one client frame; raise DomainError with the contract's error code."""
    if text is None:
        raise DomainError(INVALID_JSON, "binary frames are not accepted; send JSON text")
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than Python's stack
        raise DomainError(INVALID_JSON, "frame is not valid JSON") from None
    if not isinstance(obj, dict):
        raise DomainError(INVALID_MESSAGE, "frame must be a JSON object")
    frame_type = obj.get("type")
    if not isinstance(frame_type, str):
        raise DomainError(INVALID_MESSAGE, 'frame must have a string "type"')
    if frame_type not in CLIENT_TYPES:
        raise DomainError(
            UNSUPPORTED_TYPE, f"unsupported type {frame_type[:50]!r}; use one of {', '.join(CLIENT_TYPES)}"
        )
    fields: dict[str, Any]
    if frame_type in ("ping", "pong"):
        fields = {"timestamp": require_int(obj, "timestamp", 0, 2**63 - 1)}
    elif frame_type in ("score_update", "report_result"):
        fields = {
            "participant1_score": require_int(obj, "participant1_score", 0, MAX_SCORE),
            "participant2_score": require_int(obj, "participant2_score", 0, MAX_SCORE),
        }
    elif frame_type == "confirm_result":
        fields = {"report_id": require_int(obj, "report_id", 1, MAX_ID)}
    else:
        fields = {"reason": require_text(obj, "reason", MAX_REASON_CHARS)}
    return ClientFrame(frame_type, fields)


def is_int(value: Any) -> bool:
    # bool is a subclass of int in Python; the contract says booleans are not integers.
    return isinstance(value, int) and not isinstance(value, bool)


def require_int(obj: dict[str, Any], name: str, low: int, high: int) -> int:
    value = obj.get(name)
    if not is_int(value):
        got = "missing" if name not in obj else f"{type(value).__name__} {value!r}"[:60]
        raise DomainError(VALIDATION_ERROR, f"{name} must be an integer from {low} to {high}, got {got}")
    assert isinstance(value, int)
    if not low <= value <= high:
        raise DomainError(VALIDATION_ERROR, f"{name} must be from {low} to {high}, got {value}")
    return value


def require_text(obj: dict[str, Any], name: str, max_chars: int) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value.strip():
        raise DomainError(VALIDATION_ERROR, f"{name} must be a non-empty string of at most {max_chars} characters")
    if len(value) > max_chars:
        raise DomainError(VALIDATION_ERROR, f"{name} must be at most {max_chars} characters, got {len(value)}")
    if not is_utf8(value):
        raise DomainError(VALIDATION_ERROR, f"{name} must be valid Unicode text (no lone surrogates)")
    if has_control_characters(value):
        raise DomainError(VALIDATION_ERROR, f"{name} must not contain control characters (newlines and tabs are fine)")
    return value.strip()


def has_control_characters(value: str) -> bool:
    """Control characters other than newline and tab: the contract refuses them in user text."""
    return any((ord(c) < 32 and c not in "\n\t") or 0x7F <= ord(c) < 0xA0 for c in value)


def is_utf8(value: str) -> bool:
    # JSON allows "\ud800"; no database can store it.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
