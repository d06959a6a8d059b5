"""pitwall_rt.csvfmt.long: the GR Cup long format, pivoted and repaired.

Real rows (tests/data/grcup, see SOURCE.md) are checked against values read
off the raw file by hand; synthetic files (made here, also used by the
other CSV tests and bench/s3_csv.py) carry each kind of dirt on purpose.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from pitwall_rt.csvfmt import PointBatch
from pitwall_rt.csvfmt.long import chassis_of
from pitwall_rt.csvfmt.reader import CsvReader

DATA = Path(__file__).parent / "data" / "grcup"
FIRST = DATA / "R1_barber_telemetry_data.lines0001-5001.csv"
SECOND = DATA / "R1_barber_telemetry_data.lines9002-10001.csv"
LAP_END = DATA / "R1_barber_lap_end.csv"

# -- synthetic GR Cup files ----------------------------------------------------

OFFSET_MS = 151_941_822  # ECU clock behind receiver, as in the Barber rows
START_MS = 1_757_032_000_000  # 2025-09-05T00:26:40Z, ECU clock
FAST = (
    "accx_can",
    "accy_can",
    "aps",
    "pbrake_r",
    "pbrake_f",
    "gear",
    "VBOX_Long_Minutes",
    "VBOX_Lat_Min",
    "Steering_Angle",
)
SLOW = ("Laptrigger_lapdist_dls", "nmot", "speed")  # every 5th sample, as at Barber
WIDE_NAME = {
    "accx_can": "accx_can",
    "accy_can": "accy_can",
    "aps": "throttle_pct",
    "pbrake_r": "pbrake_r",
    "pbrake_f": "pbrake_f",
    "gear": "gear",
    "VBOX_Long_Minutes": "lon_deg",
    "VBOX_Lat_Min": "lat_deg",
    "Steering_Angle": "Steering_Angle",
    "Laptrigger_lapdist_dls": "lapdist_m",
    "nmot": "rpm",
    "speed": "speed_kmh",
}


@dataclass
class Synth:
    """Ground truth: one entry per ECU sample, interleaved car by car."""

    car: np.ndarray
    ecu_ms: np.ndarray
    meta_ms: np.ndarray
    lap: np.ndarray
    values: dict[str, np.ndarray] = field(default_factory=dict)

    def chassis(self) -> np.ndarray:
        return np.array([f"GR86-{c:03d}" for c in self.car], dtype=object)

    def take(self, keep: np.ndarray) -> Synth:
        return Synth(
            self.car[keep],
            self.ecu_ms[keep],
            self.meta_ms[keep],
            self.lap[keep],
            {k: v[keep] for k, v in self.values.items()},
        )


def synth(
    per_car: int, cars: int = 3, step_ms: int = 43, track_m: float = 3700.0, batch: int = 8
) -> Synth:
    """Plausible samples: every car at ~150 km/h round a ``track_m`` lap.
    Receiver batches hold ``batch`` samples of one car; ``meta_ms`` is the
    newest sample's ECU time + OFFSET_MS, so the offset estimate is exact."""
    rng = np.random.default_rng(7)
    n = per_car * cars
    car = np.arange(n) % cars
    k = np.arange(n) // cars
    ecu_ms = START_MS + k * step_ms + car * 7
    dist = k * (41.7 * step_ms / 1000.0) + car * 300.0
    newest = np.minimum((k // batch + 1) * batch - 1, per_car - 1)
    values = {
        "accx_can": rng.uniform(-1.5, 0.6, n).round(3),
        "accy_can": rng.uniform(-1.6, 1.6, n).round(3),
        "aps": rng.uniform(0, 100, n).round(2),
        "pbrake_r": rng.uniform(0, 60, n).round(1),
        "pbrake_f": rng.uniform(0, 120, n).round(1),
        "gear": rng.integers(1, 7, n).astype(float),
        "VBOX_Long_Minutes": (-86.62 + rng.uniform(0, 0.01, n)).round(7),
        "VBOX_Lat_Min": (33.53 + rng.uniform(0, 0.01, n)).round(7),
        "Steering_Angle": rng.uniform(-90, 90, n).round(1),
        "Laptrigger_lapdist_dls": np.floor(dist % track_m),
        "nmot": rng.integers(2500, 7400, n).astype(float),
        "speed": rng.uniform(40, 220, n).round(2),
    }
    for name in SLOW:
        values[name][k % 5 != 0] = np.nan
    return Synth(
        car=car,
        ecu_ms=ecu_ms,
        meta_ms=START_MS + newest * step_ms + car * 7 + OFFSET_MS,
        lap=1 + np.floor(dist / track_m),
        values=values,
    )


def iso_ms(ms: np.ndarray) -> np.ndarray:
    """Epoch ms -> ``2025-09-05T00:28:20.593Z`` strings, as the export writes them."""
    text = np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms")
    return np.char.add(text.astype(str), "Z")


def long_table(s: Synth, batch: int = 8) -> pa.Table:
    """The export's rows: receiver batches in time order, each listing its
    samples newest first (as the real file does), channels in GR order."""
    sample = np.repeat(np.arange(len(s.car)), len(FAST + SLOW))
    channel = np.tile(np.arange(len(FAST + SLOW)), len(s.car))
    value = np.stack([s.values[c] for c in FAST + SLOW], axis=1).ravel()
    present = ~np.isnan(value)
    sample, channel, value = sample[present], channel[present], value[present]
    k = (s.ecu_ms[sample] - START_MS) // 43
    order = np.lexsort((channel, -s.ecu_ms[sample], s.car[sample], k // batch))
    sample, channel, value = sample[order], channel[order], value[order]
    names = pa.DictionaryArray.from_arrays(pa.array(channel.astype(np.int32)), FAST + SLOW)
    cars = s.car[sample]
    vid = pa.DictionaryArray.from_arrays(
        pa.array(cars.astype(np.int32)),
        pa.array([f"GR86-{c:03d}-{c + 10}" for c in range(s.car.max() + 1)]),
    )
    n = len(sample)
    return pa.table(
        {
            "expire_at": pa.nulls(n, pa.string()),
            "lap": s.lap[sample].astype(np.int64),
            "meta_event": _constant("I_R06_2025-09-07", n),
            "meta_session": _constant("R1", n),
            "meta_source": _constant("kafka:gr-raw", n),
            "meta_time": _iso_dictionary(s.meta_ms, sample),
            "original_vehicle_id": vid,
            "outing": np.zeros(n, dtype=np.int64),
            "telemetry_name": names,
            "telemetry_value": value,
            "timestamp": _iso_dictionary(s.ecu_ms, sample),
            "vehicle_id": vid,
            "vehicle_number": cars + 10,
        }
    )


def _constant(text: str, n: int) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), [text])


def _iso_dictionary(ms: np.ndarray, index: np.ndarray) -> pa.DictionaryArray:
    """Per-row times formatted once per sample (a sample spans ~10 rows)."""
    return pa.DictionaryArray.from_arrays(pa.array(index.astype(np.int32)), iso_ms(ms))


def wide_table(s: Synth) -> pa.Table:
    """The same samples, one row each, canonical columns, receiver time."""
    columns: dict[str, object] = {
        "chassis": s.chassis(),
        "meta_time": iso_ms(s.ecu_ms + OFFSET_MS),
        "lap": s.lap.astype(np.int64),
    }
    for name, values in s.values.items():
        columns[WIDE_NAME[name]] = values
    return pa.table(columns)


def plain(table: pa.Table) -> pa.Table:
    """Dictionary columns as plain strings, so rows can be edited and mixed."""
    return pa.table(
        {
            name: column.cast(pa.string()) if pa.types.is_dictionary(column.type) else column
            for name, column in zip(table.column_names, table.columns, strict=True)
        }
    )


def csv_bytes(table: pa.Table) -> bytes:
    """CSV text as the export writes it: plain header, nothing quoted."""
    out = io.BytesIO()
    out.write((",".join(table.column_names) + "\n").encode())
    pacsv.write_csv(table, out, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    return out.getvalue()


def read_all(data: bytes, piece: int = 1 << 20, **kwargs: object) -> tuple[CsvReader, PointBatch]:
    """Feed ``data`` in pieces; return the reader and every point, concatenated."""
    reader = CsvReader(**kwargs)  # type: ignore[arg-type]
    batches = []
    for i in range(0, len(data), piece):
        batches += reader.feed(data[i : i + piece])
    batches += reader.close()
    return reader, concat(batches)


def concat(batches: list[PointBatch]) -> PointBatch:
    if not batches:
        return PointBatch({}, np.empty(0, dtype=object), None, np.empty(0, dtype=np.int64))
    names = sorted({name for b in batches for name in b.columns})
    return PointBatch(
        columns={n: np.concatenate([b.columns[n] for b in batches]) for n in names},
        chassis=np.concatenate([b.chassis for b in batches]),
        track=batches[0].track,
        lines=np.concatenate([b.lines for b in batches]),
    )


def epoch_s(text: str) -> float:
    return datetime.fromisoformat(text).astimezone(UTC).timestamp()


# -- the real Barber rows ------------------------------------------------------


def test_long_pivot_real_barber_rows_match_the_raw_rows() -> None:
    reader, points = read_all(FIRST.read_bytes(), track="barber")
    assert reader.format == "long"
    assert len(points) == 516  # distinct ECU timestamps in the slice
    assert set(points.chassis) == {"GR86-002"}
    assert points.track == "barber"
    offset = reader.offsets_s["GR86-002"]
    assert 151_941.2 < offset < 151_941.9  # 1 d 18 h 12 min 21 s
    t = points.columns["meta_time"]
    # lines 40-49: the sample at ECU 00:28:20.421Z, speed included
    i = int(np.argmin(np.abs(t - (epoch_s("2025-09-05T00:28:20.421Z") + offset))))
    assert t[i] == pytest.approx(epoch_s("2025-09-05T00:28:20.421Z") + offset, abs=1e-3)
    assert points.lines[i] == 40
    expect = {
        "accx_can": 0.231,
        "accy_can": 0.096,
        "throttle_pct": 100.0,
        "pbrake_r": 0.0,
        "pbrake_f": 0.0,
        "gear": 2.0,
        "lon_deg": -86.61968994140625,
        "lat_deg": 33.53254699707031,
        "Steering_Angle": 3.7,
        "speed_kmh": 124.79,
        "lap": 2.0,
    }
    assert {k: points.columns[k][i] for k in expect} == expect
    assert np.isnan(points.columns["rpm"][i]) and np.isnan(points.columns["lapdist_m"][i])
    # lines 2306-2316: ECU 00:28:10.232Z, with lap distance and rpm, no speed
    j = int(np.argmin(np.abs(t - (epoch_s("2025-09-05T00:28:10.232Z") + offset))))
    assert points.columns["lapdist_m"][j] == 3436.0
    assert points.columns["rpm"][j] == 6994.0
    assert points.columns["Steering_Angle"][j] == 28.6
    assert points.columns["accx_can"][j] == pytest.approx(0.072)
    assert np.isnan(points.columns["speed_kmh"][j])


def test_long_real_barber_dirt_is_repaired_and_counted() -> None:
    reader, points = read_all(FIRST.read_bytes())
    # PROVENANCE.md counts 22 exact duplicate rows and 23 conflicting keys
    assert reader.repairs["duplicate_exact"] == 22
    assert reader.repairs["duplicate_conflict"] == 23
    assert reader.repairs["time_backwards"] == 507  # batches list samples newest first
    assert reader.repairs["ecu_clock_mapped"] == 516
    assert reader.repairs["gap"] == 0
    assert reader.issues.bad_rows == 0
    assert np.all(np.diff(points.columns["meta_time"]) > 0)  # re-ordered by ECU time
    # accx_can @ 00:28:10.189Z is 0.065 at line 2317 and 0.07 at line 2326: first wins
    k = int(
        np.argmin(
            np.abs(
                points.columns["meta_time"]
                - epoch_s("2025-09-05T00:28:10.189Z")
                - reader.offsets_s["GR86-002"]
            )
        )
    )
    assert points.columns["accx_can"][k] == 0.065
    assert points.columns["throttle_pct"][k] == 17.21


def test_long_real_barber_time_joins_the_lap_file() -> None:
    """The clock offset puts the end of lap 2 (lap distance at its 3715 m
    maximum) within half a second of the lap-end file's timestamp for lap 2."""
    _reader, points = read_all(FIRST.read_bytes())
    last = int(np.nanargmax(points.columns["lapdist_m"]))
    assert points.columns["lapdist_m"][last] == 3715.0
    lap_end = pacsv.read_csv(LAP_END).to_pylist()
    row = next(r for r in lap_end if r["vehicle_id"] == "GR86-002-000" and r["lap"] == 2)
    assert abs(points.columns["meta_time"][last] - row["timestamp"].timestamp()) < 0.5


def test_long_second_barber_slice_counts_the_ecu_time_jump_as_a_gap() -> None:
    reader, points = read_all(SECOND.read_bytes())
    assert reader.repairs["gap"] == 1  # ECU 00:27:40 -> 00:30:01, no rows between
    assert len(points) == 93
    assert set(points.columns["lap"]) == {2.0, 3.0}
    assert reader.repairs["duplicate_exact"] + reader.repairs["duplicate_conflict"] == 107
    assert np.all(np.diff(points.columns["meta_time"]) > 0)


# -- synthetic dirt ------------------------------------------------------------


def test_long_chassis_of_strips_the_car_number() -> None:
    assert chassis_of("GR86-002-000") == "GR86-002"
    assert chassis_of("GR86-062-012") == "GR86-062"
    assert chassis_of(" GR86-002-2 ") == "GR86-002"
    assert chassis_of("GR86-002") == "GR86-002"
    assert chassis_of("car7") == "car7"


def test_long_one_chassis_under_two_vehicle_ids_is_one_car() -> None:
    s = synth(40, cars=1)
    table = plain(long_table(s))
    vid = pa.array(["GR86-000-000"] * 200 + ["GR86-000-10"] * (table.num_rows - 200))
    table = table.set_column(table.column_names.index("vehicle_id"), "vehicle_id", vid)
    _reader, points = read_all(csv_bytes(table))
    assert len(points) == 40 and set(points.chassis) == {"GR86-000"}


def test_long_synthetic_dirt_is_repaired_and_counted_by_kind() -> None:
    truth = synth(400, cars=3, track_m=500.0)
    car, k = truth.car, (truth.ecu_ms - START_MS) // 43
    gap = (car == 0) & (k >= 200) & (k < 320)  # 5.2 s with no samples from car 0
    sentinel = (car == 1) & (k >= 250) & (k < 330)  # spans car 1's wrap at 500 m
    unanchored = car == 2  # a car that never sends a lap
    truth = truth.take(~gap)
    sent = replace(truth, lap=truth.lap.copy())
    sent.lap[sentinel[~gap] | unanchored[~gap]] = 32768
    table = plain(long_table(sent))
    rows = table.num_rows
    # duplicates a few rows after their original (within one receiver batch,
    # as in the real file); two of them with another value
    order, changed = list(range(rows)), list[int]()
    for src, conflicting in ((2100, False), (1000, True), (500, False), (77, True), (5, False)):
        order.insert(src + 4, src)
        changed = [p + (p >= src + 4) for p in changed] + ([src + 4] if conflicting else [])
    dirty = table.take(pa.array(order))
    values = dirty["telemetry_value"].to_numpy().copy()
    values[changed] += 1.0
    dirty = dirty.set_column(9, "telemetry_value", pa.array(values))
    unknown = table.take(pa.array([3])).set_column(8, "telemetry_name", pa.array(["oil_temp"]))
    late = table.take(pa.array([rows // 2]))  # its car's time was passed on long ago
    dirty = pa.concat_tables([dirty.slice(0, 3000), unknown, dirty.slice(3000), late])
    data = csv_bytes(dirty)

    reader, points = read_all(data, piece=1000, chunk_bytes=16_000, hold_s=2.0)

    expected_backwards = _backward_steps(dirty)
    assert dict(reader.repairs) == {
        "duplicate_exact": 3,
        "duplicate_conflict": 2,
        "unknown_channel": 1,
        "late_dropped": 1,
        "time_backwards": expected_backwards,
        "ecu_clock_mapped": len(truth.car),
        "gap": 1,
        "lap_sentinel": int(np.count_nonzero(sent.lap == 32768)),
        "lap_recovered": int(np.count_nonzero(sentinel)),
        "lap_unrecovered": int(np.count_nonzero(unanchored[~gap])),
    }
    assert expected_backwards > len(truth.car) // 2
    _assert_points_equal(points, truth, unknown_lap=truth.car == 2)


def _backward_steps(table: pa.Table) -> int:
    """An independent count: consecutive rows of one car, time going back."""
    columns = ("vehicle_id", "timestamp", "telemetry_name")
    rows = zip(*(table[c].to_pylist() for c in columns), strict=True)
    steps, prev = 0, (None, "")
    for vid, ts, name in rows:
        if name in WIDE_NAME:
            steps += vid == prev[0] and ts < prev[1]
            prev = (vid, ts)
    return steps


def _assert_points_equal(points: PointBatch, truth: Synth, unknown_lap: np.ndarray) -> None:
    order = np.lexsort((points.columns["meta_time"], points.chassis.astype(str)))
    want = np.lexsort(((truth.ecu_ms + OFFSET_MS) / 1e3, truth.chassis().astype(str)))
    assert len(order) == len(want)
    assert list(points.chassis[order]) == list(truth.chassis()[want])
    got_t = points.columns["meta_time"][order]
    np.testing.assert_allclose(got_t, (truth.ecu_ms[want] + OFFSET_MS) / 1e3, rtol=0, atol=1e-6)
    for name, values in truth.values.items():
        np.testing.assert_array_equal(points.columns[WIDE_NAME[name]][order], values[want], name)
    lap = np.where(unknown_lap, np.nan, truth.lap)[want]
    np.testing.assert_array_equal(points.columns["lap"][order], lap)


def test_long_feeding_in_any_pieces_gives_the_same_points() -> None:
    """Chunking depends only on the bytes: what a resumed read relies on."""
    data = csv_bytes(long_table(synth(300, cars=4)))
    _, whole = read_all(data, piece=len(data), chunk_bytes=20_000)
    _, bits = read_all(data, piece=333, chunk_bytes=20_000)
    assert whole.lines.tolist() == bits.lines.tolist()
    for name, values in whole.columns.items():
        np.testing.assert_array_equal(values, bits.columns[name])


def test_long_points_are_passed_on_before_the_end_of_the_file() -> None:
    """The reorder window, not the file, bounds what is held."""
    data = csv_bytes(long_table(synth(2000, cars=2)))
    reader = CsvReader(chunk_bytes=50_000, hold_s=5.0)
    early = sum(
        len(b) for i in range(0, len(data), 50_000) for b in reader.feed(data[i : i + 50_000])
    )
    late = sum(len(b) for b in reader.close())
    assert early > 3 * late > 0
    assert early + late == 4000
