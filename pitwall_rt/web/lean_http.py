"""The HTTP listener: a lean path for ingest in front of aiohttp.

Why: under ingest load the event loop's one core is the limit, and
aiohttp's per-request machinery (a task, request and response objects,
middleware, routing) cost the loop about as much as parsing the 100 points
a request carries. Ingest clients send the same simple request again and
again on keep-alive connections, so each connection starts here: a request
that ``parse_ingest_head`` recognises is answered directly, through the same
``ingest_answer`` functions aiohttp's handler uses. The first request it
does not recognise hands the connection, with every byte not yet answered,
to aiohttp's own protocol for good; aiohttp then answers that request and
all later ones exactly as it would have. Handing over happens only between
requests, so aiohttp always starts with a clean parser.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from time import time
from typing import cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from ..ingest.parse_process import ParseProcess
from ..ingest.pipeline import Ingestor
from .ingest_answer import (
    Answer,
    answer_here,
    answer_in_parser,
    is_ndjson,
    parser_for,
)
from .ingest_head import MAX_HEAD_BYTES, IngestHead, parse_ingest_head

KEEPALIVE_S = 3630.0
"""A connection that sends nothing for this long is closed, on either path
(the server gives aiohttp the same). aiohttp's default: longer than the
3600 s idle timeout of common load balancers, so the server is rarely the
side that closes a connection a client is about to reuse; most clients do
not retry a POST that meets a closed connection."""
SWEEP_S = 5.0
"""How often idle connections are looked for (at most)."""


@dataclass
class LeanStats:
    """Where HTTP connections went, for health."""

    lean_requests: int = 0
    """Ingest requests answered by the lean path."""
    handed_over: int = 0
    """Connections handed to aiohttp (any other request, or an unusual one)."""
    idle_closed: int = 0
    """Lean connections closed after ``keepalive_s`` without a byte."""


class _Dates:
    """The Date header, formatted once a second rather than per response."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def now(self) -> bytes:
        second = int(time())
        if second != self._second:
            self._second = second
            self._value = formatdate(second, usegmt=True).encode()
        return self._value


class LeanIngest:
    """What every lean connection shares: the ingest core, the settings, the
    aiohttp protocol factory to hand over to, and the open connections."""

    def __init__(
        self,
        ingestor: Ingestor,
        parser: ParseProcess | None,
        stats: LeanStats,
        *,
        max_body_bytes: int,
        api_key: str,
        aiohttp_protocol: Callable[[], RequestHandler],
        keepalive_s: float = KEEPALIVE_S,
    ) -> None:
        self.ingestor = ingestor
        self.parser = parser
        self.stats = stats
        self.max_body_bytes = max_body_bytes
        self.api_key = api_key.encode() if api_key else None
        self.make_aiohttp_protocol = aiohttp_protocol
        self.keepalive_s = keepalive_s
        self.connections: set[LeanConnection] = set()
        self.dates = _Dates()

    def accepts(self, head: IngestHead) -> bool:
        """Whether the lean path answers this request; else aiohttp does
        (a body over the limit gets its 413, a wrong key its 401)."""
        if head.content_length > self.max_body_bytes:
            return False
        if self.api_key is None:
            return True
        return head.api_key is not None and hmac.compare_digest(head.api_key, self.api_key)

    def sweep(self, now: float) -> None:
        """Close connections that sent nothing for ``keepalive_s``."""
        for connection in list(self.connections):
            if not connection.busy and now - connection.last_data > self.keepalive_s:
                self.stats.idle_closed += 1
                connection.close_idle()


class LeanConnection(asyncio.Protocol):
    """One client connection: lean while its requests are simple ingests,
    aiohttp's from the first one that is not."""

    def __init__(self, shared: LeanIngest) -> None:
        self._shared = shared
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._head: IngestHead | None = None
        """The head of the request whose body is still arriving."""
        self._body_start = 0
        self._aiohttp: RequestHandler | None = None
        self._write_paused = False
        self._close_when_answered = False
        self._waiting: asyncio.Task[None] | None = None
        """The parse process's answer to a big body, while it is awaited."""
        self.last_data = self._loop.time()

    @property
    def busy(self) -> bool:
        """Waiting for the parse process to answer a big body; reading is
        paused meanwhile, so requests are answered in order."""
        return self._waiting is not None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport does not subclass asyncio.Transport.
        self._transport = cast(asyncio.Transport, transport)
        self._shared.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self._aiohttp is not None:
            self._aiohttp.data_received(data)
            return
        self.last_data = self._loop.time()
        self._buffer += data
        if not self.busy:
            self._serve()

    def eof_received(self) -> bool | None:
        if self._aiohttp is not None:
            self._aiohttp.eof_received()
            return None
        # Answer what came complete before the end, then close.
        self._close_when_answered = True
        self._serve()
        return True  # half-closed: the transport stays open for the answers

    def connection_lost(self, exc: Exception | None) -> None:
        self._shared.connections.discard(self)
        if self._aiohttp is not None:
            self._aiohttp.connection_lost(exc)
        self._transport = None

    def pause_writing(self) -> None:
        if self._aiohttp is not None:
            self._aiohttp.pause_writing()
            return
        # A client that does not read its answers: stop reading its requests.
        self._write_paused = True
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._aiohttp is not None:
            self._aiohttp.resume_writing()
            return
        self._write_paused = False
        self._resume()

    # The lean path

    def close(self) -> None:
        """Close once the requests already received are answered."""
        self._close_when_answered = True
        self._serve()

    def close_idle(self) -> None:
        """Close a connection that sent nothing for the keep-alive time; drop
        it if it also stopped reading its answers."""
        if self._write_paused:
            self.abort()
        else:
            self.close()

    def abort(self) -> None:
        """Close now, unless already closing (a graceful close keeps its
        unsent answers)."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.abort()

    def _resume(self) -> None:
        """Read and answer again, once neither the parse process nor a full
        write buffer holds this connection."""
        transport = self._transport
        if transport is None or transport.is_closing() or self.busy or self._write_paused:
            return
        transport.resume_reading()
        self._serve()

    def _ready(self) -> bool:
        """Whether the next request may be answered now."""
        transport = self._transport
        return (
            not self.busy
            and not self._write_paused
            and self._aiohttp is None
            and transport is not None
            and not transport.is_closing()
        )

    def _serve(self) -> None:
        """Answer every complete simple request in the buffer, in order."""
        buffer = self._buffer
        shared = self._shared
        while buffer and self._ready():
            if self._head is None:
                head_end = buffer.find(b"\r\n\r\n", 0, MAX_HEAD_BYTES + 4)
                if head_end < 0:
                    # Not a simple head (too long, or lines ending in a bare
                    # LF): aiohttp answers it. Or the rest is still to come.
                    if len(buffer) > MAX_HEAD_BYTES or b"\n\n" in buffer:
                        self._hand_over()
                    return
                parsed = parse_ingest_head(bytes(buffer[:head_end]))
                if parsed is None or not shared.accepts(parsed):
                    self._hand_over()
                    return
                # Kept while the body arrives, so a big body's every chunk
                # costs a length check, not a parse.
                self._head, self._body_start = parsed, head_end + 4
            head, body_start = self._head, self._body_start
            body_end = body_start + head.content_length
            if len(buffer) < body_end:
                return
            body = bytes(buffer[body_start:body_end])
            del buffer[:body_end]
            self._head = None
            shared.stats.lean_requests += 1
            ndjson = is_ndjson(head.content_type)
            parser = parser_for(shared.parser, body)
            if parser is None:
                self._answer(answer_here(shared.ingestor, body, ndjson), head.keep_alive)
            else:
                assert self._transport is not None
                self._transport.pause_reading()
                self._waiting = self._loop.create_task(
                    self._answer_later(parser, body, ndjson, head.keep_alive)
                )
        if self._close_when_answered and self._ready():
            assert self._transport is not None
            self._transport.close()

    async def _answer_later(
        self, parser: ParseProcess, body: bytes, ndjson: bool, keep_alive: bool
    ) -> None:
        answer = await answer_in_parser(parser, body, ndjson)
        self._waiting = None
        self._answer(answer, keep_alive)
        self._resume()

    def _answer(self, answer: Answer, keep_alive: bool) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.write(_response(answer, self._shared.dates.now(), keep_alive))
        if not keep_alive:
            transport.close()

    def _hand_over(self) -> None:
        """Give this connection, and the bytes not yet answered, to aiohttp."""
        assert self._transport is not None
        self._shared.stats.handed_over += 1
        self._shared.connections.discard(self)
        protocol = self._shared.make_aiohttp_protocol()
        self._aiohttp = protocol
        protocol.connection_made(self._transport)
        if self._write_paused:
            # aiohttp waits for its own writes; reading is its business now.
            protocol.pause_writing()
            self._transport.resume_reading()
        pending, self._buffer = bytes(self._buffer), bytearray()
        if pending:
            protocol.data_received(pending)


_STATUS_LINES = {s.value: b"HTTP/1.1 %d %s" % (s.value, s.phrase.encode()) for s in HTTPStatus}


def _response(answer: Answer, date: bytes, keep_alive: bool) -> bytes:
    head = [
        _STATUS_LINES[answer.status],
        b"Content-Type: application/json",
        b"Content-Length: %d" % len(answer.body),
        b"Date: " + date,
        b"Server: pitwall-rt",
    ]
    if answer.retry_after_s is not None:
        head.append(b"Retry-After: %d" % answer.retry_after_s)
    if not keep_alive:
        head.append(b"Connection: close")
    return b"\r\n".join(head) + b"\r\n\r\n" + answer.body


class LeanSite(web.BaseSite):
    """aiohttp's TCP site, with the lean ingest path in front of each connection."""

    def __init__(
        self,
        runner: web.AppRunner,
        shared: LeanIngest,
        host: str,
        port: int,
        *,
        shutdown_timeout_s: float,
        backlog: int = 128,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._host, self._port = host, port
        self._shutdown_timeout_s = shutdown_timeout_s
        self._shared = shared
        self._sweeper: asyncio.TimerHandle | None = None

    @property
    def name(self) -> str:
        return f"http://{self._host or '0.0.0.0'}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        shared = self._shared
        self._server = await loop.create_server(
            lambda: LeanConnection(shared),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=True,
        )
        self._sweep()

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        self._shared.sweep(loop.time())
        every_s = min(SWEEP_S, self._shared.keepalive_s / 4)
        self._sweeper = loop.call_later(every_s, self._sweep)

    async def stop(self) -> None:
        """Stop accepting; close lean connections, giving one that waits for
        the parse process until the shutdown timeout to write its answer."""
        await super().stop()
        if self._sweeper is not None:
            self._sweeper.cancel()
        connections = list(self._shared.connections)
        for connection in connections:
            connection.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._shutdown_timeout_s
        while any(c.busy for c in connections) and loop.time() < deadline:
            await asyncio.sleep(0.01)
        for connection in connections:
            connection.abort()
