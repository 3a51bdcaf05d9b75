"""Common set-up for every service's FastAPI app: key ring, body-size limit, error shape."""
from __future__ import annotations

import json
import re
import types
import typing
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime.auth import KeyRing
from runtime.metrics import HttpMetrics
from runtime.problems import PROBLEM_BASE, VALIDATION_SLUG, DomainError, slug_for, title_for
from schemas.types import ID_PATTERN, MAX_ID

MAX_BODY_BYTES = 256 * 1024

IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,200}$"
#: the one idempotency header (docs/api.md), required where a retried POST must not act twice:
#: `idempotency_key: IdempotencyKey` in a route. Missing or malformed: 422 validation-failed.
IdempotencyKey = Annotated[str, Header(alias="Idempotency-Key", min_length=1, max_length=200,
                                       pattern=IDEMPOTENCY_KEY_PATTERN, description=(
    "required: the same key (1-200 printable ASCII characters, e.g. a UUID) from the same caller is "
    "the same request, however often it is retried"))]


class BodyTooLarge(StarletteHTTPException):
    """Raised from `receive` once a request body passes the limit. It is an HTTPException so that
    FastAPI's body parsing re-raises it (anything else becomes a 400 there) and the app's
    exception handler answers 413 (body-too-large); BodyLimit answers it too if it gets that far."""

    def __init__(self, limit: int):
        super().__init__(413, f"request body over {limit} bytes", headers={"Connection": "close"})


class BodyLimit:
    """Pure ASGI middleware: refuses request bodies over `max_bytes` with 413.

    By Content-Length before the app runs at all, and, because a chunked body has no
    Content-Length, by counting the bytes of the `http.request` messages as the app reads them.
    Once over, the app gets no more of the body; the 413 carries `Connection: close`, so the server
    stops reading the rest of it instead of draining it. A response the app has already started is
    left as it is (the error then ends the connection)."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._refuse(send)
                return
        received = 0
        over = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, over
            if over:
                raise BodyTooLarge(self.max_bytes)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    over = True
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = _problem_bytes(413, f"request body over {self.max_bytes} bytes")
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class FieldError(BaseModel):
    loc: list[Annotated[str, Field(max_length=200)] | int] = Field(
        max_length=50, description="where: body, query, path or header, then the field's path")
    msg: str = Field(max_length=1000, description="what is wrong with it (never the value sent)")
    type: str = Field(max_length=100, description="pydantic's error type, e.g. string_too_long")


class Problem(BaseModel):
    """The body of every error answer: RFC 9457 problem details (`application/problem+json`)."""
    type: str = Field(pattern=rf"^{re.escape(PROBLEM_BASE)}[a-z0-9-]+$", max_length=200,
                      description="stable identifier of the kind of problem: "
                                  f"{PROBLEM_BASE}<slug> (docs/api.md lists the slugs)")
    title: str = Field(max_length=200, description="the kind of problem in a few words (the status's phrase)")
    status: int = Field(ge=400, le=599, description="the HTTP status code, repeated")
    detail: str = Field(max_length=2000, description="what went wrong with this request, as a sentence")
    errors: list[FieldError] | None = Field(
        default=None, max_length=1000,
        description="validation-failed only: the fields that failed, never echoing what was sent")


PROBLEM_JSON = "application/problem+json"

COMMON_ERRORS = {
    400: "the body is not UTF-8 JSON",
    401: "missing, unknown, expired or revoked API key",
    403: "the key's role (or subject) may not do this",
    413: "request body over the size limit",
    422: "the request's fields fail their schema (validation-failed, with `errors`)",
}


def problem(status: int, detail: str, *, slug: str | None = None, errors: list[dict] | None = None,
            headers: dict[str, str] | None = None) -> JSONResponse:
    """The one error answer. Services raise (DomainError, HTTPException); this module answers."""
    body: dict[str, Any] = {"type": PROBLEM_BASE + (slug or slug_for(status)), "title": title_for(status),
                            "status": status, "detail": detail}
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def _problem_bytes(status: int, detail: str) -> bytes:
    return json.dumps({"type": PROBLEM_BASE + slug_for(status), "title": title_for(status), "status": status,
                       "detail": detail}).encode()


def make_app(title: str, *, keyring: KeyRing | None = None, description: str = "",
             max_body_bytes: int = MAX_BODY_BYTES, ctx: Any = None) -> FastAPI:
    """`ctx` (the running service's `ServiceContext`): given, the app also gets the runtime's
    operator endpoint `GET /ops/set-aside` over that service's own database (runtime/ops_api.py)."""
    app = FastAPI(title=title, description=description, version="1", dependencies=[Depends(bounded_path_params), Depends(single_query_values)])
    app.state.keyring = keyring or KeyRing.from_env()
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    # outermost of ours, so refusals by BodyLimit (413) are counted too
    app.add_middleware(HttpMetrics, service=title.removeprefix("salesbus ").strip())
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)   # also routing's 404 and 405
    app.add_exception_handler(DomainError, domain_error)
    app.add_exception_handler(Exception, server_error)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document_errors(app, FastAPI.openapi(app))
        return app.openapi_schema

    app.openapi = openapi
    if ctx is not None:
        from runtime import ops_api
        app.include_router(ops_api.router(ctx))
    return app


_PATH_ID = re.compile(ID_PATTERN)


def bounded_path_params(request: Request) -> None:
    """Every path parameter of every route is an id: 1-200 characters, no control characters.
    Routes declare the bound on their parameters too (so the OpenAPI says it); this holds for a
    route that forgets, before the value reaches SQL (PostgreSQL refuses a NUL in text: a 500)."""
    bad = [name for name, value in request.path_params.items()
           if isinstance(value, str) and (len(value) > MAX_ID or not _PATH_ID.fullmatch(value))]
    if bad:
        raise RequestValidationError([{"type": "string_pattern_mismatch", "loc": ("path", name), "input": None,
                                       "msg": f"an id is 1-{MAX_ID} characters without control characters"}
                                      for name in bad])


def single_query_values(request: Request) -> None:
    """A query parameter a route declares as one value, sent more than once, is refused (422).
    FastAPI keeps the last copy and drops the rest unseen, so `?q=<NUL>&q=bulb` was answered as a
    search for "bulb": a request outside the documented schema accepted (schemathesis, cart's
    GET /products). Parameters declared as lists may repeat."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None or len(request.query_params.multi_items()) == len(request.query_params):
        return  # no route (404 follows), or no name repeated: the common case costs one comparison
    single = {p.alias for p in _query_params(dependant) if not _is_many(p.field_info.annotation)}
    repeated = sorted(k for k in set(request.query_params.keys()) if k in single
                      and len(request.query_params.getlist(k)) > 1)
    if repeated:
        raise RequestValidationError([{"type": "too_many_values", "loc": ("query", name), "input": None,
                                       "msg": "takes one value; it was sent more than once"} for name in repeated])


def _query_params(dependant) -> typing.Iterator:
    yield from dependant.query_params
    for sub in dependant.dependencies:   # e.g. runtime.pages.page_params
        yield from _query_params(sub)


def _is_many(annotation) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_many(a) for a in typing.get_args(annotation))
    return origin in (list, set, tuple, frozenset) or annotation in (list, set, tuple, frozenset)


def document_errors(app: FastAPI, schema: dict[str, Any]) -> None:
    """Adds to the OpenAPI document the error answers an operation gives without its route saying
    so: 401 where a key is needed, 403 where only some roles may call it (the role names are in
    its security requirement), 400 and 413 where a body is read, 422 where anything is validated.
    Every documented 4xx is `application/problem+json` with the Problem schema (docs/api.md)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    model_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(model_schema.pop("$defs", {}))
    components["Problem"] = model_schema
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    body = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for methods in schema.get("paths", {}).values():
        for operation in methods.values():
            security = operation.get("security") or []
            wanted = set()
            if security:
                wanted.add(401)
            if any(scopes for requirement in security for scopes in requirement.values()):
                wanted.add(403)
            if "requestBody" in operation:
                wanted |= {400, 413, 422}
            if operation.get("parameters"):
                wanted.add(422)
            responses = operation.setdefault("responses", {})
            for code in sorted(wanted):
                responses.setdefault(str(code), {"description": COMMON_ERRORS[code]})
            for code, response in responses.items():
                if code.isdigit() and 400 <= int(code) < 500:
                    response["content"] = dict(body)
    app.openapi_schema = schema


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    # FastAPI's default answer echoes each rejected input back; a card number sent where a
    # token belongs must never be repeated (nor logged by whoever records responses).
    errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "").removeprefix("Value error, "),
               "type": e.get("type", "")}
              for e in exc.errors()]
    summary = "; ".join(f"{_where(e['loc'])}: {e['msg']}" for e in errors[:5])
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return problem(422, (summary or "invalid request") + more, slug=VALIDATION_SLUG, errors=errors)


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail if isinstance(exc.detail, str) else title_for(exc.status_code)
    if exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    elif exc.status_code == 404 and exc.detail == "Not Found":  # routing's: no such path
        detail = f"nothing at {request.url.path}"
    return problem(exc.status_code, detail, headers=getattr(exc, "headers", None))


async def domain_error(request: Request, exc: DomainError) -> JSONResponse:
    return problem(exc.status, exc.detail, slug=exc.problem_slug)


async def server_error(request: Request, exc: Exception) -> JSONResponse:
    # Starlette still re-raises it after answering, so it is logged with its traceback as before.
    return problem(500, "the service failed to answer; the error is logged")


def _where(loc: list) -> str:
    parts = loc[1:] if loc[:1] == ["body"] else loc
    return ".".join(str(p) for p in parts) or "body"
