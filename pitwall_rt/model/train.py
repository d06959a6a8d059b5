"""Train the tire-wear model on simulated stints; write the ONNX file and its model card.

    python -m pitwall_rt.model.train [--small] [--seed N] --out DIR

Data: stints from :mod:`pitwall_rt.vehicle_model` on every track of the track
file, all three driving styles, random track temperature (10-50 C), driver
skill, start lap and sample rate (10 or 20 Hz). Each stint's telemetry goes
through the server's own path (``compute_batch`` with feature windows), so the
model trains on exactly the vectors it will see live.

Label ("wear %" = percentage points of usable tread, per tire): defined here,
from the simulator's noise-free channels sampled at 50 Hz, not from the
features. The friction (Archard) picture: wear is proportional to the energy
the tire dissipates sliding. A tire carrying ``n_i`` times its static load
while the car pulls ``g`` G at ``v`` m/s transmits ``n_i * g`` and slides at a
speed that grows with how close the tire is to its limit, ``u = g / g_avail``
(``g_avail`` = the worn, temperature-adjusted grip of that lap)::

    P_i   = n_i * g * v * (0.25 u + 0.75 u^3)                 [G*m/s]
    c     = K * (1 + 0.012 (T - 30 C)) * s_style * b * (1 + e_lap)
    dW_i  = c * P_i * (1 + 0.5 W_i / 100) dt                    [% tread]

``K`` = 8.5e-4 %/(G*m); ``s_style`` abrasion per unit energy (smooth 0.95,
conservative 0.90, aggressive 1.12: harsher slip-angle spikes); ``b`` a tire
batch factor per stint (lognormal, sd 4 %); ``e_lap`` lap-to-lap noise (sd
3 %); the last factor makes a thinner, hotter tread wear faster. Hotter
tracks also cost grip (-0.25 %/C above 30 C) and speed up the simulator's grip
fade. Track temperature is NOT a model input (telemetry does not carry it):
it is the main source of unexplained error, and the card says so.

Targets are the wear accrued in each window (lap or sector); held-out
metrics are measured with the exported ONNX model on whole stints never
seen in training.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .. import vehicle_model as vm
from ..compute.batch import compute_batch
from ..compute.physics import CORNERS, normalised_loads
from ..demo_gen import DEFAULT_TRACKS_PATH
from ..schema import empty_rows
from ..tracks import Track, load_tracks
from . import MODEL_NAME
from .features import FEATURE_DOC, FEATURES, Window, WindowCarry

WEAR_K = 8.5e-4
AGE_GAIN = 0.5
TEMP_REF_C = 30.0
TEMP_WEAR_PER_C = 0.012
TEMP_GRIP_PER_C = 0.0025
STYLE_ABRASION = {"smooth": 0.95, "conservative": 0.90, "aggressive": 1.12}
BATCH_SD, LAP_SD = 0.04, 0.03
TRUTH_HZ = 50.0
EPOCH_S = 1.7e9
TREES = {True: (60, 3), False: (300, 5)}  # (trees, depth) per tire: --small, full


@dataclass(frozen=True)
class StintSpec:
    """One simulated stint; enough to regenerate it bit for bit."""

    track: str
    style: str
    temp_c: float
    skill: float
    laps: int
    rate_hz: float
    lap_offset: int
    seed: int


@dataclass(frozen=True)
class Dataset:
    """Windows as rows: features ``x`` (n, F) float32, wear labels ``y`` (n, 4) in %."""

    x: np.ndarray
    y: np.ndarray
    stint: np.ndarray
    is_lap: np.ndarray
    is_full: np.ndarray  # complete and timed (a stint's first lap is partial)
    end_wear: np.ndarray  # (n_stints, 4) true wear at each stint's end, %


def stint_specs(small: bool, seed: int, tracks: list[str]) -> list[StintSpec]:
    """The training grid: every track x style, random conditions per replica."""
    rng = np.random.default_rng(seed)
    replicas, lap_range = (2, (5, 7)) if small else (5, (14, 22))
    use_tracks = tracks[:2] if small else tracks
    specs = []
    for track in use_tracks:
        for style in sorted(vm.STYLES):
            for _ in range(replicas):
                specs.append(
                    StintSpec(
                        track=track,
                        style=style,
                        temp_c=round(float(rng.uniform(10.0, 50.0)), 1),
                        skill=round(float(rng.uniform(0.95, 1.0)), 3),
                        laps=int(rng.integers(lap_range[0], lap_range[1] + 1)),
                        rate_hz=float(rng.choice([10.0, 20.0])),
                        lap_offset=int(rng.integers(0, 13)),
                        seed=int(rng.integers(2**31)),
                    )
                )
    return specs


def simulate(spec: StintSpec, track: Track) -> tuple[vm.Stint, np.ndarray]:
    """Drive the stint; return it and the tire grip factor of each lap of its grid."""
    temp_d = spec.temp_c - TEMP_REF_C
    base = vm.STYLES[spec.style]
    style = replace(base, tire_wear_pct_per_lap=base.tire_wear_pct_per_lap * _temp_wear(spec))
    rng = np.random.default_rng(spec.seed)
    grip_rng = copy.deepcopy(rng)  # simulate_stint draws its grip factors first
    factors = vm.lap_grip_factors(style, spec.laps + 2, grip_rng)
    per_lap = np.concatenate([factors[:1], factors]) * (1.0 - TEMP_GRIP_PER_C * temp_d)
    step_m = float(track.curvature_s_m[1] - track.curvature_s_m[0])
    offset_m = float(np.random.default_rng(spec.seed + 1).uniform(0.0, track.length_m))
    skill = spec.skill * (1.0 - TEMP_GRIP_PER_C * temp_d)
    stint = vm.simulate_stint(
        track.curvature_kappa_per_m, step_m, vm.CarParams(), style, spec.laps, offset_m, rng, skill
    )
    return stint, per_lap


def _temp_wear(spec: StintSpec) -> float:
    return 1.0 + TEMP_WEAR_PER_C * (spec.temp_c - TEMP_REF_C)


def wear_curve(
    spec: StintSpec, stint: vm.Stint, per_lap_grip: np.ndarray
) -> tuple[np.ndarray, ...]:
    """True cumulative wear per tire (%) at ``TRUTH_HZ``: returns ``(t_s, wear (n, 4))``.

    Closed form of ``dW = c P (1 + a W/100) dt`` from W = 0:
    ``W = 100/a * (exp(a/100 * integral(c P dt)) - 1)``.
    """
    car = vm.CarParams()
    ch = vm.sample_stint(stint, car, TRUTH_HZ, float(stint.t_s[-1]))
    t = ch["t_s"]
    dist = np.interp(t, stint.t_s, stint.dist_m)
    n_grid = round(stint.lap_length_m / stint.step_m)
    j = n_grid + round(stint.start_offset_m / stint.step_m) + np.rint(dist / stint.step_m)
    g_avail = car.lat_grip_g * per_lap_grip[(j // n_grid).astype(int)]
    g = np.hypot(ch["accx_can"], ch["accy_can"])
    u = np.minimum(g / g_avail, 1.5)
    v = ch["speed_kmh"] / 3.6
    power = (
        normalised_loads(ch["accx_can"], ch["accy_can"])
        * (g * v * (0.25 * u + 0.75 * u**3))[:, None]
    )
    rng = np.random.default_rng([spec.seed, 99])
    batch = math.exp(BATCH_SD * rng.standard_normal() - BATCH_SD**2 / 2)
    lap_idx = ch["lap"] - ch["lap"][0]
    c_lap = WEAR_K * _temp_wear(spec) * STYLE_ABRASION[spec.style] * batch
    c = c_lap * (1.0 + LAP_SD * rng.standard_normal(int(lap_idx[-1]) + 1))[lap_idx]
    energy = np.cumsum(c[:, None] * power / TRUTH_HZ, axis=0)
    return t, 100.0 / AGE_GAIN * np.expm1(AGE_GAIN / 100.0 * energy)


def telemetry_rows(spec: StintSpec, stint: vm.Stint) -> np.ndarray:
    """The stint as the server stores it (``POINT_DTYPE``), at ``spec.rate_hz``."""
    ch = vm.sample_stint(stint, vm.CarParams(), spec.rate_hz, float(stint.t_s[-1]))
    rows = empty_rows(len(ch["t_s"]))
    rows["t"] = EPOCH_S + ch["t_s"]
    rows["chassis"], rows["track"] = 1, 1
    for name in ch:
        if name != "t_s":
            rows[name] = ch[name]
    rows["lap"] += spec.lap_offset
    return rows


def stint_windows(rows: np.ndarray, track: Track) -> list[Window]:
    """Feature windows of one car's rows, through the server's ``compute_batch``."""
    table = {1: (track.length_m, np.asarray(track.sector_starts_m))}
    result = compute_batch(rows, table, {}, {1: WindowCarry()})
    return result.chassis[1].windows


def stint_data(spec: StintSpec, tracks_path: str) -> tuple[np.ndarray, ...]:
    """One stint's usable windows: ``(x, y, is_lap, is_full, end_wear)``."""
    track = load_tracks(tracks_path)[spec.track]
    stint, grip = simulate(spec, track)
    t_truth, wear = wear_curve(spec, stint, grip)
    windows = [w for w in stint_windows(telemetry_rows(spec, stint), track) if w.usable]
    x = np.array([w.x for w in windows], dtype=np.float32)
    start = np.array([w.start_t for w in windows]) - EPOCH_S
    end = np.array([w.end_t for w in windows]) - EPOCH_S
    y = np.column_stack(
        [
            np.interp(end, t_truth, wear[:, k]) - np.interp(start, t_truth, wear[:, k])
            for k in range(4)
        ]
    )
    is_lap = np.array([w.kind == "lap" for w in windows])
    return x, y, is_lap, np.array([w.full for w in windows]), wear[-1]


def build_dataset(specs: list[StintSpec], tracks_path: str, workers: int) -> Dataset:
    """Simulate every stint (in ``workers`` processes) and stack their windows."""
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(stint_data, specs, [tracks_path] * len(specs)))
    else:
        parts = [stint_data(s, tracks_path) for s in specs]
    return Dataset(
        x=np.concatenate([p[0] for p in parts]),
        y=np.concatenate([p[1] for p in parts]),
        stint=np.concatenate([np.full(len(p[0]), i) for i, p in enumerate(parts)]),
        is_lap=np.concatenate([p[2] for p in parts]),
        is_full=np.concatenate([p[3] for p in parts]),
        end_wear=np.array([p[4] for p in parts]),
    )


def fit(data: Dataset, small: bool, seed: int) -> Any:
    """One gradient-boosted regressor per tire (scikit-learn, squared error)."""
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.multioutput import MultiOutputRegressor

    trees, depth = TREES[small]
    base = GradientBoostingRegressor(
        n_estimators=trees, max_depth=depth, learning_rate=0.05, subsample=0.8, random_state=seed
    )
    return MultiOutputRegressor(base).fit(data.x.astype(np.float64), data.y)


def export_onnx(model: Any, metadata: dict[str, str]) -> bytes:
    """Convert with skl2onnx: input ``features`` (N, F) float32, output ``wear_pct`` (N, 4)."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    onx = to_onnx(
        model,
        initial_types=[("features", FloatTensorType([None, len(FEATURES)]))],
        final_types=[("wear_pct", FloatTensorType([None, 4]))],
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    onx.doc_string = f"{MODEL_NAME}: wear % per tire (fl, fr, rl, rr) accrued in a lap/sector"
    for key, value in metadata.items():
        entry = onx.metadata_props.add()
        entry.key, entry.value = key, value
    return bytes(onx.SerializeToString())


def metrics(pred: np.ndarray, y: np.ndarray) -> dict[str, dict[str, float]]:
    """R2 and MAE (% tread) per tire, computed here so the test re-measures the same way."""
    out = {}
    for k, corner in enumerate(CORNERS):
        err = pred[:, k] - y[:, k]
        ss_tot = float(np.sum((y[:, k] - y[:, k].mean()) ** 2))
        out[corner] = {
            "r2": round(1.0 - float(np.sum(err**2)) / ss_tot, 4),
            "mae_pct": round(float(np.mean(np.abs(err))), 4),
        }
    return out


def evaluate(predict: Any, data: Dataset) -> dict[str, Any]:
    """Held-out metrics: whole laps, sectors (both complete), and wear at each stint's end.

    The stint total sums every lap window, the partial first lap included.
    """
    pred = predict(data.x)
    lap, sec = data.is_lap & data.is_full, ~data.is_lap & data.is_full
    end_pred = np.array(
        [pred[(data.stint == i) & data.is_lap].sum(axis=0) for i in range(len(data.end_wear))]
    )
    return {
        "lap": metrics(pred[lap], data.y[lap]),
        "sector": metrics(pred[sec], data.y[sec]),
        "lap_mean_wear_pct": round(float(data.y[lap].mean()), 4),
        "stint_end_wear_mae_pct": round(float(np.mean(np.abs(end_pred - data.end_wear))), 3),
        "stint_end_wear_mean_pct": round(float(data.end_wear.mean()), 3),
        "windows": {"lap": int(lap.sum()), "sector": int(sec.sum())},
    }


def stress_baseline(train: Dataset, test: Dataset) -> dict[str, dict[str, float]]:
    """Reference: wear = a * window stress of that tire, fitted on train, lap windows."""
    fit_on, test_on = train.is_lap & train.is_full, test.is_lap & test.is_full
    pred = np.zeros((int(test_on.sum()), 4))
    for k, corner in enumerate(CORNERS):
        col = FEATURES.index(f"stress_{corner}_g_m")
        xs, ys = train.x[fit_on, col].astype(np.float64), train.y[fit_on, k]
        pred[:, k] = float(xs @ ys / (xs @ xs)) * test.x[test_on, col]
    return metrics(pred, test.y[test_on])


def split(specs: list[StintSpec], seed: int) -> tuple[list[StintSpec], list[StintSpec]]:
    """Hold out 20 % of the stints (whole stints, so no lap of them is seen in training)."""
    order = np.random.default_rng([seed, 1]).permutation(len(specs))
    n_test = max(2, round(0.2 * len(specs)))
    return [specs[i] for i in sorted(order[n_test:])], [specs[i] for i in sorted(order[:n_test])]


def onnx_predictor(model_bytes: bytes) -> Any:
    import onnxruntime as ort

    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"features": np.asarray(x, dtype=np.float32)})[0]


def heldout_dataset(card: dict[str, Any], workers: int = 1) -> Dataset:
    """Regenerate a card's held-out stints (used by the tests to re-measure)."""
    specs = [StintSpec(**s) for s in card["data"]["heldout_stints"]]
    return build_dataset(specs, str(DEFAULT_TRACKS_PATH), workers)


def train(out: Path, small: bool, seed: int, workers: int, tracks_path: str) -> dict[str, Any]:
    """Generate, fit, export, measure; write ``tire_wear.onnx`` and the card to ``out``."""
    started = time.perf_counter()
    specs = stint_specs(small, seed, sorted(load_tracks(tracks_path)))
    train_specs, test_specs = split(specs, seed)
    train_set = build_dataset(train_specs, tracks_path, workers)
    test_set = build_dataset(test_specs, tracks_path, workers)
    model = fit(train_set, small, seed)
    full_laps = train_set.x[train_set.is_lap & train_set.is_full]
    trained = {
        "features": json.dumps(list(FEATURES)),
        "targets": json.dumps([f"wear_{c}_pct" for c in CORNERS]),
        "model": MODEL_NAME,
        "baseline_lap": json.dumps([round(float(v), 4) for v in full_laps.mean(axis=0)]),
    }
    provisional = export_onnx(model, trained)
    measured = evaluate(onnx_predictor(provisional), test_set)
    trained["lap_mae_rel"] = json.dumps(_lap_mae_rel(measured))
    model_bytes = export_onnx(model, trained)
    card = _card(specs, test_specs, train_set, measured, small, seed)
    card["lap_mae_rel"] = json.loads(trained["lap_mae_rel"])
    card["reference_stress_linear"] = stress_baseline(train_set, test_set)
    card["seconds_to_train"] = round(time.perf_counter() - started, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tire_wear.onnx").write_bytes(model_bytes)
    (out / "model_card.json").write_text(json.dumps(card, indent=2) + "\n")
    (out / "MODEL_CARD.md").write_text(card_markdown(card))
    return card


def _lap_mae_rel(measured: dict[str, Any]) -> float:
    """Mean lap-window MAE over tires relative to the mean lap wear: the interval's model term."""
    mae = np.mean([m["mae_pct"] for m in measured["lap"].values()])
    return round(float(mae / max(measured["lap_mean_wear_pct"], 1e-6)), 4)


def _card(
    specs: list[StintSpec],
    test_specs: list[StintSpec],
    train_set: Dataset,
    measured: dict[str, Any],
    small: bool,
    seed: int,
) -> dict[str, Any]:
    import onnxruntime
    import skl2onnx
    import sklearn

    trees, depth = TREES[small]
    return {
        "model": MODEL_NAME,
        "file": "tire_wear.onnx",
        "small": small,
        "command": f"python -m pitwall_rt.model.train{' --small' if small else ''} --seed {seed}",
        "estimator": f"MultiOutputRegressor(GradientBoostingRegressor(n_estimators={trees}, "
        f"max_depth={depth}, learning_rate=0.05, subsample=0.8)), one per tire",
        "versions": {
            "scikit-learn": sklearn.__version__,
            "skl2onnx": skl2onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
            "numpy": np.__version__,
        },
        "features": list(FEATURES),
        "targets": [f"wear_{c}_pct" for c in CORNERS],
        "data": {
            "stints": len(specs),
            "train_stints": len(specs) - len(test_specs),
            "train_windows": {
                "lap": int(train_set.is_lap.sum()),
                "sector": int((~train_set.is_lap).sum()),
            },
            "tracks": sorted({s.track for s in specs}),
            "styles": sorted({s.style for s in specs}),
            "temp_c_range": [min(s.temp_c for s in specs), max(s.temp_c for s in specs)],
            "laps_per_stint": [min(s.laps for s in specs), max(s.laps for s in specs)],
            "skill_range": [min(s.skill for s in specs), max(s.skill for s in specs)],
            "rates_hz": sorted({s.rate_hz for s in specs}),
            "heldout_stints": [asdict(s) for s in test_specs],
        },
        "heldout": measured,
    }


def card_markdown(card: dict[str, Any]) -> str:
    """The human model card; every number comes from ``card`` (measured above)."""
    h, data = card["heldout"], card["data"]
    lines = [
        f"# Model card: {card['model']}",
        "",
        "Predicts the tread wear (percentage points, per tire FL/FR/RL/RR) a car accrues in",
        "one completed lap or sector, from the compute stage's feature window.",
        f"Estimator: {card['estimator']}; exported to ONNX (`{card['file']}`).",
        f"Reproduce: `{card['command']} --out DIR`. Versions: "
        + ", ".join(f"{k} {v}" for k, v in card["versions"].items())
        + ".",
        "",
        "## Data",
        "",
        f"{data['stints']} simulated stints ({data['train_stints']} for training, "
        f"{len(data['heldout_stints'])} held out whole), tracks: {', '.join(data['tracks'])}; "
        f"styles: {', '.join(data['styles'])}; track temperature "
        f"{data['temp_c_range'][0]}-{data['temp_c_range'][1]} C; skill "
        f"{data['skill_range'][0]}-{data['skill_range'][1]}; {data['laps_per_stint'][0]}-"
        f"{data['laps_per_stint'][1]} laps per stint at "
        f"{' or '.join(f'{r:g}' for r in data['rates_hz'])} Hz, through the server's own "
        f"feature code. Training windows: {data['train_windows']['lap']} laps, "
        f"{data['train_windows']['sector']} sectors.",
        "**All data is simulated** (pitwall_rt.vehicle_model); the label is defined below, not",
        "measured on a real tire. The numbers say how well the model learns that definition.",
        "",
        "## Label",
        "",
        *(f"    {line}" if line.strip() else "" for line in _label_doc().splitlines()),
        "",
        "## Features (input order)",
        "",
        "| # | feature | meaning |",
        "|---|---|---|",
        *(f"| {i} | `{f}` | {FEATURE_DOC[f]} |" for i, f in enumerate(card["features"])),
        "",
        "## Held-out metrics (measured with the ONNX model)",
        "",
        f"Complete windows: {h['windows']['lap']} laps, {h['windows']['sector']} sectors; mean "
        f"lap wear {h['lap_mean_wear_pct']} %. Targets are the wear accrued in the window.",
        "",
        "| tire | lap R2 | lap MAE % | sector R2 | sector MAE % | stress-linear lap R2 |",
        "|---|---|---|---|---|---|",
        *(
            f"| {c} | {h['lap'][c]['r2']} | {h['lap'][c]['mae_pct']} | {h['sector'][c]['r2']} | "
            f"{h['sector'][c]['mae_pct']} | {card['reference_stress_linear'][c]['r2']} |"
            for c in CORNERS
        ),
        "",
        f"Whole stint (sum of lap predictions vs true wear at the stint end): MAE "
        f"{h['stint_end_wear_mae_pct']} % on a mean of {h['stint_end_wear_mean_pct']} %.",
        "The stress-linear column is a reference model (wear = a * that tire's window stress).",
        f"Laps-to-cliff intervals widen the projected wear rate by the lap MAE relative to the "
        f"mean lap wear ({card['lap_mae_rel']}) plus the recent laps' scatter.",
        "",
        "## Limits",
        "",
        "- Simulated data only; not validated against measured tread depth.",
        "- Track temperature and tire compound are not inputs (telemetry lacks them): their",
        "  effect is the largest part of the error above.",
        "- Laps with data gaps are not predicted; a lap-number reset starts a new stint, a pit",
        "  stop without one is not detected.",
        "",
    ]
    return "\n".join(lines)


def _label_doc() -> str:
    doc = __doc__ or ""
    return doc[doc.index("Label") : doc.index("Targets are")].strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pitwall_rt.model.train", description=__doc__)
    parser.add_argument("--out", required=True, help="directory for tire_wear.onnx and the card")
    parser.add_argument("--small", action="store_true", help="a few short stints, small trees")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--tracks", default=str(DEFAULT_TRACKS_PATH))
    args = parser.parse_args(argv)
    card = train(Path(args.out), args.small, args.seed, args.workers, args.tracks)
    lap = card["heldout"]["lap"]
    summary = ", ".join(f"{c} R2 {m['r2']:.3f} MAE {m['mae_pct']:.3f}%" for c, m in lap.items())
    print(
        f"wrote {args.out}/tire_wear.onnx in {card['seconds_to_train']} s; held-out laps: {summary}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
