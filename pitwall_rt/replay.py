"""``pitwall-rt replay`` sends a recorded session to a running server; ``generate`` makes one.

    pitwall-rt replay PATH [--rate X] [--to udp://HOST:PORT | http://HOST:PORT]
    pitwall-rt generate [--out DIR|FILE.json] [--cars N] [--laps N] [--hz F]

PATH is a session directory or segment (``recording.py``), demo JSON
(``pitwall-demo/1``), a JSON array of points, or a CSV in either format
(read and repaired by ``csvfmt``, as from S3). Points go out in
sample-time order at X times real time (the ``meta_time`` spacing; gaps
longer than ``--max-gap`` seconds are shortened; ``--rate 0`` is as fast as
the server takes them). UDP sends JSON arrays of up to 40 points per
datagram and watches the server's ``/api/health`` so it never has more than
a window of points in flight (the kernel drops what overflows the receive
buffer); HTTP posts 500-point batches. The summary (stdout, JSON) says how
many points were sent, accepted and rejected: from the HTTP responses, or
for UDP from the change in the server's health counters, which assumes no
other sender uses the same source meanwhile.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO
from urllib.parse import urlsplit

import numpy as np
import orjson
import pyarrow as pa

from .csvfmt import PointBatch
from .csvfmt.reader import CsvReader, track_from_key
from .demo_gen import DEMO_FORMAT, generate_demo, load_demo, write_demo
from .history import parse_time
from .recording import SEGMENT_SUFFIX, Recorder, epoch_seconds, read_session
from .schema import INT_FIELDS, NUMERIC_FIELDS, SOURCE_ID, StringTable
from .validate import EPOCH_MS_THRESHOLD, Tables, validate_points

UDP_POINTS = 40  # per datagram
UDP_MAX_BYTES = 60_000  # below the 65,507-byte UDP payload limit, with room to spare
HTTP_POINTS = 500  # per POST
UDP_WINDOW_POINTS = 4_000  # in flight before waiting; ~1 MB of the server's 4 MB buffer
UDP_FALLBACK_PPS = 1_000  # datagrams/s when the server's health can't be read


class ReplayError(Exception):
    """Something the user can fix (a path, an address, a format); one line."""


# -- reading what to send -------------------------------------------------------------


@dataclass
class Points:
    """Points in sample-time order: ``times_s`` (epoch s, NaN = none) and
    ``get(i, j)``, which builds points i..j-1 as JSON objects on demand, so a
    long recording is held as columns rather than dicts."""

    times_s: np.ndarray
    get: Callable[[int, int], list[dict[str, Any]]]

    def __len__(self) -> int:
        return len(self.times_s)


def _points_from_table(table: pa.Table) -> Points:
    """Canonical columns with ``meta_time`` as float epoch seconds."""
    times = np.asarray(table.column("meta_time").to_numpy(zero_copy_only=False), dtype=float)
    order = np.argsort(times, kind="stable")
    table, times = table.take(order), times[order]

    def get(i: int, j: int) -> list[dict[str, Any]]:
        rows = table.slice(i, j - i).to_pylist()
        return [{k: v for k, v in row.items() if v is not None} for row in rows]

    return Points(times, get)


def _time_of(point: Any) -> float:
    value = point.get("meta_time") if isinstance(point, dict) else None
    try:
        seconds = parse_time(str(value)) if value is not None else float("nan")
    except ValueError:
        return float("nan")
    return seconds / 1000.0 if seconds > EPOCH_MS_THRESHOLD else seconds


def _points_from_dicts(points: list[Any]) -> Points:
    """Sent as they are, invalid ones included: the server is the judge."""
    times = np.array([_time_of(p) for p in points], dtype=float)
    order = np.argsort(times, kind="stable")
    ordered = [points[k] for k in order]
    return Points(times[order], lambda i, j: ordered[i:j])


def _recording_points(path: Path) -> Points:
    table = read_session(path).drop_columns(["recv_t", "source"])
    seconds = pa.array(epoch_seconds(table.column("meta_time")))
    return _points_from_table(table.set_column(0, "meta_time", seconds))


def _demo_points(path: Path, anchor_s: float) -> Points:
    """``pitwall-demo/1``: sample times are seconds from the start; they are
    anchored at ``anchor_s`` (now), as if the session were happening."""
    points = load_demo(path)
    for point in points:
        point["meta_time"] = anchor_s + float(point.pop("t_s"))
    return _points_from_dicts(points)


def _json_points(path: Path, anchor_s: float) -> Points:
    doc = orjson.loads(path.read_bytes())
    if isinstance(doc, dict) and doc.get("format") == DEMO_FORMAT:
        return _demo_points(path, anchor_s)
    return _points_from_dicts(doc if isinstance(doc, list) else [doc])


def _csv_points(path: Path) -> Points:
    """Either CSV format, read (and repaired) by ``csvfmt`` as the S3 poller does."""
    reader = CsvReader(track=track_from_key(path.name))
    tables = [_batch_table(batch) for batch in reader.read_file(path) if len(batch)]
    if reader.issues.bad_rows or reader.failed:
        examples = "; ".join(map(str, reader.issues.first[:3]))
        print(f"replay: {path}: {reader.issues.bad_rows} bad rows ({examples})", file=sys.stderr)
    if not tables:
        return _points_from_dicts([])
    return _points_from_table(pa.concat_tables(tables, promote_options="default"))


def _batch_table(batch: PointBatch) -> pa.Table:
    columns = {"meta_time": pa.array(batch.columns["meta_time"], from_pandas=True)}
    columns["chassis"] = pa.array(batch.chassis, pa.string())
    if batch.track:
        columns["track"] = pa.array([batch.track] * len(batch), pa.string())
    for name in NUMERIC_FIELDS:
        if name in batch.columns:
            values = pa.array(batch.columns[name], from_pandas=True)  # NaN -> null
            columns[name] = values.cast(pa.int64()) if name in INT_FIELDS else values
    return pa.table(columns)


_READ_ERRORS = (OSError, KeyError, TypeError, ValueError, pa.ArrowException)  # DemoFileError too


def load_points(path: Path, now_s: float) -> Points:
    """Whatever ``path`` holds, as points in sample-time order."""
    if not path.exists():
        raise ReplayError(f"{path}: no such file or directory")
    suffixes = "".join(path.suffixes[-2:]).lower()
    try:
        if path.is_dir() or suffixes.endswith(SEGMENT_SUFFIX):
            return _recording_points(path)
        if suffixes.endswith(".json"):
            return _json_points(path, now_s)
        if suffixes.endswith((".csv", ".csv.gz")):
            return _csv_points(path)
    except _READ_ERRORS as exc:
        raise ReplayError(f"{path}: cannot read: {exc}") from None
    raise ReplayError(f"{path}: not a recording, .json or .csv")


def due_offsets_s(times_s: np.ndarray, rate: float, max_gap_s: float = 10.0) -> np.ndarray:
    """Seconds after the start at which each point is due: the sample-time
    spacing divided by ``rate``, each gap capped at ``max_gap_s`` of sample
    time. Missing times (NaN) take the previous point's; ``rate`` 0 makes
    every point due at once."""
    n = len(times_s)
    if n == 0 or rate <= 0:
        return np.zeros(n)
    times = np.asarray(times_s, dtype=float)
    valid = ~np.isnan(times)
    if not valid.any():
        return np.zeros(n)
    filled = times[np.maximum.accumulate(np.where(valid, np.arange(n), 0))]
    filled[: np.argmax(valid)] = times[np.argmax(valid)]
    gaps = np.clip(np.diff(filled, prepend=filled[0]), 0.0, max_gap_s)
    return np.cumsum(gaps) / rate


def paced_slices(
    offsets_s: np.ndarray,
    max_points: int,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> Iterator[tuple[int, int]]:
    """Yield ``(i, j)`` index ranges of at most ``max_points`` as they fall
    due, sleeping until the next point is due when none is."""
    start = clock()
    i, n = 0, len(offsets_s)
    while i < n:
        elapsed = clock() - start
        if elapsed < offsets_s[i]:
            sleep(float(offsets_s[i]) - elapsed)
            elapsed = max(clock() - start, float(offsets_s[i]))  # a sleep may end a hair early
        due = int(np.searchsorted(offsets_s, elapsed, side="right"))
        j = min(due, i + max_points)
        yield i, j
        i = j


# -- talking to the server ----------------------------------------------------------


class _Http:
    """One keep-alive HTTP connection for JSON requests."""

    def __init__(self, url: str, api_key: str, timeout_s: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ReplayError(f"not an http://HOST:PORT address: {url!r}")
        self.url = url
        self._conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout_s)
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
        for attempt in (1, 2):  # the server may have closed an idle keep-alive connection
            try:
                self._conn.request(method, path, body=body, headers=self._headers)
                response = self._conn.getresponse()
                return response.status, _json_or_text(response.read())
            except (http.client.HTTPException, ConnectionError) as exc:
                self._conn.close()
                if attempt == 2:
                    raise ReplayError(f"{self.url}{path}: {exc}") from None
            except OSError as exc:
                raise ReplayError(f"{self.url}{path}: {exc}") from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._conn.close()


def _json_or_text(raw: bytes) -> Any:
    try:
        return orjson.loads(raw or b"null")
    except orjson.JSONDecodeError:  # a proxy's HTML error page, say
        return raw[:200].decode(errors="replace")


class HttpSender:
    """Posts batches to ``/api/ingest``; the responses give accepted/rejected."""

    max_points = HTTP_POINTS

    def __init__(self, url: str, api_key: str = "") -> None:
        self._http = _Http(url, api_key)
        self.accepted = self.rejected = 0

    def send(self, points: list[dict[str, Any]]) -> None:
        status, body = self._http.request("POST", "/api/ingest", orjson.dumps(points))
        if status not in (200, 202) or not isinstance(body, dict):
            raise ReplayError(f"server answered {status}: {body}")
        self.accepted += int(body.get("accepted", 0))
        self.rejected += int(body.get("rejected", 0))

    def finish(self, timeout_s: float) -> tuple[int | None, int | None]:
        self._http.close()
        return self.accepted, self.rejected


class UdpSender:
    """Sends datagrams, holding back while the server is more than ``window``
    points behind: its ``/api/health`` counts what it handled (accepted +
    rejected by UDP), so points sent minus that are in flight."""

    max_points = UDP_POINTS

    def __init__(
        self, url: str, health_url: str, api_key: str = "", window: int = UDP_WINDOW_POINTS
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "udp" or not parts.hostname or not parts.port:
            raise ReplayError(f"not a udp://HOST:PORT address: {url!r}")
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.connect((parts.hostname, parts.port))
        self._health = _Http(health_url, api_key, timeout_s=5.0)
        self.window = window
        self.sent = 0
        self._last_send_s = 0.0
        self._base = (0, 0)
        base = self._handled()
        self.blind = base is None  # no feedback: a fixed datagram rate, no accounting
        if base is None:
            print(f"replay: no health at {health_url}; pacing blindly", file=sys.stderr)
        self._base = base or (0, 0)

    def _handled(self) -> tuple[int, int] | None:
        """(accepted, rejected) by UDP since we started, or None if unknown."""
        try:
            status, body = self._health.request("GET", "/api/health")
            accepted, rejected = body["accepted"].get("udp", 0), body["rejected"].get("udp", 0)
        except (ReplayError, TypeError, KeyError, AttributeError):
            return None
        if status != 200:
            return None
        return int(accepted) - self._base[0], int(rejected) - self._base[1]

    def send(self, points: list[dict[str, Any]]) -> None:
        for data in _datagrams(points):
            if self.blind:
                time.sleep(max(0.0, self._last_send_s + 1 / UDP_FALLBACK_PPS - time.monotonic()))
                self._last_send_s = time.monotonic()
            with contextlib.suppress(ConnectionRefusedError):  # nobody there yet: lost
                self._sock.send(data)
        self.sent += len(points)
        if not self.blind and self.sent % (self.window // 4) < len(points):
            self._wait_until_in_flight(self.window, timeout_s=5.0)

    def _wait_until_in_flight(self, limit: int, timeout_s: float) -> tuple[int, int] | None:
        """Poll health until at most ``limit`` points are unhandled, or the
        counts stop moving for ``timeout_s`` (then the rest were lost)."""
        last_change, last_total = time.monotonic(), -1
        while (handled := self._handled()) is not None:
            total = sum(handled)
            if self.sent - total <= limit:
                return handled
            if total != last_total:
                last_total, last_change = total, time.monotonic()
            elif time.monotonic() - last_change > timeout_s:
                return handled
            time.sleep(0.002)
        return None

    def finish(self, timeout_s: float) -> tuple[int | None, int | None]:
        handled = None if self.blind else self._wait_until_in_flight(0, timeout_s)
        self._sock.close()
        self._health.close()
        return handled if handled is not None else (None, None)


def _datagrams(points: list[dict[str, Any]]) -> Iterator[bytes]:
    """JSON arrays under ``UDP_MAX_BYTES``, halving a batch that is too big."""
    data = orjson.dumps(points)
    if len(data) <= UDP_MAX_BYTES or len(points) == 1:
        yield data
        return
    half = len(points) // 2
    yield from _datagrams(points[:half])
    yield from _datagrams(points[half:])


# -- the command ----------------------------------------------------------------------


class Progress:
    """A one-line progress bar on stderr, redrawn at most every ``every_s``."""

    def __init__(self, total: int, stream: TextIO | None, every_s: float = 0.2) -> None:
        self.total = total
        self.stream = stream
        self.every_s = every_s
        self.start = time.monotonic()
        self._drawn = 0.0

    def update(self, done: int, force: bool = False) -> None:
        now = time.monotonic()
        if self.stream is None or (not force and now - self._drawn < self.every_s):
            return
        self._drawn = now
        pct = 100.0 * done / self.total if self.total else 100.0
        rate = done / max(now - self.start, 1e-9)
        self.stream.write(f"\rreplay {done:,}/{self.total:,} points {pct:5.1f}%  {rate:,.0f}/s ")
        self.stream.flush()


class Sender(Protocol):
    """Where points go: ``HttpSender`` or ``UdpSender`` (or a test's fake)."""

    max_points: int

    def send(self, points: list[dict[str, Any]]) -> None: ...

    def finish(self, timeout_s: float) -> tuple[int | None, int | None]: ...


def run_replay(
    points: Points,
    sender: Sender,
    rate: float,
    progress: Progress,
    max_gap_s: float = 10.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Send everything at ``rate`` times real time; the summary as a dict."""
    offsets = due_offsets_s(points.times_s, rate, max_gap_s)
    start, sent = clock(), 0
    for i, j in paced_slices(offsets, sender.max_points, clock, sleep):
        sender.send(points.get(i, j))
        sent = j
        progress.update(sent)
    progress.update(sent, force=True)
    accepted, rejected = sender.finish(timeout_s=5.0)
    seconds = clock() - start
    return {
        "sent": sent,
        "accepted": accepted,
        "rejected": rejected,
        "seconds": round(seconds, 3),
        "points_per_s": round(sent / max(seconds, 1e-9), 1),
    }


def _replay_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pitwall-rt replay", description=__doc__.split("\n")[0])
    parser.add_argument("path", help="session dir, .arrows segment, demo .json, or .csv")
    parser.add_argument("--rate", type=float, default=1.0, help="x real time; 0 = flat out")
    parser.add_argument("--to", default="udp://127.0.0.1:20777", help="udp:// or http://HOST:PORT")
    parser.add_argument("--health", help="server HTTP address for UDP accounting")
    parser.add_argument("--api-key", default="", help="API_KEY of the server, if set")
    parser.add_argument("--max-gap", type=float, default=10.0, help="longest pause, sample s")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``pitwall-rt replay``: 0 when everything was sent, 1 on an error."""
    args = _replay_parser().parse_args(argv)
    try:
        if args.rate < 0:
            raise ReplayError(f"--rate must be >= 0, got {args.rate}")
        points = load_points(Path(args.path), now_s=time.time())
        sender: HttpSender | UdpSender
        if args.to.startswith("http://"):
            sender = HttpSender(args.to.rstrip("/"), args.api_key)
        else:
            host = urlsplit(args.to).hostname or "127.0.0.1"
            sender = UdpSender(args.to, args.health or f"http://{host}:8081", args.api_key)
        progress = Progress(len(points), None if args.quiet else sys.stderr)
        summary = run_replay(points, sender, args.rate, progress, args.max_gap)
    except ReplayError as exc:
        print(f"\npitwall-rt replay: {exc}", file=sys.stderr)
        return 1
    print(
        ("" if args.quiet else "\n")
        + f"replayed {summary['sent']:,} points in {summary['seconds']} s "
        f"({summary['points_per_s']:,.0f}/s) to {args.to}: "
        f"accepted {summary['accepted']}, rejected {summary['rejected']}",
        file=sys.stderr,
    )
    print(orjson.dumps(summary).decode())
    return 0


# -- generate -------------------------------------------------------------------------


def write_recording(doc: dict[str, Any], data_dir: Path, start_s: float) -> Path:
    """Record a demo document as a session that started at ``start_s``."""
    points = [
        {**dict(zip(doc["fields"], row, strict=True)), "chassis": car["chassis"]}
        for car in doc["cars"]
        for row in car["rows"]
    ]
    for point in points:
        point["meta_time"] = start_s + float(point.pop("t_s"))
        point["track"] = doc["track"]
    tables = Tables(chassis=StringTable(4096), track=StringTable(64, reserved=("",)))
    rows = validate_points(points, tables, start_s).rows
    rows["recv_t"] = rows["t"]
    rows["source"] = SOURCE_ID["demo"]
    recorder = Recorder(data_dir, tables, clock=lambda: start_s)
    recorder.append(rows)
    recorder.close()
    return recorder.path


def main_generate(argv: Sequence[str] | None = None) -> int:
    """``pitwall-rt generate``: a ``demo_gen`` session (simulated GR86s) as a
    recording under ``--out`` (a data dir) or as demo JSON; prints the path."""
    parser = argparse.ArgumentParser(prog="pitwall-rt generate", description="Synthetic sessions.")
    parser.add_argument("--out", default="./data", help="data dir (recording) or FILE.json")
    parser.add_argument("--format", choices=("auto", "recording", "demo"), default="auto")
    parser.add_argument("--cars", type=int, default=6)
    parser.add_argument("--laps", type=int, default=3)
    parser.add_argument("--hz", type=float, default=20.0, help="samples per second per car")
    parser.add_argument("--track", default="barber")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--start", help="session start, ISO-8601 or epoch s (default: now)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    demo = args.format == "demo" or (args.format == "auto" and out.suffix == ".json")
    try:
        start_s = parse_time(args.start) if args.start else time.time()
    except ValueError:
        parser.error(f"--start must be ISO-8601 or epoch seconds, got {args.start!r}")
    try:
        doc = generate_demo(args.track, args.cars, args.laps, args.hz, args.seed)
    except ValueError as exc:
        parser.error(str(exc))
    if demo:
        write_demo(doc, out)
    else:
        out = write_recording(doc, out, start_s)
    print(out)
    return 0
