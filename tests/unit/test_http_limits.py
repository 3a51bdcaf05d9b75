"""The request-body limit of every service's app (runtime.http.BodyLimit): by Content-Length and,
for chunked bodies that have none, by counting what streams in. Through httpx's ASGI transport and
through a real uvicorn server."""
from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
import uvicorn
from fastapi import Request
from pydantic import BaseModel

from runtime.auth import KeyRing
from runtime.embedded import free_port, wait_for_port
from runtime.http import MAX_BODY_BYTES, BodyLimit, make_app
from runtime.metrics import HttpMetrics

LIMIT = 4096
# RFC 9457 problem details (docs/api.md); was {"detail": ...} before the one error shape
TOO_LARGE = {"type": "https://salesbus.dev/problems/body-too-large", "title": "Request Entity Too Large",
             "status": 413, "detail": f"request body over {LIMIT} bytes"}


class Note(BaseModel):
    text: str


def app_with_limit(limit: int = LIMIT):
    app = make_app("limits", keyring=KeyRing(inline="{}"), max_body_bytes=limit)
    app.state.calls = 0

    @app.post("/notes")
    def add_note(note: Note) -> dict:
        app.state.calls += 1
        return {"length": len(note.text)}

    @app.post("/raw")
    async def raw(request: Request) -> dict:
        body = await request.body()
        app.state.calls += 1
        return {"length": len(body)}

    @app.get("/ping")
    def ping() -> dict:
        return {"ok": True}

    return app


def note_json(size: int) -> bytes:
    return b'{"text": "' + b"x" * size + b'"}'


class Chunks:
    """A chunked request body (no Content-Length) that remembers how much of it was read."""

    def __init__(self, data: bytes, chunk: int = 512):
        self.parts = [data[i:i + chunk] for i in range(0, len(data), chunk)]
        self.sent = 0

    def sync(self):
        for part in self.parts:
            self.sent += 1
            yield part

    async def stream(self):
        for part in self.parts:
            self.sent += 1
            yield part


def asgi_post(app, path: str, content, headers: dict | None = None) -> httpx.Response:
    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return await client.post(path, content=content.stream() if isinstance(content, Chunks) else content, headers=headers or {"content-type": "application/json"})
    return asyncio.run(go())


def test_the_limit_is_a_pure_asgi_middleware():
    app = app_with_limit()
    # no BaseHTTPMiddleware (slow) in the stack: the request counter (runtime.metrics) is pure ASGI too
    assert [m.cls for m in app.user_middleware] == [HttpMetrics, BodyLimit]


@pytest.mark.parametrize("path", ["/notes", "/raw"])
def test_chunked_body_over_the_limit_is_refused_and_no_longer_read(path):
    app = app_with_limit()
    body = Chunks(note_json(LIMIT * 4))
    r = asgi_post(app, path, body)
    assert r.request.headers.get("transfer-encoding") == "chunked" and "content-length" not in r.request.headers
    assert r.status_code == 413, r.text
    assert r.json() == TOO_LARGE
    assert r.headers["connection"] == "close"
    assert app.state.calls == 0
    # Reading stopped at the first chunk past the limit: the rest was never taken from the client.
    assert body.sent == LIMIT // 512 + 1 < len(body.parts)


@pytest.mark.parametrize("path", ["/notes", "/raw"])
def test_small_chunked_body_is_accepted(path):
    app = app_with_limit()
    body = Chunks(note_json(LIMIT - 100))
    r = asgi_post(app, path, body)
    assert r.status_code == 200, r.text
    assert r.json()["length"] in (LIMIT - 100, len(note_json(LIMIT - 100)))
    assert body.sent == len(body.parts)


def test_body_of_exactly_the_limit_is_accepted():
    data = note_json(LIMIT - len(note_json(0)))
    assert len(data) == LIMIT
    assert asgi_post(app_with_limit(), "/notes", Chunks(data)).status_code == 200
    assert asgi_post(app_with_limit(), "/notes", data).status_code == 200


def test_content_length_over_the_limit_is_refused_before_the_app_runs():
    app = app_with_limit()
    r = asgi_post(app, "/notes", note_json(LIMIT + 1))
    assert r.request.headers["content-length"] == str(len(note_json(LIMIT + 1)))
    assert r.status_code == 413 and r.json() == TOO_LARGE
    assert app.state.calls == 0


def test_a_lying_small_content_length_does_not_get_past_the_count():
    """A Content-Length under the limit over a bigger stream: the count still stops it."""
    app = app_with_limit()
    r = asgi_post(app, "/raw", Chunks(b"x" * (LIMIT * 3)),
                  headers={"content-type": "application/octet-stream", "content-length": "10"})
    assert r.status_code == 413 and app.state.calls == 0


def test_default_limit_applies_to_every_service_app():
    app = make_app("default", keyring=KeyRing(inline="{}"))

    @app.post("/raw")
    async def raw(request: Request) -> dict:
        return {"length": len(await request.body())}

    assert asgi_post(app, "/raw", Chunks(b"y" * (MAX_BODY_BYTES + 1), chunk=16 * 1024)).status_code == 413
    assert asgi_post(app, "/raw", Chunks(b"y" * MAX_BODY_BYTES, chunk=16 * 1024)).json() == {"length": MAX_BODY_BYTES}


@pytest.fixture(scope="module")
def server():
    """The same app behind a real uvicorn server, as every service runs."""
    app = app_with_limit()
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    srv.install_signal_handlers = lambda: None
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    wait_for_port(port, 15, "uvicorn")
    yield app, f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


def test_real_server_refuses_a_big_chunked_body(server):
    app, url = server
    before = app.state.calls
    # Much more than the limit (and than socket buffers): the server answers 413 and closes
    # instead of reading it all; httpx reads the early answer.
    body = Chunks(note_json(LIMIT * 1000), chunk=8192)
    with httpx.Client(base_url=url, timeout=30) as client:
        r = client.post("/notes", content=body.sync(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json() == TOO_LARGE
    assert app.state.calls == before


def test_real_server_accepts_a_small_chunked_body_and_the_connection_goes_on(server):
    app, url = server
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(3):
            r = client.post("/notes", content=Chunks(note_json(1000), chunk=100).sync(),
                            headers={"content-type": "application/json"})
            assert r.status_code == 200 and r.json() == {"length": 1000}
        assert client.get("/ping").json() == {"ok": True}


def test_real_server_refuses_by_content_length(server):
    _, url = server
    with httpx.Client(base_url=url, timeout=30) as client:
        r = client.post("/notes", content=note_json(LIMIT * 2), headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["detail"] == f"request body over {LIMIT} bytes"
        assert client.get("/ping").status_code == 200  # a new connection after the close


# --- what every app's OpenAPI documents ------------------------------------------------------------

def documented_app():
    from fastapi import Depends, HTTPException

    from runtime.auth import Principal, authenticate, require

    app = make_app("documented", keyring=KeyRing(inline='{"k-op": {"role": "operator", "subject": "op"}, '
                                                        '"k-cu": {"role": "customer", "subject": "cu"}}'))

    @app.put("/things/{thing_id}", responses={404: {"description": "no such thing"}})
    def put_thing(thing_id: str, note: Note, _: Principal = Depends(require("operator"))) -> dict:
        if thing_id == "rule":
            raise HTTPException(422, "a business rule refused it")
        raise HTTPException(404, f"no thing {thing_id}")

    @app.get("/open")
    def read_open(principal: Principal = Depends(authenticate)) -> dict:
        return {"role": principal.role}

    return app


def test_openapi_documents_the_errors_every_route_can_give():
    doc = documented_app().openapi()
    put = doc["paths"]["/things/{thing_id}"]["put"]
    assert set(put["responses"]) == {"200", "400", "401", "403", "404", "413", "422"}
    assert put["security"] == [{"apiKeyBearer": ["operator"]}, {"apiKeyHeader": ["operator"]}]  # roles named
    # every 4xx is RFC 9457 problem+json, 422 included (it was {"detail": [...], "message"} before)
    for code in ("400", "401", "403", "404", "413", "422"):
        assert put["responses"][code]["content"] == {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}, code
    read = doc["paths"]["/open"]["get"]
    assert set(read["responses"]) == {"200", "401"}  # any key will do: no 403, no body: no 400/413
    assert "HTTPValidationError" not in doc["components"]["schemas"]


def test_error_bodies_have_the_documented_shapes():
    from jsonschema_rs import validator_for

    app = documented_app()
    doc = app.openapi()

    def shape(name: str, body: dict) -> bool:
        # the component, with the document's components beside it so its $refs resolve
        return validator_for({**doc["components"]["schemas"][name], "components": doc["components"]}).is_valid(body)

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            op = {"Authorization": "Bearer k-op"}
            return [await c.put("/things/x", json={"text": "a"}, headers=op),
                    await c.put("/things/rule", json={"text": "a"}, headers=op),
                    await c.put("/things/x", json={"text": 5}, headers=op),
                    await c.put("/things/x", json={"text": "a"}, headers={"X-API-Key": "k-cu"}),
                    await c.get("/open"),
                    await c.get("/open", headers={"X-API-Key": "k-cu"})]

    missing, rule, invalid, forbidden, anonymous, by_header = asyncio.run(go())
    assert (missing.status_code, rule.status_code, invalid.status_code) == (404, 422, 422)
    assert (forbidden.status_code, anonymous.status_code, by_header.json()) == (403, 401, {"role": "customer"})
    for r in (missing, forbidden, anonymous, rule, invalid):
        assert r.headers["content-type"] == "application/problem+json"
        assert shape("Problem", r.json()), r.json()
    slugs = [r.json()["type"].rsplit("/", 1)[1] for r in (missing, forbidden, anonymous, rule, invalid)]
    assert slugs == ["not-found", "forbidden", "unauthorized", "unprocessable", "validation-failed"]
    assert "errors" not in rule.json() and invalid.json()["errors"][0]["loc"] == ["body", "text"]
    assert invalid.json()["detail"] == "text: Input should be a valid string"
    assert anonymous.headers["www-authenticate"] == "Bearer"


def test_routing_and_domain_errors_are_problems_too():
    """404 for no route, 405 for a wrong method and a command's DomainError (with its own slug):
    the same problem+json shape as everything else, without any route building it."""
    from runtime.problems import Conflict

    class AlreadyDone(Conflict):
        slug = "already-done"

    app = make_app("domain", keyring=KeyRing(inline="{}"))

    @app.get("/things/{thing_id}")
    def get_thing(thing_id: str) -> dict:
        raise AlreadyDone(f"thing {thing_id} is already done")

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            return [await c.get("/nowhere"), await c.delete("/things/a"), await c.get("/things/a")]

    nowhere, wrong_method, domain = asyncio.run(go())
    assert [r.status_code for r in (nowhere, wrong_method, domain)] == [404, 405, 409]
    for r in (nowhere, wrong_method, domain):
        assert r.headers["content-type"] == "application/problem+json" and r.json()["status"] == r.status_code
    assert [r.json()["type"].rsplit("/", 1)[1] for r in (nowhere, wrong_method, domain)] == \
        ["not-found", "method-not-allowed", "already-done"]
    assert domain.json()["detail"] == "thing a is already done"


def test_every_path_parameter_is_a_bounded_id_even_where_the_route_forgets():
    """A route with a bare `str` path parameter: a NUL (PostgreSQL refuses it in text, a 500) or an
    over-long id is a 422 before the handler runs."""
    app = make_app("paths", keyring=KeyRing(inline="{}"))
    seen = []

    @app.get("/carts/{cart_id}/lines/{sku}")
    def line(cart_id: str, sku: str) -> dict:
        seen.append((cart_id, sku))
        return {"cart_id": cart_id}

    async def go(path):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            return await c.get(path)

    assert asyncio.run(go("/carts/cart-1/lines/BULB-9W")).status_code == 200
    assert asyncio.run(go("/carts/caf%C3%A9 1/lines/B")).status_code == 200  # any printable text is an id
    for path in ("/carts/a%00b/lines/X", "/carts/a/lines/X%0AY", "/carts/" + "c" * 201 + "/lines/X"):
        r = asyncio.run(go(path))
        assert r.status_code == 422, path
        assert r.json()["errors"][0]["loc"][0] == "path" and "\x00" not in r.text
    assert seen == [("cart-1", "BULB-9W"), ("café 1", "B")]


def test_a_one_value_query_parameter_sent_twice_is_refused_and_a_list_may_repeat():
    """Regression (schemathesis, cart GET /products): `?q=<NUL>&q=bulb` answered 200 as a search
    for "bulb" — FastAPI keeps the last copy of a repeated one-value parameter and drops the rest."""
    from fastapi import Depends, Query
    from fastapi.testclient import TestClient

    from runtime.pages import PageParams, page_params

    app = make_app("salesbus test", keyring=KeyRing(inline="{}"))

    @app.get("/things")
    def things(q: str | None = None, tag: list[str] | None = Query(None),
               params: PageParams = Depends(page_params)) -> dict:
        return {"q": q, "tag": tag, "limit": params.limit}

    client = TestClient(app)
    assert client.get("/things?q=a&tag=x&tag=y&limit=3").json() == {"q": "a", "tag": ["x", "y"], "limit": 3}
    for query, name in (("q=%00&q=bulb", "q"), ("limit=3&limit=4", "limit")):
        r = client.get(f"/things?{query}")
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert [e["loc"] for e in r.json()["errors"]] == [["query", name]]
