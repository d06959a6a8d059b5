"""The lean ingest path's head recogniser: exactly the simple shape, else None."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pitwall_rt.web.ingest_head import IngestHead, parse_ingest_head


def head(*fields: str, line: str = "POST /api/ingest HTTP/1.1") -> bytes:
    return "\r\n".join([line, *fields]).encode("latin-1")


SIMPLE = ("Host: 127.0.0.1:8081", "Content-Type: application/json", "Content-Length: 123")


def test_ingest_head_reads_length_type_and_keep_alive_of_a_simple_request() -> None:
    assert parse_ingest_head(head(*SIMPLE)) == IngestHead(123, "application/json", True, None)


def test_ingest_head_field_names_are_case_blind_and_values_trimmed() -> None:
    parsed = parse_ingest_head(head("content-LENGTH:\t 7 ", "CONTENT-TYPE:application/x-ndjson"))
    assert parsed == IngestHead(7, "application/x-ndjson", True, None)


@pytest.mark.parametrize(
    ("connection", "keep_alive"),
    [("close", False), ("Keep-Alive", True), ("keep-alive, CLOSE", False), ("TE", True)],
)
def test_ingest_head_connection_close_ends_keep_alive(connection: str, keep_alive: bool) -> None:
    parsed = parse_ingest_head(head(*SIMPLE, f"Connection: {connection}"))
    assert parsed is not None and parsed.keep_alive is keep_alive


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        (("Authorization: Bearer s3cret ",), b"s3cret"),
        (("authorization: bearer s3cret",), b"s3cret"),
        (("X-API-Key: s3cret",), b"s3cret"),
        # The auth middleware's order: a Bearer header wins over X-API-Key.
        (("X-API-Key: other", "Authorization: Bearer s3cret"), b"s3cret"),
        (("Authorization: Basic dXNlcjpwdw==", "X-API-Key: s3cret"), b"s3cret"),
        (("Authorization: Basic dXNlcjpwdw==",), None),
        (("X-API-Key: ",), None),
    ],
)
def test_ingest_head_finds_the_key_where_the_auth_middleware_looks(
    fields: tuple[str, ...], key: bytes | None
) -> None:
    parsed = parse_ingest_head(head(*SIMPLE, *fields))
    assert parsed is not None and parsed.api_key == key


@pytest.mark.parametrize(
    "line",
    [
        "GET /api/ingest HTTP/1.1",
        "POST /api/ingest?token=abc HTTP/1.1",
        "POST /api/ingest/ HTTP/1.1",
        "POST /api/health HTTP/1.1",
        "POST /api/ingest HTTP/1.0",
        "POST  /api/ingest HTTP/1.1",
        "post /api/ingest HTTP/1.1",
    ],
)
def test_ingest_head_leaves_any_other_request_line_to_aiohttp(line: str) -> None:
    assert parse_ingest_head(head(*SIMPLE, line=line)) is None


@pytest.mark.parametrize(
    "field",
    [
        "Transfer-Encoding: chunked",
        "Expect: 100-continue",
        "Content-Encoding: gzip",
        "Upgrade: websocket",
        "Connection: keep-alive, Upgrade",
        "Content-Length: 5",  # a second one
        "Content-Type: text/plain",  # a second one
        "X-API-Key: a",
        "Authorization: Bearer a",
    ],
)
def test_ingest_head_leaves_framing_upgrades_and_repeats_to_aiohttp(field: str) -> None:
    fields = (*SIMPLE, "X-API-Key: k", "Authorization: Bearer k")
    assert parse_ingest_head(head(*fields)) is not None
    assert parse_ingest_head(head(*fields, field)) is None


@pytest.mark.parametrize(
    "fields",
    [
        ("Content-Type: application/json",),  # no length
        ("Content-Length: +5",),
        ("Content-Length: 0x10",),
        ("Content-Length: 5 5",),
        ("Content-Length: -1",),
        ("Content-Length : 5",),  # space before the colon
        ("Content-Length: 5", " folded-continuation"),
        ("Content-Length: 5", "X-Thing: a\x00b"),
        ("Content-Length: 5", "X-Thing: a\nb"),
        ("Content-Length: 5", "X Thing: a"),
        ("Content-Length: 5", "no colon here"),
        ("Content-Length: 5", ""),
    ],
)
def test_ingest_head_leaves_malformed_or_unframed_heads_to_aiohttp(
    fields: tuple[str, ...],
) -> None:
    assert parse_ingest_head(head(*fields)) is None


@given(st.binary(max_size=400))
def test_ingest_head_never_raises_on_any_bytes_after_the_request_line(rest: bytes) -> None:
    parsed = parse_ingest_head(b"POST /api/ingest HTTP/1.1\r\n" + rest)
    if parsed is not None:
        # Whatever it accepts has exactly one Content-Length, and reads it.
        lengths = [
            line.split(b":", 1)[1]
            for line in rest.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ]
        assert len(lengths) == 1 and int(lengths[0]) == parsed.content_length


@given(
    st.lists(
        st.sampled_from(
            ["Host: a", "Accept: */*", "Content-Type: application/json", "User-Agent: x/1"]
        ),
        unique=True,
    ),
    st.integers(0, 10**9),
)
def test_ingest_head_accepts_simple_heads_in_any_field_order(
    fields: list[str], length: int
) -> None:
    for at in range(len(fields) + 1):
        ordered = [*fields[:at], f"Content-Length: {length}", *fields[at:]]
        parsed = parse_ingest_head(head(*ordered))
        assert parsed is not None and parsed.content_length == length
