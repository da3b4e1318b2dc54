"""A small typed client for keybind's HTTP API, as the CLI uses it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from app.jobs.schemas import CLI_AGENT

DEFAULT_API_URL = "http://127.0.0.1:8000"


class ApiUnreachable(Exception):
    """No answer from the API (connection refused, timeout, DNS)."""


@dataclass(frozen=True, slots=True)
class ApiProblem(Exception):
    """The API answered with an error; `status` and its JSON error body say what."""

    status: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


class ApiClient:
    def __init__(self, base_url: str, token: str, *, timeout: float = 60.0) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}", "User-Agent": f"{CLI_AGENT}1"},
            timeout=timeout,
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ApiUnreachable(f"{self._http.base_url}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                raise ApiProblem(response.status_code, error["code"], error["message"])
            except (ValueError, KeyError, TypeError):
                raise ApiProblem(response.status_code, "http_error", response.text[:200]) from None
        return response

    def submit(self, body: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        result: dict[str, Any] = self._send("POST", "/v1/jobs", json=body, headers=headers).json()
        return result

    def job(self, job_id: str, etag: str | None = None) -> tuple[dict[str, Any] | None, str | None]:
        """The job and its ETag; (None, etag) when unchanged since `etag`."""
        headers = {"If-None-Match": etag} if etag else {}
        response = self._send("GET", f"/v1/jobs/{job_id}", headers=headers)
        if response.status_code == 304:
            return None, etag
        return response.json(), response.headers.get("etag")

    def cancel(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._send("POST", f"/v1/jobs/{job_id}/cancel").json()
        return result

    def failed_instances(self, job_id: str, limit: int = 1000) -> list[dict[str, Any]]:
        params = {"state": "failed", "limit": limit}
        items: list[dict[str, Any]] = self._send(
            "GET", f"/v1/jobs/{job_id}/instances", params=params
        ).json()["items"]
        return items
