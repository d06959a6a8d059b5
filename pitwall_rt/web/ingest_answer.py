"""What ``POST /api/ingest`` answers for a body, whichever HTTP path read it.

Two paths read ingest requests: aiohttp's handler, and the lean keep-alive
path in ``lean_http`` that answers the common request shape without
aiohttp's per-request machinery. Both call these functions, so a body gets
the same status and JSON from either.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import orjson

from ..ingest.parse_process import ParseProcess, ParserUnavailable
from ..ingest.pipeline import Ingestor, IngestResult
from ..payload import BodyError

LOOP_PARSE_MAX_BYTES = 64 * 1024
"""Bodies up to this size (about 250 points, well under a millisecond to
parse) are parsed in the loop: a round trip to the parse process costs more
than that. Bigger ones go to the parse process, so they never hold up the
broadcast."""
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl"})
INTERNAL_ERROR = "internal error; see the server log"
"""The message of every 500 the server sends (the error middleware's too)."""

log = logging.getLogger(__name__)


class Answer(NamedTuple):
    """An HTTP status and its JSON body; ``retry_after_s`` for a 503."""

    status: int
    body: bytes
    retry_after_s: int | None = None


def is_ndjson(content_type: str) -> bool:
    """Whether a Content-Type header names NDJSON (parameters ignored)."""
    return content_type.partition(";")[0].strip().lower() in NDJSON_TYPES


def error_answer(status: int, message: str) -> Answer:
    return Answer(status, orjson.dumps({"error": message}))


def parser_for(parser: ParseProcess | None, body: bytes) -> ParseProcess | None:
    """The parse process if ``body`` should be parsed there, None for the loop."""
    return parser if len(body) > LOOP_PARSE_MAX_BYTES else None


def answer_here(ingestor: Ingestor, body: bytes, ndjson: bool) -> Answer:
    """Parse and store a body in the loop (a small one, or ``INGEST_PARSER=loop``)."""
    try:
        result = ingestor.ingest_body(body, ndjson, "http")
    except BodyError as exc:
        return error_answer(400, str(exc))
    except Exception:
        return _internal_error()
    return _accepted(result)


async def answer_in_parser(parser: ParseProcess, body: bytes, ndjson: bool) -> Answer:
    """Parse a body in the parse process and store it."""
    try:
        result = await parser.ingest_http(body, ndjson)
    except BodyError as exc:
        return error_answer(400, str(exc))
    except ParserUnavailable:
        message = "the parse process restarted before storing this body; send it again"
        return Answer(503, orjson.dumps({"error": message}), retry_after_s=1)
    except Exception:
        return _internal_error()
    return _accepted(result)


def _internal_error() -> Answer:
    """A bug: logged with its traceback, answered 500 on either HTTP path."""
    log.exception("unhandled error on POST /api/ingest")
    return error_answer(500, INTERNAL_ERROR)


def _accepted(result: IngestResult) -> Answer:
    return Answer(
        200,
        orjson.dumps(
            {"accepted": result.accepted, "rejected": result.rejected, "errors": result.errors}
        ),
    )
