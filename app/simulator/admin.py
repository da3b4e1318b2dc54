"""Unsigned control routes under /_sim/: read what the simulator saw, shape its world."""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.simulator.jdcloud.fleet import JDFleet
from app.simulator.state import SimState
from app.simulator.stats import Stats
from app.simulator.tencent.fleet import Fleet


def routes(state: SimState) -> list[Route]:
    async def stats(request: Request) -> JSONResponse:
        detail = request.query_params.get("detail", "") in ("1", "true")
        action = request.query_params.get("action")
        actions = [action] if action else sorted(state.stats.actions)
        bound_twice = sum(1 for i in state.fleet.instances.values() if i.binds > 1)
        return JSONResponse(
            {
                "actions": {a: state.stats.actions[a].summary(detail) for a in actions},
                "instances_bound_more_than_once": bound_twice,
                "instances_known": len(state.fleet.instances),
                "jd_instances_attached_more_than_once": sum(
                    1 for i in state.jd_fleet.instances.values() if i.attaches > 1
                ),
            }
        )

    async def reset(request: Request) -> JSONResponse:
        body = await _json(request)
        state.stats = Stats()
        state.window.reset()
        state.faults.configure(0.0, [], None, None)
        if body.get("fleet", False):
            state.fleet = Fleet(
                transition_s=state.fleet.transition_s, op_delay_s=state.fleet.op_delay_s
            )
            state.jd_fleet = JDFleet(transition_s=state.jd_fleet.transition_s)
        return JSONResponse({"ok": True})

    async def faults(request: Request) -> JSONResponse:
        body = await _json(request)
        try:
            state.faults.configure(
                float(body.get("rate", 0.0)),
                list(body.get("kinds", [])),
                body.get("seed"),
                body.get("actions"),
            )
        except (TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"ok": True})

    async def put_instances(request: Request) -> JSONResponse:
        body = await _json(request)
        specs = body.get("instances", body) if isinstance(body, dict) else body
        if isinstance(body, dict) and "strict" in body:
            state.fleet.strict = bool(body["strict"])
        try:
            now = time.monotonic()
            for spec in specs:
                state.fleet.put(spec, now)
            for kp in body.get("key_pairs", []) if isinstance(body, dict) else []:
                state.fleet.load({"key_pairs": [kp]}, now)
        except (KeyError, TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"ok": True, "instances": len(specs)})

    async def get_instance(request: Request) -> JSONResponse:
        inst = state.fleet.instances.get(request.path_params["instance_id"])
        if inst is None:
            return JSONResponse({"error": "unknown instance"}, status_code=404)
        inst.advance(time.monotonic())
        return JSONResponse({**inst.view(), "binds": inst.binds, "os": inst.os})

    async def put_jd_instances(request: Request) -> JSONResponse:
        body = await _json(request)
        if not isinstance(body, dict):
            return JSONResponse({"error": "expected a fleet file's jdcloud section"}, 400)
        try:
            state.jd_fleet.load(body, time.monotonic())
        except (KeyError, TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"ok": True, "instances": len(body.get("instances") or [])})

    async def get_jd_instance(request: Request) -> JSONResponse:
        inst = state.jd_fleet.instances.get(request.path_params["instance_id"])
        if inst is None:
            return JSONResponse({"error": "unknown instance"}, status_code=404)
        inst.advance(time.monotonic())
        return JSONResponse({**inst.view(), "attaches": inst.attaches, "missing": inst.missing})

    async def config(request: Request) -> JSONResponse:
        body = await _json(request)
        if "op_delay_s" in body:
            state.fleet.op_delay_s = float(body["op_delay_s"])
        if "transition_s" in body:
            state.fleet.transition_s = float(body["transition_s"])
        for action, limit in (body.get("rate_limits") or {}).items():
            state.window.limits[str(action)] = float(limit)
        for secret_id, secret_key in (body.get("credentials") or {}).items():
            state.config.credentials[str(secret_id)] = str(secret_key)
        for secret_id, token in (body.get("tokens") or {}).items():
            state.config.tokens[str(secret_id)] = str(token)
        if "timeout_fault_s" in body:
            state.config.timeout_fault_s = float(body["timeout_fault_s"])
        return JSONResponse({"ok": True, "rate_limits": state.window.limits})

    return [
        Route("/_sim/stats", stats, methods=["GET"]),
        Route("/_sim/reset", reset, methods=["POST"]),
        Route("/_sim/faults", faults, methods=["POST"]),
        Route("/_sim/instances", put_instances, methods=["PUT"]),
        Route("/_sim/instances/{instance_id}", get_instance, methods=["GET"]),
        Route("/_sim/config", config, methods=["POST"]),
        Route("/_sim/jdcloud/instances", put_jd_instances, methods=["PUT"]),
        Route("/_sim/jdcloud/instances/{instance_id}", get_jd_instance, methods=["GET"]),
    ]


async def _json(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return {}
    return json.loads(raw)
