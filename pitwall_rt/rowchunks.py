"""Rows buffered in fixed-size chunks that are handed over whole and reused.

The recorder gets a small batch per UDP flush (tens of rows, hundreds of
times a second) and writes them once a second from a thread. Keeping a copy
of each batch and joining them at the hand-over cost the event loop 2-3 ms
a second at 10,000 points/s (hundreds of small arrays to view and copy), and
every join wrote into fresh memory, whose first touch costs a page fault per
4 KiB (about 10 us each on the development VM). Here a batch is copied
straight into the current chunk; a hand-over passes the chunks as they are,
and the writer gives them back for reuse once written, so after the first
second the loop copies into memory that is already resident.
"""

from __future__ import annotations

import threading

import numpy as np

from .schema import POINT_DTYPE, as_records


class RowChunks:
    """Append-only row buffer of ``chunk_rows``-row blocks.

    ``take`` is called from the event loop; ``give_back`` may be called from
    the writer thread. Chunks kept for reuse are capped at ``max_spare``, so
    the memory held is bounded by what was buffered at the busiest moment,
    plus that.
    """

    def __init__(self, chunk_rows: int, max_spare: int) -> None:
        if chunk_rows < 1:
            raise ValueError("chunk_rows must be at least 1")
        self.chunk_rows = chunk_rows
        self.max_spare = max_spare
        self._full: list[np.ndarray] = []
        self._current: np.ndarray | None = None
        self._fill = 0
        self._rows = 0
        self._spare: list[np.ndarray] = []
        self._spare_lock = threading.Lock()

    def __len__(self) -> int:
        return self._rows

    def append(self, rows: np.ndarray) -> None:
        """Copy ``rows`` (POINT_DTYPE) in; the caller may reuse its array."""
        records = as_records(rows)  # one copy, not one per field
        done, n = 0, len(rows)
        while done < n:
            if self._current is None:
                self._current = self._new_chunk()
                self._fill = 0
            step = min(self.chunk_rows - self._fill, n - done)
            as_records(self._current)[self._fill : self._fill + step] = records[done : done + step]
            self._fill += step
            done += step
            if self._fill == self.chunk_rows:
                self._full.append(self._current)
                self._current = None
        self._rows += n

    def take(self) -> list[np.ndarray]:
        """Everything buffered, oldest first, as views of whole chunks (the
        last one may be partly filled); the buffer is empty afterwards. Pass
        the views to ``give_back`` once they are no longer needed."""
        out = self._full
        if self._current is not None and self._fill:
            out.append(self._current[: self._fill])
            self._current = None
        self._full = []
        self._rows = 0
        return out

    def give_back(self, parts: list[np.ndarray]) -> None:
        """Return taken parts for reuse (thread-safe)."""
        with self._spare_lock:
            for part in parts:
                chunk = part if part.base is None else part.base
                if len(self._spare) >= self.max_spare:
                    break
                if (
                    isinstance(chunk, np.ndarray)
                    and chunk.dtype == POINT_DTYPE
                    and chunk.shape == (self.chunk_rows,)
                ):
                    self._spare.append(chunk)

    def _new_chunk(self) -> np.ndarray:
        with self._spare_lock:
            if self._spare:
                return self._spare.pop()
        return np.empty(self.chunk_rows, dtype=POINT_DTYPE)
