"""The services' HTTP APIs as the web service calls them: with the signed-in person's own key, so
each API decides what that person may see and do (the web service adds no access rules of its own)."""
from __future__ import annotations

import json
from typing import Any

import httpx

from runtime.config import Settings

SERVICES_CALLED = ("cart", "payments", "orders", "crm", "scheduler")


class UpstreamError(Exception):
    """A service answered 4xx/5xx or could not be reached: status and its sentence for the page."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


def service_urls(cfg: Settings) -> dict[str, str]:
    if cfg.service_urls:
        return json.loads(cfg.service_urls)
    ports = (cfg.embedded() or {}).get("services", {})
    return {name: f"http://127.0.0.1:{p['http']}" for name, p in ports.items() if p.get("http")}


def metrics_urls(cfg: Settings) -> dict[str, str]:
    """Each service's metrics port (known for `salesbus up`); empty elsewhere."""
    ports = (cfg.embedded() or {}).get("services", {})
    return {name: f"http://127.0.0.1:{p['metrics']}" for name, p in ports.items() if p.get("metrics")}


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(body, dict):
        if body.get("message"):
            return str(body["message"])
        detail = body.get("detail")
        if isinstance(detail, str):
            return detail
        if isinstance(detail, list):
            return "; ".join(f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg', '')}" for d in detail)
    return response.reason_phrase


class Upstream:
    """One process-wide client per service; each call carries the caller's key."""

    def __init__(self, cfg: Settings, timeout_s: float = 15.0):
        self.cfg = cfg
        self.timeout_s = timeout_s
        self._clients: dict[str, httpx.Client] = {}

    def _client(self, service: str) -> httpx.Client:
        if service not in self._clients:
            url = service_urls(self.cfg).get(service)
            if not url:
                raise UpstreamError(503, f"the {service} service's address is not known yet")
            self._clients[service] = httpx.Client(base_url=url, timeout=self.timeout_s)
        return self._clients[service]

    def call(self, key: str, method: str, service: str, path: str, *, json_body: Any = None,
             params: dict | None = None, headers: dict | None = None) -> Any:
        try:
            response = self._client(service).request(
                method, path, json=json_body, params={k: v for k, v in (params or {}).items() if v is not None},
                headers={"Authorization": f"Bearer {key}", **(headers or {})})
        except httpx.HTTPError as exc:
            raise UpstreamError(503, f"the {service} service did not answer: {type(exc).__name__}") from exc
        if response.status_code >= 400:
            raise UpstreamError(response.status_code, _detail(response))
        return response.json() if response.content else None

    def get(self, key: str, service: str, path: str, **params) -> Any:
        return self.call(key, "GET", service, path, params=params)

    def post(self, key: str, service: str, path: str, body: Any = None, headers: dict | None = None) -> Any:
        return self.call(key, "POST", service, path, json_body=body, headers=headers)

    def put(self, key: str, service: str, path: str, body: Any) -> Any:
        return self.call(key, "PUT", service, path, json_body=body)

    def delete(self, key: str, service: str, path: str) -> Any:
        return self.call(key, "DELETE", service, path)

    def probe(self, service: str) -> tuple[bool, str]:
        """Whether the service's HTTP API answers (its OpenAPI document needs no key)."""
        try:
            response = self._client(service).get("/openapi.json", timeout=3)
            return response.status_code == 200, f"HTTP {response.status_code}"
        except (httpx.HTTPError, UpstreamError) as exc:
            return False, str(exc) or type(exc).__name__

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
