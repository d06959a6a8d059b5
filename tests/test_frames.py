"""pitwall_rt.broadcast.frames: RFC 6455 section 5.2 text frames, decoded back here."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pitwall_rt.broadcast.frames import text_frame


def decode_frame(frame: bytes) -> tuple[bool, int, bool, bytes, int]:
    """FIN, opcode, MASK, payload and header length, read per RFC 6455 5.2."""
    b0, b1 = frame[0], frame[1]
    fin = bool(b0 & 0x80)
    assert b0 & 0x70 == 0, "RSV bits must be 0 without extensions"
    opcode = b0 & 0x0F
    masked = bool(b1 & 0x80)
    length = b1 & 0x7F
    offset = 2
    if length == 126:
        (length,) = struct.unpack_from("!H", frame, 2)
        offset = 4
    elif length == 127:
        (length,) = struct.unpack_from("!Q", frame, 2)
        assert length >> 63 == 0, "most significant bit must be 0"
        offset = 10
    if masked:
        offset += 4
    payload = frame[offset:]
    assert len(payload) == length
    return fin, opcode, masked, payload, offset


@pytest.mark.parametrize(
    ("n", "header_len", "length_byte"),
    [
        (0, 2, 0),
        (1, 2, 1),
        (125, 2, 125),
        (126, 4, 126),
        (65535, 4, 126),
        (65536, 10, 127),
        (70000, 10, 127),
    ],
)
def test_frames_text_frame_header_for_each_length_form(
    n: int, header_len: int, length_byte: int
) -> None:
    payload = bytes(i % 251 for i in range(n))
    frame = text_frame(payload)
    fin, opcode, masked, got, offset = decode_frame(frame)
    assert (fin, opcode, masked) == (True, 0x1, False)
    assert offset == header_len
    assert frame[1] == length_byte
    assert got == payload
    assert len(frame) == n + header_len


def test_frames_uses_the_minimal_length_encoding() -> None:
    # RFC 6455 5.2: "the minimal number of bytes MUST be used to encode the length".
    assert text_frame(b"x" * 125)[:2] == b"\x81\x7d"
    assert text_frame(b"x" * 126)[:4] == b"\x81\x7e\x00\x7e"
    assert text_frame(b"x" * 65535)[:4] == b"\x81\x7e\xff\xff"
    assert text_frame(b"x" * 65536)[:10] == b"\x81\x7f" + (65536).to_bytes(8, "big")


@settings(max_examples=100, deadline=None)
@given(payload=st.binary(max_size=300))
def test_frames_any_payload_decodes_back(payload: bytes) -> None:
    _fin, _opcode, _masked, got, _offset = decode_frame(text_frame(payload))
    assert got == payload
