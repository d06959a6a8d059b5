"""End to end: the real server polls a real S3-compatible server (moto) for CSV files."""

from __future__ import annotations

import time
from pathlib import Path

from .serverproc import UNIT_S, running, wait_for
from .test_s3_poller import bucket, put, s3_endpoint  # noqa: F401  (pytest fixtures)

DATA = Path(__file__).parent / "data" / "grcup"


def test_s3_server_ingests_a_dropped_long_csv_once_and_reports_a_broken_one(
    bucket: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    raw = (DATA / "R1_barber_telemetry_data.lines0001-5001.csv").read_bytes()
    env = {"S3_BUCKET": bucket, "S3_PREFIX": "race1/", "S3_POLL_S": "0.2"}
    with running(tmp_path, env=env) as srv:
        put(bucket, "race1/barber/R1_telemetry.csv", raw)
        health = wait_for(
            lambda: (h := srv.health())["s3"]["objects_ingested"] == 1 and h,
            30 * UNIT_S,
            "the object to be ingested",
        )
        accepted = health["accepted"]["s3"]
        assert accepted > 0
        assert health["s3"]["repairs"]["duplicate_exact"] > 0
        _, recent = srv.get("/api/recent/5")
        assert {p["chassis"] for p in recent} == {"GR86-002"}
        assert {p.get("track") for p in recent} == {"barber"}

        header, body = raw.split(b"\n", 1)
        broken = header + b"\n" + body[:2000] + b"\n\xff\xfe not,a,row\n"
        put(bucket, "race1/barber/broken.csv", broken)
        health = wait_for(
            lambda: (h := srv.health())["s3"]["recent_errors"] and h, 30 * UNIT_S, "the report"
        )
        error = health["s3"]["recent_errors"][0]
        assert error["key"] == "race1/barber/broken.csv" and error.get("line")
        assert srv.get("/api/health")[0] == 200

    with running(tmp_path, env=env) as again:  # same DATA_DIR: state file remembers both
        time.sleep(1.0 * UNIT_S)
        health = again.health()
        assert health["s3"]["polls"] >= 2
        assert health["accepted"].get("s3", 0) == 0
