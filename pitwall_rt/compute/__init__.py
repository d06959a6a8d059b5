"""Compute core: physics, lap/sector timing and aggregates, pure numpy.

Nothing here does I/O or imports asyncio: :func:`compute_batch` is what the
process pool runs once per tick, and everything it takes and returns
pickles. Modules, following the data:

* :mod:`.physics` - per-point tire loads, stress, brake energy, events;
* :mod:`.aggregate` - mergeable partials and Welford running stats;
* :mod:`.laps` - per-car lap and sector completion (:func:`advance`);
* :mod:`.batch` - one tick for all cars (:func:`compute_batch`).
"""

from .aggregate import Partial, SectorRolling, Welford, merge, merge_welford
from .batch import BatchResult, ChassisResult, compute_batch, insight_piece, track_table
from .laps import ChassisState, LapRecord, SectorRecord, TrackGeometry, advance
from .physics import CORNERS, GR86, CarParams

__all__ = [
    "CORNERS",
    "GR86",
    "BatchResult",
    "CarParams",
    "ChassisResult",
    "ChassisState",
    "LapRecord",
    "Partial",
    "SectorRecord",
    "SectorRolling",
    "TrackGeometry",
    "Welford",
    "advance",
    "compute_batch",
    "insight_piece",
    "merge",
    "merge_welford",
    "track_table",
]
