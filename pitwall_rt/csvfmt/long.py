"""The GR Cup "Hack the Track" long format: one row per channel sample.

Header (TRD 2025 export)::

    expire_at,lap,meta_event,meta_session,meta_source,meta_time,
    original_vehicle_id,outing,telemetry_name,telemetry_value,timestamp,
    vehicle_id,vehicle_number

A point is one (car, ECU ``timestamp``): the channels of one ECU sample are
spread over up to 12 rows. ``meta_time`` is the receiver's batch time and
covers up to ~18 samples, so it can't be the key. The car is the chassis
part of ``vehicle_id`` (``GR86-<chassis>-<car number>``; the car number is
000 until assigned), so ``GR86-002-000`` and ``GR86-002-2`` are one car.

Rows arrive out of order (each receiver batch lists its samples newest
first, batches come up to ~20 s late), so each car's rows are held for
``hold_s`` of ECU time before they are pivoted: a sample is passed on only
when its car has rows ``hold_s`` newer. Memory is bounded by that window.
Channel sample rates in the Barber rows: speed, nmot and lap distance at
about 1/5 the rate of the others (a sample every 40-90 ms, ~12 Hz); a point
lacks what its sample lacks.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import GPS_COLUMNS, TIME_COLUMN, IssueLog, PointBatch
from .repair import (
    BackwardSteps,
    ClockOffsets,
    GapCounter,
    LapTracker,
    Repairs,
    dedup_sorted,
    run_starts,
)
from .wide import NO_TIME, dictionary_chunks

REQUIRED: Final = ("telemetry_name", "telemetry_value", "timestamp", "vehicle_id")
"""Header names that mark a file as long format."""

_TIME = pa.timestamp("ns", tz="UTC")
_NAMES = pa.dictionary(pa.int32(), pa.string())
COLUMN_TYPES: Final = {
    "lap": pa.float64(),
    "meta_time": _TIME,
    "telemetry_name": _NAMES,
    "telemetry_value": pa.float64(),
    "timestamp": _TIME,
    "vehicle_id": _NAMES,
}
"""The columns read (everything else is skipped by the CSV parser)."""

# Pivot slots, in key order. aps and ath both feed throttle_pct; units are
# km/h, rpm, %, bar, G, degrees, metres, decimal degrees (the VBOX channel
# names say minutes, the values are degrees).
SLOTS: Final = (
    "speed_kmh",
    "rpm",
    "aps",
    "ath",
    "pbrake_f",
    "pbrake_r",
    "accx_can",
    "accy_can",
    "Steering_Angle",
    "gear",
    "lapdist_m",
    *GPS_COLUMNS,
)
_SLOT: Final = {name: i for i, name in enumerate(SLOTS)}
CHANNELS: Final = {
    "speed": _SLOT["speed_kmh"],
    "nmot": _SLOT["rpm"],
    "aps": _SLOT["aps"],
    "ath": _SLOT["ath"],
    "pbrake_f": _SLOT["pbrake_f"],
    "pbrake_r": _SLOT["pbrake_r"],
    "accx_can": _SLOT["accx_can"],
    "accy_can": _SLOT["accy_can"],
    "Steering_Angle": _SLOT["Steering_Angle"],
    "gear": _SLOT["gear"],
    "Laptrigger_lapdist_dls": _SLOT["lapdist_m"],
    "VBOX_Long_Minutes": _SLOT["lon_deg"],
    "VBOX_Lat_Min": _SLOT["lat_deg"],
    # canonical names, for files written by other tools
    "speed_kmh": _SLOT["speed_kmh"],
    "rpm": _SLOT["rpm"],
    "throttle_pct": _SLOT["aps"],
    "lapdist_m": _SLOT["lapdist_m"],
}
"""GR Cup channel name -> pivot slot."""

HOLD_S: Final = 60.0
"""Default reorder window, seconds of ECU time (Barber rows arrive <= 23 s late)."""

# Sort key layout, low to high: slot (4 bits), ECU time in µs relative to a
# per-file base (45 bits, +-200 days), car code (14 bits).
_SLOT_BITS = 4
_TIME_BITS = 45
_CAR_LIMIT = 1 << 14
_TIME_SPAN_US = 1 << _TIME_BITS

_VEHICLE_ID = re.compile(r"^(?P<chassis>.+-\d+)-\d+$")


def chassis_of(vehicle_id: str) -> str:
    """``GR86-002-000`` -> ``GR86-002``: the chassis, without the car number."""
    text = vehicle_id.strip()
    match = _VEHICLE_ID.match(text)
    return match["chassis"] if match else text


@dataclass
class _Rows:
    """Long-format rows as parallel arrays, the fewest a held row needs (24
    bytes): car, ECU time and slot are packed into ``key`` (see ``_key``);
    ``lap`` is float32 (exact for laps), ``line`` int32 (2 billion lines)."""

    key: np.ndarray
    value: np.ndarray
    lap: np.ndarray
    line: np.ndarray

    def take(self, index: np.ndarray) -> _Rows:
        return _Rows(self.key[index], self.value[index], self.lap[index], self.line[index])

    def __len__(self) -> int:
        return len(self.key)

    @staticmethod
    def concat(a: _Rows, b: _Rows) -> _Rows:
        if not len(a):
            return b
        return _Rows(*(np.concatenate([getattr(a, f.name), getattr(b, f.name)]) for f in fields(a)))

    @property
    def car(self) -> np.ndarray:
        return self.key >> (_TIME_BITS + _SLOT_BITS)

    @property
    def rel_us(self) -> np.ndarray:
        """ECU time, µs after the file's base."""
        return (self.key >> _SLOT_BITS) & (_TIME_SPAN_US - 1)


def _empty_rows() -> _Rows:
    i8 = np.empty(0, dtype=np.int64)
    return _Rows(i8, np.empty(0), np.empty(0, dtype=np.float32), np.empty(0, dtype=np.int32))


@dataclass
class _Fresh:
    """A chunk's rows in file order, with what only fresh rows need."""

    rows: _Rows
    car: np.ndarray
    rel_us: np.ndarray
    meta_us: np.ndarray

    def take(self, index: np.ndarray) -> _Fresh:
        return _Fresh(
            self.rows.take(index), self.car[index], self.rel_us[index], self.meta_us[index]
        )


class LongDecoder:
    """Pivots long-format tables, chunk by chunk, into repaired point batches.

    Call :meth:`decode` with each parsed chunk in file order, then
    :meth:`finish` once; both return the batches that became final.
    """

    column_types = COLUMN_TYPES

    def __init__(
        self, track: str | None, repairs: Repairs, issues: IssueLog, hold_s: float = HOLD_S
    ) -> None:
        self.track = track
        self.repairs = repairs
        self.issues = issues
        self.hold_us = int(hold_s * 1e6)
        self.chassis_names: list[str] = []
        self._codes: dict[str, int] = {}
        self._base_us: int | None = None
        self._pending = _empty_rows()
        self._newest_us = np.zeros(0, dtype=np.int64)
        self._passed_us = np.zeros(0, dtype=np.int64)
        self._backwards = BackwardSteps()
        self.offsets = ClockOffsets()
        self._laps = LapTracker()
        self._gaps = GapCounter()

    def decode(self, table: pa.Table, lines: np.ndarray) -> list[PointBatch]:
        """Take one parsed chunk; return the points that are now final."""
        fresh = self._read(table, lines)
        self.repairs["time_backwards"] += self._backwards.count(fresh.car, fresh.rel_us)
        late = fresh.rel_us <= self._passed_us[fresh.car]
        if late.any():
            self.repairs["late_dropped"] += int(np.count_nonzero(late))
            fresh = fresh.take(~late)
        self.offsets.observe(fresh.car, fresh.meta_us, fresh.rel_us + (self._base_us or 0))
        merged = _Rows.concat(self._pending, fresh.rows)
        merged = merged.take(np.argsort(merged.key, kind="stable"))
        keep, exact, conflict = dedup_sorted(merged.key, merged.value)
        self.repairs["duplicate_exact"] += exact
        self.repairs["duplicate_conflict"] += conflict
        if exact or conflict:
            merged = merged.take(keep)
        return self._release(merged, final=False)

    def finish(self) -> list[PointBatch]:
        """End of file: pass on every held sample."""
        self.offsets.finish()
        pending, self._pending = self._pending, _empty_rows()
        return self._release(pending, final=True)

    def _read(self, table: pa.Table, lines: np.ndarray) -> _Fresh:
        """Arrays from a chunk; rows that can't be used are reported and dropped."""
        car = self._car_codes(table["vehicle_id"])
        slot = _slot_codes(table["telemetry_name"])
        ecu_ns = _time_ns(table["timestamp"])
        value = table["telemetry_value"].to_numpy()
        usable = (car >= 0) & (slot >= 0) & (ecu_ns != NO_TIME) & ~np.isnan(value)
        all_usable = bool(usable.all())
        if not all_usable:
            self._report(usable, car, slot, ecu_ns, value, lines)
            index = np.flatnonzero(usable)
            car, slot, ecu_ns, value, lines = (a[index] for a in (car, slot, ecu_ns, value, lines))
        ecu_us = ecu_ns // 1000
        if self._base_us is None and len(ecu_us):
            self._base_us = int(ecu_us.min()) - _TIME_SPAN_US // 2
        rel = ecu_us - (self._base_us or 0)
        meta = _optional(table, "meta_time", _time_ns, NO_TIME)
        lap = _optional(table, "lap", lambda col: col.to_numpy(), np.nan)
        if not all_usable:
            meta, lap = meta[index], lap[index]
        fresh = _Fresh(
            rows=_Rows(_key(car, rel, slot), value, lap.astype(np.float32), lines.astype(np.int32)),
            car=car,
            rel_us=rel,
            meta_us=np.where(meta == NO_TIME, -1, meta // 1000),
        )
        in_span = (rel >= 0) & (rel < _TIME_SPAN_US)
        if in_span.all():
            return fresh
        self.issues.add_lines(lines[~in_span], "timestamp is months away from the rest")
        return fresh.take(in_span)

    def _report(
        self,
        usable: np.ndarray,
        car: np.ndarray,
        slot: np.ndarray,
        ecu_ns: np.ndarray,
        value: np.ndarray,
        lines: np.ndarray,
    ) -> None:
        """Count unknown channels; report other unusable rows (blank lines aside)."""
        no_car, no_time, no_value = car == -1, ecu_ns == NO_TIME, np.isnan(value)
        blank = no_car & no_time & no_value & (slot == -1)
        unknown = (slot == -2) & (car >= 0) & ~no_time
        self.repairs["unknown_channel"] += int(np.count_nonzero(unknown))
        bad = ~usable & ~blank & ~unknown
        for mask, what in (
            (car == -2, "too many cars in one file"),
            (no_car, "vehicle_id is empty"),
            (no_time, "timestamp is empty or not a time"),
            (slot == -1, "telemetry_name is empty"),
            (no_value, "telemetry_value is empty or not a number"),
        ):
            hit = bad & mask
            self.issues.add_lines(lines[hit], what)
            bad &= ~hit

    def _car_codes(self, column: pa.ChunkedArray) -> np.ndarray:
        """Car code per row: -1 for an empty id, -2 past the per-file cap."""
        parts = []
        for chunk in dictionary_chunks(column):
            names = chunk.dictionary.to_pylist()
            table = np.array([self._code_of(name) for name in names] + [-1], dtype=np.int64)
            parts.append(table[pc.fill_null(chunk.indices, -1).to_numpy()])
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)

    def _code_of(self, vehicle_id: str) -> int:
        name = chassis_of(vehicle_id)
        code = self._codes.get(name)
        if code is None:
            if not name:
                return -1
            if len(self.chassis_names) >= _CAR_LIMIT:
                return -2
            code = self._codes[name] = len(self.chassis_names)
            self.chassis_names.append(name)
            self._newest_us = np.append(self._newest_us, -1)
            self._passed_us = np.append(self._passed_us, -1)
        return code

    def _release(self, rows: _Rows, final: bool) -> list[PointBatch]:
        """Pivot the rows whose car has moved ``hold_us`` past them; hold the rest."""
        if not len(rows):
            self._pending = rows
            return []
        car, rel_us = rows.car, rows.rel_us
        ends = np.append(car[1:] != car[:-1], True)
        cars = car[ends]
        self._newest_us[cars] = np.maximum(self._newest_us[cars], rel_us[ends])
        if final:
            self._pending = _empty_rows()
            ready = rows
        else:
            done = rel_us <= self._newest_us[car] - self.hold_us
            if not done.any():
                self._pending = rows
                return []
            self._pending = rows.take(~done)
            ready = rows.take(done)
        ready_car = ready.car
        ready_ends = np.append(ready_car[1:] != ready_car[:-1], True)
        self._passed_us[ready_car[ready_ends]] = ready.rel_us[ready_ends]
        return [self._pivot(ready)]

    def _pivot(self, rows: _Rows) -> PointBatch:
        """One point per (car, ECU time) from rows sorted by key."""
        new = run_starts(rows.key >> _SLOT_BITS)
        first = np.flatnonzero(new)
        group = np.cumsum(new) - 1
        matrix = np.full((len(first), len(SLOTS)), np.nan)
        matrix[group, rows.key & ((1 << _SLOT_BITS) - 1)] = rows.value
        heads = rows.take(first)
        car, ecu_us = heads.car, heads.rel_us + (self._base_us or 0)
        offset_us = self.offsets.offsets_us(car)
        mapped = ~np.isnan(offset_us)
        self.repairs["ecu_clock_mapped"] += int(np.count_nonzero(mapped))
        time_s = (ecu_us + np.where(mapped, offset_us, 0.0)) / 1e6
        self.repairs["gap"] += self._gaps.count(car, ecu_us / 1e6)
        lapdist = matrix[:, _SLOT["lapdist_m"]]
        lap = self._laps.repair(car, heads.lap, lapdist, self.repairs)
        columns = {name: matrix[:, i] for i, name in enumerate(SLOTS)}
        aps, ath = columns.pop("aps"), columns.pop("ath")
        columns["throttle_pct"] = np.where(np.isnan(aps), ath, aps)
        columns[TIME_COLUMN] = time_s
        columns["lap"] = lap
        names = np.array(self.chassis_names, dtype=object)
        return PointBatch(
            columns=columns,
            chassis=names[car],
            track=self.track,
            lines=np.minimum.reduceat(rows.line, first),
        )


def _key(car: np.ndarray, rel_us: np.ndarray, slot: np.ndarray) -> np.ndarray:
    """Sort key: car (14 bits) | ECU µs after the file base (45 bits) | slot (4 bits)."""
    return (car << (_TIME_BITS + _SLOT_BITS)) | (rel_us << _SLOT_BITS) | slot


def _slot_codes(column: pa.ChunkedArray) -> np.ndarray:
    """Slot per row: -1 for an empty name, -2 for a channel we don't map."""
    parts = []
    for chunk in dictionary_chunks(column):
        names = chunk.dictionary.to_pylist()
        table = np.array([CHANNELS.get(n, -2 if n else -1) for n in names] + [-1], dtype=np.int64)
        parts.append(table[pc.fill_null(chunk.indices, -1).to_numpy()])
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def _time_ns(column: pa.ChunkedArray) -> np.ndarray:
    """Epoch nanoseconds; ``NO_TIME`` where empty."""
    return pc.fill_null(column.cast(pa.int64()), NO_TIME).to_numpy()


def _optional(
    table: pa.Table,
    name: str,
    convert: Callable[[pa.ChunkedArray], np.ndarray],
    fill: float | int,
) -> np.ndarray:
    if name in table.column_names:
        return convert(table[name])
    return np.full(table.num_rows, fill)
