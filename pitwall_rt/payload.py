"""Decoding of JSON payloads (a datagram or an HTTP body) into Python values.

A payload holds one JSON point, a JSON array of points, or NDJSON lines. The
result is a flat list of decoded values that ``validate`` then checks; a
payload that is not JSON at all is one error with a reason, and an NDJSON
payload with one bad line keeps its good lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

_loads = orjson.loads

# First bytes of a JSON payload; anything else (an F1 packet starts with its
# little-endian packet format, 0xE8 0x07 for 2024) is binary.
JSON_START = frozenset([b"{", b"[", b" ", b"\t", b"\r", b"\n", b""])
_JSONDecodeError = orjson.JSONDecodeError


@dataclass
class Decoded:
    """Values decoded from one or more payloads, and what could not be read."""

    values: list[Any] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    first_errors: list[str] = field(default_factory=list)
    empty: int = 0

    def fail(self, reason: str, message: str, limit: int = 5) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + 1
        if len(self.first_errors) < limit:
            self.first_errors.append(message)

    @property
    def failed(self) -> int:
        return sum(self.errors.values())


def split_json(datagrams: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """The datagrams that start like JSON, and the rest (F1 packets, garbage)."""
    json_payloads = [d for d in datagrams if d[:1] in JSON_START]
    if len(json_payloads) == len(datagrams):
        return datagrams, []
    return json_payloads, [d for d in datagrams if d[:1] not in JSON_START]


class BodyError(ValueError):
    """An HTTP body that is not JSON (or NDJSON) at all: the request is refused."""


def decode_body(body: bytes, ndjson: bool) -> Decoded:
    """Decode one HTTP body; raises BodyError when nothing in it is readable.

    A JSON body is one value (a point or an array). An NDJSON body keeps its
    good lines and counts the bad ones, and is refused only when no line is
    JSON."""
    decoded = Decoded()
    if ndjson:
        decode_into(body, decoded)
        if decoded.failed and not decoded.values:
            raise BodyError(f"body is not NDJSON: {decoded.first_errors[0]}")
        return decoded
    try:
        value = _loads(body)
    except _JSONDecodeError as exc:
        raise BodyError(f"body is not JSON: {exc}") from None
    decoded.values = value if type(value) is list else [value]
    decoded.empty = int(value == [])
    return decoded


def decode_payloads(payloads: list[bytes]) -> Decoded:
    """Decode many payloads at once; the common case is one ``loads`` each.

    Only when some payload fails the plain parse are they taken one by one,
    which is where NDJSON and garbage are told apart.
    """
    out = Decoded()
    try:
        parsed = list(map(_loads, payloads))
    except _JSONDecodeError:
        for payload in payloads:
            decode_into(payload, out)
        return out
    for value in parsed:
        _add_value(value, out)
    return out


def decode_into(payload: bytes, out: Decoded) -> None:
    """Decode one payload (JSON value or NDJSON) into ``out``."""
    try:
        value = _loads(payload)
    except _JSONDecodeError as exc:
        if b"\n" in payload.strip():
            _decode_ndjson(payload, out)
        elif not payload.strip():
            out.empty += 1
        else:
            out.fail("bad_json", f"not JSON: {exc}")
        return
    _add_value(value, out)


def _add_value(value: Any, out: Decoded) -> None:
    if type(value) is dict:
        out.values.append(value)
    elif type(value) is list:
        if value:
            out.values.extend(value)
        else:
            out.empty += 1
    else:
        # A bare number or string: let validation reject it as not_object,
        # so it is counted per point like any other bad point.
        out.values.append(value)


def _decode_ndjson(payload: bytes, out: Decoded) -> None:
    for number, line in enumerate(payload.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = _loads(line)
        except _JSONDecodeError as exc:
            out.fail("bad_json", f"line {number}: not JSON: {exc}")
            continue
        _add_value(value, out)
