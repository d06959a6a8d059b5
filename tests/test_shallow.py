"""shallow_copy must behave as dataclasses.replace for the state classes that use it."""

from __future__ import annotations

import dataclasses

import numpy as np

from pitwall_rt.compute.laps import ChassisState
from pitwall_rt.fingerprint import DriverProfile
from pitwall_rt.model.features import WindowAcc, WindowCarry
from pitwall_rt.model.infer import WearState
from pitwall_rt.shallow import shallow_copy


def test_changes_apply_to_the_copy_only() -> None:
    state = ChassisState(track_id=3, lap=7)
    copy = shallow_copy(state, lap=8)
    assert type(copy) is ChassisState
    assert (copy.track_id, copy.lap) == (3, 8)
    assert state.lap == 7
    copy.track_id = 4
    assert state.track_id == 3


def test_equals_replace_for_every_state_class() -> None:
    objs = [
        ChassisState(track_id=2, laps_completed=5, sector_rolling={}),
        WindowAcc(sums=np.arange(20.0), first_t=12.5, stops=[(1.0, 2.0)]),
        WindowCarry(last_t=99.0, stint=2, stint_laps=4),
        WearState(stint=1, lap_x_n=3),
        DriverProfile(lap_deltas={1: 0.2}),
    ]
    for obj in objs:
        fields = dataclasses.fields(obj)  # type: ignore[arg-type]
        name = fields[-1].name
        value = getattr(obj, name)
        ours = shallow_copy(obj, **{name: value})
        theirs = dataclasses.replace(obj, **{name: value})  # type: ignore[type-var]
        for f in fields:
            a, b = getattr(ours, f.name), getattr(theirs, f.name)
            assert a is b or (isinstance(a, float) and a != a and b != b), (type(obj), f.name)


def test_each_copy_method_leaves_the_original_untouched() -> None:
    acc = WindowAcc(stops=[(10.0, 50.0)])
    twin = acc.copy()
    twin.sums += 1.0
    twin.stint_stress_g_m += 1.0
    twin.stops.append((20.0, 60.0))
    assert acc.sums.sum() == 0.0 and acc.stint_stress_g_m.sum() == 0.0
    assert acc.stops == [(10.0, 50.0)]
    state = ChassisState()
    moved = state.copy()
    moved.sector_rolling[1] = moved.sector_rolling.get(1)  # type: ignore[assignment]
    assert state.sector_rolling == {}
    carry = WindowCarry()
    advanced = carry.copy()
    advanced.lap_acc.sums += 2.0
    assert carry.lap_acc.sums.sum() == 0.0
