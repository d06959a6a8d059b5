"""pitwall_rt.ingest.pipeline: payloads -> validation -> ring, counted per source."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from pitwall_rt.ingest.pipeline import Ingestor
from pitwall_rt.payload import Decoded
from pitwall_rt.ring import RingBuffer
from pitwall_rt.schema import SOURCE_ID
from pitwall_rt.stats import IngestStats
from pitwall_rt.validate import validate_points

from .test_validate import make_tables

NOW = 1_757_184_000.0


def make_ingestor(capacity: int = 100) -> tuple[Ingestor, list[np.ndarray]]:
    ingestor = Ingestor(RingBuffer(capacity), make_tables(), IngestStats(), clock=lambda: NOW)
    seen: list[np.ndarray] = []
    ingestor.listeners.append(lambda rows: seen.append(rows.copy()))
    return ingestor, seen


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def test_pipeline_ingest_payloads_stores_good_points_and_counts_per_source() -> None:
    ingestor, seen = make_ingestor()
    result = ingestor.ingest_payloads(
        [
            dumps({"chassis": "a", "speed_kmh": 100.0}),
            dumps([{"chassis": "b"}, {"chassis": "c", "speed_kmh": -5.0}]),
            b"garbage",
            b"[]",
        ],
        "udp",
    )
    assert (result.accepted, result.rejected) == (2, 2)
    assert result.errors[0].startswith("not JSON")
    assert len(result.errors) == 2
    stats = ingestor.stats
    assert stats.accepted == {"udp": 2}
    assert stats.rejected == {"udp": 2}
    assert stats.reasons == {("udp", "bad_json"): 1, ("udp", "out_of_range:speed_kmh"): 1}
    assert stats.payloads == {"udp": 4}
    assert stats.empty_payloads == {"udp": 1}
    assert ingestor.ring.written == 2
    rows = ingestor.ring.newest(2)
    assert ingestor.tables.chassis.names(rows["chassis"]).tolist() == ["a", "b"]
    assert rows["source"].tolist() == [SOURCE_ID["udp"]] * 2
    assert rows["recv_t"].tolist() == [NOW, NOW]
    assert len(seen) == 1 and len(seen[0]) == 2


def test_pipeline_counts_sources_separately() -> None:
    ingestor, _ = make_ingestor()
    ingestor.ingest_payloads([dumps({"chassis": "a"})], "udp")
    ingestor.ingest_payloads([dumps([{"chassis": "a"}, {"chassis": "b"}, 7])], "http")
    ingestor.ingest_values([{"chassis": "d"}], "demo")
    snap = ingestor.stats.snapshot()
    assert snap["accepted"] == {"udp": 1, "http": 2, "demo": 1}
    assert snap["rejected"] == {"http": 1}
    assert snap["rejected_by_reason"] == {"http": {"not_object": 1}}
    assert (snap["accepted_total"], snap["rejected_total"]) == (4, 1)
    sources = ingestor.ring.newest(4)["source"].tolist()
    assert sources == [SOURCE_ID[s] for s in ("udp", "http", "http", "demo")]


def test_pipeline_rejected_count_matches_the_points_rejected() -> None:
    ingestor, _ = make_ingestor()
    result = ingestor.ingest_payloads(
        [dumps([{"speed_kmh": 1.0}, {"lap": 2}, {"chassis": "ok"}, {"gear": 1}])], "http"
    )
    assert (result.accepted, result.rejected) == (1, 3)
    assert ingestor.stats.rejected["http"] == 3
    assert ingestor.stats.reasons[("http", "missing:chassis")] == 3


def test_pipeline_listeners_receive_each_accepted_batch_in_order() -> None:
    ingestor, seen = make_ingestor()
    other: list[int] = []
    ingestor.listeners.append(lambda rows: other.append(len(rows)))
    ingestor.ingest_payloads(
        [dumps([{"chassis": "a", "lap": 1}, {"chassis": "a", "lap": 2}])], "udp"
    )
    ingestor.ingest_payloads([dumps({"chassis": "a", "lap": 3})], "http")
    assert [r["lap"].tolist() for r in seen] == [[1.0, 2.0], [3.0]]
    assert [r["source"].tolist() for r in seen] == [[SOURCE_ID["udp"]] * 2, [SOURCE_ID["http"]]]
    assert other == [2, 1]


def test_pipeline_nothing_accepted_means_no_listener_call_and_no_write() -> None:
    ingestor, seen = make_ingestor()
    result = ingestor.ingest_payloads([b"nope", dumps({"speed_kmh": 1.0}), b""], "udp")
    assert (result.accepted, result.rejected) == (0, 2)
    assert seen == []
    assert ingestor.ring.written == 0
    assert ingestor.stats.empty_payloads == {"udp": 1}


def test_pipeline_ndjson_payload_with_a_bad_line_keeps_the_good_ones() -> None:
    ingestor, _ = make_ingestor()
    body = dumps({"chassis": "a"}) + b"\n{oops\n" + dumps({"chassis": "b"})
    result = ingestor.ingest_payloads([body], "http")
    assert (result.accepted, result.rejected) == (2, 1)


def test_pipeline_errors_list_is_capped_at_five() -> None:
    ingestor, _ = make_ingestor()
    result = ingestor.ingest_payloads([b"x"] * 4 + [dumps([7, 8, 9])], "udp")
    assert result.rejected == 7
    assert len(result.errors) == 5


def test_pipeline_ingest_decoded_counts_decode_failures() -> None:
    ingestor, _ = make_ingestor()
    decoded = Decoded(values=[{"chassis": "a"}])
    decoded.fail("bad_json", "not JSON: x")
    result = ingestor.ingest_decoded(decoded, "http")
    assert (result.accepted, result.rejected, result.errors) == (1, 1, ["not JSON: x"])
    assert ingestor.stats.reasons == {("http", "bad_json"): 1}


def test_pipeline_store_writes_prevalidated_rows_with_their_source() -> None:
    ingestor, seen = make_ingestor()
    rows = validate_points([{"chassis": "f1car"}], ingestor.tables, NOW).rows
    ingestor.store(rows, "f1")
    ingestor.store(rows[:0], "f1")
    assert ingestor.stats.accepted == {"f1": 1}
    assert ingestor.ring.newest(1)["source"].tolist() == [SOURCE_ID["f1"]]
    assert len(seen) == 1


def test_pipeline_ring_overflow_keeps_the_newest_and_counts_all_accepted() -> None:
    ingestor, _ = make_ingestor(capacity=16)
    ingestor.ingest_payloads(
        [dumps([{"chassis": "a", "lapdist_m": float(i)} for i in range(40)])], "udp"
    )
    assert ingestor.stats.accepted["udp"] == 40
    assert ingestor.ring.overwritten == 24
    assert ingestor.ring.newest(1)["lapdist_m"].tolist() == [39.0]
