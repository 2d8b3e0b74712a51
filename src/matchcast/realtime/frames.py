"""One server-to-client message, encoded once for every socket that gets it.

A broadcast sends the same bytes to every socket of a room: server frames are not masked
(RFC 6455 §5.1), so the whole WebSocket frame, header and all, can be built once and written to
each connection's transport as it is (`Wire`, realtime/connection.py). Sockets the wire cannot
serve (SSE streams, a paused transport, another ASGI server) take the text through the ordinary
send instead; both come from the same object, so nobody encodes the message twice.
"""

from __future__ import annotations

import struct

TEXT_FIN = 0x81  # FIN set, opcode 1 (text), no RSV bits: no extension is ever negotiated on the wire path


class Frame:
    __slots__ = ("_wire", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._wire: bytes | None = None

    @property
    def wire(self) -> bytes:
        """The complete unmasked text frame, built on first use and kept for the other sockets."""
        wire = self._wire
        if wire is None:
            wire = self._wire = encode_text_frame(self.text)
        return wire

    def __repr__(self) -> str:
        return f"Frame({self.text!r})"


def encode_text_frame(text: str) -> bytes:
    payload = text.encode()
    size = len(payload)
    if size < 126:
        header = bytes((TEXT_FIN, size))
    elif size < 1 << 16:
        header = struct.pack("!BBH", TEXT_FIN, 126, size)
    else:
        header = struct.pack("!BBQ", TEXT_FIN, 127, size)
    return header + payload
