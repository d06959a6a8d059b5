"""What POST /api/ingest answers, whichever HTTP path read the body."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import orjson
import pytest

from pitwall_rt.ingest.parse_process import ParseProcess, ParserUnavailable
from pitwall_rt.ingest.pipeline import IngestResult
from pitwall_rt.payload import BodyError
from pitwall_rt.web.ingest_answer import (
    INTERNAL_ERROR,
    LOOP_PARSE_MAX_BYTES,
    answer_here,
    answer_in_parser,
    is_ndjson,
    parser_for,
)

from .test_pipeline import make_ingestor


class FakeParser:
    """Stands in for the parse process: answers with ``outcome``."""

    def __init__(self, outcome: IngestResult | Exception) -> None:
        self.outcome = outcome

    async def ingest_http(self, body: bytes, ndjson: bool) -> IngestResult:
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


def in_parser(outcome: IngestResult | Exception) -> Any:
    parser = cast(ParseProcess, FakeParser(outcome))
    return asyncio.run(answer_in_parser(parser, b"[]", False))


def test_ingest_answer_here_counts_accepted_and_rejected_points() -> None:
    ingestor, _ = make_ingestor()
    body = orjson.dumps([{"chassis": "a", "speed_kmh": 90.0}, {"chassis": "b", "lap": "x"}])
    answer = answer_here(ingestor, body, False)
    reply = orjson.loads(answer.body)
    assert (answer.status, reply["accepted"], reply["rejected"]) == (200, 1, 1)
    assert len(reply["errors"]) == 1 and "lap" in reply["errors"][0]
    assert answer.retry_after_s is None


def test_ingest_answer_here_refuses_a_body_that_is_not_json_with_400() -> None:
    ingestor, seen = make_ingestor()
    answer = answer_here(ingestor, b'[{"chassis": ', False)
    assert answer.status == 400 and orjson.loads(answer.body)["error"].startswith("body is not")
    assert seen == []


def test_ingest_answer_in_parser_maps_each_outcome_to_its_status() -> None:
    ok = in_parser(IngestResult(3, 1, ["point 2: bad"]))
    assert (ok.status, orjson.loads(ok.body)) == (
        200,
        {"accepted": 3, "rejected": 1, "errors": ["point 2: bad"]},
    )
    bad = in_parser(BodyError("body is not JSON: unexpected end"))
    assert (bad.status, orjson.loads(bad.body)) == (
        400,
        {"error": "body is not JSON: unexpected end"},
    )
    gone = in_parser(ParserUnavailable())
    assert (gone.status, gone.retry_after_s) == (503, 1)
    assert "send it again" in orjson.loads(gone.body)["error"]
    bug = in_parser(RuntimeError("a bug"))
    assert (bug.status, orjson.loads(bug.body)) == (500, {"error": INTERNAL_ERROR})


def test_ingest_answer_here_answers_a_bug_with_500_and_logs_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ingestor, _ = make_ingestor()

    def broken(*_: object) -> None:
        raise RuntimeError("a bug")

    ingestor.ingest_body = broken  # type: ignore[method-assign]
    answer = answer_here(ingestor, b"[]", False)
    assert (answer.status, orjson.loads(answer.body)) == (500, {"error": INTERNAL_ERROR})
    assert "RuntimeError: a bug" in caplog.text


@pytest.mark.parametrize(
    ("content_type", "ndjson"),
    [
        ("application/x-ndjson", True),
        ("Application/X-NDJSON; charset=utf-8", True),
        ("application/jsonl", True),
        ("application/ndjson ;q=1", True),
        ("application/json", False),
        ("", False),
        ("text/plain; application/x-ndjson", False),
    ],
)
def test_ingest_answer_reads_ndjson_from_the_content_type(content_type: str, ndjson: bool) -> None:
    assert is_ndjson(content_type) is ndjson


def test_ingest_answer_sends_only_big_bodies_to_the_parse_process() -> None:
    parser = cast(ParseProcess, FakeParser(IngestResult()))
    assert parser_for(parser, b"x" * LOOP_PARSE_MAX_BYTES) is None
    assert parser_for(parser, b"x" * (LOOP_PARSE_MAX_BYTES + 1)) is parser
    assert parser_for(None, b"x" * (LOOP_PARSE_MAX_BYTES + 1)) is None
