"""pitwall_rt.payload: JSON object, array, NDJSON and garbage into decoded values."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pitwall_rt.payload import BodyError, Decoded, decode_body, decode_into, decode_payloads

P1 = {"chassis": "a", "speed_kmh": 100.0}
P2 = {"chassis": "b", "lap": 3}
P3 = {"chassis": "c"}


def test_payload_single_object_gives_one_value() -> None:
    out = decode_payloads([orjson.dumps(P1)])
    assert out.values == [P1]
    assert (out.errors, out.first_errors, out.empty, out.failed) == ({}, [], 0, 0)


def test_payload_array_is_flattened_into_values() -> None:
    out = decode_payloads([orjson.dumps([P1, P2]), orjson.dumps(P3)])
    assert out.values == [P1, P2, P3]
    assert out.failed == 0


def test_payload_ndjson_lines_each_give_a_value() -> None:
    body = b"\n".join(orjson.dumps(p) for p in (P1, P2, P3)) + b"\n"
    out = decode_payloads([body])
    assert out.values == [P1, P2, P3]
    assert out.failed == 0


def test_payload_ndjson_with_blank_and_crlf_lines() -> None:
    body = orjson.dumps(P1) + b"\r\n\r\n   \n" + orjson.dumps(P2)
    out = decode_payloads([body])
    assert out.values == [P1, P2]
    assert out.failed == 0


def test_payload_ndjson_line_holding_an_array_is_flattened() -> None:
    body = orjson.dumps([P1, P2]) + b"\n" + orjson.dumps(P3)
    assert decode_payloads([body]).values == [P1, P2, P3]


def test_payload_ndjson_with_a_bad_line_keeps_the_good_lines() -> None:
    body = orjson.dumps(P1) + b'\n{"chassis": "x", \n' + orjson.dumps(P2) + b"\nnot json\n"
    out = decode_payloads([body])
    assert out.values == [P1, P2]
    assert out.errors == {"bad_json": 2}
    assert out.failed == 2
    assert out.first_errors[0].startswith("line 2: not JSON")
    assert out.first_errors[1].startswith("line 4: not JSON")


def test_payload_bad_payload_does_not_spoil_the_others_in_the_batch() -> None:
    payloads = [orjson.dumps(P1), b"\x00\xff garbage", orjson.dumps([P2, P3]), b'{"chassis":']
    out = decode_payloads(payloads)
    assert out.values == [P1, P2, P3]
    assert out.errors == {"bad_json": 2}
    assert all(msg.startswith("not JSON") for msg in out.first_errors)


def test_payload_garbage_is_bad_json() -> None:
    out = decode_payloads([b"hello there"])
    assert out.values == []
    assert out.errors == {"bad_json": 1}
    assert out.failed == 1


def test_payload_empty_array_is_counted_as_empty_not_failed() -> None:
    out = decode_payloads([b"[]", b"  [ ]  "])
    assert out.values == []
    assert out.empty == 2
    assert out.failed == 0


def test_payload_whitespace_only_or_empty_is_counted_as_empty() -> None:
    out = decode_payloads([b"", b"   ", b"\n\n", b" \r\n\t "])
    assert out.values == []
    assert out.empty == 4
    assert out.failed == 0


def test_payload_bare_scalar_is_passed_on_for_validation_to_reject() -> None:
    out = decode_payloads([b"42", b'"text"', b"null"])
    assert out.values == [42, "text", None]
    assert out.failed == 0


def test_payload_first_errors_are_capped_but_all_are_counted() -> None:
    out = decode_payloads([b"bad"] * 12)
    assert out.errors == {"bad_json": 12}
    assert len(out.first_errors) == 5


def test_payload_decode_into_accumulates_into_one_result() -> None:
    out = Decoded()
    decode_into(orjson.dumps(P1), out)
    decode_into(b"nope", out)
    decode_into(b"[]", out)
    decode_into(orjson.dumps([P2]), out)
    assert out.values == [P1, P2]
    assert (out.failed, out.empty) == (1, 1)


@settings(max_examples=200, deadline=None)
@given(payloads=st.lists(st.binary(max_size=40), max_size=6))
def test_payload_arbitrary_bytes_never_raise(payloads: list[bytes]) -> None:
    out = decode_payloads(payloads)
    assert out.failed == sum(out.errors.values())
    assert set(out.errors) <= {"bad_json"}
    assert len(out.first_errors) <= 5


def test_decode_body_json_value_array_and_empty_array() -> None:
    assert decode_body(b'{"chassis": "A"}', ndjson=False).values == [{"chassis": "A"}]
    both = decode_body(b'[{"chassis": "A"}, {"chassis": "B"}]', ndjson=False)
    assert [v["chassis"] for v in both.values] == ["A", "B"] and both.empty == 0
    assert decode_body(b"[]", ndjson=False).empty == 1


def test_decode_body_refuses_what_is_not_json_and_ndjson_with_no_good_line() -> None:
    with pytest.raises(BodyError, match="body is not JSON"):
        decode_body(b'{"chassis": ', ndjson=False)
    with pytest.raises(BodyError, match="body is not NDJSON: line 1"):
        decode_body(b"{bad\n{worse", ndjson=True)
    kept = decode_body(b'{"chassis": "A"}\n{bad', ndjson=True)
    assert kept.values == [{"chassis": "A"}] and kept.errors == {"bad_json": 1}
