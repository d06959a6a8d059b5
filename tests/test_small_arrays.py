"""SmallArrays: a car's state survives the carry pickle exactly, arrays and all."""

from __future__ import annotations

import pickle

import numpy as np

from pitwall_rt.model.features import WindowAcc, WindowCarry
from pitwall_rt.model.infer import WearState


def _round_trip(obj: object) -> object:
    return pickle.loads(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def test_window_state_round_trips_exactly() -> None:
    rng = np.random.default_rng(3)
    acc = WindowAcc(sums=rng.normal(size=20), stops=[(12.5, 80.0)], open_stop=(3.0, 45.0))
    acc.maxes[[0, 2]] = [1.5, np.inf]  # NaN elsewhere stays NaN
    carry = WindowCarry(last_t=1.7e9, lap_acc=acc, stint_stress_g_m=rng.normal(size=4))
    back = _round_trip(carry)
    assert isinstance(back, WindowCarry)
    np.testing.assert_array_equal(back.lap_acc.sums, acc.sums)
    np.testing.assert_array_equal(back.lap_acc.maxes, acc.maxes)
    np.testing.assert_array_equal(back.stint_stress_g_m, carry.stint_stress_g_m)
    assert back.lap_acc.stops == acc.stops and back.lap_acc.open_stop == acc.open_stop
    assert back.last_t == carry.last_t
    assert back.sector_acc.sums.shape == (20,) and not back.sector_acc.sums.any()


def test_wear_state_keeps_shapes_including_an_empty_history() -> None:
    fresh = _round_trip(WearState())
    assert isinstance(fresh, WearState)
    assert fresh.increments.shape == (0, 4) and fresh.increments.dtype == np.float64
    grown = WearState(stint=2, increments=np.arange(12.0).reshape(3, 4), lap_x_n=3)
    back = _round_trip(grown)
    assert isinstance(back, WearState)
    np.testing.assert_array_equal(back.increments, grown.increments)
    assert (back.stint, back.lap_x_n) == (2, 3)


def test_unpickled_arrays_are_writable_and_independent() -> None:
    acc = WindowAcc()
    data = pickle.dumps(acc)
    one, two = pickle.loads(data), pickle.loads(data)
    one.sums += 1.0
    assert one.sums.flags.writeable and not two.sums.any() and not acc.sums.any()


def test_a_field_that_is_not_a_float64_array_is_pickled_as_it_is() -> None:
    odd = WindowAcc(sums=np.arange(20, dtype=np.int32), maxes=[1.0, 2.0])  # type: ignore[arg-type]
    back = _round_trip(odd)
    assert isinstance(back, WindowAcc)
    assert back.sums.dtype == np.int32 and back.sums.tolist() == list(range(20))
    assert back.maxes == [1.0, 2.0]
