"""Recognise the one request head the lean ingest path answers itself.

Ingest clients post the same simple request over and over on a keep-alive
connection: ``POST /api/ingest HTTP/1.1`` with a Content-Length. This pure
function accepts exactly that and returns None for anything else, which the
caller hands to aiohttp with the rest of the connection. So one full HTTP
implementation stays in charge of every unusual case: chunked bodies,
``Expect: 100-continue``, content encodings, upgrades, HTTP/1.0, a query
string (``?token=``), folded or malformed headers, and repeated headers
whose meaning aiohttp decides.
"""

from __future__ import annotations

import re
from typing import NamedTuple

REQUEST_LINE = b"POST /api/ingest HTTP/1.1"
MAX_HEAD_BYTES = 8190
"""A head longer than this is not the simple shape: aiohttp answers it (with
its own limit on lines and fields)."""

# RFC 9110 section 5.1: a field name is a token; a value has no control
# characters but HTAB. A line that fails this (a bare CR or LF inside it, a
# space before the colon, an obsolete folded line) goes to aiohttp.
_FIELD = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([^\x00-\x08\x0a-\x1f\x7f]*?)[ \t]*")
# Fields that change how the body is framed or must be answered first.
_NOT_SIMPLE = frozenset({b"transfer-encoding", b"expect", b"content-encoding", b"upgrade"})
# Fields read once: repeated, aiohttp decides which one counts.
_ONCE = frozenset({b"content-length", b"content-type", b"authorization", b"x-api-key"})


class IngestHead(NamedTuple):
    """What the lean path needs from a simple ingest request's head."""

    content_length: int
    content_type: str
    keep_alive: bool
    api_key: bytes | None
    """``Authorization: Bearer <key>``, else ``X-API-Key``, as the auth
    middleware reads them."""


def parse_ingest_head(head: bytes) -> IngestHead | None:
    """The head (without its closing blank line) of a simple ingest request,
    or None when anything in it is not the simple shape."""
    lines = head.split(b"\r\n")
    if lines[0] != REQUEST_LINE:
        return None
    fields: dict[bytes, bytes] = {}
    keep_alive = True
    for line in lines[1:]:
        match = _FIELD.fullmatch(line)
        if match is None:
            return None
        name = match[1].lower()
        value = match[2]
        if name in _NOT_SIMPLE or (name in _ONCE and name in fields):
            return None
        if name == b"connection":
            tokens = {token.strip().lower() for token in value.split(b",")}
            if b"upgrade" in tokens:
                return None
            keep_alive = keep_alive and b"close" not in tokens
        fields[name] = value
    length = fields.get(b"content-length", b"")
    if not length.isdigit():
        return None
    return IngestHead(
        content_length=int(length),
        content_type=fields.get(b"content-type", b"").decode("latin-1"),
        keep_alive=keep_alive,
        api_key=_api_key(fields),
    )


def _api_key(fields: dict[bytes, bytes]) -> bytes | None:
    auth = fields.get(b"authorization", b"")
    if auth[:7].lower() == b"bearer ":
        return auth[7:].strip()
    return fields.get(b"x-api-key") or None
