"""128-bit approximations of 5^q for the C scanner's decimal-to-double step.

``_row_scan`` turns a decimal ``w * 10^q`` into a double by multiplying the
normalised ``w`` by 5^q truncated to 128 bits (the power of two is only an
exponent). The table is computed here with Python's exact integers rather
than pasted into the C file as 1,300 hex words, so what each entry means can
be read and checked: for q >= 0 the top 128 bits of 5^q; for q < 0 the top
128 bits of 2^b / 5^-q, rounded up where 5^-q fits in 64 bits, truncated
below that, as Eisel and Lemire's error analysis assumes.
"""

from __future__ import annotations

from array import array

SMALLEST = -342
"""Below 1e-342 every 19-digit decimal is zero as a double."""
LARGEST = 308
"""Above 1e308 every decimal is infinite as a double."""

_WORD = (1 << 64) - 1


def power_of_five(q: int) -> int:
    """The 128-bit entry for 5^q: its top bit is bit 127."""
    if q >= 0:
        value = 5**q
        size = value.bit_length()
        return value << (128 - size) if size <= 128 else value >> (size - 128)
    divisor = 5**-q
    z = divisor.bit_length()
    if q >= -27:  # 5^27 < 2^63: one rounded-up division has every bit
        return (1 << (z + 127)) // divisor + 1
    entry = (1 << (2 * z + 128)) // divisor + 1
    return entry >> (entry.bit_length() - 128)


def table() -> bytes:
    """Every entry from SMALLEST to LARGEST as (high, low) native uint64 words."""
    words = array("Q")
    for q in range(SMALLEST, LARGEST + 1):
        entry = power_of_five(q)
        words.append(entry >> 64)
        words.append(entry & _WORD)
    return words.tobytes()
