"""strategy.montecarlo: reproducible, hand-checkable, and probabilities that behave."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pitwall_rt.strategy import RaceState, Strategy, default_strategies, parse_request, simulate

RACE = RaceState(
    lap=10,
    race_laps=40,
    wear_pct=30.0,
    wear_rate_pct_per_lap=2.2,
    base_lap_s=100.0,
    position=5,
    gaps_ahead_s=(1.5, 4.0),
    gaps_behind_s=(2.0, 6.0),
)
# No randomness at all: every iteration is the same hand-computable race.
EXACT = RaceState(
    lap=0,
    race_laps=5,
    wear_pct=10.0,
    wear_rate_pct_per_lap=20.0,
    base_lap_s=100.0,
    cliff_pct=50.0,
    pit_loss_s=30.0,
    deg_s_per_pct=0.1,
    cliff_s_per_pct=1.0,
    safety_car_prob=0.0,
    wear_noise=0.0,
    lap_noise_s=0.0,
    traffic_prob=0.0,
)


def by_name(result) -> dict[str, float]:  # type: ignore[no-untyped-def]
    return {s.name: s.expected_time_s for s in result.strategies}


def test_montecarlo_same_seed_reproduces_and_other_seed_differs() -> None:
    a, b = simulate(RACE, iterations=2000, seed=5), simulate(RACE, iterations=2000, seed=5)
    assert a.to_dict() == b.to_dict()
    c = simulate(RACE, iterations=2000, seed=6)
    assert by_name(a) != by_name(c)


def test_montecarlo_zero_noise_matches_hand_computed_race_time() -> None:
    # No stop: end-of-lap wear 30, 50, 70, 90, 110 %.
    #   5 * 100 + 0.1 * 350 (deg) + 1.0 * (0 + 0 + 20 + 40 + 60) (past the 50 % cliff) = 655 s
    # Stop after lap 2: wear 30, 50 | new set 20, 40, 60.
    #   500 + 0.1 * 200 + 1.0 * 10 + 30 (stop) = 560 s
    plans = [Strategy("none"), Strategy("stop_2", (2,)), Strategy("stop_2_3", (2, 3), False)]
    result = simulate(EXACT, plans, iterations=50)
    # Two stops: 30, 50 | 20 | 20, 40 -> 500 + 0.1 * 160 + 0 + 60 = 576 s
    assert by_name(result) == {"none": 655.0, "stop_2": 560.0, "stop_2_3": 576.0}
    for s in result.strategies:
        assert s.p10_time_s == s.p90_time_s == s.expected_time_s
    assert result.recommended.name == "stop_2" and result.recommended.pit_lap == 2


def test_montecarlo_elapsed_time_is_added_to_the_race_time() -> None:
    result = simulate(replace(EXACT, elapsed_s=1000.0), [Strategy("none")], iterations=10)
    assert result.strategies[0].expected_time_s == 1655.0


def test_montecarlo_pit_every_lap_ranks_last() -> None:
    every = Strategy("every_lap", tuple(range(RACE.lap + 1, RACE.race_laps)), False)
    result = simulate(RACE, [*default_strategies(RACE), every], iterations=4000, seed=1)
    ranked = sorted(result.strategies, key=lambda s: s.expected_time_s)
    assert ranked[-1].name == "every_lap"
    assert max(s.expected_position for s in result.strategies) == next(
        s.expected_position for s in result.strategies if s.name == "every_lap"
    )


def test_montecarlo_more_safety_cars_make_later_stops_cheaper() -> None:
    def late_minus_early(prob: float) -> float:
        result = simulate(replace(RACE, safety_car_prob=prob), iterations=10_000, seed=3)
        early, late = result.window  # type: ignore[misc]
        times = by_name(result)
        return times[f"pit_lap_{late}"] - times[f"pit_lap_{early}"]

    none, some, many = late_minus_early(0.0), late_minus_early(0.05), late_minus_early(0.2)
    assert none > some > many


def test_montecarlo_stop_under_safety_car_is_taken_when_the_plan_allows() -> None:
    result = simulate(replace(RACE, safety_car_prob=0.2), iterations=4000, seed=2)
    shares = [s.sc_stop_share for s in result.strategies if s.pit_lap is not None]
    assert shares == sorted(shares) and shares[-1] > shares[0] > 0.0  # later plan, more chances
    assert next(s for s in result.strategies if s.pit_lap is None).sc_stop_share == 0.0


def test_montecarlo_default_strategies_cover_no_stop_and_each_lap_of_the_window() -> None:
    plans = default_strategies(RACE)
    assert plans[0].pit_laps == () and len(plans) >= 4
    laps = [p.pit_laps[0] for p in plans[1:]]
    assert laps == list(range(laps[0], laps[-1] + 1))
    assert [p.label for p in plans if p.label in ("early", "mid", "late")] == [
        "early",
        "mid",
        "late",
    ]


def test_montecarlo_percentiles_bracket_the_mean_and_positions_are_in_range() -> None:
    result = simulate(RACE, iterations=5000, seed=9)
    field = 1 + len(RACE.gaps_ahead_s) + len(RACE.gaps_behind_s) + RACE.position - 1
    for s in result.strategies:
        assert s.p10_time_s < s.expected_time_s < s.p90_time_s
        assert 1 <= s.p10_position <= s.p90_position <= field  # discrete: the mean may lie outside
        assert 1 <= s.expected_position <= field


def test_montecarlo_parse_request_reads_a_body_and_rejects_bad_ones() -> None:
    state, plans, iterations, seed = parse_request(
        {"lap": 3, "laps_to_go": 20, "wear_pct": {"fl": 12, "fr": 15}, "base_lap_s": 99.5,
         "wear_rate_pct_per_lap": 1.5, "gaps_ahead_s": [2.0], "seed": 4, "iterations": 500}
    )  # fmt: skip
    assert (state.race_laps, state.wear_pct, iterations, seed, plans) == (23, 15.0, 500, 4, None)
    bad = [
        [],
        {"lap": 3},
        {"lap": "3", "race_laps": 9, "wear_pct": 1, "wear_rate_pct_per_lap": 1, "base_lap_s": 90},
        {"lap": 9, "race_laps": 9, "wear_pct": 1, "wear_rate_pct_per_lap": 1, "base_lap_s": 90},
        {"lap": 1, "race_laps": 9, "wear_pct": -1, "wear_rate_pct_per_lap": 1, "base_lap_s": 90},
        {"lap": 1, "race_laps": 9, "wear_pct": 1, "wear_rate_pct_per_lap": 1, "base_lap_s": 90,
         "iterations": 10**9},
        {"lap": 1, "race_laps": 9, "wear_pct": 1, "wear_rate_pct_per_lap": 1, "base_lap_s": 90,
         "gaps_ahead_s": [-3]},
    ]  # fmt: skip
    for body in bad:
        with pytest.raises(ValueError):
            parse_request(body)


def test_montecarlo_custom_strategies_from_a_request() -> None:
    body = {
        "lap": 5,
        "race_laps": 25,
        "wear_pct": 10,
        "wear_rate_pct_per_lap": 2,
        "base_lap_s": 100,
        "strategies": [{"name": "a", "pit_laps": [12]}, {"name": "b"}],
    }
    state, plans, _, seed = parse_request(body)
    assert plans is not None and [p.name for p in plans] == ["a", "b"]
    result = simulate(state, plans, 1000, seed)
    assert {s.name for s in result.strategies} == {"a", "b"}


def test_parse_request_places_the_car_behind_the_cars_listed_ahead() -> None:
    body = {
        "lap": 10,
        "race_laps": 30,
        "wear_pct": 35,
        "wear_rate_pct_per_lap": 2.1,
        "base_lap_s": 100.5,
        "gaps_ahead_s": [2.5, 4.0],
        "gaps_behind_s": [1.2],
    }
    state, _strategies, _iterations, _seed = parse_request(body)
    assert state.position == 3
    with pytest.raises(ValueError, match="no room"):
        parse_request({**body, "position": 2})
