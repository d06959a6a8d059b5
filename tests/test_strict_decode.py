"""pitwall_rt.strict_decode: the fast path gives what the general path gives.

Every payload is run both ways: ``check_payloads`` / ``check_body`` (strict
decoder first) and the general path alone (orjson, then ``validate``). The
accepted rows, the rejection counts and the empty payloads must agree, on
generated points with every kind of fault and on real GR Cup rows.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pitwall_rt import strict_decode
from pitwall_rt.ingest.pipeline import Checked, check_body, check_decoded, check_payloads
from pitwall_rt.payload import BodyError, decode_body, decode_payloads
from pitwall_rt.schema import LIMITS, NUMERIC_FIELDS, StringTable
from pitwall_rt.validate import Tables

from .grcup_json import grcup_points

NOW = 1_757_184_000.5


def tables(max_chassis: int = 64) -> Tables:
    return Tables(chassis=StringTable(max_chassis), track=StringTable(16, reserved=("",)))


def canonical(checked: Checked, t: Tables) -> list[tuple[Any, ...]]:
    """Rows as sorted tuples with names for ids: the two paths intern in
    different orders, and put refused payloads' rows after the strict ones."""
    rows = checked.rows
    out = []
    for row in rows:
        values = tuple(
            "nan" if np.isnan(row[name]) else float(row[name])
            for name in ("t", "recv_t", *NUMERIC_FIELDS)
        )
        out.append((t.chassis.name(int(row["chassis"])), t.track.name(int(row["track"])), *values))
    return sorted(out, key=repr)


def both_ways(payloads: list[bytes], max_chassis: int = 64) -> tuple[Checked, Checked]:
    fast_tables, slow_tables = tables(max_chassis), tables(max_chassis)
    fast = check_payloads(payloads, fast_tables, NOW)
    slow = check_decoded(decode_payloads(payloads), slow_tables, NOW)
    assert canonical(fast, fast_tables) == canonical(slow, slow_tables)
    assert fast.reasons == slow.reasons
    assert fast.empty_payloads == slow.empty_payloads
    return fast, slow


# Values chosen to hit every check: in range, at and past the limits, whole
# floats and fractions for integer fields, wrong types.
def field_values(name: str) -> st.SearchStrategy[Any]:
    low, high = LIMITS[name]
    return st.one_of(
        st.integers(int(low), int(high)),
        st.floats(low, high, allow_nan=False),
        st.sampled_from([low, high, low - 1, high + 1, 2.0, 2.5, 10**30]),
        st.sampled_from([None, "7", True, [], {}]),
    )


times = st.one_of(
    st.floats(1e9, 2e9),
    st.floats(1e12, 2e12),
    st.integers(1_700_000_000, 1_800_000_000),
    st.sampled_from(
        [
            "2025-09-06T18:40:41.926Z",
            "2025-09-06 18:40:41",
            "2025-13-06T18:40:41Z",
            "yesterday",
            -5,
            0,
            1e20,
            None,
            True,
        ]
    ),
)
# Lengths count characters, not bytes, both ways: 64 emoji is a good name.
names = st.one_of(
    st.sampled_from(["GR86-002-000", "GR86-004-078", "car é", "x" * 64, "\U0001f600" * 64]),
    st.sampled_from(["", "x" * 65, "\U0001f600" * 65, 7, None, ["a"]]),
)
point_keys = {
    **{name: field_values(name) for name in NUMERIC_FIELDS},
    "speed": field_values("speed_kmh"),
    "nmot": field_values("rpm"),
    "aps": field_values("throttle_pct"),
    "vehicle_id": names,
    "track": st.one_of(st.sampled_from(["barber", "sebring"]), names),
    "meta_time": times,
    "unknown_key": st.integers(),
}
# Mostly good chassis names, so most points get as far as the other checks;
# None stands for a point without one.
chassis = st.one_of(st.sampled_from(["GR86-002-000", "GR86-013-080"]), names)
points = st.fixed_dictionaries({"chassis": chassis}, optional=point_keys)


def clean_values(name: str) -> st.SearchStrategy[Any]:
    low, high = LIMITS[name]
    if isinstance(low, int) and isinstance(high, int):
        return st.integers(low, high)
    return st.floats(low, high, allow_nan=False)


# Points every check passes, so whole bodies reach the strict decoder's
# acceptance often, not only its refusals.
clean_points = st.fixed_dictionaries(
    {"chassis": st.sampled_from(["GR86-002-000", "GR86-013-080"])},
    optional={
        **{name: clean_values(name) for name in NUMERIC_FIELDS},
        "track": st.sampled_from(["barber", "sebring"]),
        "meta_time": st.floats(1e9, 2e9),
    },
)

# What NDJSON senders put between lines.
separators = st.sampled_from([b"\n", b"\r\n", b"\r", b"\n\n", b"\n \n", b"\n\n\n"])


def dumps(value: Any) -> bytes:
    """JSON as a sender would write it; the standard library's, which, unlike
    orjson, writes integers past 64 bits."""
    return json.dumps(value).encode()


payloads = st.one_of(
    points.map(dumps),
    st.lists(clean_points, max_size=6).map(dumps),
    st.lists(points, max_size=6).map(dumps),
    st.lists(points, min_size=2, max_size=3).map(lambda ps: b"\n".join(map(dumps, ps))),
    st.tuples(st.lists(clean_points, min_size=1, max_size=3), separators).map(
        lambda c: c[1].join(map(dumps, c[0]))
    ),
    st.sampled_from(
        [
            b"[]",
            b"",
            b"  ",
            b"{",
            b"5",
            b'"x"',
            b"[1, 2]",
            b'{"chassis": NaN}',
            b'{"chassis": "\\ud800"}',  # a lone surrogate: not text orjson could send on
            b'{"chassis": "\xff"}',  # not UTF-8
            b'\xef\xbb\xbf{"chassis": "a"}',  # a byte-order mark
            b'{"chassis": "a"}\x00',
            b'{"chassis": "a",}',
            b'{"chassis": "a", "lap": 01}',
            b'\t{"chassis": "a", "lapdist_m": -0}\r\n',
        ]
    ),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(payloads, max_size=8))
def test_datagrams_give_what_the_general_path_gives(batch: list[bytes]) -> None:
    both_ways(batch)


# What NDJSON senders put on one line.
lines = st.one_of(points, clean_points, st.lists(clean_points, max_size=2))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(lines, max_size=12), st.booleans(), separators)
def test_bodies_give_what_the_general_path_gives(
    body_points: list[Any], ndjson: bool, separator: bytes
) -> None:
    body = separator.join(map(dumps, body_points)) if ndjson else dumps(body_points)
    fast_tables, slow_tables = tables(), tables()
    try:
        slow = check_decoded(decode_body(body, ndjson), slow_tables, NOW)
    except BodyError:
        with pytest.raises(BodyError):
            check_body(body, ndjson, fast_tables, NOW)
        return
    fast = check_body(body, ndjson, fast_tables, NOW)
    assert canonical(fast, fast_tables) == canonical(slow, slow_tables)
    assert fast.reasons == slow.reasons
    assert fast.first_errors == slow.first_errors
    assert fast.empty_payloads == slow.empty_payloads


def test_real_grcup_points_take_the_strict_path_and_agree() -> None:
    real = grcup_points()
    assert len(real) > 80
    payloads = [orjson.dumps(real[i : i + 40]) for i in range(0, len(real), 40)]
    decoded: list[Any] = []
    assert all(strict_decode.decode_into(p, decoded) == 0 for p in payloads)
    assert strict_decode.rows_from_points(decoded, tables(), NOW) is not None
    fast, _ = both_ways(payloads)
    assert len(fast.rows) == len(real)
    speeds = [p.get("speed") for p in real]
    stored = fast.rows["speed_kmh"]
    assert np.array_equal(stored, np.array(speeds, dtype=np.float64), equal_nan=True)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"chassis": "a", "lap": 3.0}',
        b'{"chassis": "a", "gear": true}',
        b'{"chassis": "a", "speed_kmh": 501}',
        b'{"chassis": "a", "speed_kmh": "120"}',
        b'{"chassis": ""}',
        b'{"chassis": "a"}\n{"chassis": "b"}',
        b'{"chassis": "\\ud800"}',  # stored, it could not be sent on as JSON
        b"[1]",
        b"not json",
    ],
)
def test_the_strict_decoder_refuses_what_it_cannot_vouch_for(payload: bytes) -> None:
    out: list[Any] = []
    assert strict_decode.decode_into(payload, out) is None
    assert out == []


@pytest.mark.parametrize(
    "point",
    [
        {"speed_kmh": 100.0},
        {"chassis": "a", "meta_time": -1},
        {"chassis": "a", "meta_time": "not a time"},
        {"chassis": "a", "meta_time": 1e13 * 1000},
    ],
)
def test_late_checks_hand_the_batch_to_the_general_path(point: dict[str, Any]) -> None:
    decoded: list[Any] = []
    good = {"chassis": "b", "speed_kmh": 90.0}
    assert strict_decode.decode_into(orjson.dumps([good, point]), decoded) == 0
    assert strict_decode.rows_from_points(decoded, tables(), NOW) is None
    fast, _ = both_ways([orjson.dumps([good, point])])
    assert len(fast.rows) == 1 and sum(fast.reasons.values()) == 1


def test_a_full_chassis_table_is_counted_as_in_the_general_path() -> None:
    batch = [orjson.dumps([{"chassis": f"car-{i}", "lap": i} for i in range(5)])]
    fast, _ = both_ways(batch, max_chassis=3)
    assert fast.reasons == {"table_full:chassis": 2}


def test_aliases_fill_only_what_the_canonical_name_leaves_out() -> None:
    payload = orjson.dumps(
        [
            {"vehicle_id": "GR86-002-000", "speed": 120.0, "nmot": 6000, "aps": 80},
            {"chassis": "GR86-004-078", "vehicle_id": "ignored", "speed_kmh": 99.0, "speed": 1.0},
        ]
    )
    t = tables()
    checked = check_payloads([payload], t, NOW)
    rows = checked.rows
    assert [t.chassis.name(int(i)) for i in rows["chassis"]] == ["GR86-002-000", "GR86-004-078"]
    assert rows["speed_kmh"].tolist() == [120.0, 99.0]
    assert rows["rpm"][0] == 6000 and rows["throttle_pct"][0] == 80
    assert np.isnan(rows["rpm"][1])


def test_clean_datagrams_never_reach_the_general_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def general(_payloads: list[bytes]) -> None:
        raise AssertionError("the general path was taken")

    monkeypatch.setattr("pitwall_rt.ingest.pipeline.decode_payloads", general)
    lines = [{"chassis": "GR86-002-000", "lap": 3}, {"chassis": "GR86-004-078", "speed": 99.5}]
    payloads = [
        orjson.dumps(lines[0]),
        orjson.dumps(lines),
        b"\n".join(map(orjson.dumps, lines)) + b"\n",
        b"[]",
    ]
    checked = check_payloads(payloads, tables(), NOW)
    assert len(checked.rows) == 5 and checked.empty_payloads == 1
    assert checked.rows["speed_kmh"][2] == 99.5
