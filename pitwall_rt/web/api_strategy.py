"""``POST /api/strategy``: a car's race state in, the pit-strategy comparison out.

The body is the race state (see ``strategy.montecarlo.parse_request``);
``lap``, ``race_laps`` (or ``laps_to_go``), ``wear_pct``,
``wear_rate_pct_per_lap`` and ``base_lap_s`` are required unless ``chassis``
names a car the server has predictions for, in which case they default to
its live values. The Monte Carlo runs in the compute pool, never on the
event loop. Answers ``{"strategies": [...], "recommended": {...}, ...}``;
a bad body is a 400 ``{"error": ...}``, an unknown chassis a 404.
"""

from __future__ import annotations

import asyncio
import math
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import orjson
from aiohttp import web

from ..strategy import montecarlo
from .keys import COMPUTE


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/strategy", strategy)


def live_defaults(insight: dict[str, Any]) -> dict[str, Any]:
    """Race-state fields the server already knows about a car, from its latest insight."""
    out: dict[str, Any] = {}
    prediction = insight.get("prediction") or {}
    if prediction.get("wear_pct"):
        out["wear_pct"] = max(prediction["wear_pct"].values())
    if prediction.get("wear_rate_pct_per_lap") is not None:
        out["wear_rate_pct_per_lap"] = prediction["wear_rate_pct_per_lap"]
    if prediction.get("cliff_pct") is not None:
        out["cliff_pct"] = prediction["cliff_pct"]
    best = insight.get("best_lap_time_s")
    if isinstance(best, float) and math.isfinite(best):
        out["base_lap_s"] = best
    if isinstance(insight.get("lap"), int):
        out["lap"] = max(insight["lap"] - 1, 0)  # the lap in progress is not done yet
    position = (insight.get("pit_window") or {}).get("position")
    if position is not None:
        out["position"] = position
    return out


async def strategy(request: web.Request) -> web.Response:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise web.HTTPBadRequest(text=f"body is not JSON: {exc}") from None
    runner = request.app[COMPUTE]
    if isinstance(body, dict) and body.get("chassis") is not None:
        cid = runner.tables.chassis.lookup(str(body["chassis"]))
        if cid is None:
            raise web.HTTPNotFound(text=f"unknown chassis {body['chassis']!r}")
        body = {**live_defaults(runner.insights.get(cid, {})), **body}
    try:
        job = montecarlo.parse_request(body)
    except ValueError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    loop = asyncio.get_running_loop()
    try:
        result = await loop.run_in_executor(runner.pool, montecarlo.run_request, *job)
    except BrokenProcessPool:
        raise web.HTTPServiceUnavailable(text="compute pool restarting; retry") from None
    return web.Response(body=orjson.dumps(result), content_type="application/json")
