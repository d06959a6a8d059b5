"""pitwall_rt.row_scan: the C scanner accepts only what the strict decoder
would, and then writes the very same rows, bit for bit.

Payloads are written as text here, not by a JSON library, so the numbers
come in every form a sender may use (exponents, leading zeros in the
fraction, -0, long mantissas) and the keys in any order, with whitespace,
escapes, repeats and nested values. Each payload is scanned alone and
decoded strictly; where the scanner accepts, the rows must agree.
``test_strict_decode`` runs the whole three-tier ``check_payloads`` against
the general path.
"""

from __future__ import annotations

import json
import random
from typing import Any

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pitwall_rt import row_scan, strict_decode
from pitwall_rt.schema import ALIASES, LIMITS, NUMERIC_FIELDS, StringTable, as_records
from pitwall_rt.validate import Tables

from .grcup_json import grcup_points

NOW = 1_757_184_000.5


def datagrams(per: int, count: int, seed: int = 1) -> list[bytes]:
    """Payloads as a logger forwarding one car after another writes them:
    values rounded to the sensor's resolution, keys in one order."""
    rng = random.Random(seed)
    out = []
    for d in range(count):
        points = [
            {
                "meta_time": round(1_757_184_000 + (d * per + k) * 0.02, 3),
                "track": "barber",
                "chassis": f"GR86-{k % 20:03d}",
                "lap": rng.randint(1, 30),
                "lapdist_m": round(rng.uniform(0, 3674), 2),
                "speed_kmh": round(rng.uniform(40, 220), 2),
                "accx_can": round(rng.uniform(-1.5, 0.6), 3),
                "accy_can": round(rng.uniform(-1.6, 1.6), 3),
                "Steering_Angle": round(rng.uniform(-90, 90), 1),
                "pbrake_f": round(rng.uniform(0, 120), 1),
                "rpm": rng.randint(2500, 7400),
                "gear": rng.randint(1, 6),
            }
            for k in range(per)
        ]
        out.append(orjson.dumps(points if per > 1 else points[0]))
    return out


def tables(max_chassis: int = 64) -> Tables:
    return Tables(chassis=StringTable(max_chassis), track=StringTable(16, reserved=("",)))


def named(rows: np.ndarray, t: Tables) -> list[tuple[Any, ...]]:
    """Rows with names for ids and every float as its bit pattern (so -0.0
    and 0.0 differ)."""
    bits = {
        name: rows[name].astype(np.float64).view(np.uint64).tolist()
        for name in ("t", "recv_t", *NUMERIC_FIELDS)
    }
    return [
        (
            t.chassis.name(int(row["chassis"])),
            t.track.name(int(row["track"])),
            int(row["source"]),
            *(bits[name][i] for name in bits),
        )
        for i, row in enumerate(rows)
    ]


def strict_rows(payload: bytes) -> tuple[list[tuple[Any, ...]], int] | None:
    """What the strict tier makes of one payload (one value, else NDJSON
    lines, as ``pipeline._check_python`` reads it): named rows and empty
    arrays, or None when it refuses."""
    points: list[Any] = []
    found = strict_decode.decode_into(payload, points)
    if found is None and b"\n" in payload:
        lines = strict_decode.decode_lines(payload)
        if lines:
            points, found = lines, 0
    if found is None:
        return None
    if not points:
        return [], found
    t = tables()
    rows = strict_decode.rows_from_points(points, t, NOW)
    return None if rows is None else (named(rows, t), found)


def scanned_rows(payload: bytes) -> tuple[list[tuple[Any, ...]], int] | None:
    t = tables()
    scanned = row_scan.scan([payload], t, NOW)
    assert scanned is not None
    if scanned.refused:
        assert scanned.refused == [payload]
        assert len(scanned.rows) == 0 and scanned.empty_payloads == 0
        assert len(t.chassis) == 0, "a refused payload's names were interned"
        return None
    return named(scanned.rows, t), scanned.empty_payloads


def agree(payload: bytes) -> bool:
    """The scanner refuses, or gives exactly the strict tier's rows. True
    when it accepted."""
    ours = scanned_rows(payload)
    if ours is None:
        return False
    assert strict_rows(payload) == ours, payload
    return True


# -- payloads written as text --------------------------------------------------------

digits = st.text("0123456789", min_size=1, max_size=22)
numbers = st.one_of(
    st.builds(
        lambda sign, whole, frac, exp: sign + whole + frac + exp,
        st.sampled_from(["", "", "-"]),
        st.one_of(st.just("0"), digits.map(lambda d: "1" + d[:4]), digits),
        st.one_of(st.just(""), digits.map(lambda d: "." + d), st.just(".0")),
        st.one_of(
            st.just(""),
            st.builds(
                lambda e, s, d: e + s + d,
                st.sampled_from("eE"),
                st.sampled_from(["", "+", "-"]),
                st.text("0123456789", min_size=1, max_size=3),
            ),
        ),
    ),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(-(10**20), 10**20).map(str),
    st.sampled_from(
        [
            "0",
            "-0",
            "-0.0",
            "0e5",
            "1e22",
            "1e23",
            "9007199254740993",
            "0.30000000000000004",
            "1.7976931348623157e308",
            "5e-324",
            "123.456e-2",
            "1E+2",
            "00",
            "1.",
            ".5",
            "+1",
            "-",
            "1e",
            "01.5",
            "NaN",
            "Infinity",
        ]
    ),
)
plain_names = st.sampled_from(["GR86-002-000", "GR86-004-078", "x", "x" * 64, "barber"])
strings = st.one_of(
    plain_names.map(json.dumps),
    st.sampled_from(
        ['""', '"' + "x" * 65 + '"', '"car \\u00e9"', '"a\\"b"', '"caf\u00e9"', '"tab\there"']
    ),
)
values = st.one_of(
    numbers,
    strings,
    st.sampled_from(["null", "true", "false", "[]", "{}", "[1]", '{"a": 1}', "nul", "tru"]),
)
good_times = st.one_of(
    st.floats(1e9, 2e9).map(repr),
    st.floats(1e12, 2e12).map(repr),
    st.integers(1_700_000_000_000, 1_800_000_000_000).map(str),
    st.just("null"),
)
times = st.one_of(
    st.floats(1e9, 2e9).map(repr),
    st.floats(1e12, 2e12).map(repr),
    st.integers(1_700_000_000_000, 1_800_000_000_000).map(str),
    st.sampled_from(
        ["0", "-5", "1e11", "100000000000.5", "1e14", "1e20", "null", '"2025-09-06T18:40:41.926Z"']
    ),
)
plain_keys = st.sampled_from(
    [*NUMERIC_FIELDS, "speed", "nmot", "aps", "track", "vehicle_id", "chassis", "meta_time"]
)
odd_keys = st.sampled_from(["unknown", "Speed_kmh", "lap ", "ch\\u0061ssis", "caf\u00e9"])
keys = st.one_of(*[plain_keys] * 6, odd_keys)


def good_number(key: str) -> st.SearchStrategy[str]:
    """An in-range value for ``key``, written in any of a sender's forms."""
    low, high = LIMITS[ALIASES.get(key, key)]
    if isinstance(low, int) and isinstance(high, int):
        return st.integers(low, high).map(str)
    return st.floats(low, high).flatmap(
        lambda v: st.sampled_from(
            [repr(v), f"{v:.3f}", f"{v:.6e}", f"{v:.17g}", f"{v:E}", str(int(v)), f"{v:.1f}"]
        )
    )


def field(key: str, faulty: bool) -> st.SearchStrategy[str]:
    """A good value for ``key``, or with ``faulty`` now and then any value."""
    bad = values
    if key in ("chassis", "vehicle_id", "track"):
        good = plain_names.map(json.dumps)
    elif key == "meta_time":
        good, bad = good_times, times
    elif key in LIMITS or key in ALIASES:
        good = good_number(key)
    else:
        return values
    return st.one_of(*[good] * 3, bad) if faulty else good


whitespace = st.sampled_from(["", "", " ", "\n", "\t", "\r\n "])


@st.composite
def point_text(draw: st.DrawFn) -> str:
    """Half the points are good throughout, so the scanner's acceptance is
    tested as often as its refusals."""
    faulty = draw(st.booleans())
    # Repeated keys now and then: the scanner refuses them.
    chosen = draw(st.lists(keys if faulty else plain_keys, max_size=10, unique=not faulty))
    if draw(st.integers(0, 4)) and "chassis" not in chosen:  # mostly with a chassis
        chosen.insert(draw(st.integers(0, len(chosen))), "chassis")
    ws = draw(whitespace)
    parts = [f'{ws}"{key}"{ws}:{ws}{draw(field(key, faulty))}{ws}' for key in chosen]
    return "{" + ",".join(parts) + "}"


@st.composite
def payload_text(draw: st.DrawFn) -> bytes:
    points = draw(st.lists(point_text(), min_size=1, max_size=3))
    ws = draw(whitespace)
    shape = draw(st.sampled_from(["one", "array", "array", "ndjson", "ndjson", "trailing"]))
    if shape == "one":
        text = ws + points[0] + ws
    elif shape == "array":
        text = ws + "[" + ws + ("," + ws).join(points) + ws + "]" + ws
    elif shape == "ndjson":  # blank lines, spaces, CRs, arrays on a line, spans
        lines = [draw(st.sampled_from([p, p, "[" + p + "]", "[]"])) for p in points]
        text = draw(st.sampled_from(["", "\n", " \n"])) + lines[0]
        for line in lines[1:]:
            text += draw(st.sampled_from(["\n", "\n", "\n\n", " \n\t", "\r\n", " "])) + line
        text += draw(st.sampled_from(["", "\n", "\n\n", " "]))
    else:
        text = points[0] + draw(st.sampled_from([",", "}", "]", "x", "\x00", " {}"]))
    return text.encode()


# -- tests ---------------------------------------------------------------------------


def test_the_scanner_is_built() -> None:
    assert row_scan.AVAILABLE, (
        "pitwall_rt._row_scan was not compiled: install a C compiler and the Python "
        "headers (apt-get install gcc python3-dev), then pip install -e . again"
    )


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload_text())
def test_accepts_only_what_the_strict_tier_accepts_and_agrees(payload: bytes) -> None:
    agree(payload)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {"chassis": plain_names},
            optional={
                "meta_time": st.floats(1e9, 2e9),
                "track": plain_names,
                "lap": st.integers(0, 100_000),
                "gear": st.integers(-1, 12),
                **{name: st.floats(-10, 10) for name in ("accx_can", "accy_can")},
                "speed_kmh": st.floats(0, 500),
                "speed": st.floats(0, 500),
                "lapdist_m": st.floats(-100, 100_000),
                "nmot": st.floats(0, 30_000),
            },
        ),
        min_size=1,
        max_size=5,
    )
)
def test_clean_points_as_senders_write_them_are_accepted(points: list[dict[str, Any]]) -> None:
    """What json.dumps and orjson write for in-range values, 17-digit
    shortest reprs and subnormals included, is all the scanner's."""
    for payload in (json.dumps(points).encode(), orjson.dumps(points)):
        assert agree(payload), payload


def test_random_bytes_and_mutations_never_crash_and_never_disagree() -> None:
    rng = random.Random(7)
    seeds = [*datagrams(3, 20), orjson.dumps({"chassis": "a", "speed_kmh": 1.5})]
    for _ in range(20_000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(data))
            action = rng.randrange(3)
            if action == 0:
                data[i] = rng.randrange(256)
            elif action == 1:
                del data[i : i + rng.randint(1, 8)]
            else:
                data[i:i] = bytes(rng.choice(b'{}[],:"\\ e.-0123456789nul'))
            if not data:
                break
        agree(bytes(data))
    for _ in range(2_000):
        agree(bytes(rng.randrange(256) for _ in range(rng.randint(0, 64))))


def test_a_refused_payload_leaves_no_name_and_no_row_behind() -> None:
    good = b'{"chassis": "kept", "speed_kmh": 10}'
    bad = b'[{"chassis": "gone", "track": "nowhere"}, {"chassis": "kept", "lap": 1.5}]'
    t = tables()
    scanned = row_scan.scan([good, bad, good], t, NOW)
    assert scanned is not None
    assert scanned.refused == [bad]
    assert len(scanned.rows) == 2
    assert [t.chassis.name(i) for i in range(len(t.chassis))] == ["kept"]
    assert len(t.track) == 1  # only the reserved ""


def test_many_short_points_grow_the_row_buffer() -> None:
    payload = b"[" + b",".join([b'{"chassis":"x"}'] * 1000) + b"]"
    t = tables()
    scanned = row_scan.scan([payload, b'{"chassis":"y"}'], t, NOW)
    assert scanned is not None and not scanned.refused
    assert len(scanned.rows) == 1001
    assert (scanned.rows["t"] == NOW).all() and (scanned.rows["track"] == 0).all()


def test_names_past_the_tables_room_are_left_to_the_python_tiers() -> None:
    """A call keeps no more distinct names than the table holds (crafted
    hash collisions stay bounded); payloads past that are refused whole,
    and the Python tiers reject their points as table_full."""
    payloads = [orjson.dumps({"chassis": f"car-{i}"}) for i in range(5)]
    t = tables(max_chassis=3)
    scanned = row_scan.scan(payloads, t, NOW)
    assert scanned is not None
    assert scanned.refused == payloads[3:]
    assert [t.chassis.name(int(i)) for i in scanned.rows["chassis"]] == ["car-0", "car-1", "car-2"]


def test_a_table_that_fills_during_the_call_leaves_every_payload_to_the_python_tiers() -> None:
    t = tables(max_chassis=3)
    t.chassis.intern("old-0")
    t.chassis.intern("old-1")
    payloads = [orjson.dumps({"chassis": f"car-{i}"}) for i in range(2)]
    scanned = row_scan.scan(payloads, t, NOW)
    assert scanned is not None
    assert scanned.refused == payloads and len(scanned.rows) == 0


def test_empty_arrays_are_counted_not_refused() -> None:
    scanned = row_scan.scan([b"[]", b" [ ]\n", b'{"chassis":"a"}'], tables(), NOW)
    assert scanned is not None
    assert scanned.empty_payloads == 2 and not scanned.refused and len(scanned.rows) == 1


def test_real_grcup_points_and_the_bench_datagrams_take_the_scanner() -> None:
    real = grcup_points(with_times=False)
    assert len(real) > 80
    payloads = [orjson.dumps(real[i : i + 40]) for i in range(0, len(real), 40)]
    payloads += datagrams(40, 20) + datagrams(1, 100)
    for payload in payloads:
        assert agree(payload), payload[:200]
    t = tables()
    scanned = row_scan.scan(payloads, t, NOW)
    assert scanned is not None and not scanned.refused
    speeds = [p.get("speed") for p in real]
    stored = scanned.rows["speed_kmh"][: len(real)]
    assert np.array_equal(stored, np.array(speeds, dtype=np.float64), equal_nan=True)


def test_rows_are_packed_as_the_strict_tier_packs_them() -> None:
    """Byte for byte, so nothing in a row (padding, source) differs."""
    payloads = datagrams(40, 10)
    points: list[Any] = []
    for payload in payloads:
        strict_decode.decode_into(payload, points)
    strict = strict_decode.rows_from_points(points, tables(), NOW)
    scanned = row_scan.scan(payloads, tables(), NOW)
    assert strict is not None and scanned is not None
    assert as_records(scanned.rows).tobytes() == as_records(strict).tobytes()


def test_a_batch_gives_what_its_payloads_give_one_by_one() -> None:
    """Names seen in a refused payload are forgotten, later payloads reuse
    the names of earlier ones, and the buffer grows mid-batch: none of it
    may change a row."""
    rng = random.Random(5)
    seeds = datagrams(3, 40, seed=3)
    seeds += [orjson.dumps({"chassis": f"c{i}", "track": f"t{i % 3}"}) for i in range(30)]

    def mutated(seed: bytes) -> bytes:
        data = bytearray(seed)
        if rng.random() < 0.5:
            i = rng.randrange(len(data))
            data[i] = rng.choice(b'{}[],:"\\ e.-01x')
        return bytes(data)

    for _ in range(300):
        batch = [mutated(rng.choice(seeds)) for _ in range(rng.randint(1, 60))]
        t = tables(max_chassis=1000)
        whole = row_scan.scan(batch, t, NOW)
        assert whole is not None
        one_by_one: list[tuple[Any, ...]] = []
        refused = []
        for payload in batch:
            alone = tables(max_chassis=1000)
            scanned = row_scan.scan([payload], alone, NOW)
            assert scanned is not None
            one_by_one += named(scanned.rows, alone)
            refused += scanned.refused
        assert named(whole.rows, t) == one_by_one
        assert whole.refused == refused
        assert len(t.chassis) == len({row[0] for row in one_by_one})  # no refused one's names


def test_ndjson_is_taken_one_value_a_line() -> None:
    """NDJSON the general path reads line by line the obvious way is the
    scanner's; anything it might read otherwise is left to it."""
    a, b = b'{"chassis": "a", "speed_kmh": 10.5}', b'{"chassis": "b", "lap": 2}'
    taken = [
        a + b"\n" + b,
        b"\n" + a + b"\n\n" + b + b"\n",
        a + b" \n\t" + b"[" + b + b", " + a + b"]",
        b"\n".join([a, b] * 20),
    ]
    for payload in taken:
        assert agree(payload), payload
    left = [
        a + b"\r\n" + b,  # bytes.splitlines also ends a line at a lone CR
        a + b" " + b,  # two values on one line: not JSON as a line
        b'{"chassis":\n"a"}\n' + b,  # a value spanning lines
        a + b'\n{"chassis":\n"b"}',  # and a later one
        a + b"\n[]\n" + b,  # the general path counts each empty array
        a + b"\n" + b"[1]",
    ]
    for payload in left:
        assert scanned_rows(payload) is None, payload
    t = tables()
    as_body = row_scan.scan([taken[0]], t, NOW, lines=False)
    assert as_body is not None and as_body.refused == [taken[0]]  # a JSON body is one value
    both = row_scan.scan([taken[0], a], t, NOW, lines=False)
    assert both is not None and both.refused == [taken[0]] and len(both.rows) == 1
