"""pitwall_rt.ingest.s3 against a real S3-compatible server.

The server is moto's standalone server, started here as a subprocess on a
free port and reached through ``AWS_ENDPOINT_URL``, exactly as MinIO would
be; credentials are dummies. Each test works in its own bucket.
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import json
import logging
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from aiobotocore.session import get_session

from pitwall_rt.ingest.pipeline import Ingestor
from pitwall_rt.ingest.s3 import S3Poller
from pitwall_rt.ring import RingBuffer
from pitwall_rt.stats import IngestStats

from .serverproc import UNIT_S, free_port, wait_for
from .test_csv_long import FIRST, csv_bytes, long_table, synth, wide_table
from .test_validate import make_tables

REPO = Path(__file__).resolve().parents[1]
ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server in its own process (so its memory is not ours)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    saved = {k: os.environ.get(k) for k in (*ENV, "AWS_ENDPOINT_URL")}
    os.environ.update(ENV, AWS_ENDPOINT_URL=url)
    try:
        wait_for(lambda: _answers(url), 20 * UNIT_S, "moto server to start")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except OSError:
        return False


_buckets = iter(range(10_000))


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    name = f"paddock-{os.getpid()}-{next(_buckets)}"
    run_s3(lambda c: c.create_bucket(Bucket=name))
    return name


_session = get_session()  # one session: botocore loads the S3 model once


def client() -> Any:
    return _session.create_client("s3", region_name="us-east-1")


def run_s3(action: Callable[[Any], Awaitable[Any]]) -> Any:
    async def go() -> Any:
        async with client() as s3:
            return await action(s3)

    return asyncio.run(go())


def put(bucket: str, key: str, body: bytes) -> None:
    run_s3(lambda c: c.put_object(Bucket=bucket, Key=key, Body=body))


def make_ingestor(capacity: int = 200_000) -> tuple[Ingestor, list[np.ndarray]]:
    ingestor = Ingestor(RingBuffer(capacity), make_tables(), IngestStats())
    seen: list[np.ndarray] = []
    ingestor.listeners.append(lambda rows: seen.append(rows.copy()))
    return ingestor, seen


def make_poller(ingestor: Ingestor, bucket: str, data_dir: Path, **kwargs: Any) -> S3Poller:
    settings = SimpleNamespace(
        S3_BUCKET=bucket,
        S3_PREFIX="",
        AWS_REGION="us-east-1",
        S3_POLL_S=0.2 * UNIT_S,
        DATA_DIR=str(data_dir),
    )
    return S3Poller(ingestor, settings, **kwargs)


def poll(poller: S3Poller) -> int:
    return int(run_s3(poller.poll_once))


def accepted(ingestor: Ingestor) -> int:
    return int(ingestor.stats.accepted["s3"])


def wide_csv(per_car: int, cars: int = 2) -> bytes:
    return csv_bytes(wide_table(synth(per_car, cars=cars)))


# -- tests -------------------------------------------------------------------


def test_s3_poller_picks_up_new_objects_within_a_poll_interval(bucket: str, tmp_path: Path) -> None:
    ingestor, _ = make_ingestor()
    poller = make_poller(ingestor, bucket, tmp_path)

    async def scenario() -> None:
        task = asyncio.create_task(poller.run())
        await asyncio.sleep(2 * poller.poll_s)
        assert poller.counts["polls"] >= 1 and accepted(ingestor) == 0
        async with client() as s3:
            await s3.put_object(Bucket=bucket, Key="barber/r1.csv", Body=wide_csv(50))
        put_at = time.monotonic()
        while poller.counts["objects_ingested"] < 1:  # the next poll finds it
            assert time.monotonic() - put_at < poller.poll_s + 10 * UNIT_S, "not picked up"
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    stats = poller.stats()
    assert stats["objects_ingested"] == 1 and stats["points"] == 100
    assert ingestor.tables.track.get("barber") is not None  # track from the key


def test_s3_poller_restart_neither_reingests_nor_skips(bucket: str, tmp_path: Path) -> None:
    put(bucket, "a.csv", wide_csv(30))
    put(bucket, "b.csv.gz", gzip.compress(wide_csv(40)))
    put(bucket, "notes.txt", b"not telemetry")
    first, _ = make_ingestor()
    assert poll(make_poller(first, bucket, tmp_path)) == 2
    assert accepted(first) == 60 + 80

    again, _ = make_ingestor()
    restarted = make_poller(again, bucket, tmp_path)
    assert poll(restarted) == 0 and accepted(again) == 0
    put(bucket, "c.csv", wide_csv(25))
    put(bucket, "a.csv", wide_csv(31))  # re-uploaded: a new ETag is a new object
    assert poll(restarted) == 2 and accepted(again) == 50 + 62
    state = json.loads(restarted.state_path.read_text())
    assert sorted(state["done"]) == ["a.csv", "b.csv.gz", "c.csv"]
    assert state["partial"] == {}


def test_s3_poller_resumes_an_interrupted_object_exactly(bucket: str, tmp_path: Path) -> None:
    """Killed mid-object, a restart skips exactly the points already stored."""
    put(bucket, "big.csv", csv_bytes(long_table(synth(1500, cars=3))))
    ingestor, seen = make_ingestor()
    poller = make_poller(ingestor, bucket, tmp_path, chunk_bytes=64_000)

    async def interrupted() -> None:
        async with client() as s3:
            task = asyncio.create_task(poller.poll_once(s3))

            def kill(_rows: np.ndarray) -> None:
                task.cancel()  # as a restart would, right after the first store

            ingestor.listeners.append(kill)
            await asyncio.gather(task, return_exceptions=True)
            ingestor.listeners.pop()

    asyncio.run(interrupted())
    partial = json.loads(poller.state_path.read_text())["partial"]["big.csv"]
    assert 0 < partial["points"] == accepted(ingestor) < 4500
    resumed = make_poller(ingestor, bucket, tmp_path, chunk_bytes=64_000)
    assert poll(resumed) == 1
    rows = np.concatenate(seen)
    assert len(rows) == 4500 == accepted(ingestor)
    assert len(np.unique(rows[["chassis", "t"]])) == 4500
    assert resumed.stats()["objects_resumed"] == 1


def test_s3_poller_half_broken_csv_yields_good_rows_and_names_key_and_line(
    bucket: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = wide_csv(10).decode().splitlines()
    broken = [*good[:4], "GR86-000,2025-09-06T18:40:00Z,oops", *good[4:8], "\x00garbage"]
    put(bucket, "1-broken.csv", "\n".join(broken).encode())
    put(bucket, "2-fine.csv", wide_csv(5))
    put(bucket, "3-not-csv.csv", b"\x1f\x8b this is no gzip")
    ingestor, _ = make_ingestor()
    poller = make_poller(ingestor, bucket, tmp_path)
    with caplog.at_level(logging.WARNING, logger="pitwall_rt.ingest.s3"):
        assert poll(poller) == 3
    assert accepted(ingestor) == 7 + 10
    stats = poller.stats()
    assert stats["objects_broken"] == 2 and stats["bad_rows"] == 2
    errors = [(e["key"], e["line"]) for e in stats["recent_errors"]]
    assert ("1-broken.csv", 5) in errors and ("1-broken.csv", 10) in errors
    assert any(key == "3-not-csv.csv" for key, _ in errors)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"s3://{bucket}/1-broken.csv: 2 bad rows" in logged and "line 5:" in logged
    assert "gzip data is corrupt" in logged


def test_s3_poller_reads_gzip_long_format_and_reports_repairs(bucket: str, tmp_path: Path) -> None:
    samples = synth(200, cars=2)
    put(bucket, "R1_barber_telemetry.csv.gz", gzip.compress(csv_bytes(long_table(samples))))
    ingestor, seen = make_ingestor()
    poller = make_poller(ingestor, bucket, tmp_path)
    assert poll(poller) == 1
    rows = np.concatenate(seen)
    assert len(rows) == 400 == accepted(ingestor)
    stats = poller.stats()
    assert stats["repairs"]["ecu_clock_mapped"] == 400
    assert stats["repairs"]["time_backwards"] > 0
    assert set(stats["ecu_offset_s"]) == {"GR86-000", "GR86-001"}
    names = {family[0] for family in poller.metric_samples()}
    assert {"pitwall_s3_rows_total", "pitwall_s3_repairs_total"} <= names


def test_s3_poller_ingests_the_real_barber_rows_repaired(bucket: str, tmp_path: Path) -> None:
    put(bucket, "2025/R1_barber_telemetry.csv", FIRST.read_bytes())
    ingestor, seen = make_ingestor()
    poller = make_poller(ingestor, bucket, tmp_path)
    assert poll(poller) == 1
    assert accepted(ingestor) == 516 and not ingestor.stats.rejected
    rows = np.concatenate(seen)
    assert set(ingestor.tables.track.names(rows["track"])) == {"barber"}
    stats = poller.stats()
    assert stats["repairs"]["duplicate_exact"] == 22
    assert stats["repairs"]["duplicate_conflict"] == 23
    assert 151_941 < stats["ecu_offset_s"]["GR86-002"] < 151_942


def test_s3_poller_counts_s3_errors_and_retries_next_poll(s3_endpoint: str, tmp_path: Path) -> None:
    ingestor, _ = make_ingestor()
    name = f"paddock-late-{os.getpid()}"
    poller = make_poller(ingestor, name, tmp_path)
    assert poll(poller) == 0
    assert poller.stats()["s3_errors"] == 1 and "NoSuchBucket" in str(poller.last_s3_error)
    run_s3(lambda c: c.create_bucket(Bucket=name))
    put(name, "x.csv", wide_csv(3))
    assert poll(poller) == 1 and accepted(ingestor) == 6


_BIG = """
import gzip, sys
sys.path.insert(0, {repo!r})
from tests.test_csv_long import csv_bytes, long_table, synth
text = csv_bytes(long_table(synth(5300, cars=20)))
open({out!r}, "wb").write(gzip.compress(text, 1))
print(len(text), text.count(b"\\n") - 1)
"""


def test_s3_poller_streams_a_million_row_object_in_bounded_memory(
    bucket: str, tmp_path: Path
) -> None:
    """1M rows, ~130 MB of text (several GB as Python objects): peak RSS
    growth while ingesting stays far below either."""
    out = tmp_path / "big.csv.gz"
    made = subprocess.run(
        [sys.executable, "-c", _BIG.format(repo=str(REPO), out=str(out))],
        capture_output=True,
        text=True,
        check=True,
    )
    text_bytes, rows = map(int, made.stdout.split())
    assert rows >= 1_000_000
    put(bucket, "barber/big.csv.gz", out.read_bytes())
    ingestor, _ = make_ingestor(capacity=20_000)
    poller = make_poller(ingestor, bucket, tmp_path)
    gc.collect()
    with _PeakRss() as peak:
        assert poll(poller) == 1
    assert poller.stats()["rows"] == rows and poller.stats()["bad_rows"] == 0
    assert accepted(ingestor) == 20 * 5300
    growth = peak.growth_bytes
    assert growth < 300e6 and growth < text_bytes, f"RSS grew {growth / 1e6:.0f} MB"


class _PeakRss:
    """Samples this process's resident set every 5 ms; growth = peak - start."""

    def __init__(self) -> None:
        self.start = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss())

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())

    @property
    def growth_bytes(self) -> int:
        return self.peak - self.start


def _rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
