"""The real GR Cup sample in tests/data/grcup as a logger forwarding JSON
would send it: the long rows pivoted into points, one per car and sample
time, with the logger's own channel names (``aps``, ``nmot``, ``speed`` and
``vehicle_id`` are aliases) and its float32 readings printed as doubles."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Any

GRCUP = sorted((Path(__file__).parent / "data" / "grcup").glob("R1_barber_telemetry_data.*.csv"))


def grcup_points(with_times: bool = True) -> list[dict[str, Any]]:
    """With ``with_times`` each point keeps the logger's ISO ``meta_time``."""
    merged: dict[tuple[str, str], dict[str, Any]] = defaultdict(dict)
    for path in GRCUP:
        with path.open() as f:
            for row in csv.DictReader(f):
                point = merged[(row["vehicle_id"], row["meta_time"])]
                point.update(vehicle_id=row["vehicle_id"], lap=int(row["lap"]))
                if with_times:
                    point["meta_time"] = row["meta_time"]
                value = float(row["telemetry_value"])
                name = row["telemetry_name"]
                point[name] = int(value) if name == "gear" else value
    return list(merged.values())
