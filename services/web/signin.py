"""Sign-in by emailed one-time link, and sessions (the commands behind the sign-in pages).

A link is a random token mailed to an address listed in `people`; only its SHA-256 is stored. It
works once (used_at, set in one UPDATE) and for Settings.web_signin_link_ttl_s. Requests are
rate-limited per address and per client, counted also for unknown addresses, and every request is
answered the same way, so the form does not tell who may sign in. Opening the link shows a button
(mail scanners that fetch links do not use them up); pressing it starts a new session (a fresh id:
no fixation) holding an API key for the person's role and subject.
"""
from __future__ import annotations

import hashlib
import secrets
import smtplib
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid

from runtime.auth import issue_key, revoke_key
from runtime.service import ServiceContext
from services.web import store
from services.web.i18n import translate

#: links per address within RATE_WINDOW (requests per client: Settings.web_signin_per_client)
PER_EMAIL = 3
RATE_WINDOW = timedelta(minutes=15)
#: an anonymous session only carries the sign-in form's CSRF token
ANONYMOUS_TTL = timedelta(hours=2)


class RateLimited(Exception):
    """Too many sign-in requests for this address or from this client."""


class MailFailed(Exception):
    """The SMTP relay did not take the sign-in email."""


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class NewSession:
    cookie: str
    csrf_token: str


def new_anonymous_session(ctx: ServiceContext, language: str | None = None) -> NewSession:
    cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    with ctx.unit_of_work() as uow:
        now = uow.now()
        store.add_session(uow.conn, digest(cookie), email=None, csrf_token=csrf, api_key=None, language=language,
                          now=now, expires_at=now + ANONYMOUS_TTL)
    return NewSession(cookie, csrf)


def request_link(ctx: ServiceContext, email: str, client: str, base_url: str) -> bool:
    """Mails a sign-in link if `email` may sign in; True when one was sent. RateLimited when over."""
    email = email.strip().lower()
    with ctx.unit_of_work() as uow:
        now = uow.now()
        by_email, by_client = store.recent_signin_requests(uow.conn, email, client, now - RATE_WINDOW)
        if by_email >= PER_EMAIL or by_client >= ctx.settings.web_signin_per_client:
            raise RateLimited()
        store.record_signin_request(uow.conn, email, client, now)
    with ctx.unit_of_work() as uow:
        person = store.person(uow.conn, email)
        if person is None or not person["active"]:
            return False
        token = secrets.token_urlsafe(32)
        now = uow.now()
        store.add_token(uow.conn, digest(token), email, now, now + timedelta(seconds=ctx.settings.web_signin_link_ttl_s))
        # Mailed inside the transaction: if the relay refuses, the link is not kept (nobody could use it).
        send_link(ctx, person, f"{base_url.rstrip('/')}/signin/{token}")
    return True


def send_link(ctx: ServiceContext, person: dict, link: str) -> None:
    lang = person["language"]
    minutes = int(ctx.settings.web_signin_link_ttl_s // 60)
    msg = EmailMessage()
    msg["From"] = ctx.settings.smtp_sender
    msg["To"] = person["email"]
    msg["Subject"] = translate(lang, "mail_subject")
    msg["Message-ID"] = make_msgid(domain="salesbus.web")
    msg.set_content("\n\n".join([translate(lang, "mail_hello", name=person["name"]),
                                 translate(lang, "mail_body", minutes=minutes), link,
                                 translate(lang, "mail_ignore")]))
    try:
        with smtplib.SMTP(ctx.settings.smtp_host, ctx.settings.smtp_port, timeout=15) as smtp:
            smtp.send_message(msg)
    except (smtplib.SMTPException, OSError) as exc:
        raise MailFailed(str(exc) or type(exc).__name__) from exc


def link_email(ctx: ServiceContext, token: str) -> str | None:
    with ctx.pool.connection() as conn:
        return store.token_email(conn, digest(token), ctx.clock.now())


def sign_in(ctx: ServiceContext, token: str, old_cookie: str | None) -> NewSession | None:
    """Uses the link (once) and starts the person's session; None when the link does not work."""
    with ctx.unit_of_work() as uow:
        email = store.use_token(uow.conn, digest(token), uow.now())
        person = store.person(uow.conn, email) if email else None
        if person is None or not person["active"]:
            return None
        old_key = store.delete_session(uow.conn, digest(old_cookie)) if old_cookie else None
        key = issue_key(keys_file(ctx), person["role"], person["subject"], person["email"])
        try:
            cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
            now = uow.now()
            store.add_session(uow.conn, digest(cookie), email=email, csrf_token=csrf, api_key=key, language=None,
                              now=now, expires_at=now + timedelta(seconds=ctx.settings.web_session_ttl_s))
        except BaseException:
            revoke_key(keys_file(ctx), key)  # no session will hold it
            raise
    if old_key:
        revoke_key(keys_file(ctx), old_key)
    return NewSession(cookie, csrf)


def sign_out(ctx: ServiceContext, cookie: str) -> None:
    with ctx.unit_of_work() as uow:
        key = store.delete_session(uow.conn, digest(cookie))
    if key:
        revoke_key(keys_file(ctx), key)


def keys_file(ctx: ServiceContext):
    path = ctx.settings.api_keys_file
    if path is None:
        raise RuntimeError("the web service needs SALESBUS_API_KEYS_FILE: it issues a key per signed-in session")
    return path
