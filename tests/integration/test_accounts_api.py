"""Named accounts through the API: a job names its account; an unknown one is a 422."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.config import Settings
from app.jobs.models import Job
from app.runtime import Runtime

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
