"""Tire-wear inference in the compute pool: one ONNX session per worker, one batch per tick.

:func:`init_worker` is the pool's initializer: each worker process loads
``tire_wear.onnx`` once at start-up (onnxruntime, one thread: the pool has a
process per core already) and checks that the file's feature list is
:data:`features.FEATURES`, in order. :func:`run_tick` is the job the runner
submits each tick instead of bare ``compute_batch``: timing and aggregates,
then, for every car that completed a lap or sector in the tick, wear
prediction, explanations, the driver fingerprint, laps to the wear cliff and
the race state a pit window is planned from. All windows of all cars, and the
occlusion rows that explain the laps, go through the model in one
``session.run``. The pit-window Monte Carlo itself costs more than the rest
of a tick together, so the server defers it (``IntelOptions.defer_pit_window``)
to a pool job of its own (:func:`pitwall_rt.strategy.live_pit_windows`) that
never holds up the tick's insights; called directly, :func:`run_tick` runs it
inline.

If the model cannot be loaded (onnxruntime missing, file damaged or of
another feature list) the worker logs it once and the tick carries on
without predictions: telemetry and timing never depend on the model.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .. import fingerprint
from ..compute.batch import BatchResult, TrackTable, compute_batch
from ..compute.laps import ChassisState
from ..compute.physics import CORNERS
from ..shallow import shallow_copy
from ..small_arrays import SmallArrays
from ..strategy import RaceState, pit_race_state, pit_window
from . import MODEL_NAME, MODEL_PATH, explain
from .features import FEATURES, N_FEATURES, Window, WindowCarry

log = logging.getLogger(__name__)

TREND_LAPS = 8
"""Completed laps whose wear feeds the trend for laps-to-cliff."""
HORIZON_LAPS = 200
"""Furthest laps-to-cliff projected."""


class ModelError(RuntimeError):
    """The model file is missing, unreadable, or built for another feature list."""


class WearModel:
    """``tire_wear.onnx`` in an onnxruntime session, with the metadata training wrote."""

    def __init__(self, path: str | Path = MODEL_PATH) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own, untyped errors
            raise ModelError(f"cannot load {path}: {exc}") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        try:
            listed = tuple(json.loads(meta.get("features", "[]")))
            self.baseline_lap = np.asarray(json.loads(meta["baseline_lap"]), dtype=np.float32)
            self.lap_mae_rel = float(json.loads(meta.get("lap_mae_rel", "0.2")))
        except (KeyError, ValueError, TypeError) as exc:
            raise ModelError(f"{path}: metadata unreadable ({exc!r})") from exc
        if listed != FEATURES or self.baseline_lap.shape != (N_FEATURES,):
            raise ModelError(f"{path} was trained on other features: {list(listed)[:4]}...")
        self.name = meta.get("model", MODEL_NAME)
        self.input = self.session.get_inputs()[0].name

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Wear % per tire ``(n, 4)`` for feature rows ``(n, F)``, in one ``session.run``."""
        x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, N_FEATURES)
        if len(x) == 0:
            return np.zeros((0, 4), dtype=np.float32)
        return np.asarray(self.session.run(None, {self.input: x})[0], dtype=np.float32)


_worker: dict[str, Any] = {"model": None, "tried": False}


def init_worker(path: str | None = None) -> None:
    """Pool initializer: load the model once in this process (errors logged, not raised)."""
    _worker["tried"] = True
    try:
        _worker["model"] = WearModel(path or MODEL_PATH)
    except Exception as exc:  # never break the pool: timing must go on without the model
        _worker["model"] = None
        log.error("tire-wear model unavailable, predictions off: %s", exc)


def worker_model() -> WearModel | None:
    """This process's model, loading it on first use if the initializer did not."""
    if not _worker["tried"]:
        init_worker()
    model: WearModel | None = _worker["model"]
    return model


@dataclass
class WearState(SmallArrays):
    """A car's predicted wear in the current stint, % of tread per tire (``CORNERS`` order)."""

    _small_arrays: ClassVar[tuple[str, ...]] = (
        "lap_end_pct",
        "in_lap_pct",
        "increments",
        "lap_x_sum",
    )

    stint: int = 0
    lap_end_pct: np.ndarray = field(default_factory=lambda: np.zeros(4))
    in_lap_pct: np.ndarray = field(default_factory=lambda: np.zeros(4))
    increments: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    lap_x_sum: np.ndarray = field(default_factory=lambda: np.zeros(N_FEATURES))
    lap_x_n: int = 0

    def copy(self) -> WearState:
        return shallow_copy(
            self,
            lap_end_pct=self.lap_end_pct.copy(),
            in_lap_pct=self.in_lap_pct.copy(),
            lap_x_sum=self.lap_x_sum.copy(),
        )

    @property
    def wear_pct(self) -> np.ndarray:
        return self.lap_end_pct + self.in_lap_pct

    def apply(self, window: Window, pred_pct: np.ndarray) -> None:
        """Add a window's predicted wear; a new stint (fresh tires) starts from zero."""
        if window.stint != self.stint:
            fresh = WearState(stint=window.stint)
            self.__dict__.update(fresh.__dict__)
        pred = np.maximum(np.asarray(pred_pct, dtype=np.float64), 0.0)
        if window.kind == "sector":
            self.in_lap_pct = self.in_lap_pct + pred
            return
        self.lap_end_pct = self.lap_end_pct + pred
        self.in_lap_pct = np.zeros(4)
        if window.full:
            self.increments = np.vstack((self.increments, pred))[-TREND_LAPS:]
            self.lap_x_sum = self.lap_x_sum + window.x
            self.lap_x_n += 1

    def baseline(self, fallback: np.ndarray) -> tuple[np.ndarray, str]:
        """The driver's average full lap so far, or the training average before the first."""
        if self.lap_x_n:
            return (self.lap_x_sum / self.lap_x_n).astype(np.float32), "your average"
        return fallback, "a typical lap"


def laps_to_cliff(
    wear_pct: np.ndarray, increments: np.ndarray, cliff_pct: float, rel_err: float
) -> dict[str, Any] | None:
    """Laps until the first tire reaches ``cliff_pct``, with an interval; None without data.

    The next laps' wear per tire follows a straight-line fit of the recent lap
    increments (three or more laps; the mean before), never falling. The
    interval scales those rates by ``1 -/+ u``, ``u`` = the model's relative
    lap error plus the fit's relative residual, clipped to 5-80 %.
    """
    k = len(increments)
    if k == 0:
        return None
    ahead = np.arange(1, HORIZON_LAPS + 1)[:, None]
    if k >= 3:
        slope, icept = np.polyfit(np.arange(k), increments, 1)
        slope = np.maximum(slope, 0.0)
        resid = increments - (icept + slope * np.arange(k)[:, None])
        rel = np.sqrt((resid**2).mean(axis=0)) / np.maximum(increments.mean(axis=0), 1e-6)
        rates = icept + slope * (k - 1 + ahead)
    else:
        rel = np.zeros(4)
        rates = np.repeat(increments.mean(axis=0, keepdims=True), HORIZON_LAPS, axis=0)
    u = np.clip(rel_err + rel, 0.05, 0.8)
    scales = np.stack((np.ones(4), 1.0 + u, 1.0 - u))[:, None, :]  # central, fast, slow
    wear = wear_pct + np.cumsum(np.maximum(rates, 1e-6) * scales, axis=1)  # (3, H, 4)
    laps = (wear < cliff_pct - 1e-9).sum(axis=1)  # laps each tire completes under the cliff
    tire = int(np.argmin(laps[0]))
    return {
        "laps_to_cliff": int(laps[0, tire]),
        "laps_to_cliff_interval": [int(laps[1].min()), int(laps[2].min())],
        "limiting_tire": CORNERS[tire],
        "next_lap_rate_pct": float(rates[0, tire]),
    }


@dataclass(frozen=True)
class IntelOptions:
    """Knobs for the intelligence step (the runner passes them each tick)."""

    cliff_pct: float = 60.0
    race_laps: int | None = None
    horizon_laps: int = 20
    pit_loss_s: float = 30.0
    safety_car_prob: float = 0.03
    iterations: int = 2_000
    defer_pit_window: bool = False
    """Leave the Monte Carlo to the caller: :attr:`TickResult.pit_races` says what to plan."""


@dataclass
class CarIntel:
    """Everything the intelligence step remembers about one car between ticks."""

    windows: WindowCarry | None = None
    wear: WearState = field(default_factory=WearState)
    profile: fingerprint.DriverProfile = field(default_factory=fingerprint.DriverProfile)


@dataclass
class TickResult:
    """``compute_batch``'s result plus the intelligence per car."""

    batch: BatchResult
    intel: dict[int, CarIntel]
    pieces: dict[int, dict[str, Any]] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)
    pit_races: dict[int, RaceState] = field(default_factory=dict)
    """Cars whose pit window is due (a full lap ended), with the race state to
    plan it from; filled when ``IntelOptions.defer_pit_window`` is set."""


def run_tick(
    rows: np.ndarray,
    tracks: TrackTable,
    states: Mapping[int, ChassisState],
    intel: Mapping[int, CarIntel],
    options: IntelOptions = IntelOptions(),
) -> TickResult:
    """The pool's per-tick job. Pure like ``compute_batch``: inputs are not modified."""
    carries = {cid: ci.windows for cid, ci in intel.items() if ci.windows is not None}
    batch = compute_batch(rows, tracks, states, carries)
    cars: dict[int, CarIntel] = {}
    out = TickResult(batch=batch, intel=cars)
    for cid, res in batch.chassis.items():
        old = intel.get(cid) or CarIntel()
        cars[cid] = CarIntel(res.window_carry, old.wear.copy(), old.profile)
        for window in res.windows:
            cars[cid].profile, alerts = fingerprint.observe(cars[cid].profile, window)
            out.alerts.extend({"chassis_id": cid, **a} for a in alerts)
    model = worker_model()
    work = [(cid, w) for cid, res in batch.chassis.items() for w in res.windows if w.usable]
    if model is None or not work:
        return out
    started = time.perf_counter()
    preds, lap_explain = _infer(model, work, cars)
    out.stats["infer_ms"] = (time.perf_counter() - started) * 1000.0
    out.stats["windows"] = len(work)
    for (cid, window), pred in zip(work, preds, strict=True):
        car = cars[cid]
        piece = out.pieces.setdefault(cid, {})
        if window.kind == "lap":
            attr, base, versus = lap_explain.pop(0)
            if window.full:  # a partial lap has no fair comparison with a whole one
                reasons = explain.top_reasons(attr, window.x, base)
                piece["explanations"] = explain.sentences(reasons, versus)
        car.wear.apply(window, pred)
        piece["prediction"] = _prediction(model, car.wear, window, options)
    _plan_pits(out, tracks, options)
    return out


def _plan_pits(out: TickResult, tracks: TrackTable, options: IntelOptions) -> None:
    """Pit windows of the cars that just ended a full lap (that is when to re-plan):
    computed here, or only their race states when the caller defers them."""
    started = time.perf_counter()
    for cid, piece in out.pieces.items():
        if "explanations" not in piece:
            continue
        race = pit_race_state(cid, out.batch, tracks, piece["prediction"], options)
        if race is None:
            continue
        if options.defer_pit_window:
            out.pit_races[cid] = race
        else:
            piece["pit_window"] = pit_window(cid, race, options)
    out.stats["strategy_ms"] = (time.perf_counter() - started) * 1000.0


def _infer(
    model: WearModel, work: list[tuple[int, Window]], cars: dict[int, CarIntel]
) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray, str]]]:
    """Predictions for every window and attributions for every lap, in ONE model call.

    Returns the predictions ``(n, 4)`` and per lap window ``(attributions (F, 4),
    baseline, what the baseline is)``. Baselines are each car's average before
    this tick (a car rarely completes two laps in one tick; then both use it).
    """
    x = np.array([w.x for _, w in work], dtype=np.float32)
    laps = [i for i, (_, w) in enumerate(work) if w.kind == "lap"]
    bases = [cars[work[i][0]].wear.baseline(model.baseline_lap) for i in laps]
    base = np.array([b for b, _ in bases], dtype=np.float32).reshape(len(laps), N_FEATURES)
    out = model.predict(np.vstack((x, explain.occlusion_rows(x[laps], base))))
    preds = out[: len(x)]
    attr = explain.attributions(preds[laps], out[len(x) :])
    return preds, [(a, b, v) for a, (b, v) in zip(attr, bases, strict=True)]


def _prediction(
    model: WearModel, wear: WearState, window: Window, options: IntelOptions
) -> dict[str, Any]:
    """The insight's ``prediction`` object (wear %, laps to the cliff with its interval)."""
    now = wear.wear_pct
    cliff = laps_to_cliff(now, wear.increments, options.cliff_pct, model.lap_mae_rel)
    rates = wear.increments[-1] if len(wear.increments) else np.full(4, np.nan)
    return {
        "wear_pct": {c: round(float(v), 2) for c, v in zip(CORNERS, now, strict=True)},
        "last_lap_wear_pct": {
            c: round(float(v), 3) if np.isfinite(v) else None
            for c, v in zip(CORNERS, rates, strict=True)
        },
        "laps_to_cliff": cliff["laps_to_cliff"] if cliff else None,
        "laps_to_cliff_interval": cliff["laps_to_cliff_interval"] if cliff else None,
        "limiting_tire": cliff["limiting_tire"] if cliff else None,
        "wear_rate_pct_per_lap": round(cliff["next_lap_rate_pct"], 3) if cliff else None,
        "cliff_pct": options.cliff_pct,
        "lap": window.lap,
        "sector": window.sector if window.sector >= 0 else None,
        "model": model.name,
    }
