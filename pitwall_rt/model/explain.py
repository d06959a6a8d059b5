"""Why the model predicted this wear: occlusion attributions -> three radio-ready sentences.

Occlusion against a baseline: for each feature ``j`` of a window ``x``, put
the baseline's value ``b_j`` in its place and ask the model again. The
attribution of ``j`` to tire ``k`` is ``f(x)_k - f(x with x_j := b_j)_k``, in
% of tread: how much wear that feature, as driven this lap, added compared
with the baseline lap. The baseline is the driver's own average lap so far
(or, before the first full lap, the training set's average lap).

All windows' occluded rows go through the model in ONE batched call: for
``k`` windows and ``F`` features that is ``k * (F + 1)`` rows, built here by
:func:`occlusion_rows` and stacked by the caller with anything else it needs
to infer in the same tick. Pure numpy; the model is a callable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..compute.physics import CORNERS
from .features import FEATURES, N_FEATURES

TIRE_NAMES = {"fl": "Front-left", "fr": "Front-right", "rl": "Rear-left", "rr": "Rear-right"}

# Feature -> (phrase with {v} and {b}, value format). Units as a race engineer says them.
_PHRASES: dict[str, tuple[str, str]] = {
    "window_time_s": ("lap of {v} s (avg {b})", ".1f"),
    "lap": ("lap {v}", ".0f"),
    "stint_laps": ("tyres {v} laps old (avg {b})", ".0f"),
    "sector": ("sector {v}", ".0f"),
    "speed_mean_kmh": ("average speed {v} km/h (avg {b})", ".0f"),
    "speed_std_kmh": ("speed swing {v} km/h (avg {b})", ".0f"),
    "lat_g_s": ("cornering load {v} G*s (avg {b})", ".0f"),
    "lon_g_s": ("braking/traction load {v} G*s (avg {b})", ".0f"),
    "peak_lat_g": ("peak lateral {v} G (avg {b})", ".2f"),
    "peak_brake_g": ("peak braking {v} G (avg {b})", ".2f"),
    "peak_accel_g": ("peak traction {v} G (avg {b})", ".2f"),
    "peak_total_g": ("peak combined {v} G (avg {b})", ".2f"),
    "brake_energy_bar_s": ("brake energy {v} bar*s (avg {b})", ".0f"),
    "hard_braking": ("{v} heavy stops this lap (avg {b})", ".0f"),
    "hard_cornering": ("{v} hard corners this lap (avg {b})", ".0f"),
    "front_rear_load_ratio": ("front/rear load {v} (avg {b})", ".2f"),
    "left_right_load_ratio": ("left/right load {v} (avg {b})", ".2f"),
}
for _c in CORNERS:
    _PHRASES[f"stress_{_c}_g_m"] = (f"{_c.upper()} tyre stress {{v}} G*m (avg {{b}})", ".0f")
    _PHRASES[f"stint_stress_{_c}_g_m"] = (f"{_c.upper()} stint stress {{v}} G*m so far", ".0f")
assert set(_PHRASES) == set(FEATURES), "every feature needs a phrase"

SILENT = frozenset({"lap", "sector"})
"""Features never given as a reason: context, not something the driver did."""


def _allowed() -> np.ndarray:
    """(F, 4) which (feature, tire) pairs may be a reason: a tire's own stress speaks
    only for that tire (the model also uses it as a proxy for the others, but
    "FL wear from RL stress" is no call to make on the radio)."""
    mask = np.ones((N_FEATURES, 4), dtype=bool)
    for j, name in enumerate(FEATURES):
        if name in SILENT:
            mask[j] = False
        for k, corner in enumerate(CORNERS):
            if name.endswith(f"stress_{corner}_g_m"):
                mask[j] = np.arange(4) == k
    return mask


ALLOWED = _allowed()

Predict = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Reason:
    """One attribution: ``delta_pct`` of wear on ``tire`` from ``feature``'s value vs baseline."""

    feature: str
    tire: str
    delta_pct: float
    value: float
    baseline: float


def occlusion_rows(x: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """``(k * F, F)`` rows: row ``i * F + j`` is ``x[i]`` with feature ``j`` of ``baseline[i]``."""
    k = len(x)
    rows = np.repeat(x[:, None, :], N_FEATURES, axis=1)  # (k, F, F)
    diag = np.arange(N_FEATURES)
    rows[:, diag, diag] = baseline
    return rows.reshape(k * N_FEATURES, N_FEATURES)


def attributions(pred_x: np.ndarray, pred_occluded: np.ndarray) -> np.ndarray:
    """``(k, F, 4)`` wear % each feature added vs the baseline (``pred_x``: ``(k, 4)``)."""
    k = len(pred_x)
    return pred_x[:, None, :] - pred_occluded.reshape(k, N_FEATURES, 4)


def explain(predict: Predict, x: np.ndarray, baseline: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predictions ``(k, 4)`` and attributions ``(k, F, 4)`` from one ``predict`` call."""
    x = np.asarray(x, dtype=np.float32)
    stacked = np.vstack((x, occlusion_rows(x, np.asarray(baseline, dtype=np.float32))))
    out = predict(stacked)
    return out[: len(x)], attributions(out[: len(x)], out[len(x) :])


def top_reasons(attr: np.ndarray, x: np.ndarray, baseline: np.ndarray, n: int = 3) -> list[Reason]:
    """The ``n`` largest attributions ``(F, 4)`` by size, at most one per feature.

    Features equal to the baseline carry no information and are skipped, as
    are pairs :data:`ALLOWED` rules out.
    """
    changed = x != baseline
    size = np.where(changed[:, None] & ALLOWED, np.abs(attr), -1.0)
    best_tire = np.argmax(size, axis=1)
    best = size[np.arange(N_FEATURES), best_tire]
    order = [j for j in np.argsort(-best, kind="stable") if best[j] >= 0][:n]
    return [
        Reason(
            feature=FEATURES[j],
            tire=CORNERS[best_tire[j]],
            delta_pct=float(attr[j, best_tire[j]]),
            value=float(x[j]),
            baseline=float(baseline[j]),
        )
        for j in order
    ]


def sentence(reason: Reason, versus: str = "your average") -> str:
    """Radio-ready: "Front-left: 15 heavy stops this lap (avg 11), +0.8% wear vs your average"."""
    phrase, fmt = _PHRASES[reason.feature]
    value, base = reason.value, reason.baseline
    if reason.feature == "sector":
        value += 1  # say S1, not sector 0
    text = phrase.format(v=format(value, fmt), b=format(base, fmt))
    delta = reason.delta_pct
    amount = f"{delta:+.2f}" if abs(delta) < 0.1 else f"{delta:+.1f}"
    return f"{TIRE_NAMES[reason.tire]}: {text}, {amount}% wear vs {versus}"


def sentences(reasons: list[Reason], versus: str = "your average") -> list[str]:
    """Up to three sentences; a lap that matches the baseline says so once."""
    if not reasons:
        return [f"Wear in line with {versus}"]
    return [sentence(r, versus) for r in reasons]
