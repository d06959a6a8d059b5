"""End to end, real server process: POST /api/strategy and the model in insight_update.

One demo server (``--demo --demo-speed 8``): the strategy endpoint answers
the DESIGN.md contract and rejects bad bodies with 400 ``{"error"}``; as the
demo cars complete laps, their insights gain the tire-wear prediction, the
pit window and the explanations.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from .serverproc import UNIT_S, running
from .wsclient import Recording, record

STATE = {
    "lap": 10,
    "race_laps": 30,
    "wear_pct": 35.0,
    "wear_rate_pct_per_lap": 2.5,
    "base_lap_s": 98.0,
    "position": 4,
    "gaps_ahead_s": [1.2, 3.5],
    "gaps_behind_s": [0.8],
    "seed": 11,
}
CONTRACT = {"name", "pit_lap", "expected_time_s", "p10_time_s", "p90_time_s", "expected_position"}


def _complete(insight: dict[str, Any]) -> bool:
    return bool(
        insight.get("prediction") and insight.get("pit_window") and insight.get("explanations")
    )


def _model_insights(rec: Recording) -> list[dict[str, Any]]:
    return [i for m in rec.of_type("insight_update") for i in m["insights"] if _complete(i)]


def test_strategy_e2e_endpoint_contract_and_live_model_insights(tmp_path: Path) -> None:
    with running(tmp_path, "--demo", "--demo-speed", "8", "--batch-ms", "200") as srv:
        status, body = srv.post_json("/api/strategy", STATE)
        assert status == 200, body
        assert len(body["strategies"]) >= 4
        assert all(set(s) >= CONTRACT for s in body["strategies"])
        assert set(body["recommended"]) >= CONTRACT
        assert body["recommended"]["name"] in {s["name"] for s in body["strategies"]}
        assert srv.post_json("/api/strategy", STATE)[1] == body  # seeded: same answer

        for bad in ({"lap": 10}, {**STATE, "lap": "ten"}, {**STATE, "race_laps": 5}, [1, 2]):
            status, err = srv.post_json("/api/strategy", bad)
            assert status == 400 and isinstance(err["error"], str), (bad, err)
        status, err = srv.request("POST", "/api/strategy", b"{not json")
        assert status == 400 and "JSON" in err["error"]
        status, err = srv.post_json("/api/strategy", {"chassis": "NO-SUCH-CAR"})
        assert status == 404 and "error" in err

        rec = asyncio.run(
            record(
                srv.ws_url,
                90 * UNIT_S,
                subscribe={"type": "subscribe", "channels": ["insights", "alerts"]},
                until=lambda r: len({i["chassis"] for i in _model_insights(r)}) >= 2,
            )
        )
        done = _model_insights(rec)
        assert len({i["chassis"] for i in done}) >= 2, "no insight carried the model's output"
        insight = done[-1]
        prediction = insight["prediction"]
        assert set(prediction["wear_pct"]) == {"fl", "fr", "rl", "rr"}
        assert prediction["model"] == "tire_wear v1" and prediction["laps_to_cliff"] >= 0
        lo, hi = prediction["laps_to_cliff_interval"]
        assert lo <= prediction["laps_to_cliff"] <= hi
        window = insight["pit_window"]
        assert "recommended_lap" in window and len(window["strategies"]) >= 4
        assert len(insight["explanations"]) == 3 and all(
            ("wear vs" in s) for s in insight["explanations"]
        )
        assert isinstance(insight["alerts"], list)

        status, live = srv.post_json(
            "/api/strategy", {"chassis": insight["chassis"], "laps_to_go": 15, "iterations": 2000}
        )
        assert status == 200 and set(live["recommended"]) >= CONTRACT, live
        status, latest = srv.get("/api/insights")
        assert status == 200 and any(_complete(i) for i in latest)
