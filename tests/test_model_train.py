"""model.train and model.infer: the training script, the shipped model and its card.

The training script runs (``--small``) and its model loads the way the
server's workers load theirs; onnxruntime agrees with scikit-learn; and the
shipped model's card is re-measured on its held-out stints, regenerated here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pitwall_rt.compute import track_table
from pitwall_rt.demo_gen import DEFAULT_TRACKS_PATH
from pitwall_rt.model import CARD_JSON_PATH, CARD_MD_PATH, MODEL_PATH, infer, train
from pitwall_rt.model.features import FEATURES
from pitwall_rt.tracks import load_tracks

CORNERS = ("fl", "fr", "rl", "rr")


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model")
    assert train.main(["--small", "--out", str(out), "--workers", "1"]) == 0
    return out


@pytest.fixture
def worker_state(monkeypatch: pytest.MonkeyPatch) -> dict:
    """The worker's model slot, restored after the test."""
    state = {"model": None, "tried": False}
    monkeypatch.setattr(infer, "_worker", state)
    return state


def test_model_train_small_run_writes_a_model_the_server_loads(
    small_model: Path, worker_state: dict
) -> None:
    infer.init_worker(str(small_model / "tire_wear.onnx"))  # the pool's initializer
    model = infer.worker_model()
    assert model is not None and model.name == "tire_wear v1"
    spec = train.StintSpec("barber", "smooth", 25.0, 0.98, 3, 20.0, 4, 3)
    stint, _ = train.simulate(spec, load_tracks(DEFAULT_TRACKS_PATH)["barber"])
    rows = train.telemetry_rows(spec, stint)
    table = track_table({1: load_tracks(DEFAULT_TRACKS_PATH)["barber"]})
    tick = infer.run_tick(rows, table, {}, {}, infer.IntelOptions(iterations=500))
    piece = tick.pieces[1]
    assert set(piece["prediction"]["wear_pct"]) == set(CORNERS)
    assert piece["prediction"]["laps_to_cliff"] is not None
    assert len(piece["explanations"]) == 3 and all(
        isinstance(s, str) for s in piece["explanations"]
    )
    assert piece["pit_window"]["strategies"][0]["name"] == "no_stop"


def test_model_train_small_run_writes_a_card_with_measured_metrics(small_model: Path) -> None:
    card = json.loads((small_model / "model_card.json").read_text())
    assert card["features"] == list(FEATURES) and card["small"] is True
    for kind in ("lap", "sector"):
        for corner in CORNERS:
            metrics = card["heldout"][kind][corner]
            assert metrics["r2"] <= 1.0 and metrics["mae_pct"] > 0.0
    text = (small_model / "MODEL_CARD.md").read_text()
    assert all(f"`{f}`" in text for f in FEATURES)
    assert str(card["heldout"]["lap"]["fl"]["r2"]) in text


def test_model_train_onnx_predictions_match_scikit_learn() -> None:
    specs = [
        train.StintSpec("sonoma", "aggressive", 35.0, 0.97, 4, 20.0, 0, 1),
        train.StintSpec("vir", "smooth", 15.0, 0.99, 4, 10.0, 2, 2),
    ]
    data = train.build_dataset(specs, str(DEFAULT_TRACKS_PATH), workers=1)
    model = train.fit(data, small=True, seed=1)
    onnx_predict = train.onnx_predictor(train.export_onnx(model, {"features": "[]"}))
    x = data.x.astype(np.float32)
    np.testing.assert_allclose(onnx_predict(x), model.predict(x.astype(np.float64)), atol=1e-4)


def test_model_train_shipped_card_metrics_reproduce_on_regenerated_heldout_set() -> None:
    card = json.loads(CARD_JSON_PATH.read_text())
    assert card["small"] is False, "the shipped model must come from a full training run"
    heldout = train.heldout_dataset(card, workers=2)
    measured = train.evaluate(infer.WearModel(MODEL_PATH).predict, heldout)
    assert measured["windows"] == card["heldout"]["windows"]
    for kind in ("lap", "sector"):
        for corner in CORNERS:
            got, claimed = measured[kind][corner], card["heldout"][kind][corner]
            assert got["r2"] == pytest.approx(claimed["r2"], abs=0.01), (kind, corner)
            assert got["mae_pct"] == pytest.approx(claimed["mae_pct"], rel=0.03, abs=1e-3)
    assert measured["stint_end_wear_mae_pct"] == pytest.approx(
        card["heldout"]["stint_end_wear_mae_pct"], rel=0.03
    )
    assert str(card["heldout"]["lap"]["fr"]["mae_pct"]) in CARD_MD_PATH.read_text()


def test_model_infer_refuses_a_model_with_another_feature_list(tmp_path: Path) -> None:
    import onnx

    proto = onnx.load(str(MODEL_PATH))
    for prop in proto.metadata_props:
        if prop.key == "features":
            prop.value = json.dumps(list(reversed(FEATURES)))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(proto.SerializeToString())
    with pytest.raises(infer.ModelError, match="other features"):
        infer.WearModel(bad)


def test_model_infer_laps_to_cliff_from_steady_wear() -> None:
    steady = np.full((5, 4), 2.0)
    est = infer.laps_to_cliff(np.array([10.0, 20.0, 10.0, 10.0]), steady, 60.0, 0.1)
    assert est is not None
    # FR at 20 % wearing 2 %/lap: 22, 24, ..., 58 are under 60 -> 19 more laps.
    assert est["limiting_tire"] == "fr" and est["laps_to_cliff"] == 19
    lo, hi = est["laps_to_cliff_interval"]
    assert lo < 19 < hi
    assert infer.laps_to_cliff(np.zeros(4), np.zeros((0, 4)), 60.0, 0.1) is None


def test_model_infer_tick_without_a_model_still_times_laps(worker_state: dict) -> None:
    worker_state.update(model=None, tried=True)
    spec = train.StintSpec("barber", "smooth", 25.0, 0.98, 2, 20.0, 0, 3)
    stint, _ = train.simulate(spec, load_tracks(DEFAULT_TRACKS_PATH)["barber"])
    table = track_table({1: load_tracks(DEFAULT_TRACKS_PATH)["barber"]})
    tick = infer.run_tick(train.telemetry_rows(spec, stint), table, {}, {})
    assert tick.batch.chassis[1].laps and tick.pieces == {}
