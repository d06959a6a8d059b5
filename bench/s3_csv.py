"""CSV ingest from S3: rows/s for both formats, beside pyarrow's raw parse.

Each object (GR Cup long format and wide format, plain and gzip, ~1M rows)
is uploaded to a local moto S3 server (its own process, same machine), then
ingested by ``S3Poller.poll_once`` into a fresh ring: download, gunzip,
parse, pivot, repair, validate, store. Beside it, in the same run and on the
same bytes: a bare S3 GET (download only), and ``pyarrow.csv.read_csv`` with
default options (type inference, all columns, all cores) on the bytes in
memory: the raw parse rate, no network, no pivot. Best of ``--repeat`` runs.

    python bench/s3_csv.py            # ~1M rows per object
    python bench/s3_csv.py --quick    # 200k rows per object
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import REPO, free_port, table

sys.path.insert(0, str(REPO))
from aiobotocore.session import get_session

from pitwall_rt.ingest.pipeline import Ingestor
from pitwall_rt.ingest.s3 import S3Poller
from pitwall_rt.ring import RingBuffer
from pitwall_rt.schema import StringTable
from pitwall_rt.stats import IngestStats
from pitwall_rt.validate import Tables
from tests.test_csv_long import csv_bytes, long_table, synth, wide_table

BUCKET = "pitwall-bench"


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto server did not start")


def objects(rows: int) -> list[tuple[str, str, bytes, int]]:
    """(format, key, body, data rows): the same kind of samples both ways."""
    cars = 20
    long_text = csv_bytes(long_table(synth(max(int(rows / (cars * 9.6)), 1), cars=cars)))
    wide_text = csv_bytes(wide_table(synth(rows // cars, cars=cars)))
    out = []
    for fmt, text in (("long", long_text), ("wide", wide_text)):
        n = text.count(b"\n") - 1
        out.append((fmt, f"barber/{fmt}.csv", text, n))
        out.append((fmt, f"barber/{fmt}.csv.gz", gzip.compress(text, 6), n))
    return out


def pyarrow_parse_s(body: bytes, gz: bool) -> float:
    start = time.perf_counter()
    source: Any = pa.BufferReader(body)
    if gz:
        source = pa.CompressedInputStream(source, "gzip")
    pacsv.read_csv(source)
    return time.perf_counter() - start


async def get_only_s(client: Any, key: str) -> float:
    start = time.perf_counter()
    response = await client.get_object(Bucket=BUCKET, Key=key)
    async with response["Body"] as body:
        while await body.read(1 << 20):
            pass
    return time.perf_counter() - start


async def ingest_s(client: Any, key: str, workdir: Path) -> tuple[float, int, dict[str, int]]:
    tables = Tables(chassis=StringTable(1024), track=StringTable(256, reserved=("",)))
    ingestor = Ingestor(RingBuffer(20_000), tables, IngestStats())
    settings = SimpleNamespace(
        S3_BUCKET=BUCKET, S3_PREFIX=key, AWS_REGION="us-east-1", S3_POLL_S=1.0, DATA_DIR=""
    )
    poller = S3Poller(ingestor, settings, data_dir=tempfile.mkdtemp(dir=workdir))
    start = time.perf_counter()
    await poller.poll_once(client)
    took = time.perf_counter() - start
    rejected = int(ingestor.stats.rejected.get("s3", 0))
    if rejected or poller.counts["bad_rows"]:
        raise RuntimeError(f"{key}: {rejected} rejected, {poller.counts['bad_rows']} bad rows")
    return took, int(ingestor.stats.accepted["s3"]), dict(poller.repairs)


async def run(rows: int, repeat: int, workdir: Path) -> list[list[Any]]:
    results = []
    async with get_session().create_client("s3", region_name="us-east-1") as client:
        await client.create_bucket(Bucket=BUCKET)
        for fmt, key, body, n in objects(rows):
            await client.put_object(Bucket=BUCKET, Key=key, Body=body)
            gz = key.endswith(".gz")
            parse = min(pyarrow_parse_s(body, gz) for _ in range(repeat))
            get = min([await get_only_s(client, key) for _ in range(repeat)])
            runs = [await ingest_s(client, key, workdir) for _ in range(repeat)]
            took, points, _repairs = min(runs, key=lambda run: run[0])
            results.append(
                [
                    fmt,
                    key.split("/")[-1],
                    f"{n:,}",
                    f"{len(body) / 1e6:.0f}",
                    f"{n / get:,.0f}",
                    f"{n / parse:,.0f}",
                    f"**{n / took:,.0f}**",
                    f"{parse / took:.2f}",
                    f"{points / took:,.0f}",
                ]
            )
            await client.delete_object(Bucket=BUCKET, Key=key)
            print(f"  {key}: {n / took:,.0f} rows/s", file=sys.stderr)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="200k rows per object")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows = 200_000 if args.quick else args.rows
    proc, url = start_moto()
    os.environ.update(
        AWS_ENDPOINT_URL=url,
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
    )
    try:
        with tempfile.TemporaryDirectory() as workdir:
            results = asyncio.run(run(rows, args.repeat, Path(workdir)))
    finally:
        proc.terminate()
        proc.wait(10)
    header = [
        "format",
        "object",
        "rows",
        "MB",
        "S3 GET only, rows/s",
        "pyarrow read_csv, rows/s",
        "pitwall S3 ingest, rows/s",
        "ingest / pyarrow",
        "points/s",
    ]
    title = f"CSV from S3 (moto on the same machine), best of {args.repeat}"
    print(table(title, header, results))


if __name__ == "__main__":
    main()
