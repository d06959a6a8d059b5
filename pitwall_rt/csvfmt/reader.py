"""Streaming CSV reader: bytes (plain or gzip) in, point batches out.

Sans-I/O, like the rest of the package: :meth:`CsvReader.feed` takes bytes as
they arrive (from S3, a file, a socket), :meth:`CsvReader.close` ends the
stream; both return the :class:`PointBatch` es that became ready. Memory is
bounded by ``chunk_bytes`` of text (plus the long format's reorder window),
whatever the file size.

How a chunk is read: the text buffer is cut at the last newline before
``chunk_bytes``, so chunk boundaries depend only on the bytes, never on how
they were fed (a restart that skips the points it already stored sees the
same points in the same order). Each chunk goes to ``pyarrow.csv.read_csv``
with the header's names and the decoder's column types; only the columns the
decoder needs are converted. Rows with the wrong number of fields are
skipped and reported with their line; a chunk where a value does not convert
is read again as text and only its bad rows are dropped and reported. Line
numbers count physical lines with the header as line 1; quoted newlines
inside values are not supported (telemetry has none).

Formats are told apart by the header (:func:`detect_format`); a header we
can't read stops the file with one issue at line 1. Invalid UTF-8 in a text
column loses the chunk it is in (reported with its line range).
"""

from __future__ import annotations

import io
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from . import IssueLog, PointBatch
from . import long as long_format
from . import wide as wide_format
from .repair import Repairs

DEFAULT_CHUNK_BYTES: Final = 4 << 20
"""Text per parsed chunk. Larger amortises per-chunk work, smaller holds
less; 4 MiB is about 30,000 long-format rows, a parse step of ~30 ms."""

KNOWN_TRACKS: Final = (
    "barber",
    "cota",
    "indianapolis",
    "road_america",
    "sebring",
    "sonoma",
    "vir",
)
_TRACK_ALIASES: Final = {
    "circuit_of_the_americas": "cota",
    "indy": "indianapolis",
    "roadamerica": "road_america",
    "virginia": "vir",
}

Decoder = long_format.LongDecoder | wide_format.WideDecoder


def detect_format(names: list[str]) -> str | None:
    """``"long"`` (GR Cup export), ``"wide"`` (canonical columns) or None."""
    if all(name in names for name in long_format.REQUIRED):
        return "long"
    if wide_format.is_wide(names):
        return "wide"
    return None


def parse_header(line: bytes) -> list[str]:
    """Column names from a header line: BOM, quotes and spaces stripped;
    a repeated name gets a ``.2`` suffix so the first one wins."""
    text = line.decode("utf-8-sig", errors="replace").strip()
    names: list[str] = []
    for raw in text.split(","):
        name = raw.strip().strip('"').strip()
        while name in names:
            name += ".2"
        names.append(name)
    return names


def track_from_key(key: str, known: Iterable[str] = KNOWN_TRACKS) -> str | None:
    """The track an object key or path names, e.g. ``2025/R1_barber_telemetry.csv``
    -> ``barber``; matched on whole words, so ``vir`` is not found in ``virtual``."""
    words = re.split(r"[^a-z0-9]+", key.casefold())
    joined = "_" + "_".join(words) + "_"
    for track in (*known, *_TRACK_ALIASES):
        if f"_{track.casefold()}_" in joined:
            return _TRACK_ALIASES.get(track, track)
    return None


class CsvReader:
    """One CSV stream (a file, an S3 object) from first byte to last."""

    def __init__(
        self,
        track: str | None = None,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        hold_s: float = long_format.HOLD_S,
        max_issues: int = 10,
    ) -> None:
        self.track = track
        self.chunk_bytes = chunk_bytes
        self.hold_s = hold_s
        self.repairs: Repairs = Counter()
        self.issues = IssueLog(max_issues)
        self.format: str | None = None
        self.lines = 0
        """Physical lines consumed so far, header included."""
        self.rows = 0
        """Data rows parsed (good or bad)."""
        self.points = 0
        self.bytes_in = 0
        self.failed = False
        """True when the file could not be read on (bad header, corrupt gzip)."""
        self._buffer = bytearray()
        self._head = b""
        self._gunzip: zlib._Decompress | None = None
        self._sniffed = False
        self._skipping = False
        self._names: list[str] | None = None
        self._decoder: Decoder | None = None

    @property
    def offsets_s(self) -> dict[str, float]:
        """Estimated ECU clock offset per chassis, seconds (long format only)."""
        if isinstance(self._decoder, long_format.LongDecoder):
            return self._decoder.offsets.by_name(self._decoder.chassis_names)
        return {}

    def feed(self, data: bytes) -> list[PointBatch]:
        """Take the next bytes of the stream; return the points now ready."""
        self.bytes_in += len(data)
        if self.failed:
            return []
        out: list[PointBatch] = []
        for text in self._decompress(data):
            self._buffer += text
            out += self._drain(final=False)
            if self.failed:
                break
        return out

    def close(self) -> list[PointBatch]:
        """End of stream: read what is buffered and pass on held samples."""
        out: list[PointBatch] = []
        if not self._sniffed:
            self._sniffed = True
            self._buffer += self._head
        if self._gunzip is not None and not self.failed:
            tail = self._gunzip.flush()
            self._buffer += tail
            if not self._gunzip.eof:
                self.issues.add(self.lines + 1, "gzip data ends early (truncated upload?)", 0)
        if not self.failed:
            out += self._drain(final=True)
            if self._names is None and self.lines == 0:
                self.issues.add(0, "file is empty", 0)
        if self._decoder is not None:
            out += self._count(self._decoder.finish())
        return out

    def read_file(self, path: str | Path, read_bytes: int = 1 << 20) -> Iterator[PointBatch]:
        """Read a whole file from disk (``pitwall-rt replay``, tests)."""
        with open(path, "rb") as handle:
            while data := handle.read(read_bytes):
                yield from self.feed(data)
        yield from self.close()

    # -- bytes to text -----------------------------------------------------

    def _decompress(self, data: bytes) -> Iterator[bytes]:
        """Text from raw bytes: gunzip (every member) when the stream is gzip,
        in pieces of at most ``chunk_bytes`` so a zip bomb can't blow memory."""
        if not self._sniffed:
            self._head += data
            if len(self._head) < 2:
                return
            data, self._head = self._head, b""
            self._sniffed = True
            if data[:2] == b"\x1f\x8b":
                self._gunzip = zlib.decompressobj(wbits=31)
        if self._gunzip is None:
            yield data
            return
        while True:  # until input is used up and zlib had no more to give
            try:
                text = self._gunzip.decompress(data, self.chunk_bytes)
            except zlib.error as exc:
                self._fail(self.lines + 1, f"gzip data is corrupt: {exc}")
                return
            yield text
            if self._gunzip.eof:
                data = self._gunzip.unused_data
                if not data:
                    return
                self._gunzip = zlib.decompressobj(wbits=31)
                continue
            data = self._gunzip.unconsumed_tail
            if not data and len(text) < self.chunk_bytes:
                return

    def _fail(self, line: int, message: str) -> None:
        self.issues.add(line, message, 0)
        self.failed = True
        self._buffer.clear()

    # -- text to chunks ----------------------------------------------------

    def _drain(self, final: bool) -> list[PointBatch]:
        """Parse every whole chunk in the buffer (and the rest when final)."""
        out: list[PointBatch] = []
        if self._names is None and not self._read_header(final):
            return out
        while not self.failed:
            if self._skipping and not self._skip_long_line():
                break
            size = len(self._buffer)
            if size >= self.chunk_bytes:
                cut = self._buffer.rfind(b"\n", 0, self.chunk_bytes) + 1
                if cut == 0:
                    self._skipping = True
                    self.issues.add(self.lines + 1, f"line longer than {self.chunk_bytes} bytes")
                    continue
            elif final and size:
                cut = size
            else:
                break
            with memoryview(self._buffer) as view, view[:cut] as part:
                body = bytes(part)
            del self._buffer[:cut]
            out += self._count(self._parse(body))
        return out

    def _skip_long_line(self) -> bool:
        """Drop the rest of an over-long line; False while its end isn't here."""
        end = self._buffer.find(b"\n")
        if end < 0:
            self._buffer.clear()
            return False
        del self._buffer[: end + 1]
        self.lines += 1
        self._skipping = False
        return True

    def _read_header(self, final: bool) -> bool:
        end = self._buffer.find(b"\n")
        if end < 0 and not final:
            if len(self._buffer) > self.chunk_bytes:
                self._fail(1, "no header line (first line too long)")
            return False
        line = bytes(self._buffer if end < 0 else self._buffer[:end])
        del self._buffer[: len(line) + 1]
        self.lines = 1
        names = parse_header(line)
        self.format = detect_format(names)
        if self.format is None:
            shown = ",".join(names[:6])[:120]
            self._fail(1, f"not a telemetry CSV header (wide or GR Cup long): {shown!r}")
            return False
        self._names = names
        self._decoder = self._make_decoder(names)
        return True

    def _make_decoder(self, names: list[str]) -> Decoder:
        if self.format == "long":
            return long_format.LongDecoder(self.track, self.repairs, self.issues, self.hold_s)
        return wide_format.WideDecoder(names, self.track, self.repairs, self.issues)

    def _count(self, batches: list[PointBatch]) -> list[PointBatch]:
        batches = [b for b in batches if len(b)]
        self.points += sum(len(b) for b in batches)
        return batches

    # -- chunk to table ----------------------------------------------------

    def _parse(self, body: bytes) -> list[PointBatch]:
        assert self._decoder is not None and self._names is not None
        first = self.lines + 1
        types = {k: v for k, v in self._decoder.column_types.items() if k in self._names}
        try:
            table, lines, n_lines = self._read_table(body, types, first)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            try:
                table, lines, n_lines = self._read_as_text(body, types, first)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                n_lines = body.count(b"\n") + (0 if body.endswith(b"\n") else 1)
                self.lines += n_lines
                last = first + n_lines - 1
                self.issues.add(first, f"lines {first}-{last} unreadable: {exc}", n_lines)
                return []
        self.lines += n_lines
        self.rows += table.num_rows
        return self._decoder.decode(table, lines)

    def _read_table(
        self, body: bytes, types: dict[str, pa.DataType], first: int, threads: bool = True
    ) -> tuple[pa.Table, np.ndarray, int]:
        """Parse with pyarrow: (table, line of each row, physical lines read).

        With empty lines kept, every physical line is a row or an invalid
        row, which is what makes the line numbers exact. Rows with a wrong
        field count are reported and skipped.
        """
        assert self._names is not None
        invalid: list[tuple[int | None, int, int]] = []

        def on_invalid(row: pacsv.InvalidRow) -> str:
            invalid.append((row.number, row.expected_columns, row.actual_columns))
            return "skip"

        table = pacsv.read_csv(
            io.BytesIO(body),
            read_options=pacsv.ReadOptions(column_names=self._names, use_threads=threads),
            parse_options=pacsv.ParseOptions(
                invalid_row_handler=on_invalid, ignore_empty_lines=False
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=types, include_columns=list(types), strings_can_be_null=True
            ),
        )
        n_lines = table.num_rows + len(invalid)
        lines = first + np.arange(n_lines, dtype=np.int64)
        if not invalid:
            return table, lines, n_lines
        if any(number is None for number, _, _ in invalid):
            return self._read_table(body, types, first, threads=False)
        numbers = np.array([number for number, _, _ in invalid], dtype=np.int64)
        for number, expected, actual in invalid:
            self.issues.add(first + int(number or 0) - 1, f"{actual} fields, expected {expected}")
        return table, np.delete(lines, numbers - 1), n_lines

    def _read_as_text(
        self, body: bytes, types: dict[str, pa.DataType], first: int
    ) -> tuple[pa.Table, np.ndarray, int]:
        """The slow path: every column as text, converted here row by row-safe
        vectorised casts, so only the bad rows are dropped and reported."""
        text_types = {name: pa.string() for name in types}
        table, lines, n_lines = self._read_table(body, text_types, first, threads=False)
        bad = np.zeros(table.num_rows, dtype=bool)
        for name, kind in types.items():
            if pa.types.is_floating(kind):
                values, wrong = wide_format.to_float(table[name])
                what = "not a number"
            elif pa.types.is_timestamp(kind):
                values, wrong = wide_format.to_time_ns(table[name])
                what = "not a time"
            else:
                continue
            fresh = np.flatnonzero(wrong & ~bad)
            keep = self.issues.max_kept
            shown = table[name].take(pa.array(fresh[:keep])).to_pylist()
            for i, raw in zip(fresh[:keep].tolist(), shown, strict=True):
                self.issues.add(int(lines[i]), f"{name} is {what}: {raw!r}")
            self.issues.add_lines(lines[fresh[keep:]], f"{name} is {what}")
            table = table.set_column(table.column_names.index(name), name, pa.array(values))
            bad |= wrong
        if bad.any():
            return table.filter(pa.array(~bad)), lines[~bad], n_lines
        return table, lines, n_lines
