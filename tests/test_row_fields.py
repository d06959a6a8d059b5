"""row_fields.RowFields: contiguous, read-only copies of stored rows' fields."""

from __future__ import annotations

import numpy as np
import pytest

from pitwall_rt.row_fields import RowFields
from pitwall_rt.schema import empty_rows


def test_a_field_is_a_contiguous_copy_made_once() -> None:
    rows = empty_rows(5)
    rows["speed_kmh"] = [10.0, np.nan, 30.0, 40.0, 50.0]
    fields = RowFields(rows)
    speed = fields["speed_kmh"]
    assert len(fields) == 5
    assert not rows["speed_kmh"].flags.c_contiguous, "a structured field is strided"
    assert speed.flags.c_contiguous
    np.testing.assert_array_equal(speed, rows["speed_kmh"])
    assert fields["speed_kmh"] is speed, "copied once, then handed out again"


def test_the_copies_are_read_only_and_independent_of_the_rows() -> None:
    rows = empty_rows(3)
    rows["t"] = [1.0, 2.0, 3.0]
    fields = RowFields(rows)
    t = fields["t"]
    with pytest.raises(ValueError, match="read-only"):
        t[0] = 9.0
    rows["t"][0] = 7.0
    assert t.tolist() == [1.0, 2.0, 3.0]


def test_an_unknown_field_is_a_key_error() -> None:
    with pytest.raises((KeyError, ValueError)):
        RowFields(empty_rows(1))["no_such_field"]


def test_a_part_reads_views_of_the_whole_copies() -> None:
    rows = empty_rows(6)
    rows["lap"] = np.arange(6.0)
    fields = RowFields(rows)
    part = fields.part(2, 5)
    assert len(part) == 3
    assert part["lap"].tolist() == [2.0, 3.0, 4.0]
    assert part["lap"].base is fields["lap"], "a view, not another copy"


def test_set_replaces_a_field_for_every_later_reader_and_keeps_it_read_only() -> None:
    rows = empty_rows(4)
    rows["lap"] = [1.0, 32768.0, 1.0, 2.0]
    fields = RowFields(rows)
    fields.set("lap", np.array([1.0, np.nan, 1.0, 2.0]))
    assert np.isnan(fields["lap"][1]) and np.isnan(fields.part(1, 3)["lap"][0])
    assert rows["lap"][1] == 32768.0, "the stored rows are not touched"
    with pytest.raises(ValueError, match="read-only"):
        fields["lap"][0] = 5.0
    with pytest.raises(ValueError, match="3 values for 4 rows"):
        fields.set("t", np.zeros(3))
