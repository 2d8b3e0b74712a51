"""protocol.py alone: parsing of client frames (every error code of the contract) and encoding.

No server: `parse_client_frame` and the encode functions are pure.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from matchcast.errors import (
    FRAME_ERRORS,
    INVALID_JSON,
    INVALID_MESSAGE,
    UNSUPPORTED_TYPE,
    VALIDATION_ERROR,
    DomainError,
)
from matchcast.protocol import (
    MAX_REASON_CHARS,
    MAX_SCORE,
    ClientFrame,
    encode,
    encode_error,
    encode_event,
    encode_ping,
    encode_pong,
    parse_client_frame,
    sse_message,
)


def error_of(text: str | None) -> DomainError:
    with pytest.raises(DomainError) as caught:
        parse_client_frame(text)
    assert caught.value.code in FRAME_ERRORS
    assert caught.value.message  # says what was wrong
    return caught.value


def score_update(p1: Any, p2: Any = 0) -> str:
    return json.dumps({"type": "score_update", "participant1_score": p1, "participant2_score": p2})


# -- invalid_json ------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["not json", "", "   ", "{", '{"type": "ping",}', "{'type': 'ping'}", "NaN]"])
def test_text_that_is_not_json_is_invalid_json(text: str) -> None:
    assert error_of(text).code == INVALID_JSON


def test_a_binary_frame_is_invalid_json() -> None:
    # The endpoint passes None for a binary frame.
    error = error_of(None)
    assert error.code == INVALID_JSON
    assert "binary" in error.message


def test_nesting_deeper_than_the_stack_is_invalid_json_not_a_crash() -> None:
    assert error_of("[" * 200_000 + "]" * 200_000).code == INVALID_JSON


# -- invalid_message ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["[]", "[1, 2]", '"text"', "1", "null", "true"])
def test_json_that_is_not_an_object_is_invalid_message(text: str) -> None:
    assert error_of(text).code == INVALID_MESSAGE


@pytest.mark.parametrize("text", ["{}", '{"type": 5}', '{"type": null}', '{"type": ["ping"]}', '{"kind": "ping"}'])
def test_an_object_without_a_string_type_is_invalid_message(text: str) -> None:
    assert error_of(text).code == INVALID_MESSAGE


# -- unsupported_type --------------------------------------------------------------------------


@pytest.mark.parametrize("frame_type", ["subscribe", "PING", "", "score_updated", "connection_established"])
def test_an_unknown_type_is_unsupported(frame_type: str) -> None:
    error = error_of(json.dumps({"type": frame_type, "timestamp": 1}))
    assert error.code == UNSUPPORTED_TYPE
    assert "ping" in error.message  # names what is supported


def test_an_unsupported_type_is_quoted_shortened() -> None:
    error = error_of(json.dumps({"type": "x" * 10_000}))
    assert error.code == UNSUPPORTED_TYPE
    assert len(error.message) < 200


# -- validation_error: integers ----------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [True, False, 1.5, 1.0, 1e3, "12", "1", None, [1], {"n": 1}, -1, 2**63],
    ids=["true", "false", "fraction", "float-integral", "exponent", "numeric-string", "one-string", "null",
         "list", "object", "negative", "too-large"],
)  # fmt: skip
@pytest.mark.parametrize("frame_type", ["ping", "pong"])
def test_a_timestamp_that_is_not_an_integer_in_range_is_a_validation_error(frame_type: str, value: Any) -> None:
    error = error_of(json.dumps({"type": frame_type, "timestamp": value}))
    assert error.code == VALIDATION_ERROR
    assert "timestamp" in error.message


@pytest.mark.parametrize("frame_type", ["ping", "pong"])
def test_a_missing_timestamp_is_a_validation_error(frame_type: str) -> None:
    error = error_of(json.dumps({"type": frame_type}))
    assert error.code == VALIDATION_ERROR
    assert "missing" in error.message


def test_timestamps_at_the_bounds_are_accepted() -> None:
    assert parse_client_frame('{"type": "ping", "timestamp": 0}') == ClientFrame("ping", {"timestamp": 0})
    biggest = 2**63 - 1
    assert parse_client_frame(json.dumps({"type": "pong", "timestamp": biggest})) == ClientFrame(
        "pong", {"timestamp": biggest}
    )


@pytest.mark.parametrize(
    "p1",
    [True, 2.5, 3.0, "3", -1, MAX_SCORE + 1, None],
    ids=["bool", "fraction", "float-integral", "numeric-string", "negative", "over-max", "null"],
)
def test_a_score_that_is_not_an_integer_in_range_is_a_validation_error(p1: Any) -> None:
    error = error_of(score_update(p1))
    assert error.code == VALIDATION_ERROR
    assert "participant1_score" in error.message
    error = error_of(score_update(0, p1))
    assert error.code == VALIDATION_ERROR
    assert "participant2_score" in error.message


@pytest.mark.parametrize("missing", ["participant1_score", "participant2_score"])
def test_a_missing_score_is_a_validation_error(missing: str) -> None:
    frame: dict[str, Any] = {"type": "score_update", "participant1_score": 1, "participant2_score": 2}
    del frame[missing]
    error = error_of(json.dumps(frame))
    assert error.code == VALIDATION_ERROR
    assert missing in error.message
    assert "missing" in error.message


def test_scores_at_the_bounds_are_accepted() -> None:
    assert parse_client_frame(score_update(0, MAX_SCORE)) == ClientFrame(
        "score_update", {"participant1_score": 0, "participant2_score": MAX_SCORE}
    )


def test_extra_fields_are_ignored() -> None:
    parsed = parse_client_frame('{"type": "ping", "timestamp": 7, "id": 3, "data": {}}')
    assert parsed == ClientFrame("ping", {"timestamp": 7})


# -- validation_error: reason -------------------------------------------------------------------


@pytest.mark.parametrize(
    "reason",
    ["", "   ", "\n\t", 7, True, None, ["text"], "x" * (MAX_REASON_CHARS + 1), "bad \ud800 surrogate"],
    ids=["empty", "spaces", "whitespace", "int", "bool", "null", "list", "too-long", "lone-surrogate"],
)
def test_a_bad_reason_is_a_validation_error(reason: Any) -> None:
    error = error_of(json.dumps({"type": "report_dispute", "reason": reason}))
    assert error.code == VALIDATION_ERROR
    assert "reason" in error.message


def test_a_missing_reason_is_a_validation_error() -> None:
    assert error_of('{"type": "report_dispute"}').code == VALIDATION_ERROR


def test_a_reason_is_stripped_and_may_be_as_long_as_the_limit() -> None:
    assert parse_client_frame(json.dumps({"type": "report_dispute", "reason": "  wrong score \n"})) == ClientFrame(
        "report_dispute", {"reason": "wrong score"}
    )
    longest = "é" * MAX_REASON_CHARS  # characters, not bytes
    assert parse_client_frame(json.dumps({"type": "report_dispute", "reason": longest})).fields["reason"] == longest


def test_the_length_limit_counts_the_reason_before_stripping() -> None:
    # 500 characters of text with padding is over the limit as sent.
    padded = " " + "x" * MAX_REASON_CHARS
    assert error_of(json.dumps({"type": "report_dispute", "reason": padded})).code == VALIDATION_ERROR


# -- encoding -----------------------------------------------------------------------------------


@pytest.mark.parametrize("timestamp", [0, 1234567, 1_700_000_000_000, 2**63 - 1])
def test_pong_echoes_the_timestamp_as_a_json_integer(timestamp: int) -> None:
    text = encode_pong(timestamp)
    assert json.loads(text) == {"type": "pong", "timestamp": timestamp}
    assert text == f'{{"type":"pong","timestamp":{timestamp}}}'


def test_a_ping_answered_as_the_contract_says() -> None:
    parsed = parse_client_frame('{"type": "ping", "timestamp": 1234567}')
    assert json.loads(encode_pong(parsed.fields["timestamp"])) == {"type": "pong", "timestamp": 1234567}


def test_ping_is_json_without_id() -> None:
    assert json.loads(encode_ping(42)) == {"type": "ping", "timestamp": 42}


def test_an_error_frame_carries_code_and_message() -> None:
    frame = json.loads(encode_error(VALIDATION_ERROR, 'reason "x" ünïcode'))
    assert frame == {"type": "error", "data": {"code": VALIDATION_ERROR, "message": 'reason "x" ünïcode'}}
    assert "id" not in frame


def test_an_event_frame_embeds_its_stored_data() -> None:
    data = {"match_id": 3, "participant1_score": 1, "participant2_score": 0, "sequence": 2, "name": "Zoë"}
    frame = encode_event("score_updated", 17, encode(data))
    assert json.loads(frame) == {"type": "score_updated", "id": 17, "data": data}
    assert " " not in encode({"a": 1, "b": [1, 2]})  # compact: bytes on every frame to every spectator


# -- server-sent events ------------------------------------------------------------------------


def test_an_event_frame_becomes_an_sse_message_with_the_same_data() -> None:
    data = encode({"match_id": 1, "reason": "lag\nand more", "note": "line\u2028separator"})
    message = sse_message(encode_event("dispute_created", 42, data))
    assert message == f"id: 42\nevent: dispute_created\ndata: {data}\n\n"
    assert message.count("\n") == 4  # the newline inside the reason stays escaped in the JSON


def test_a_raw_line_break_in_stored_data_cannot_end_the_data_line() -> None:
    forged = encode_event("score_updated", 3, '{"a":1}\n\nevent: match_completed\r\ndata: {}')
    assert sse_message(forged) == (
        'id: 3\nevent: score_updated\ndata: {"a":1}\ndata: \ndata: event: match_completed\ndata: data: {}\n\n'
    )


def test_control_frames_become_the_state_a_comment_or_nothing() -> None:
    welcome = {"room": "match_1", "last_event_id": 7, "replay": "partial", "state": {"id": 1, "status": "live"}}
    state = sse_message(encode({"type": "connection_established", "data": welcome}))
    assert state == 'event: state\ndata: {"id":1,"status":"live","last_event_id":7,"replay":"partial"}\n\n'
    assert sse_message(encode_ping(123)) == ": ping\n\n"
    assert sse_message(encode_pong(5)) is None
    assert sse_message(encode_error("forbidden", "no")) is None
