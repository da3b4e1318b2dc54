"""The API's request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.jobs.states import JobState, TargetState
from app.providers.tencent.regions import REGIONS

# In the schema itself, so clients (and schemathesis) see what the API accepts.
TencentInstanceId = Annotated[str, StringConstraints(pattern=r"^ins-[0-9a-z]{8}$")]
TencentKeyId = Annotated[str, StringConstraints(pattern=r"^skey-[0-9a-z]{8}$")]
TencentRegion = Literal[tuple(sorted(REGIONS))]  # type: ignore[valid-type]
AccountName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


class JobCreate(BaseModel):
    """`POST /v1/jobs`: bind `key_ids` to every instance in `instance_ids`."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["tencent"]
    region: TencentRegion = Field(
        description="A region where AssociateInstancesKeyPairs is offered."
    )
    instance_ids: list[TencentInstanceId] = Field(
        min_length=1,
        description="Instances to bind; no duplicates. At most KEYBIND_MAX_INSTANCES.",
        json_schema_extra={"uniqueItems": True},
    )
    key_ids: list[TencentKeyId] = Field(
        min_length=1, max_length=100, json_schema_extra={"uniqueItems": True}
    )
    force_stop: bool = Field(
        default=False,
        description="Power-state policy: false refuses running instances (power_policy"
        " 'refuse'); true lets the cloud force-stop, bind and restart them ('force_stop').",
    )
    account: AccountName = Field(
        default="default",
        description="The named account (credential profile) to call the cloud with.",
    )
    batch_size: int = Field(
        default=1,
        ge=1,
        le=100,
        description=(
            "Instances per cloud call (1-100). Above 1, instances go out together and a call"
            " that fails for one instance is split in halves until that instance stands alone."
        ),
    )


class FieldProblem(BaseModel):
    field: str
    value: object | None = None
    message: str


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[FieldProblem] = []


class ErrorResponse(BaseModel):
    error: ErrorBody


class JobCreated(BaseModel):
    id: str
    state: JobState
    total: int


class Counts(BaseModel):
    pending: int
    running: int
    retrying: int
    succeeded: int
    failed: int
    cancelled: int


class JobView(BaseModel):
    id: str
    state: JobState
    provider: str
    account: str
    region: str
    key_ids: list[str]
    power_policy: Literal["refuse", "force_stop"]
    batch_size: int
    total: int
    counts: Counts
    submitted_by: str
    source: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class TargetView(BaseModel):
    instance_id: str
    state: TargetState
    attempts: int
    error_code: str | None
    error_message: str | None
    request_id: str | None = Field(description="The bind call's RequestId.")
    verify_request_id: str | None = Field(
        default=None, description="The RequestId of the DescribeInstances call that decided."
    )


class TargetPage(BaseModel):
    items: list[TargetView]
    next_cursor: str | None
