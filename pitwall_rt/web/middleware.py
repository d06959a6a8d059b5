"""HTTP middleware: JSON errors everywhere, and the optional API key.

Every error leaves the server as ``{"error": "..."}`` with a 4xx/5xx status,
never an HTML page or a traceback, including aiohttp's own errors (404,
405, 413 from the body-size limit), and requests aiohttp could not even
parse, which never reach a middleware (``JsonErrorProtocol``).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from .ingest_answer import INTERNAL_ERROR
from .keys import SETTINGS

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Paths anyone may read with the API key set: liveness and scraping, and the
# dashboard's static files (the page passes the key to the WebSocket itself).
OPEN_PATHS = frozenset({"/api/health", "/metrics"})


def json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[SETTINGS].MAX_BODY_BYTES
        return json_error(413, f"body too large: the limit is {limit} bytes (MAX_BODY_BYTES)")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_error(exc.status, exc.reason if exc.text is None else _plain(exc))
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_error(500, INTERNAL_ERROR)
    if response.status >= 400 and response.content_type != "application/json":
        # A handler or aiohttp itself may answer an error without raising.
        return json_error(response.status, response.reason or "error")
    return response


class JsonErrorProtocol(RequestHandler):
    """aiohttp's connection protocol, answering a request it could not parse
    (a bad method, an over-long line, a malformed header) with JSON like every
    other error rather than aiohttp's plain text."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        plain = super().handle_error(request, status, exc, message)  # logs; may refuse
        if plain.status >= 500:
            text = INTERNAL_ERROR
        else:
            # aiohttp's parser messages point at the bad byte over several lines.
            lines = (message or "").splitlines()
            text = f"bad HTTP request: {lines[0].rstrip(':') if lines else plain.reason}"
        response = json_error(plain.status, text)
        response.force_close()
        return response


def _plain(exc: web.HTTPException) -> str:
    text = exc.text or exc.reason
    if text.startswith(f"{exc.status}:"):
        text = text.split(":", 1)[1].strip()
    return text


def presented_key(request: web.Request) -> str | None:
    """The key a request carries: Bearer header, X-API-Key, or ?token=."""
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("X-API-Key") or request.query.get("token")


def make_auth_middleware(api_key: str, protected_prefixes: tuple[str, ...]) -> Callable:
    """Require ``api_key`` on paths under ``protected_prefixes`` (except OPEN_PATHS)."""
    expected = api_key.encode()

    @web.middleware
    async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path in OPEN_PATHS or not path.startswith(protected_prefixes):
            return await handler(request)
        given = presented_key(request)
        if given is None or not hmac.compare_digest(given.encode(), expected):
            return json_error(401, "missing or wrong API key (Authorization: Bearer <key>)")
        return await handler(request)

    return auth_middleware
