"""/v1/hooks/rotate: a signed webhook (Standard Webhooks or GitHub style) starts a job, once
per delivery however often the sender retries it."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from app.api.deps import ProducerDep, RuntimeDep
from app.api.errors import ApiError
from app.api.routes.jobs import ERRORS, submit_and_kick
from app.jobs.housekeeping import WEBHOOK_KEY_OWNER
from app.jobs.schemas import JobCreate, JobCreated
from app.jobs.submit import Submitter
from app.webhooks.signing import SignatureError, parse_secrets, verify_github, verify_standard

router = APIRouter(prefix="/v1/hooks", tags=["webhooks"])
MAX_DELIVERY_ID = 200
# A TypeAdapter, not JobCreate.model_validate_json, so this keeps working if JobCreate
# becomes a union of per-provider request models.
JOB_CREATE: TypeAdapter[JobCreate] = TypeAdapter(JobCreate)


def _unauthenticated(message: str) -> ApiError:
    return ApiError(401, "bad_signature", message)


@router.post(
    "/rotate",
    status_code=202,
    response_model=JobCreated,
    responses={**ERRORS, 409: {}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobCreate"}}},
        }
    },
)
async def rotate(request: Request, rt: RuntimeDep, producer: ProducerDep) -> JobCreated:
    """Start a job from a signed webhook. The body is a job, as `POST /v1/jobs` takes it.

    Signed either the Standard Webhooks way (`webhook-id`, `webhook-timestamp` within 300 s,
    `webhook-signature: v1,<base64>`) or GitHub's (`X-Hub-Signature-256: sha256=<hex>` with
    `X-GitHub-Delivery`). The delivery id makes a retried delivery return the same job."""
    body = await request.body()
    raw_secrets = rt.settings.webhook_secret
    if raw_secrets is None:
        raise _unauthenticated("this server has no KEYBIND_WEBHOOK_SECRET: no webhook can verify")
    secrets = parse_secrets(raw_secrets.get_secret_value())
    h = request.headers
    try:
        if "webhook-signature" in h or "webhook-id" in h:
            delivery = h.get("webhook-id", "")
            verify_standard(
                secrets,
                msg_id=delivery,
                timestamp=h.get("webhook-timestamp", ""),
                signatures=h.get("webhook-signature", ""),
                body=body,
                now=time.time(),
                tolerance_s=rt.settings.webhook_tolerance_s,
            )
            key = f"std:{delivery}"
        elif "x-hub-signature-256" in h:
            verify_github(secrets, signature=h["x-hub-signature-256"], body=body)
            delivery = h.get("x-github-delivery", "")
            if not delivery:
                raise ApiError(
                    422,
                    "invalid_request",
                    "X-GitHub-Delivery: required, it is what makes a redelivery harmless",
                )
            key = f"github:{delivery}"
        else:
            raise _unauthenticated(
                "sign the request: webhook-id/webhook-timestamp/webhook-signature "
                "(Standard Webhooks) or X-Hub-Signature-256 with X-GitHub-Delivery"
            )
    except SignatureError as exc:
        raise _unauthenticated(str(exc)) from exc
    if len(delivery) > MAX_DELIVERY_ID:
        raise ApiError(422, "invalid_request", f"delivery id: at most {MAX_DELIVERY_ID} characters")
    try:
        job = JOB_CREATE.validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc
    submitter = Submitter(
        name=WEBHOOK_KEY_OWNER, source="webhook", priority=rt.settings.webhook_priority
    )
    return await run_in_threadpool(submit_and_kick, rt, producer, job, submitter, key)
