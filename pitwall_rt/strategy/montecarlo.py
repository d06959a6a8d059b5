"""Pit-window Monte Carlo: compare pit strategies over thousands of simulated race endings.

Vectorised numpy, float32: every random draw for every iteration and lap is
one array of shape ``(iterations, laps_left)``; the only Python loop is over
the handful of strategies, never over iterations or laps. All strategies
share the same draws (common random numbers), so their differences are not
drowned in sampling noise. A given seed reproduces the result exactly.

Race model, per remaining lap ``l`` (lap numbers ``lap + 1 .. race_laps``):

* wear at the end of the lap, % of tread: ``w0 + r (l + 1)`` on the current
  set, ``r (l - p)`` after a stop at the end of lap ``p``; the rate ``r`` is
  the predicted rate times a lognormal per iteration (``wear_noise``);
* lap time, s: ``base + deg * wear + cliff_s * max(wear - cliff, 0)`` plus
  normal noise (``lap_noise_s``);
* safety car: starts on a lap with ``safety_car_prob`` and runs
  ``safety_car_laps`` laps; under it laps take ``base * sc_lap_factor``, a stop
  costs ``pit_loss_s * sc_pit_factor`` (the field is slow too), and at its
  end the field is bunched: gaps and the time won or lost against the cars
  around shrink to ``sc_gap_keep`` of what they were;
* a stop costs ``pit_loss_s``; on the out-lap the car meets traffic with
  ``traffic_prob`` and loses an exponential delay (mean ``traffic_mean_s``);
* a single-stop plan is opportunistic: if a safety car is out between the
  window opening and the planned lap, the car stops under it instead.

Finishing position: the cars around (``gaps_ahead_s``, ``gaps_behind_s``)
are assumed to run the mid-window plan at the same pace, each with its own
noise (``rival_sd_s`` per lap); cars further away keep their order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

MAX_WINDOW_LAPS = 12
"""Longest default window, laps: one strategy per lap of it, plus no stop."""


@dataclass(frozen=True)
class RaceState:
    """One car's race, now. Times in s, wear in % of tread, probabilities per lap."""

    lap: int
    race_laps: int
    wear_pct: float
    wear_rate_pct_per_lap: float
    base_lap_s: float
    cliff_pct: float = 60.0
    pit_loss_s: float = 30.0
    deg_s_per_pct: float = 0.02
    cliff_s_per_pct: float = 0.25
    safety_car_prob: float = 0.03
    safety_car_laps: int = 3
    sc_lap_factor: float = 1.4
    sc_pit_factor: float = 0.5
    sc_gap_keep: float = 0.3
    wear_noise: float = 0.15
    lap_noise_s: float = 0.3
    traffic_prob: float = 0.3
    traffic_mean_s: float = 1.5
    rival_sd_s: float = 0.25
    position: int = 1
    gaps_ahead_s: tuple[float, ...] = ()
    gaps_behind_s: tuple[float, ...] = ()
    elapsed_s: float = 0.0
    window: tuple[int, int] | None = None

    @property
    def laps_left(self) -> int:
        return self.race_laps - self.lap


@dataclass(frozen=True)
class Strategy:
    """Stop at the end of each lap in ``pit_laps`` (absolute lap numbers)."""

    name: str
    pit_laps: tuple[int, ...] = ()
    opportunistic: bool = True
    label: str = ""


@dataclass(frozen=True)
class StrategyResult:
    name: str
    label: str
    pit_lap: int | None
    expected_time_s: float
    p10_time_s: float
    p90_time_s: float
    expected_position: float
    p10_position: float
    p90_position: float
    sc_stop_share: float

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Comparison:
    strategies: list[StrategyResult]
    recommended: StrategyResult
    window: tuple[int, int] | None
    iterations: int
    seed: int
    state: RaceState

    def to_dict(self) -> dict[str, Any]:
        """The ``POST /api/strategy`` response (DESIGN.md contract plus context)."""
        return {
            "strategies": [s.to_dict() for s in self.strategies],
            "recommended": self.recommended.to_dict(),
            "best_pit_lap": self.recommended.pit_lap,
            "window": list(self.window) if self.window else None,
            "iterations": self.iterations,
            "seed": self.seed,
            "lap": self.state.lap,
            "race_laps": self.state.race_laps,
        }


def default_window(state: RaceState) -> tuple[int, int] | None:
    """Laps to consider stopping on: ending where the current set reaches the cliff
    (or the last lap a stop makes sense), at most ``MAX_WINDOW_LAPS`` long."""
    last = state.race_laps - 1
    first = state.lap + 1
    if first > last:
        return None
    if state.window is not None:
        return max(first, state.window[0]), min(last, state.window[1])
    rate = max(state.wear_rate_pct_per_lap, 1e-6)
    to_cliff = math.floor((state.cliff_pct - state.wear_pct) / rate)
    close = min(last, max(first, state.lap + to_cliff))
    return max(first, close - MAX_WINDOW_LAPS + 1), close


def default_strategies(state: RaceState) -> list[Strategy]:
    """No stop, and one stop on each lap of the window (first early, middle mid, last late)."""
    out = [Strategy("no_stop", (), label="no stop")]
    window = default_window(state)
    if window is None or window[0] > window[1]:
        return out
    laps = list(range(window[0], window[1] + 1))
    mid = laps[len(laps) // 2]
    for lap in laps:
        label = {laps[0]: "early", mid: "mid", laps[-1]: "late"}.get(lap, "")
        out.append(Strategy(f"pit_lap_{lap}", (lap,), label=label))
    return out


@dataclass(frozen=True)
class _Draws:
    """Random inputs shared by all strategies.

    Per-lap arrays are lap-major, ``(laps_left, iterations)``: running sums
    and maxima go down axis 0, one vector operation per lap.
    """

    rate: np.ndarray  # (n,) wear rate, %/lap
    noise_sum_s: np.ndarray  # (n,) lap-time noise summed over the remaining laps
    sc: np.ndarray  # bool, safety car out on the lap
    pit_loss_s: np.ndarray  # cost of a stop on that lap (cheaper under a safety car)
    traffic_s: np.ndarray  # delay if that lap is an out-lap (none under a safety car)
    rivals_s: np.ndarray  # (n, ahead + behind) rival noise over the remaining race
    to_last_sc: np.ndarray  # bool, the lap is at or before the last safety-car lap
    last_sc: np.ndarray  # (n,) index of the last safety-car lap, -1 if none


def _draw(state: RaceState, n: int, rng: np.random.Generator) -> _Draws:
    laps = state.laps_left
    f32 = np.float32
    sd = state.wear_noise
    rate = state.wear_rate_pct_per_lap * np.exp(sd * rng.standard_normal(n, f32) - sd * sd / 2)
    # Independent normal noise per lap sums to one normal with sd * sqrt(laps).
    noise = rng.standard_normal(n) * (state.lap_noise_s * math.sqrt(laps))
    starts = rng.random((laps, n), f32) < state.safety_car_prob
    sc = starts.copy()
    for k in range(1, min(state.safety_car_laps, laps)):  # each start covers the next laps
        sc[k:] |= starts[:-k]
    loss = np.where(sc, f32(state.pit_loss_s * state.sc_pit_factor), f32(state.pit_loss_s))
    traffic = rng.standard_exponential((laps, n), f32)
    traffic *= (rng.random((laps, n), f32) < state.traffic_prob) & ~sc
    traffic *= f32(state.traffic_mean_s)
    n_rivals = len(state.gaps_ahead_s) + len(state.gaps_behind_s)
    rivals = rng.standard_normal((n, n_rivals), f32) * f32(state.rival_sd_s * math.sqrt(laps))
    lap_idx = np.arange(laps, dtype=np.int32)[:, None]
    last_sc = np.where(sc, lap_idx, -1).max(axis=0)
    return _Draws(rate.astype(f32), noise, sc, loss, traffic, rivals, lap_idx <= last_sc, last_sc)


def _plan(
    state: RaceState, strat: Strategy, draws: _Draws, window_open: int
) -> tuple[np.ndarray, np.ndarray]:
    """Where the car stops, and the last stop before each lap: two (laps, n) arrays.

    ``pits`` is True at the end of a stop lap; ``prev`` is the lap index of the
    previous stop, -1 while on the current set.
    """
    laps, n = draws.sc.shape
    idx = np.arange(laps, dtype=np.float32)[:, None]
    stops = [p - state.lap - 1 for p in strat.pit_laps if state.lap < p < state.race_laps]
    if len(stops) == 1 and strat.opportunistic:
        k, o = stops[0], max(0, min(window_open - state.lap - 1, stops[0]))
        eff = np.where(draws.sc[o : k + 1], idx[: k + 1 - o] + o, k).min(axis=0)
        return idx == eff, np.where(idx > eff, eff, np.float32(-1.0))
    mask = np.zeros(laps, dtype=bool)
    mask[stops] = True
    last = np.maximum.accumulate(np.where(mask, idx[:, 0], np.float32(-1.0)))
    prev = np.concatenate((np.full(1, -1.0, dtype=np.float32), last[:-1]))
    return np.broadcast_to(mask[:, None], (laps, n)), np.broadcast_to(prev[:, None], (laps, n))


def _lap_times(state: RaceState, pits: np.ndarray, prev: np.ndarray, d: _Draws) -> np.ndarray:
    """(laps, n) seconds per lap including stops and traffic, without the lap-time noise.

    The noise is the same for every strategy (common random numbers), so it
    cancels in differences and is added to the totals only (``_Draws.noise_sum_s``).
    """
    f32 = np.float32
    idx = np.arange(pits.shape[0], dtype=f32)[:, None]
    wear = idx - prev  # age in laps: idx + 1 on the current set
    wear *= d.rate
    wear += np.where(prev < 0, f32(state.wear_pct), f32(0.0))
    over = np.maximum(wear - f32(state.cliff_pct), f32(0.0))
    t = wear
    t *= f32(state.deg_s_per_pct)
    t += f32(state.base_lap_s)
    t += f32(state.cliff_s_per_pct) * over
    np.copyto(t, f32(state.base_lap_s * state.sc_lap_factor), where=d.sc)
    t += np.where(pits, d.pit_loss_s, f32(0.0))
    t[1:] += np.where(pits[:-1], d.traffic_s[1:], f32(0.0))
    return t


def _positions(state: RaceState, deficit: np.ndarray, d: _Draws) -> np.ndarray:
    """Finishing position per iteration from the time lost (+) to the mid-window plan."""
    bunched = d.last_sc >= 0
    keep = np.where(bunched, np.float32(state.sc_gap_keep), np.float32(1.0))[:, None]
    ahead = np.asarray(state.gaps_ahead_s, dtype=np.float32)[None, :] * keep
    behind = np.asarray(state.gaps_behind_s, dtype=np.float32)[None, :] * keep
    n_ahead = ahead.shape[1]
    beat = (deficit[:, None] < -ahead + d.rivals_s[:, :n_ahead]).sum(axis=1)
    beaten = (behind + d.rivals_s[:, n_ahead:] < deficit[:, None]).sum(axis=1)
    return state.position - beat + beaten


def _deficit(lap_t: np.ndarray, ref_t: np.ndarray, state: RaceState, d: _Draws) -> np.ndarray:
    """Time lost to the reference by the flag; a safety car bunches what came before it."""
    diff = lap_t - ref_t
    at_sc = np.sum(diff, axis=0, where=d.to_last_sc)
    return diff.sum(axis=0) - (1.0 - state.sc_gap_keep) * at_sc


def simulate(
    state: RaceState,
    strategies: list[Strategy] | None = None,
    iterations: int = 10_000,
    seed: int = 0,
) -> Comparison:
    """Run every strategy over the same ``iterations`` random race endings."""
    validate(state)
    strategies = strategies or default_strategies(state)
    window = default_window(state)
    if state.laps_left < 1:
        raise ValueError("the race is over: lap must be below race_laps")
    draws = _draw(state, iterations, np.random.default_rng(seed))
    window_open = window[0] if window else state.lap + 1
    ref_plan = _reference_plan(state, window)
    ref_t = _lap_times(state, *_plan(state, ref_plan, draws, window_open), draws)
    results = []
    for strat in strategies:
        pits, prev = _plan(state, strat, draws, window_open)
        lap_t = _lap_times(state, pits, prev, draws)
        total = state.elapsed_s + lap_t.sum(axis=0).astype(np.float64) + draws.noise_sum_s
        pos = _positions(state, _deficit(lap_t, ref_t, state, draws), draws)
        results.append(_summarise(strat, total, pos, (pits & draws.sc).any(axis=0)))
    best = min(results, key=lambda r: (r.expected_time_s, r.expected_position))
    return Comparison(results, best, window, iterations, seed, state)


def _reference_plan(state: RaceState, window: tuple[int, int] | None) -> Strategy:
    if window is None:
        return Strategy("reference")
    return Strategy("reference", ((window[0] + window[1]) // 2,))


def _summarise(
    strat: Strategy, total: np.ndarray, pos: np.ndarray, sc: np.ndarray
) -> StrategyResult:
    p10, p90 = np.percentile(total, (10, 90))
    q10, q90 = np.percentile(pos, (10, 90))
    return StrategyResult(
        name=strat.name,
        label=strat.label,
        pit_lap=strat.pit_laps[0] if strat.pit_laps else None,
        expected_time_s=round(float(total.mean()), 3),
        p10_time_s=round(float(p10), 3),
        p90_time_s=round(float(p90), 3),
        expected_position=round(float(pos.mean()), 3),
        p10_position=float(q10),
        p90_position=float(q90),
        sc_stop_share=round(float(sc.mean()), 4),
    )


_LIMITS: dict[str, tuple[float, float]] = {
    "lap": (0, 10_000),
    "race_laps": (1, 10_000),
    "wear_pct": (0.0, 200.0),
    "wear_rate_pct_per_lap": (0.0, 100.0),
    "base_lap_s": (1.0, 3_600.0),
    "cliff_pct": (1.0, 200.0),
    "pit_loss_s": (0.0, 600.0),
    "deg_s_per_pct": (0.0, 10.0),
    "cliff_s_per_pct": (0.0, 100.0),
    "safety_car_prob": (0.0, 1.0),
    "safety_car_laps": (1, 50),
    "sc_lap_factor": (1.0, 5.0),
    "sc_pit_factor": (0.0, 1.0),
    "sc_gap_keep": (0.0, 1.0),
    "wear_noise": (0.0, 2.0),
    "lap_noise_s": (0.0, 60.0),
    "traffic_prob": (0.0, 1.0),
    "traffic_mean_s": (0.0, 120.0),
    "rival_sd_s": (0.0, 60.0),
    "position": (1, 1_000),
    "elapsed_s": (0.0, 1e6),
}
_INTS = frozenset({"lap", "race_laps", "safety_car_laps", "position"})
MAX_ITERATIONS = 100_000
MAX_LAPS_SIMULATED = 500


def validate(state: RaceState) -> None:
    """Raise ValueError naming the first field out of range (messages go to API clients)."""
    for name, (lo, hi) in _LIMITS.items():
        value = getattr(state, name)
        if not lo <= value <= hi:
            raise ValueError(f"{name} must be between {lo:g} and {hi:g}, got {value!r}")
    if state.race_laps <= state.lap:
        raise ValueError(f"race_laps ({state.race_laps}) must be greater than lap ({state.lap})")
    if state.laps_left > MAX_LAPS_SIMULATED:
        raise ValueError(f"at most {MAX_LAPS_SIMULATED} laps to go can be simulated")
    for gaps in (state.gaps_ahead_s, state.gaps_behind_s):
        if len(gaps) > 50 or not all(0.0 <= g < 1e5 for g in gaps):
            raise ValueError("gaps must be at most 50 non-negative numbers of seconds")


def _number(body: dict[str, Any], name: str) -> float | int:
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if name in _INTS:
        if value != int(value):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        return int(value)
    return float(value)


def parse_request(body: Any) -> tuple[RaceState, list[Strategy] | None, int, int]:
    """A ``POST /api/strategy`` body -> (state, strategies or None, iterations, seed).

    Raises ValueError with a message fit for a 400 response.
    """
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    if isinstance(body.get("wear_pct"), dict):  # per tire: the most worn one limits
        body = {**body, "wear_pct": max(_tire_wear(body["wear_pct"]))}
    values: dict[str, Any] = {n: _number(body, n) for n in _LIMITS if body.get(n) is not None}
    if "race_laps" not in values and body.get("laps_to_go") is not None:
        values["race_laps"] = int(values.get("lap", 0)) + int(_laps_to_go(body["laps_to_go"]))
    for name in ("lap", "race_laps", "wear_pct", "wear_rate_pct_per_lap", "base_lap_s"):
        if name not in values:
            raise ValueError(f"missing {name} (race_laps may be given as laps_to_go)")
    for name in ("gaps_ahead_s", "gaps_behind_s"):
        values[name] = _gaps(body.get(name, []), name)
    if body.get("window") is not None:
        values["window"] = _window(body["window"])
    # The cars listed ahead are ahead: with no position given the car runs
    # right behind them, and a position that leaves no room for them is wrong.
    ahead = len(values["gaps_ahead_s"])
    values.setdefault("position", ahead + 1)
    if values["position"] <= ahead:
        raise ValueError(f"position {values['position']} leaves no room for {ahead} cars ahead")
    state = RaceState(**values)
    validate(state)
    iterations = _bounded_int(body.get("iterations", 10_000), "iterations", 100, MAX_ITERATIONS)
    seed = _bounded_int(body.get("seed", 0), "seed", 0, 2**32 - 1)
    strategies = _strategies(body["strategies"]) if body.get("strategies") is not None else None
    return state, strategies, iterations, seed


def _laps_to_go(value: Any) -> int:
    return _bounded_int(value, "laps_to_go", 1, MAX_LAPS_SIMULATED)


def _bounded_int(value: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer between {lo} and {hi}, got {value!r}")
    return value


def _tire_wear(value: dict[str, Any]) -> list[float]:
    tires = [value.get(c) for c in ("fl", "fr", "rl", "rr") if value.get(c) is not None]
    if not tires:
        raise ValueError("wear_pct as an object needs fl, fr, rl or rr")
    return [float(_number({"wear_pct": v}, "wear_pct")) for v in tires]


def _gaps(value: Any, name: str) -> tuple[float, ...]:
    if not isinstance(value, list):
        raise ValueError(f"{name} must be a list of seconds")
    return tuple(float(_number({name: v}, name)) for v in value)


def _window(value: Any) -> tuple[int, int]:
    if not (isinstance(value, list) and len(value) == 2):
        raise ValueError("window must be [first_lap, last_lap]")
    first, last = (_bounded_int(v, "window lap", 1, 10_000) for v in value)
    if first > last:
        raise ValueError("window must be [first_lap, last_lap] with first <= last")
    return first, last


def _strategies(value: Any) -> list[Strategy]:
    if not isinstance(value, list) or not 1 <= len(value) <= 64:
        raise ValueError("strategies must be a list of 1 to 64 objects")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ValueError(f"strategies[{i}] must be an object with a name")
        laps = item.get("pit_laps", [])
        if not isinstance(laps, list) or len(laps) > MAX_LAPS_SIMULATED:
            raise ValueError(f"strategies[{i}].pit_laps must be a list of lap numbers")
        pits = tuple(_bounded_int(p, "pit lap", 1, 10_000) for p in laps)
        out.append(Strategy(item["name"][:64], pits, bool(item.get("opportunistic", True))))
    return out


def run_request(
    state: RaceState, strategies: list[Strategy] | None, iterations: int, seed: int
) -> dict[str, Any]:
    """:func:`simulate` to the response dict: what the HTTP handler sends to the pool."""
    return simulate(state, strategies, iterations, seed).to_dict()
