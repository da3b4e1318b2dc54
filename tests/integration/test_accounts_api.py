"""Named accounts through the API: a job names its account; an unknown one is a 422."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.broker.producer import CeleryProducer
from app.config import Settings
from app.jobs.bind import bind_targets
from app.jobs.schemas import JDCloudJobCreate, JobCreate
from app.jobs.submit import Submitter, submit_job
from app.runtime import Runtime
from app.store.models import Job, Target

BODY = {
    "provider": "tencent",
    "region": "ap-guangzhou",
    "instance_ids": ["ins-r8hr2upy"],
    "key_ids": ["skey-3glfot13"],
}


@pytest.fixture
def accounts_client(settings: Settings, tmp_path: Path, token: str) -> Iterator[TestClient]:
    from app.api.main import create_app

    path = tmp_path / "accounts.json"
    path.write_text(
        json.dumps({"tencent": {"intl": {"secret_id": "AKIDx", "secret_key": "never-shown"}}})
    )
    app = create_app(settings.model_copy(update={"accounts_file": path}))
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as c:
        yield c


def jobs(rt: Runtime) -> int:
    with rt.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(Job)) or 0)


def test_a_job_runs_on_the_account_it_names(accounts_client: TestClient, rt: Runtime) -> None:
    r = accounts_client.post("/v1/jobs", json={**BODY, "account": "intl"})
    assert r.status_code == 202, r.text
    view = accounts_client.get(f"/v1/jobs/{r.json()['id']}").json()
    assert view["account"] == "intl" and view["power_policy"] == "refuse"
    assert "never-shown" not in json.dumps(view)
    r = accounts_client.post("/v1/jobs", json={**BODY, "force_stop": True})
    view = accounts_client.get(f"/v1/jobs/{r.json()['id']}").json()
    assert view["account"] == "default" and view["power_policy"] == "force_stop"


@pytest.mark.parametrize("name", ["prod", "bad name!"])
def test_an_unknown_account_is_a_422_naming_it_and_writes_nothing(
    accounts_client: TestClient, rt: Runtime, name: str
) -> None:
    r = accounts_client.post("/v1/jobs", json={**BODY, "account": name})
    assert r.status_code == 422, r.text
    details = r.json()["error"]["details"]
    assert any(d["field"] == "account" and d["value"] == name for d in details), details
    assert jobs(rt) == 0


def test_an_unreadable_accounts_file_is_a_503_not_a_500(
    settings: Settings, tmp_path: Path, token: str, rt: Runtime
) -> None:
    from app.api.main import create_app

    path = tmp_path / "accounts.json"
    path.write_text('{"tencent": {"x": {"secret_key": "s3cr3t-value"')
    app = create_app(settings.model_copy(update={"accounts_file": path}))
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as c:
        r = c.post("/v1/jobs", json=BODY)
    assert r.status_code == 503 and r.json()["error"]["code"] == "misconfigured"
    assert "s3cr3t" not in r.text
    assert jobs(rt) == 0


def test_a_job_whose_account_has_no_credentials_fails_saying_so(
    rt: Runtime, producer: CeleryProducer
) -> None:
    job = submit_job(
        sessions=rt.sessions,
        request=JobCreate.model_validate(BODY),
        submitter=Submitter("test"),
        max_instances=10,
    ).job
    with rt.sessions() as s:
        target_ids = list(s.scalars(select(Target.id).where(Target.job_id == job.id)))
    assert bind_targets(rt, producer, target_ids) == 0
    with rt.sessions() as s:
        t = s.scalars(select(Target).where(Target.job_id == job.id)).one()
        final = s.get(Job, job.id)
    assert t.state == "failed" and t.error_code == "keybind.AccountMisconfigured"
    assert "SECRET_ID" in (t.error_message or "")
    assert final is not None and final.state == "failed" and final.n_failed == 1


def test_a_jd_job_whose_endpoint_is_malformed_fails_saying_so(
    settings: Settings, tmp_path: Path, producer: CeleryProducer
) -> None:
    """A bad endpoint is a configuration error like a missing key: every target fails with
    keybind.AccountMisconfigured, and the task does not crash (the JD client used to raise an
    error of its own that nothing caught)."""
    path = tmp_path / "accounts.json"
    path.write_text(
        json.dumps(
            {"jdcloud": {"ops": {"endpoint": "not a url", "access_key": "a", "secret_key": "s"}}}
        )
    )
    rt = Runtime(settings.model_copy(update={"accounts_file": path}))
    body = {
        "provider": "jdcloud",
        "account": "ops",
        "region": "cn-north-1",
        "instance_ids": ["i-abcdefgh12"],
        "key_name": "ops-2026",
        "password_auth": "no",
    }
    job = submit_job(
        sessions=rt.sessions,
        request=JDCloudJobCreate.model_validate(body),
        submitter=Submitter("test"),
        max_instances=10,
    ).job
    with rt.sessions() as s:
        target_ids = list(s.scalars(select(Target.id).where(Target.job_id == job.id)))
    try:
        assert bind_targets(rt, producer, target_ids) == 0
        with rt.sessions() as s:
            t = s.scalars(select(Target).where(Target.job_id == job.id)).one()
        assert (t.state, t.error_code) == ("failed", "keybind.AccountMisconfigured")
        assert "KEYBIND_JDCLOUD_ENDPOINT" in (t.error_message or "")
    finally:
        rt.close()
