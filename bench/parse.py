"""JSON ingest's three tiers offline: microseconds of CPU a point.

The same payloads go through each tier alone, in this process, alternating
tier by tier over ``--rounds`` rounds (the best round counts, so a noisy
neighbour on a shared machine shows less):

- the C scanner (``row_scan.scan``), the first tier of ``check_payloads``;
- msgspec into structs, then copied into rows (``strict_decode``), which
  takes what the scanner refuses;
- orjson into dicts, then checked column by column (``validate``), which
  takes what both refuse and gives each bad point its reason.

Workloads: the ingest bench's single-point and 40-point datagrams, the
same points as 40 NDJSON lines a datagram, 100-point HTTP bodies, and the
real GR Cup points in tests/data/grcup, 40
to a datagram (their values are float32 readings printed with up to 17
digits, and their channels use the aliases).

    python bench/parse.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _harness import datagrams, table

from pitwall_rt import row_scan, strict_decode
from pitwall_rt.ingest.pipeline import check_decoded
from pitwall_rt.payload import decode_payloads
from pitwall_rt.schema import StringTable
from pitwall_rt.validate import Tables
from tests.grcup_json import grcup_points

NOW = 1_757_184_000.0


def _tables() -> Tables:
    return Tables(chassis=StringTable(1024), track=StringTable(256, reserved=("",)))


def grcup_payloads() -> list[bytes]:
    """The real GR Cup sample's points, 40 to a payload."""
    points = grcup_points(with_times=False)
    return [orjson.dumps(points[i : i + 40]) for i in range(0, len(points), 40)]


def c_scanner(payloads: list[bytes], tables: Tables) -> int:
    scanned = row_scan.scan(payloads, tables, NOW)
    assert scanned is not None and not scanned.refused
    return len(scanned.rows)


def msgspec_structs(payloads: list[bytes], tables: Tables) -> int:
    points: list[Any] = []
    for payload in payloads:
        if strict_decode.decode_into(payload, points) is None:
            points.extend(strict_decode.decode_lines(payload) or ())  # NDJSON
    rows = strict_decode.rows_from_points(points, tables, NOW)
    assert rows is not None
    return len(rows)


def orjson_dicts(payloads: list[bytes], tables: Tables) -> int:
    return len(check_decoded(decode_payloads(payloads), tables, NOW).rows)


TIERS: dict[str, Callable[[list[bytes], Tables], int]] = {
    "C scanner": c_scanner,
    "msgspec structs": msgspec_structs,
    "orjson dicts + validate": orjson_dicts,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    if not row_scan.AVAILABLE:
        sys.exit("pitwall_rt._row_scan is not compiled: pip install -e . with gcc present")
    single = datagrams(1, 2000)
    bodies = [b"[" + b",".join(single[i : i + 100]) + b"]" for i in range(0, 2000, 100)]
    workloads = {
        "UDP, 1 point/datagram (2,000)": single,
        "UDP, 40 points/datagram (50)": datagrams(40, 50),
        "UDP, 40 NDJSON lines/datagram (50)": [
            b"\n".join(single[i : i + 40]) for i in range(0, 2000, 40)
        ],
        "HTTP, 100-point bodies (20, one call each)": bodies,
        "GR Cup, real points, 40/datagram": grcup_payloads(),
    }
    rows = []
    for label, payloads in workloads.items():
        one_call = label.startswith("HTTP")
        best = dict.fromkeys(TIERS, float("inf"))
        points = 0
        for _ in range(args.rounds):
            for tier, run in TIERS.items():
                tables = _tables()
                start = time.perf_counter()
                if one_call:
                    points = sum(run([body], tables) for body in payloads)
                else:
                    points = run(payloads, tables)
                best[tier] = min(best[tier], (time.perf_counter() - start) / points * 1e6)
        c, strict, general = best.values()
        figures = [f"{c:.2f}", f"{strict:.2f}", f"{general:.2f}"]
        rows.append([label, f"{points:,}", *figures, f"{strict / c:.1f}x", f"{general / c:.1f}x"])
    print(
        table(
            f"JSON to stored rows, offline (us a point, best of {args.rounds} rounds)",
            ["payloads", "points", *TIERS, "msgspec / C", "orjson / C"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
