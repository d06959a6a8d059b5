"""The process-pool jobs, shaped so the server pays almost nothing to send and receive them.

A worker's arguments are pickled, and its result unpickled, in threads of
the server process, holding the GIL the event loop needs: a result made of
hundreds of small objects (states full of little numpy arrays and
dataclasses) measured 2-3 ms to unpickle there, often more. So each car's
state between ticks travels as one opaque ``bytes`` carry: the worker
unpickles it at the start of a tick and pickles the new one at the end; the
server keeps it and passes it back without ever opening it. What the server
does read (the insight piece, the laps as dicts, predictions) comes back
ready to publish, and the few numbers it needs from the state (track id)
come alongside.

:func:`tick_job` is the per-tick job (timing, aggregates, model); the
pit-window Monte Carlo it defers is :func:`pitwall_rt.strategy.live_pit_windows`,
which the runner submits separately so it never delays a tick. Both are
pure: a job whose worker died can be submitted again with the same arguments.

A tick's cars are independent of each other, so with more than one idle
worker the runner splits the tick into shards of whole cars
(:func:`split_cars`) and joins their outputs (:func:`join_outputs`): one
round trip per worker, not per car, and the tick takes the time of its
largest shard instead of all of it.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..model import infer
from ..ring_share import Span, read_span
from ..schema import take_rows
from ..strategy import RaceState, simulate
from .batch import TrackTable
from .laps import ChassisState

Carry = bytes
"""A car's pickled ``(ChassisState, CarIntel)``: opaque to the server."""


@dataclass
class CarOutput:
    """One car's part of a tick, as the server uses it."""

    track_id: int
    carry: Carry
    insight: dict[str, Any]
    laps: list[dict[str, Any]] = field(default_factory=list)
    intel: dict[str, Any] = field(default_factory=dict)
    windows: int = 0


@dataclass
class TickOutput:
    """A tick's result: per-car outputs, totals for health, alerts and pit windows due."""

    cars: dict[int, CarOutput] = field(default_factory=dict)
    rows: int = 0
    late: int = 0
    duplicates: int = 0
    lap_glitches: int = 0
    alerts: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)
    pit_races: dict[int, RaceState] = field(default_factory=dict)
    lost: int = 0
    """Rows of a ring span overwritten before the worker read them (``span_tick_job``)."""


def assign_cars(counts: np.ndarray, parts: int) -> list[list[int]]:
    """Cars (the ids with rows in ``counts``, a bincount of chassis ids) in at
    most ``parts`` shards with about equal row counts.

    Cars go largest first to the shard with the fewest rows so far (a car's
    cost follows its row count)."""
    cars = np.flatnonzero(counts)
    parts = min(parts, len(cars))
    if parts <= 1:
        return [cars.tolist()]
    load = np.zeros(parts, dtype=np.int64)
    shards: list[list[int]] = [[] for _ in range(parts)]
    for car in cars[np.argsort(-counts[cars], kind="stable")].tolist():
        shard = int(np.argmin(load))
        shards[shard].append(car)
        load[shard] += counts[car]
    return [sorted(cars) for cars in shards]


def split_cars(rows: np.ndarray, parts: int) -> list[tuple[np.ndarray, list[int]]]:
    """Rows cut into at most ``parts`` shards of whole cars (``assign_cars``),
    each with its car ids. Order within a shard is the input order.

    Chassis ids are small table indices, so counting is a ``bincount``:
    linear, unlike ``np.unique``'s sort, which matters when ticks queue up
    behind a slow one and arrive with hundreds of thousands of rows.
    """
    chassis = rows["chassis"]
    counts = np.bincount(chassis) if len(rows) else np.zeros(0, dtype=np.intp)
    shards = assign_cars(counts, parts)
    if len(shards) == 1:
        return [(rows, shards[0])]
    shard_of_car = np.zeros(len(counts), dtype=np.intp)
    for shard, cars in enumerate(shards):
        shard_of_car[cars] = shard
    shard_of_row = shard_of_car[chassis]
    return [(take_rows(rows, shard_of_row == shard), cars) for shard, cars in enumerate(shards)]


SUMMED_STATS = frozenset({"windows"})
"""Tick stats that count things (summed over shards); the rest are times (slowest kept)."""


def join_outputs(outputs: list[TickOutput]) -> TickOutput:
    """The shards' outputs of one tick as one: cars and alerts together, counts
    summed, per-job times the slowest shard's (they ran side by side)."""
    if len(outputs) == 1:
        return outputs[0]
    out = TickOutput()
    for part in outputs:
        out.cars.update(part.cars)
        out.rows += part.rows
        out.late += part.late
        out.duplicates += part.duplicates
        out.lap_glitches += part.lap_glitches
        out.alerts.extend(part.alerts)
        out.pit_races.update(part.pit_races)
        out.lost = max(out.lost, part.lost)  # every shard reads the whole span
        for key, value in part.stats.items():
            if key in SUMMED_STATS:
                out.stats[key] = out.stats.get(key, 0.0) + value
            else:
                out.stats[key] = max(out.stats.get(key, 0.0), value)
    return out


def pack_carry(state: ChassisState, intel: infer.CarIntel) -> Carry:
    return pickle.dumps((state, intel), protocol=pickle.HIGHEST_PROTOCOL)


def unpack_carry(carry: Carry) -> tuple[ChassisState, infer.CarIntel]:
    state, intel = pickle.loads(carry)
    return state, intel


def tick_job(
    rows: np.ndarray,
    tracks: TrackTable,
    carries: Mapping[int, Carry],
    options: infer.IntelOptions,
) -> TickOutput:
    """:func:`~pitwall_rt.model.infer.run_tick` over carries, pit windows deferred.

    ``carries`` holds the cars of ``rows`` that have one (others start fresh);
    keep each returned ``CarOutput.carry`` and pass it back next tick.
    """
    started = time.perf_counter()
    states: dict[int, ChassisState] = {}
    intel: dict[int, infer.CarIntel] = {}
    for cid, carry in carries.items():
        states[cid], intel[cid] = unpack_carry(carry)
    tick = infer.run_tick(rows, tracks, states, intel, replace(options, defer_pit_window=True))
    batch = tick.batch
    out = TickOutput(
        rows=batch.rows,
        late=batch.late,
        duplicates=batch.duplicates,
        lap_glitches=batch.lap_glitches,
        alerts=tick.alerts,
        stats=tick.stats,
        pit_races=tick.pit_races,
    )
    for cid, res in batch.chassis.items():
        out.cars[cid] = CarOutput(
            track_id=res.state.track_id,
            carry=pack_carry(res.state, tick.intel[cid]),
            insight=res.insight,
            laps=[lap.to_dict() for lap in res.laps],
            intel=tick.pieces.get(cid, {}),
            windows=len(res.windows),
        )
    out.stats["job_ms"] = (time.perf_counter() - started) * 1000.0
    return out


def span_tick_job(
    span: Span,
    cars: list[int] | None,
    tracks: TrackTable,
    carries: Mapping[int, Carry],
    options: infer.IntelOptions,
) -> TickOutput:
    """:func:`tick_job` over rows the worker reads from the shared ring itself
    (see ``ring_share``): only the span's sequence numbers cross the pipe.

    ``cars``: this shard's cars, or None for all of the span's."""
    rows, lost = read_span(span, cars)
    out = tick_job(rows, tracks, carries, options)
    out.lost = lost
    return out


def warm() -> int:
    """Run once in each worker at start: the first ``session.run`` and the first
    simulation pay one-off set-up costs (tens of ms) that no live tick should."""
    model = infer.worker_model()
    if model is not None:
        model.predict(np.zeros((1, len(infer.FEATURES)), dtype=np.float32))
    simulate(
        RaceState(lap=1, race_laps=5, wear_pct=1.0, wear_rate_pct_per_lap=1.0, base_lap_s=90.0),
        iterations=10,
    )
    return 0
