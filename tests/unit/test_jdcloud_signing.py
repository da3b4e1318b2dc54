"""JD Cloud signing: known answers TV-B1..B3 (reference B3), the official SDK's signer as an
oracle on random inputs, and the httpx auth flow."""

from __future__ import annotations

import random
import string

import httpx
import pytest
from jdcloud_sdk.core.credential import Credential
from jdcloud_sdk.core.logger import Logger
from jdcloud_sdk.core.signer import Signer

from app.providers.jdcloud import signing

AK = "JDC_EXAMPLE_ACCESS_KEY_0000000000"
SK = "EXAMPLE_SECRET_KEY_0000000000000"
DATE = "20231114T221320Z"
NONCE = "11111111-2222-4333-8444-555555555555"
PATH = "/v1/regions/cn-north-1/keypairs/my-key:attach"
BODY = (
    b'{"regionId": "cn-north-1", "keyName": "my-key", "instanceIds": ["i-abcdefgh12"],'
    b' "passWordAuth": "no"}'
)
BASE = {"content-type": "application/json", "host": "vm.jdcloud-api.com"}
WITH_DATE_NONCE = {**BASE, "x-jdcloud-date": DATE, "x-jdcloud-nonce": NONCE}


def sign(version: signing.Version, headers: dict[str, str]) -> str:
    return signing.authorization(
        version,
        access_key=AK,
        secret_key=SK,
        jd_date=DATE,
        region="cn-north-1",
        service="vm",
        method="POST",
        path=PATH,
        query="",
        headers=headers,
        body=BODY,
    )


def test_inputs_match_the_reference() -> None:
    assert signing.jdcloud_date(1700000000) == DATE
    assert signing.sha256_hex(BODY) == (
        "4ba0268898a05ba6edfafdaa39b6fc027e2b59ec7bbc7b7396e2398ab5b59fbe"
    )


def test_tv_b1_canonical_request_and_signature() -> None:
    canonical = signing.canonical_request(
        method="POST",
        uri=signing.canonical_uri(PATH),
        query="",
        headers=BASE,
        signed_headers=["content-type", "host"],
        body_hash=signing.sha256_hex(BODY),
    )
    assert canonical.startswith(
        "POST\n/v1/regions/cn-north-1/keypairs/my-key%3Aattach\n\n"
        "content-type:application/json\nhost:vm.jdcloud-api.com\n\ncontent-type;host\n4ba02688"
    )
    assert signing.sha256_hex(canonical.encode()) == (
        "f3b404c80174637d0cef1357f07e0c111b6a3c8981941e5b11938359904db3ee"
    )
    assert sign(signing.JDCLOUD3, BASE) == (
        f"JDCLOUD3-HMAC-SHA256 Credential={AK}/20231114/cn-north-1/vm/jdcloud3_request, "
        "SignedHeaders=content-type;host, "
        "Signature=ade5ba72b58ef559d41eb441bac4bd95f2ea3d60b989cc434e8b41c686da8d85"
    )
    local = {**BASE, "host": "127.0.0.1:8080"}
    assert sign(signing.JDCLOUD3, local).endswith(
        "Signature=c1a6e58514abacccb9b6a42b4f487198fae0f94f217b5ac917d8ea7ebffc5183"
    )


def test_tv_b2_date_and_nonce_signed() -> None:
    assert sign(signing.JDCLOUD3, WITH_DATE_NONCE) == (
        f"JDCLOUD3-HMAC-SHA256 Credential={AK}/20231114/cn-north-1/vm/jdcloud3_request, "
        "SignedHeaders=content-type;host;x-jdcloud-date;x-jdcloud-nonce, "
        "Signature=e67cf833651fb46fe6a8b1175bb691b0a8f6d8374c9cc428fc688f0f09930a23"
    )


def test_tv_b3_jdcloud2() -> None:
    assert sign(signing.JDCLOUD2, WITH_DATE_NONCE) == (
        f"JDCLOUD2-HMAC-SHA256 Credential={AK}/20231114/cn-north-1/vm/jdcloud2_request, "
        "SignedHeaders=content-type;host;x-jdcloud-date;x-jdcloud-nonce, "
        "Signature=f207d1b24b3dc61e57cdffa94d17b92357446fc2bd6eddc1ffaddc2434ccd2d5"
    )


def test_sdk_shipped_vector_empty_path() -> None:
    # jdcloud_sdk/core/signer_test.py::testSign_path_null
    auth = signing.authorization(
        signing.JDCLOUD3,
        access_key="ak",
        secret_key="sk",
        jd_date="20190917T064708Z",
        region="cn-north-1",
        service="apigatewaytestproductline",
        method="GET",
        path="",
        query="",
        headers={
            "host": "apigw-internal-dev.cn-north-1.jcloudcs.com:8000",
            "x-jdcloud-date": "20190917T064708Z",
            "x-jdcloud-nonce": "X-Jdcloud-Nonce",
            "content-type": "application/json",
        },
        body=b"",
    )
    assert auth.endswith("44c5ec30b6185516986ae171d8276552bc0f37f6a536a44e4f578958fc1c12be")


PATH_CHARS = string.ascii_letters + string.digits + "-_.~:/ %+!$'()*,;=@中文"
QUERY_CHARS = string.ascii_letters + string.digits + "-_.~:%+ "


def _random_text(rng: random.Random, alphabet: str, low: int, high: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(low, high)))


@pytest.mark.parametrize("seed", range(300))
def test_matches_the_official_sdk_signer_on_random_inputs(seed: int) -> None:
    rng = random.Random(seed)
    method = rng.choice(["GET", "POST", "PUT", "DELETE"])
    path = "/v1/regions/" + _random_text(rng, PATH_CHARS, 0, 40)
    query = "&".join(
        _random_text(rng, QUERY_CHARS, 0, 8)
        + rng.choice(["=", "", "=="])
        + _random_text(rng, QUERY_CHARS, 0, 8)
        for _ in range(rng.randint(0, 5))
    )
    host = rng.choice(["vm.jdcloud-api.com", "127.0.0.1:9100", "apigw.example:8000"])
    region = rng.choice(["cn-north-1", "cn-south-1", "cn-east-2", "jdcloud-api"])
    body = _random_text(rng, PATH_CHARS + '{}"[]', 0, 60) if method in ("POST", "PUT") else ""
    date = signing.jdcloud_date(rng.randint(1_500_000_000, 2_000_000_000))
    headers = {
        "content-type": rng.choice(["application/json", " application/json ", "text/plain"]),
        "x-jdcloud-date": date,
        "x-jdcloud-nonce": _random_text(rng, string.hexdigits, 8, 36),
    }
    if rng.random() < 0.5:
        headers["x-jdcloud-extra"] = _random_text(rng, string.ascii_letters + " ", 0, 12)
    ak, sk = _random_text(rng, string.ascii_letters, 8, 32), _random_text(rng, "abc123", 8, 32)

    sdk_headers = dict(headers)
    Signer(Logger(0)).signV3(
        method, "vm", region, host, path, query, sdk_headers, body, Credential(ak, sk), ""
    )
    ours = signing.authorization(
        signing.JDCLOUD3,
        access_key=ak,
        secret_key=sk,
        jd_date=date,
        region=region,
        service="vm",
        method=method,
        path=path,
        query=query,
        headers={**headers, "host": host},
        body=body.encode(),
    )
    assert ours == sdk_headers["Authorization"], (method, path, query)


def test_auth_flow_signs_date_and_nonce_with_injected_clock() -> None:
    auth = signing.JDCloudAuth(AK, SK, clock=lambda: 1700000000, nonce=lambda: NONCE)
    request = httpx.Request(
        "POST",
        "https://vm.jdcloud-api.com" + PATH,
        content=BODY,
        headers={"Content-Type": "application/json"},
    )
    signed = next(auth.auth_flow(request))
    assert signed.headers["x-jdcloud-date"] == DATE
    assert signed.headers["x-jdcloud-nonce"] == NONCE
    assert signed.headers["Authorization"] == sign(signing.JDCLOUD3, WITH_DATE_NONCE)


def test_auth_flow_takes_the_region_from_the_path_and_the_query_from_the_url() -> None:
    auth = signing.JDCloudAuth(
        AK, SK, version=signing.JDCLOUD2, clock=lambda: 1700000000, nonce=lambda: NONCE
    )
    url = "http://127.0.0.1:9100/v1/regions/cn-east-2/instances?pageSize=10&pageNumber=1"
    signed = next(auth.auth_flow(httpx.Request("GET", url)))
    expected = signing.authorization(
        signing.JDCLOUD2,
        access_key=AK,
        secret_key=SK,
        jd_date=DATE,
        region="cn-east-2",
        service="vm",
        method="GET",
        path="/v1/regions/cn-east-2/instances",
        query="pageNumber=1&pageSize=10",
        headers={
            "content-type": "application/json",
            "host": "127.0.0.1:9100",
            "x-jdcloud-date": DATE,
            "x-jdcloud-nonce": NONCE,
        },
        body=b"",
    )
    assert signed.headers["Authorization"] == expected
    assert "/cn-east-2/vm/jdcloud2_request" in expected
