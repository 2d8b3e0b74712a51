"""frames.py: a frame built once is byte for byte what the WebSocket libraries send, at every
length boundary of the header (RFC 6455 §5.2: 7-bit, 16-bit and 64-bit payload lengths)."""

from __future__ import annotations

import pytest
from websockets.frames import Frame as WebsocketsFrame
from websockets.frames import Opcode
from wsproto.frame_protocol import FrameProtocol

from matchcast.realtime.frames import Frame

LENGTHS = [0, 1, 125, 126, 127, 65535, 65536, 70000]


@pytest.mark.parametrize("length", LENGTHS)
def test_the_frame_is_what_wsproto_sends(length: int) -> None:
    text = "é" * (length // 2) + "x" * (length % 2)  # multi-byte: the length is in bytes, not characters
    server = FrameProtocol(client=False, extensions=[])  # server frames are not masked
    assert Frame(text).wire == server.send_data(text, fin=True)


@pytest.mark.parametrize("length", LENGTHS)
def test_the_frame_is_what_websockets_sends(length: int) -> None:
    text = "a" * length
    assert Frame(text).wire == WebsocketsFrame(Opcode.TEXT, text.encode()).serialize(mask=False)


def test_the_wire_is_built_once_and_only_when_asked() -> None:
    frame = Frame('{"type":"ping","timestamp":1}')
    assert frame._wire is None
    assert frame.wire is frame.wire
