"""One keybind, two Tencent accounts: each job calls with its own account's credentials
(one of them an STS token) and is paced by its own limiter bucket and rate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from tests.e2e.test_pipeline import all_items, ids, submit, wait_final
from tests.support.processes import Processes, settings_env
from tests.support.simulator import SECRET_ID, Simulator

SECOND_ID = "AKIDsecondACCOUNTe2e000001"
SECOND_KEY = "second-account-secret-e2e"
SECOND_TOKEN = "sts-session-token-e2e"
SECOND_RATE = 4


def test_two_accounts_each_with_own_credentials_and_bucket(
    client: TestClient,
    e2e_settings: Settings,
    simulator: Simulator,
    procs: Processes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KB_E2E_SECOND_KEY", SECOND_KEY)
    simulator.configure(credentials={SECOND_ID: SECOND_KEY}, tokens={SECOND_ID: SECOND_TOKEN})
    accounts = tmp_path / "accounts.json"
    accounts.write_text(
        json.dumps(
            {
                "tencent": {
                    "second": {
                        "endpoint": simulator.url,
                        "secret_id": SECOND_ID,
                        "secret_key": {"env": "KB_E2E_SECOND_KEY"},
                        "session_token": SECOND_TOKEN,
                        "rates": {"AssociateInstancesKeyPairs": SECOND_RATE},
                    }
                }
            }
        )
    )
    settings = e2e_settings.model_copy(update={"accounts_file": accounts})
    env = settings_env(settings, KB_E2E_SECOND_KEY=SECOND_KEY)
    procs.worker(env, concurrency=4, beat=True)

    from app.api.main import create_app

    with TestClient(create_app(settings), headers=dict(client.headers)) as api:
        first = submit(api, ids(40, "d"))
        second = submit(api, ids(20, "s"), account="second")
        done_first = wait_final(api, first, timeout=60)
        done_second = wait_final(api, second, timeout=60)
        assert done_first["state"] == done_second["state"] == "succeeded"
        assert done_second["account"] == "second"
        assert all(i["verify_request_id"] for i in all_items(api, second))

    bind = simulator.stats("AssociateInstancesKeyPairs")["accounts"]
    # Each job called with its own account: the simulator insists on the second's STS token.
    assert bind[SECRET_ID]["accepted"] >= 40 and bind[SECOND_ID]["accepted"] >= 20
    # The second account's own, lower rate paced its calls: n grants at r/s span at least
    # (n - r) / r seconds; 0.5 s of slack absorbs network jitter between grant and arrival.
    # At the default account's 100/s the same calls would span about 0.2 s.
    n = bind[SECOND_ID]["accepted"]
    assert bind[SECOND_ID]["span_s"] >= (n - SECOND_RATE) / SECOND_RATE - 0.5
    verify = simulator.stats("DescribeInstances")["accounts"]
    assert set(verify) == {SECRET_ID, SECOND_ID}
    assert simulator.stats("AssociateInstancesKeyPairs")["throttled"] == 0
