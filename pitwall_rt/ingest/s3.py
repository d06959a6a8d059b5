"""S3 polling: logger files uploaded by teams, streamed into the ingest path.

Every ``S3_POLL_S`` seconds the poller lists ``S3_BUCKET``/``S3_PREFIX`` and
ingests each ``.csv`` / ``.csv.gz`` object it has not finished before, oldest
first, one at a time. An object is streamed (1 MiB reads, parsed by
:class:`CsvReader` in a worker thread while the next bytes download); the
event loop only validates and stores, 4096 points per step, like every
other source, with source ``s3``. Custom endpoints (MinIO, moto) come from
the standard ``AWS_ENDPOINT_URL``; credentials from the usual AWS chain.

What was ingested lives in ``DATA_DIR/s3_state_<bucket>.json``: key -> ETag
of every finished object, so a restart never ingests one twice and a
re-uploaded object (new ETag) is ingested again; plus, per unfinished
object, a checkpoint (points stored so far, every 5 s and on shutdown), so
a restart mid-object skips exactly those points: chunking depends only on
the bytes, so the same points come out in the same order. The file is
replaced atomically.

Failure policy: an S3 or network error ends the poll and the object is
retried on the next one; a broken file (bad rows, bad header, corrupt gzip)
is ingested as far as it is readable, reported with key and line number in
the log, ``stats()`` and metrics, marked done, and the poller goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from ..csvfmt import PointBatch
from ..csvfmt.reader import DEFAULT_CHUNK_BYTES, KNOWN_TRACKS, CsvReader, track_from_key
from ..validate import rows_from_columns
from .pipeline import Ingestor

log = logging.getLogger(__name__)

SOURCE = "s3"
READ_BYTES = 1 << 20
"""Bytes asked of the HTTP stream per read."""
FEED_BYTES = 1 << 20
"""Bytes handed to the parser thread per step (compressed, for .gz)."""
STORE_POINTS = 4096
"""Points validated and stored per event-loop step (about 1 ms of work)."""
CHECKPOINT_S = 5.0
"""How often, seconds, the object in progress is checkpointed."""
RECENT_ERRORS = 10

_S3_ERRORS = (BotoCoreError, ClientError, aiohttp.ClientError, asyncio.TimeoutError, OSError)
_CSV_KEY = re.compile(r"\.csv(\.gz)?$", re.IGNORECASE)


MetricFamily = tuple[str, str, str, list[tuple[dict[str, str], float]]]


class S3Settings(Protocol):
    """The settings the poller reads (``config.Settings`` has them all)."""

    @property
    def S3_BUCKET(self) -> str: ...
    @property
    def S3_PREFIX(self) -> str: ...
    @property
    def AWS_REGION(self) -> str: ...
    @property
    def S3_POLL_S(self) -> float: ...
    @property
    def DATA_DIR(self) -> str: ...


@dataclass(frozen=True)
class S3Object:
    """One listed object: its key, ETag (quotes stripped), size and upload time."""

    key: str
    etag: str
    size: int
    modified_s: float


class S3Poller:
    """Polls one bucket/prefix and feeds new CSV objects to the ingestor.

    ``run()`` loops until cancelled; ``poll_once(client)`` is one listing and
    the ingestion of what it found (tests and tools call it directly).
    ``stats()`` is the dict for ``/api/health``; ``metric_samples()`` the
    same counters as Prometheus families.
    """

    def __init__(
        self,
        ingestor: Ingestor,
        settings: S3Settings,
        data_dir: str | Path | None = None,
        *,
        track: str | None = None,
        known_tracks: tuple[str, ...] = KNOWN_TRACKS,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ingestor = ingestor
        self.bucket = settings.S3_BUCKET
        self.prefix = settings.S3_PREFIX
        self.region = settings.AWS_REGION
        self.poll_s = settings.S3_POLL_S
        self.track = track
        self.known_tracks = known_tracks
        self.chunk_bytes = chunk_bytes
        self.clock = clock
        directory = Path(data_dir if data_dir is not None else settings.DATA_DIR)
        self.state_path = directory / f"s3_state_{re.sub(r'[^A-Za-z0-9.-]', '_', self.bucket)}.json"
        self.counts: Counter[str] = Counter()
        self.repairs: Counter[str] = Counter()
        self.offsets_s: dict[str, float] = {}
        self.recent_errors: deque[dict[str, Any]] = deque(maxlen=RECENT_ERRORS)
        self.last_poll_s: float | None = None
        self.last_s3_error: str | None = None
        self.pending = 0
        self._done: dict[str, str] = {}
        self._partial: dict[str, dict[str, Any]] = {}
        self._current: _Progress | None = None
        # One parser thread: objects are read one at a time, in order.
        self._parser = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s3-csv")
        self._load_state()

    # -- lifecycle ------------------------------------------------------------

    async def run(self) -> None:
        """Poll every ``S3_POLL_S`` until cancelled. Returns at once without a bucket."""
        if not self.bucket:
            log.info("S3 polling off: S3_BUCKET is not set")
            return
        config = AioConfig(
            connect_timeout=10, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"}
        )
        session = get_session()
        try:
            async with session.create_client(
                "s3", region_name=self.region, config=config
            ) as client:
                log.info("polling s3://%s/%s every %g s", self.bucket, self.prefix, self.poll_s)
                while True:
                    await self.poll_once(client)
                    await asyncio.sleep(self.poll_s)
        finally:
            self.close()

    def close(self) -> None:
        """Let the parser thread go (it finishes the step it is in, if any)."""
        self._parser.shutdown(wait=False, cancel_futures=True)

    async def poll_once(self, client: Any) -> int:
        """List once and ingest every new object; returns how many finished."""
        self.counts["polls"] += 1
        self.last_poll_s = self.clock()
        try:
            objects = await self._list(client)
        except _S3_ERRORS as exc:
            self._s3_error(f"listing s3://{self.bucket}/{self.prefix}: {exc}")
            return 0
        new = [o for o in objects if self._done.get(o.key) != o.etag]
        self.counts["objects_listed"] = len(objects)
        self.pending = len(new)
        finished = 0
        for obj in sorted(new, key=lambda o: (o.modified_s, o.key)):
            try:
                await self._ingest(client, obj)
            except _S3_ERRORS as exc:
                self._s3_error(f"reading s3://{self.bucket}/{obj.key}: {exc}")
                break
            finished += 1
            self.pending -= 1
        return finished

    async def _list(self, client: Any) -> list[S3Object]:
        found = []
        paginator = client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for item in page.get("Contents", ()):
                if _CSV_KEY.search(item["Key"]):
                    found.append(
                        S3Object(
                            key=item["Key"],
                            etag=str(item.get("ETag", "")).strip('"'),
                            size=int(item.get("Size", 0)),
                            modified_s=item["LastModified"].timestamp(),
                        )
                    )
        return found

    # -- one object -------------------------------------------------------------

    async def _ingest(self, client: Any, obj: S3Object) -> None:
        """Stream one object into the ring; mark it done unless S3 failed."""
        skip = self._resume_point(obj)
        track = self.track or track_from_key(obj.key, self.known_tracks)
        reader = CsvReader(track=track, chunk_bytes=self.chunk_bytes)
        progress = self._current = _Progress(obj, skip, self.clock())
        started = time.monotonic()
        try:
            response = await client.get_object(Bucket=self.bucket, Key=obj.key, IfMatch=obj.etag)
            async with response["Body"] as body:
                await self._stream(body, reader, progress)
        except (*_S3_ERRORS, asyncio.CancelledError):
            self._checkpoint(progress)
            raise
        except Exception as exc:  # a bug must not stop the poller: report, go on
            log.exception("s3://%s/%s: failed while ingesting", self.bucket, obj.key)
            reader.issues.add(reader.lines, f"internal error: {exc!r}", 0)
            reader.failed = True
        finally:
            self._current = None
        self._finish(obj, reader, progress, time.monotonic() - started)

    async def _stream(self, body: Any, reader: CsvReader, progress: _Progress) -> None:
        """Download and parse in step: the thread parses block n while block
        n+1 downloads; the event loop only validates and stores."""
        loop = asyncio.get_running_loop()
        parsing: asyncio.Future[list[PointBatch]] | None = None
        async for block in _blocks(body):
            if parsing is not None:
                await self._store(await parsing, progress)
            parsing = loop.run_in_executor(self._parser, reader.feed, block)
            self.counts["bytes"] += len(block)
        if parsing is not None:
            await self._store(await parsing, progress)
        await self._store(await loop.run_in_executor(self._parser, reader.close), progress)

    async def _store(self, batches: list[PointBatch], progress: _Progress) -> None:
        """Validate and store in slices of ``STORE_POINTS``, yielding to the
        loop between them; skip points a previous run already stored."""
        for batch in batches:
            for start in range(0, len(batch), STORE_POINTS):
                part = batch.slice(start, start + STORE_POINTS)
                stored_before = max(0, min(len(part), progress.skip - progress.points))
                progress.points += len(part)
                if stored_before < len(part):
                    self._validate_and_store(part.slice(stored_before))
                    await asyncio.sleep(0)
        now = self.clock()
        if now - progress.saved_s >= CHECKPOINT_S:
            progress.saved_s = now
            self._checkpoint(progress)

    def _validate_and_store(self, batch: PointBatch) -> None:
        tables, now = self.ingestor.tables, self.clock()
        checked = rows_from_columns(batch.columns, batch.chassis, batch.track, tables, now)
        self.ingestor.accept(checked.rows, SOURCE, checked.reasons)
        self.counts["points"] += len(batch)

    def _finish(self, obj: S3Object, reader: CsvReader, progress: _Progress, took_s: float) -> None:
        """Mark done, merge the object's counts, report its problems once."""
        self._done[obj.key] = obj.etag
        self._partial.pop(obj.key, None)
        self._save_state()
        self.counts["objects_ingested"] += 1
        self.counts["rows"] += reader.rows
        self.counts["bad_rows"] += reader.issues.bad_rows
        self.repairs.update(reader.repairs)
        self.offsets_s.update(reader.offsets_s)
        issues = reader.issues.first
        if issues or reader.failed:
            self.counts["objects_broken"] += 1
            for issue in issues[:3]:
                entry = {"key": obj.key, "line": issue.line, "error": issue.message}
                self.recent_errors.append({**entry, "bad_rows": reader.issues.bad_rows})
            shown = "; ".join(str(issue) for issue in issues[:3])
            log.warning(
                "s3://%s/%s: %d bad rows%s: %s",
                self.bucket,
                obj.key,
                reader.issues.bad_rows,
                " (file not readable on)" if reader.failed else "",
                shown,
            )
        repairs = ", ".join(f"{k} {v}" for k, v in sorted(reader.repairs.items()) if v)
        log.info(
            "s3://%s/%s: %s format, %d rows -> %d points in %.2f s%s",
            self.bucket,
            obj.key,
            reader.format or "unknown",
            reader.rows,
            progress.points,
            took_s,
            f"; repaired: {repairs}" if repairs else "",
        )

    def _resume_point(self, obj: S3Object) -> int:
        part = self._partial.get(obj.key)
        if not part or part.get("etag") != obj.etag or part.get("chunk_bytes") != self.chunk_bytes:
            return 0
        self.counts["objects_resumed"] += 1
        return int(part.get("points", 0))

    def _s3_error(self, message: str) -> None:
        self.counts["s3_errors"] += 1
        self.last_s3_error = message
        log.warning("S3 error (will retry next poll): %s", message)

    # -- state file -------------------------------------------------------------

    def _load_state(self) -> None:
        try:
            doc = json.loads(self.state_path.read_text())
            self._done = {str(k): str(v) for k, v in doc["done"].items()}
            self._partial = {str(k): dict(v) for k, v in doc.get("partial", {}).items()}
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            aside = self.state_path.with_suffix(".corrupt")
            log.error("S3 state %s unreadable (%s); moved to %s", self.state_path, exc, aside)
            with contextlib.suppress(OSError):
                self.state_path.replace(aside)

    def _checkpoint(self, progress: _Progress) -> None:
        self._partial[progress.obj.key] = progress.checkpoint(self.chunk_bytes)
        self._save_state()

    def _save_state(self) -> None:
        """Write the state file atomically (temp file, fsync, rename)."""
        doc = {"version": 1, "bucket": self.bucket, "done": self._done, "partial": self._partial}
        tmp = self.state_path.with_suffix(".tmp")
        try:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w") as handle:
                json.dump(doc, handle, separators=(",", ":"))
                handle.flush()
                os.fsync(handle.fileno())
            tmp.replace(self.state_path)
        except OSError as exc:
            log.error("cannot write S3 state %s: %s", self.state_path, exc)

    # -- reporting --------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters for ``/api/health`` (JSON-ready)."""
        current = self._current
        now_reading = (
            None if current is None else {"key": current.obj.key, "points": current.points}
        )
        return {
            "enabled": bool(self.bucket),
            "bucket": self.bucket,
            "prefix": self.prefix,
            "poll_s": self.poll_s,
            "last_poll_s": self.last_poll_s,
            "objects_listed": self.counts["objects_listed"],
            "objects_pending": self.pending,
            **{name: self.counts[name] for name in _COUNTERS},
            "repairs": dict(self.repairs),
            "ecu_offset_s": dict(self.offsets_s),
            "current": now_reading,
            "recent_errors": list(self.recent_errors),
            "last_s3_error": self.last_s3_error,
        }

    def metric_samples(self) -> list[MetricFamily]:
        """(name, kind, help, samples) per family, for ``metrics.Exposition.add``."""
        families: list[MetricFamily] = [
            (f"pitwall_s3_{name}_total", "counter", help_text, [({}, float(self.counts[name]))])
            for name, help_text in _COUNTERS.items()
        ]
        repairs = [({"kind": kind}, float(n)) for kind, n in sorted(self.repairs.items())]
        families.append(
            ("pitwall_s3_repairs_total", "counter", "CSV repairs applied, by kind", repairs)
        )
        pending: list[tuple[dict[str, str], float]] = [({}, float(self.pending))]
        families.append(("pitwall_s3_objects_pending", "gauge", "objects not yet done", pending))
        return families


_COUNTERS = {
    "polls": "bucket listings",
    "objects_ingested": "objects read to the end (including broken ones)",
    "objects_broken": "objects with bad rows or unreadable parts",
    "objects_resumed": "objects resumed from a checkpoint after a restart",
    "s3_errors": "S3 or network errors (retried next poll)",
    "rows": "CSV data rows read",
    "points": "points decoded and handed to validation",
    "bad_rows": "CSV rows dropped as unreadable",
    "bytes": "object bytes downloaded",
}


@dataclass
class _Progress:
    """The object being ingested. ``points`` counts every point the reader
    gave so far, whether stored now or by the run that left ``skip``."""

    obj: S3Object
    skip: int
    saved_s: float
    points: int = 0

    def checkpoint(self, chunk_bytes: int) -> dict[str, Any]:
        return {
            "etag": self.obj.etag,
            "points": max(self.points, self.skip),
            "chunk_bytes": chunk_bytes,
        }


async def _blocks(body: Any) -> AsyncIterator[bytes]:
    """The body in blocks of about ``FEED_BYTES``."""
    parts: list[bytes] = []
    size = 0
    while data := await body.read(READ_BYTES):
        parts.append(data)
        size += len(data)
        if size >= FEED_BYTES:
            yield b"".join(parts)
            parts, size = [], 0
    if parts:
        yield b"".join(parts)
