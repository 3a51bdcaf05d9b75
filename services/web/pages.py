"""Sign-in, sign-out, the language choice and the home page."""
from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import RedirectResponse

from services.web import signin, store
from services.web.app import PageError, Web, check_csrf, home_of, set_cookie
from services.web.i18n import LANGUAGES

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
Token = Path(min_length=20, max_length=100, pattern=r"^[A-Za-z0-9_\-]+$")


def _safe_next(url: str | None) -> str | None:
    """Only a path on this site (never //elsewhere or a scheme): no open redirect."""
    if not url or not url.startswith("/") or url.startswith("//") or "\\" in url or urlsplit(url).netloc:
        return None
    return url[:300]


def router(web: Web) -> APIRouter:
    r = APIRouter(include_in_schema=False)
    ctx = web.ctx

    @r.get("/")
    def home(request: Request):
        s = web.session(request)
        return RedirectResponse(home_of(s.role) if s.signed_in else "/signin", status_code=303)

    @r.get("/signin")
    def signin_form(request: Request, next: str | None = None, sent: bool = False):
        return web.render(request, "signin.html", next=_safe_next(next) or "", sent=sent)

    @r.post("/signin", dependencies=[Depends(check_csrf)])
    def signin_request(request: Request, email: str = Form(..., max_length=254), next: str = Form("", max_length=300)):
        f = web.formats(request)
        base = ctx.settings.web_public_url
        if not base:
            if request.url.hostname not in LOOPBACK:
                raise PageError(503, "sign-in links need SALESBUS_WEB_PUBLIC_URL (the address people open)")
            base = str(request.base_url)
        client = request.client.host if request.client else "unknown"
        if "@" not in email or len(email.strip()) < 3:
            return web.render(request, "signin.html", status=422, next=_safe_next(next) or "",
                              sent=False, error=f.t("err_email"))
        try:
            signin.request_link(ctx, email, client, base)
        except signin.RateLimited:
            return web.render(request, "signin.html", status=429, next="", sent=False, error=f.t("err_rate"))
        except signin.MailFailed:
            return web.render(request, "signin.html", status=503, next="", sent=False, error=f.t("err_mail"))
        # The same answer whether or not the address may sign in.
        return RedirectResponse("/signin?sent=1", status_code=303)

    @r.get("/signin/{token}")
    def signin_link(request: Request, token: str = Token):
        email = signin.link_email(ctx, token)
        return web.render(request, "signin_link.html", status=200 if email else 410, token=token, email=email)

    @r.post("/signin/{token}", dependencies=[Depends(check_csrf)])
    def signin_use(request: Request, token: str = Token):
        s = web.session(request)
        started = signin.sign_in(ctx, token, s.cookie or None)
        if started is None:
            return web.render(request, "signin_link.html", status=410, token=token, email=None)
        with ctx.pool.connection() as conn:
            row = store.session(conn, signin.digest(started.cookie), ctx.clock.now())
        response = RedirectResponse(home_of(row["role"]), status_code=303)
        set_cookie(request, response, started.cookie)
        return response

    @r.post("/signout", dependencies=[Depends(check_csrf)])
    def signout(request: Request):
        s = web.session(request)
        if s.cookie:
            signin.sign_out(ctx, s.cookie)
        response = RedirectResponse("/signin", status_code=303)
        response.delete_cookie("sb_session", path="/")
        return response

    @r.post("/language", dependencies=[Depends(check_csrf)])
    def language(request: Request, language: str = Form(..., max_length=5), back: str = Form("/", max_length=300)):
        if language not in LANGUAGES:
            raise PageError(422, f"unknown language {language!r}")
        s = web.session(request)
        with ctx.unit_of_work() as uow:
            store.set_session_language(uow.conn, signin.digest(s.cookie), language)
        return RedirectResponse(_safe_next(back) or "/", status_code=303)

    return r
