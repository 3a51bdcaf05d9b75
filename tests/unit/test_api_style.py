"""docs/api.md, enforced: every service's OpenAPI document follows the one style.

The documents are built from each service's real create_app (no database is touched to build
one), so a route added tomorrow is checked too: its 4xx are problem+json, its success has a
response model, a list is a page, a 202 says where the result will be (Location), and the
Idempotency-Key is spelled one way and required where a retried POST must not act twice.
Each rule says which operations break it; an empty list passes.
"""
from __future__ import annotations

import importlib
from types import SimpleNamespace

import pytest

from runtime.config import Settings

SERVICES = ["cart", "payments", "orders", "scheduler", "crm", "notifications"]
#: operations that create something and must be safe to retry: the key is required there
NEEDS_IDEMPOTENCY_KEY = {("post", "/standing-orders"), ("post", "/carts/{cart_id}/checkout")}
PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
PAGE_FIELDS = {"items", "limit", "offset", "total", "next"}


def document(service: str) -> dict:
    api = importlib.import_module(f"services.{service}.api")
    ctx = SimpleNamespace(settings=Settings(), pool=None, clock=None, service=service, stalls=None)
    return api.create_app(ctx).openapi()


def operations(doc: dict):
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            yield method, path, op


def resolve(doc: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def untyped(doc: dict, schema: dict | None) -> bool:
    """No response model: nothing, `{}`, or an object of anything (a route returning a bare dict)."""
    if not schema:
        return True
    shape = resolve(doc, schema)
    return shape.get("type") == "object" and not shape.get("properties") and \
        shape.get("additionalProperties", True) is True


def success(op: dict) -> list[tuple[str, dict]]:
    return [(code, r) for code, r in op["responses"].items() if code.startswith("2")]


def breaks(service: str) -> dict[str, list[str]]:
    doc = document(service)
    found: dict[str, list[str]] = {k: [] for k in
                                   ("problem", "auth", "response_model", "page", "location", "idempotency")}
    for method, path, op in operations(doc):
        label = f"{method.upper()} {path}"
        for code, response in op["responses"].items():
            if code.isdigit() and 400 <= int(code) < 500 and response.get("content") != PROBLEM:
                found["problem"].append(f"{label} {code}")
        security = op.get("security") or []
        if security and "401" not in op["responses"]:
            found["auth"].append(f"{label} 401")
        if any(scopes for req in security for scopes in req.values()) and "403" not in op["responses"]:
            found["auth"].append(f"{label} 403")
        for code, response in success(op):
            if code == "204":
                continue
            schemas = [c.get("schema") for c in (response.get("content") or {}).values()]
            if not schemas or any(untyped(doc, s) for s in schemas):
                found["response_model"].append(f"{label} {code}")
            if code == "202" and "Location" not in (response.get("headers") or {}):
                found["location"].append(f"{label} 202")
        if method == "get":
            body = (op["responses"].get("200", {}).get("content") or {}).get("application/json", {}).get("schema")
            shape = resolve(doc, body) if body else {}
            props = shape.get("properties", {})
            arrays = [name for name, p in props.items() if resolve(doc, p).get("type") == "array"]
            paged = PAGE_FIELDS <= set(props)
            params = {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}
            if shape.get("type") == "array":
                found["page"].append(f"{label}: a bare array")
            elif paged and not {"limit", "offset"} <= params:
                found["page"].append(f"{label}: a page without limit/offset parameters")
            elif not paged and arrays and len(props) <= 2:  # {"customers": [...]} and the like
                found["page"].append(f"{label}: a list wrapped in {sorted(props)}")
        headers = {p["name"]: p for p in op.get("parameters", []) if p["in"] == "header"}
        for name, p in headers.items():
            if "idempotency" in name.lower() and name != "Idempotency-Key":
                found["idempotency"].append(f"{label}: spelled {name}")
        if (method, path) in NEEDS_IDEMPOTENCY_KEY and not headers.get("Idempotency-Key", {}).get("required"):
            found["idempotency"].append(f"{label}: Idempotency-Key not documented as required")
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_every_openapi_document_follows_the_one_api_style(service):
    found = breaks(service)
    assert found == {k: [] for k in found}, f"{service} breaks docs/api.md: " + repr(
        {k: v for k, v in found.items() if v})


def test_the_style_check_catches_what_it_is_for():
    """The checker itself: an app breaking each rule is reported on each (else the test above could not fail)."""
    from fastapi import Header
    from runtime.http import make_app

    app = make_app("bad")

    @app.get("/things")
    def things() -> list[str]:
        return []

    @app.get("/wrapped")
    def wrapped() -> dict:  # no response model either
        return {}

    @app.post("/jobs", status_code=202, response_model=dict[str, str])
    def job(idempotency_key: str | None = Header(None)) -> dict:
        return {}

    import services.orders.api as orders_api
    original = orders_api.create_app
    orders_api.create_app = lambda ctx: app
    try:
        found = breaks("orders")
    finally:
        orders_api.create_app = original
    assert found["page"] == ["GET /things: a bare array"]
    assert found["response_model"] == ["GET /wrapped 200"]
    assert found["location"] == ["POST /jobs 202"]
    assert found["idempotency"] == ["POST /jobs: spelled idempotency-key"]
