"""The C scanner's decimal-to-double step (``powers_of_five`` and
``_row_scan``'s Eisel-Lemire multiply) gives the correctly rounded double:
bit for bit what ``float()`` gives, for the numbers real senders write and
for the ones built to sit on a rounding boundary."""

from __future__ import annotations

import math
import random
import struct
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st
from pitwall_rt._row_scan import to_double  # type: ignore[attr-defined]

from pitwall_rt import powers_of_five, row_scan  # row_scan installs the table

assert row_scan.AVAILABLE


def same(text: str) -> bool:
    got = to_double(text.encode())
    return got is not None and struct.pack("<d", got) == struct.pack("<d", float(text))


def test_each_entry_is_five_to_the_q_to_128_bits() -> None:
    """Every entry is 5^q scaled to a 128-bit integer with bit 127 set,
    within one unit of the exact value (truncated, or rounded up for the
    reciprocals that fit a division exactly)."""
    for q in range(powers_of_five.SMALLEST, powers_of_five.LARGEST + 1):
        entry = powers_of_five.power_of_five(q)
        assert 1 << 127 <= entry < 1 << 128, q
        exact = Fraction(5) ** q
        scale = 127 - math.floor(math.log2(exact)) if q else 127
        scaled = exact * Fraction(2) ** scale
        while scaled >= 1 << 128:
            scaled /= 2
        while scaled < 1 << 127:
            scaled *= 2
        assert abs(entry - scaled) <= 1, q
    table = powers_of_five.table()
    assert len(table) == 16 * (powers_of_five.LARGEST - powers_of_five.SMALLEST + 1)


def float32_text(rng: random.Random, scale: float) -> str:
    """What a sender writes for a float32 reading: the double's shortest repr,
    17 digits as often as not."""
    value = struct.unpack("<f", struct.pack("<f", rng.uniform(-scale, scale)))[0]
    return repr(value)


def test_numbers_as_senders_write_them() -> None:
    rng = random.Random(11)
    texts = [float32_text(rng, scale) for scale in (1.0, 300.0, 1e4) for _ in range(20_000)]
    texts += [repr(rng.uniform(-1e6, 1e6) * 10.0 ** rng.randint(-40, 40)) for _ in range(40_000)]
    texts += [f"{rng.randrange(10**18, 10**19)}e{rng.randint(-350, 320)}" for _ in range(40_000)]
    texts += ["0.5640000128746033", "-0.0", "0.0", "1.7976931348623157e308", "1e-342"]
    bad = [t for t in texts if not same(t)]
    assert not bad, bad[:5]


def halfway(mantissa: int, exponent: int) -> str:
    """The decimal text of (2 * mantissa + 1) * 2^(exponent - 1), exactly:
    halfway between two doubles, where only round-to-even decides."""
    value = Fraction(2 * mantissa + 1) * Fraction(2) ** (exponent - 1)
    digits = 0
    while (value * 10**digits).denominator != 1:
        digits += 1
    return f"{(value * 10**digits).numerator}e-{digits}"


def test_numbers_on_a_rounding_boundary() -> None:
    rng = random.Random(5)
    texts = [halfway(rng.randrange(1 << 52, 1 << 53), rng.randint(-12, 12)) for _ in range(5_000)]
    for near in (-1, 1):  # a hair either side of halfway
        for _ in range(2_000):
            m, e = rng.randrange(1 << 52, 1 << 53), rng.randint(-12, 12)
            exact = Fraction(2 * m + 1) * Fraction(2) ** (e - 1) + near * Fraction(1, 10**25)
            texts.append(f"{exact.numerator * 10**25 // exact.denominator}e-25")
    texts += ["9007199254740993.0", "9007199254740992.5", "2.2250738585072011e-308"]
    texts += ["4.9406564584124654e-324", "2.4703282292062327e-324", "1.7976931348623158e308"]
    bad = [t for t in texts if not same(t)]
    assert not bad, bad[:5]


@settings(max_examples=3000, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_any_double_written_shortest_or_long_reads_back(value: float) -> None:
    """(A text without a fraction or exponent is a JSON integer, read as an
    int64 as msgspec reads it: "-0" is 0. test_row_scan covers those.)"""
    for text in (repr(value), f"{value:.17e}", f"{value:.19g}"):
        if any(c in text for c in ".eE"):
            assert same(text), text


def test_not_a_number_is_none() -> None:
    for text in (b"", b"-", b"1.", b".5", b"01", b"1e", b"1.5x", b"nan"):
        assert to_double(text) is None, text
