"""model.explain: occlusion attributions name the feature that changed, in one model call."""

from __future__ import annotations

import numpy as np
import pytest

from pitwall_rt.model import explain
from pitwall_rt.model.features import FEATURES, INDEX, N_FEATURES
from pitwall_rt.model.infer import WearModel

RNG = np.random.default_rng(0)
WEIGHTS = RNG.uniform(0.01, 0.05, (N_FEATURES, 4)).astype(np.float32)


class Linear:
    """A stand-in model, wear = x @ W, that counts how often it is called."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        return np.asarray(x, dtype=np.float32) @ WEIGHTS


def baseline() -> np.ndarray:
    return RNG.uniform(1.0, 10.0, N_FEATURES).astype(np.float32)


def test_explain_occlusion_rows_swap_one_feature_each() -> None:
    x, b = np.zeros((2, N_FEATURES), np.float32), np.ones((2, N_FEATURES), np.float32)
    rows = explain.occlusion_rows(x, b)
    assert rows.shape == (2 * N_FEATURES, N_FEATURES)
    np.testing.assert_array_equal(rows[:N_FEATURES], np.eye(N_FEATURES))


def test_explain_names_the_feature_changed_in_a_crafted_lap_with_one_model_call() -> None:
    model, b = Linear(), baseline()
    x = b.copy()
    x[INDEX["hard_braking"]] = b[INDEX["hard_braking"]] + 10.0
    pred, attr = explain.explain(model, x[None], b[None])
    assert model.calls == 1
    reasons = explain.top_reasons(attr[0], x, b)
    assert [r.feature for r in reasons] == ["hard_braking"]
    j, k = INDEX["hard_braking"], int(np.argmax(WEIGHTS[INDEX["hard_braking"]]))
    assert reasons[0].tire == ("fl", "fr", "rl", "rr")[k]
    assert reasons[0].delta_pct == pytest.approx(10.0 * WEIGHTS[j, k], rel=1e-4)
    np.testing.assert_allclose(pred[0], x @ WEIGHTS, rtol=1e-5)


def test_explain_ranks_three_reasons_by_size() -> None:
    model, b = Linear(), baseline()
    x = b.copy()
    for name, bump in (("lat_g_s", 1.0), ("brake_energy_bar_s", 30.0), ("peak_lat_g", 5.0)):
        x[INDEX[name]] += bump
    _, attr = explain.explain(model, x[None], b[None])
    names = [r.feature for r in explain.top_reasons(attr[0], x, b)]
    assert names[0] == "brake_energy_bar_s" and set(names) == {
        "lat_g_s",
        "brake_energy_bar_s",
        "peak_lat_g",
    }


def test_explain_a_tire_stress_speaks_only_for_its_own_tire() -> None:
    model, b = Linear(), baseline()
    x = b.copy()
    x[INDEX["stress_rl_g_m"]] += 20.0
    _, attr = explain.explain(model, x[None], b[None])
    (reason,) = explain.top_reasons(attr[0], x, b)
    assert reason.feature == "stress_rl_g_m" and reason.tire == "rl"


def test_explain_sentence_is_radio_ready_with_numbers() -> None:
    reason = explain.Reason("hard_braking", "fl", 0.8, 15.0, 11.0)
    assert explain.sentence(reason) == (
        "Front-left: 15 heavy stops this lap (avg 11), +0.8% wear vs your average"
    )
    small = explain.Reason("peak_lat_g", "rr", -0.04, 1.21, 1.25)
    assert explain.sentence(small, "a typical lap") == (
        "Rear-right: peak lateral 1.21 G (avg 1.25), -0.04% wear vs a typical lap"
    )
    assert explain.sentences([]) == ["Wear in line with your average"]
    assert set(FEATURES) == set(explain._PHRASES)


def test_explain_shipped_model_blames_the_front_left_stress_raised_in_a_crafted_lap() -> None:
    model = WearModel()
    b = model.baseline_lap
    x = b.copy()
    x[INDEX["stress_fl_g_m"]] *= 1.4
    pred, attr = explain.explain(model.predict, x[None], b[None])
    (reason,) = explain.top_reasons(attr[0], x, b)
    assert (reason.feature, reason.tire) == ("stress_fl_g_m", "fl") and reason.delta_pct > 0.1
    assert pred[0, 0] > model.predict(b[None])[0, 0]
    assert explain.sentence(reason).startswith("Front-left: FL tyre stress")
