"""WebSocket framing of server messages (RFC 6455 section 5.2).

Server-to-client frames are never masked (section 5.1), so one encoded frame
is valid for every client: the hub builds each message's frame once per tick
and writes the same bytes to every transport that wants it.
"""

from __future__ import annotations

import struct

_FIN_TEXT = 0x81  # FIN bit + opcode 0x1 (text)


def text_frame(payload: bytes) -> bytes:
    """One unfragmented, unmasked text frame carrying ``payload`` (UTF-8 JSON)."""
    n = len(payload)
    if n < 126:
        header = bytes((_FIN_TEXT, n))
    elif n < 1 << 16:
        header = struct.pack("!BBH", _FIN_TEXT, 126, n)
    else:
        header = struct.pack("!BBQ", _FIN_TEXT, 127, n)
    return header + payload
