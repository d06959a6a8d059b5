"""CSV telemetry files in, batches of point columns out.

Teams upload logger files (to S3, or by hand with ``pitwall-rt replay``) in
two formats, told apart by the header:

* **wide**: one row per sample, the canonical columns of DESIGN.md
  (``chassis`` or ``vehicle_id``, ``meta_time``, ``speed_kmh`` ...);
* **long**: the Toyota GR Cup "Hack the Track" export, one row per channel
  sample, pivoted back into one point per (car, ECU ``timestamp``).

The data flows ``bytes (maybe gzip) -> reader (lines, pyarrow per chunk) ->
wide/long decoder -> repair -> PointBatch``. Everything in this package is
sans-I/O: it takes bytes and gives numpy arrays, so the S3 poller and the
replay command only feed it. The types shared by those modules live here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Columns a batch may carry besides the schema's numeric fields: the sample
#: time (epoch seconds, UTC) and GPS position (decimal degrees). The stored
#: row dtype has no GPS fields yet, so validation ignores them for now.
TIME_COLUMN = "meta_time"
GPS_COLUMNS = ("lon_deg", "lat_deg")


@dataclass
class PointBatch:
    """Decoded points as columns, ready for ``validate.rows_from_columns``.

    ``columns`` maps field names to float64 arrays of equal length: always
    ``meta_time`` (epoch seconds UTC; NaN means "use server time"), plus the
    numeric fields present in the file (NaN = absent) and, for GR Cup files,
    ``lon_deg``/``lat_deg``. ``chassis`` is an object array of str, ``track``
    the track id for the whole batch (None = unknown), ``lines`` the CSV line
    (1 = header) each point was read from: the first row of its sample.
    """

    columns: dict[str, np.ndarray]
    chassis: np.ndarray
    track: str | None
    lines: np.ndarray

    def __len__(self) -> int:
        return len(self.chassis)

    def slice(self, start: int, stop: int | None = None) -> PointBatch:
        """The points ``start:stop``; views, not copies."""
        cut = slice(start, stop)
        return PointBatch(
            columns={name: values[cut] for name, values in self.columns.items()},
            chassis=self.chassis[cut],
            track=self.track,
            lines=self.lines[cut],
        )


@dataclass(frozen=True)
class CsvIssue:
    """One problem found in a file: the physical line (1 = header) and what
    was wrong. ``line`` is 0 when the problem is with the file as a whole."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


@dataclass
class IssueLog:
    """Bad rows of one file: counted in full, described for the first few.

    A broken file can have a million bad rows; an operator needs the count
    and the first examples, not a million log lines.
    """

    max_kept: int = 10
    bad_rows: int = 0
    first: list[CsvIssue] = field(default_factory=list)

    def add(self, line: int, message: str, rows: int = 1) -> None:
        self.bad_rows += rows
        if len(self.first) < self.max_kept:
            self.first.append(CsvIssue(line, message))

    def add_lines(self, lines: np.ndarray, message: str) -> None:
        """Count every line in ``lines`` as bad, describing the first few."""
        if not len(lines):
            return
        room = max(self.max_kept - len(self.first), 0)
        for line in lines[:room].tolist():
            self.first.append(CsvIssue(int(line), message))
        self.bad_rows += len(lines)
