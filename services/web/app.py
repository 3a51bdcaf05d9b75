"""The web service's FastAPI app: sessions and CSRF, page rendering, the pages' routers.

Every page is server-rendered HTML (Jinja2, autoescaped) that works without JavaScript. No HTML
route is in the OpenAPI document: this service's API is its pages."""
from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime.http import make_app
from runtime.service import ServiceContext
from services.web import signin, store
from services.web.i18n import LANGUAGES, NATIVE_NAMES, Formats, from_accept_language
from services.web.upstream import Upstream, UpstreamError

COOKIE = "sb_session"
HERE = Path(__file__).parent
TEMPLATES = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                        trim_blocks=True, lstrip_blocks=True)
#: no script, no framing, forms only to ourselves; styles from our own stylesheet
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store",
}
HOME = {"customer": "/shop", "salesperson": "/console", "operator": "/ops", "warehouse": "/ops"}


@dataclass
class Session:
    cookie: str
    row: dict

    @property
    def signed_in(self) -> bool:
        return self.row.get("email") is not None and bool(self.row.get("active"))

    @property
    def role(self) -> str | None:
        return self.row.get("role") if self.signed_in else None

    @property
    def subject(self) -> str:
        return self.row["subject"]

    @property
    def key(self) -> str:
        return self.row["api_key"]

    @property
    def csrf(self) -> str:
        return self.row["csrf_token"]


class Redirect(Exception):
    def __init__(self, url: str):
        self.url = url


class PageError(Exception):
    """Shown as an error page with this status (403, 404, 409 ...)."""

    def __init__(self, status: int, message: str):
        self.status, self.message = status, message


class Web:
    """What the routers share: the context, the upstream APIs and rendering."""

    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx
        self.api = Upstream(ctx.settings)

    def session(self, request: Request) -> Session:
        return request.state.session

    def person(self, request: Request, *roles: str) -> Session:
        s = self.session(request)
        if not s.signed_in:
            raise Redirect(f"/signin?next={quote(request.url.path)}")
        if roles and s.role not in roles:
            raise PageError(403, self.formats(request).t("err_forbidden"))
        return s

    def formats(self, request: Request) -> Formats:
        s = self.session(request)
        row = s.row if s else {}
        lang = row.get("chosen_language") or (row.get("language") if s and s.signed_in else None) \
            or from_accept_language(request.headers.get("accept-language"))
        return Formats(lang, row.get("time_zone") if s and s.signed_in else None)

    def render(self, request: Request, template: str, status: int = 200, **values) -> HTMLResponse:
        s = self.session(request)
        f = self.formats(request)
        html = TEMPLATES.get_template(template).render(
            f=f, t=f.t, session=s, person=s.row if s.signed_in else None, csrf=s.csrf, path=request.url.path,
            here=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
            languages=[(code, NATIVE_NAMES[code]) for code in LANGUAGES], **values)
        return HTMLResponse(html, status_code=status)

    def call(self, fn, *args, **kw):
        """An upstream call whose 404/403 becomes this page's answer (another customer's order
        looks exactly like a missing one, as the API answers)."""
        try:
            return fn(*args, **kw)
        except UpstreamError as exc:
            raise PageError(exc.status if exc.status in (403, 404) else 502 if exc.status >= 500 else exc.status,
                            exc.detail) from exc


class Sessions:
    """Finds or starts the visitor's session, puts it on `request.state.session`, and adds the new
    cookie and the security headers to the response. A plain ASGI middleware, not
    `@app.middleware("http")`: that one (BaseHTTPMiddleware) runs the app in a second task and
    streams every body through a queue, above half of a request's CPU in issue 11's profile."""

    def __init__(self, app: ASGIApp, ctx: ServiceContext) -> None:
        self.app, self.ctx = app, ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        cookie = request.cookies.get(COOKIE)
        row = await run_in_threadpool(_load, self.ctx, cookie) if cookie and len(cookie) <= 100 else None
        cookie_headers: list[bytes] = []
        if row is None:
            if request.method not in ("GET", "HEAD") or request.url.path.startswith("/static/"):
                row = {"csrf_token": "", "email": None}  # a form sent without a session cannot pass CSRF
            else:
                fresh = await run_in_threadpool(signin.new_anonymous_session, self.ctx)
                cookie = fresh.cookie
                row = {"csrf_token": fresh.csrf_token, "email": None}
                carrier = Response()
                set_cookie(request, carrier, fresh.cookie)
                cookie_headers = [v for k, v in carrier.raw_headers if k == b"set-cookie"]
        request.state.session = Session(cookie or "", row)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for value in cookie_headers:
                    headers.append("set-cookie", value.decode("latin-1"))
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def check_csrf(request: Request, csrf_token: str = Form("", max_length=200)) -> None:
    s: Session = request.state.session
    if not csrf_token or not hmac.compare_digest(csrf_token, s.csrf):
        raise PageError(403, "the form was not sent from this site's page (missing or stale CSRF token); "
                             "go back, reload the page and send it again")


def create_app(ctx: ServiceContext) -> FastAPI:
    from services.web import aside, console, ops, pages, shop

    app = make_app("salesbus web", description="People-facing pages: storefront, customer portal, consoles.")
    web = Web(ctx)
    app.state.web = web

    app.add_middleware(Sessions, ctx=ctx)

    @app.exception_handler(RequestValidationError)
    async def invalid_form(request: Request, exc: RequestValidationError):
        # A form field out of its bounds: an error page, not JSON (never echoing what was sent).
        fields = ", ".join(str(e.get("loc", ["?"])[-1]) for e in exc.errors()[:5])
        return web.render(request, "error.html", status=422, status_code=422,
                          message=web.formats(request).t("err_fields", fields=fields))

    @app.exception_handler(Redirect)
    async def redirect(request: Request, exc: Redirect):
        return RedirectResponse(exc.url, status_code=303)

    @app.exception_handler(PageError)
    async def page_error(request: Request, exc: PageError):
        return web.render(request, "error.html", status=exc.status, status_code=exc.status, message=exc.message)

    @app.get("/static/site.css", include_in_schema=False)
    def stylesheet():
        return Response((HERE / "templates" / "site.css").read_bytes(), media_type="text/css",
                        headers={"Cache-Control": "max-age=3600"})

    for module in (pages, shop, console, ops, aside):
        app.include_router(module.router(web))
    return app


def _load(ctx: ServiceContext, cookie: str) -> dict | None:
    with ctx.pool.connection() as conn:
        return store.session(conn, signin.digest(cookie), ctx.clock.now())


def set_cookie(request: Request, response: Response, value: str) -> None:
    # HttpOnly: no script reads it; SameSite=Lax: not sent on cross-site posts; Secure over TLS
    response.set_cookie(COOKIE, value, httponly=True, samesite="lax", secure=request.url.scheme == "https",
                        path="/")


def home_of(role: str | None) -> str:
    return HOME.get(role or "", "/signin")
