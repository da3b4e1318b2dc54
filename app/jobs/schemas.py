"""The API's request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    UrlConstraints,
)

from app.domain.states import JobState, TargetState
from app.providers.jdcloud.regions import INSTANCE_ID as JD_INSTANCE_ID
from app.providers.jdcloud.regions import KEY_NAME as JD_KEY_NAME
from app.providers.jdcloud.regions import REGIONS as JD_REGIONS
from app.providers.tencent.regions import REGIONS

# In the schema itself, so clients (and schemathesis) see what the API accepts.
TencentInstanceId = Annotated[str, StringConstraints(pattern=r"^ins-[0-9a-z]{8}$")]
TencentKeyId = Annotated[str, StringConstraints(pattern=r"^skey-[0-9a-z]{8}$")]
if TYPE_CHECKING:
    # mypy cannot read a Literal built from data; pydantic (and the schema) does.
    TencentRegion = str
    JDCloudRegion = str
else:
    TencentRegion = Literal[tuple(sorted(REGIONS))]
    JDCloudRegion = Literal[tuple(sorted(JD_REGIONS))]
JDCloudInstanceId = Annotated[str, StringConstraints(pattern=JD_INSTANCE_ID.pattern)]
JDCloudKeyName = Annotated[str, StringConstraints(pattern=JD_KEY_NAME.pattern)]
AccountName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


def _no_credentials(url: AnyHttpUrl) -> AnyHttpUrl:
    # The URL is shown on the job; a password in it would be a secret in a response.
    if url.username or url.password:
        raise ValueError("credentials in the URL are not accepted; verify our signature instead")
    return url


CALLBACK_URL_PATTERN = (
    r"^https?://[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?)*"
    r"(:[1-9][0-9]{0,3})?(/[A-Za-z0-9._~/?=&-]*)?$"
)
CallbackUrl = Annotated[
    AnyHttpUrl,
    UrlConstraints(max_length=2048, allowed_schemes=["http", "https"]),
    AfterValidator(_no_credentials),
]


def _number_not_text(value: object) -> object:
    """JSON numbers only: lax parsing would take `true` as 1 and "5" as 5."""
    if isinstance(value, bool | str):
        raise ValueError("Input should be a whole number")
    return value


BatchSize = Annotated[int, Field(ge=1, le=100), BeforeValidator(_number_not_text)]


class JobOptions(BaseModel):
    """What every provider's job request takes besides its targets and keys."""

    model_config = ConfigDict(extra="forbid")

    account: AccountName = Field(
        default="default",
        description="The named account (credential profile) to call the cloud with.",
    )
    batch_size: BatchSize | None = Field(
        default=None,
        description=(
            "Instances per cloud call (1-100; default: the provider's, 1 for Tencent). Above 1,"
            " instances go out together and a call that fails for one instance is split in"
            " halves until that instance stands alone."
        ),
    )
    callback_url: CallbackUrl | None = Field(
        default=None,
        description="http(s) URL that gets the job summary, signed (Standard Webhooks), "
        "once the job is final. No user:password@ in it.",
        # In the schema too, so clients (and schemathesis) know only http(s) hosts pass.
        json_schema_extra={"pattern": CALLBACK_URL_PATTERN},
    )


class JobCreate(JobOptions):
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


class JDCloudJobCreate(JobOptions):
    """`POST /v1/jobs` for JD Cloud: attach the key pair `key_name` to every instance."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["jdcloud"]
    region: JDCloudRegion = Field(description="A JD Cloud VM region.")
    instance_ids: list[JDCloudInstanceId] = Field(
        min_length=1,
        description="Instances (i- and 10 lower-case letters or digits); no duplicates.",
        json_schema_extra={"uniqueItems": True},
    )
    key_name: JDCloudKeyName = Field(description="The key pair's name (JD addresses keys by name).")
    password_auth: Literal["yes", "no"] = Field(
        description="attachKeypair's passWordAuth: keep SSH password login ('yes') or not ('no')."
    )
    replace: bool = Field(
        default=False,
        description="Detach whatever key an instance holds, then attach this one.",
    )

    @property
    def key_ids(self) -> list[str]:
        """The job's keys in the provider's own terms: JD key names."""
        return [self.key_name]

    @property
    def force_stop(self) -> bool:
        return False  # attachKeypair takes running and stopped instances alike


# The body of `POST /v1/jobs`, chosen by `provider`.
JobRequest = Annotated[JobCreate | JDCloudJobCreate, Field(discriminator="provider")]
PROVIDER_TAGS = ("tencent", "jdcloud")
ProviderName = Literal["tencent", "jdcloud"]
# The API records jobs submitted with this User-Agent prefix as coming from the CLI.
CLI_AGENT = "keybind-cli/"
# What a job id looks like (keybind's are UUIDs): anything else cannot name a job, and text
# with control bytes must never reach the database driver.
JOB_ID_PATTERN = r"^[A-Za-z0-9-]{1,64}$"


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


class CallbackAttemptView(BaseModel):
    attempt: int
    at: datetime
    http_status: int | None
    error: str | None
    latency_ms: float


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
    progress: float = Field(description="Final instances / total, 0.0 to 1.0.")
    eta_seconds: float | None = Field(
        description="Instances left / the account's configured rate; null once final."
    )
    cancel_requested_at: datetime | None = None
    callback_url: str | None = None
    callback_state: Literal["pending", "delivered", "failed"] | None = None
    callbacks: list[CallbackAttemptView] = []


class JobPage(BaseModel):
    items: list[JobView]
    next_cursor: str | None


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
    previous_key: str | None = Field(
        default=None,
        description="JD Cloud `replace`: the key pair detached from the instance before the"
        " job's key was attached.",
    )


class TargetPage(BaseModel):
    items: list[TargetView]
    next_cursor: str | None
