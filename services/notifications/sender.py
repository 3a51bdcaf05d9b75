"""Delivering queued emails to the SMTP relay (the `sender` worker of the notifications service).

Delivery guarantee. The worker takes one pending row at a time (`FOR UPDATE SKIP LOCKED`, so
replicas never send the same row concurrently), hands the message to the relay, and in the
SAME transaction marks the row sent and emits NotificationSent. A crash (or a lost database
connection) after the relay accepted the message but before that commit leaves the row
pending, so that one email is sent again: at-least-once to the relay, with the same
Message-ID (derived from the notification id) so receivers can deduplicate. One email per
transaction keeps that window to a single SMTP conversation — the narrowest possible
without two-phase commit, which SMTP does not offer. NotificationSent has a deterministic
event id, so it is published once per email whatever happens.

SMTP failures never skip an email: the row stays pending, `attempts` and `last_error` record
what happened, and it is tried again after an exponential backoff (capped), for as long as
it takes. The relay and the transport are injectable (tests point the worker at a refusing
port, or replace SMTP with a function).
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
import email.policy
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, Callable

import aiosmtplib
from prometheus_client import Counter

from runtime.config import Settings
from runtime.db import TRANSIENT_DB_ERRORS
from schemas import NotificationSent, deterministic_id
from services.notifications import store

log = logging.getLogger(__name__)
EMAILS = Counter("salesbus_emails_total", "Emails handed to the SMTP relay, by outcome", ["kind", "outcome"])
# Everything a relay (or the way to it) can do wrong; anything else is a bug and stops the worker.
SMTP_FAILURES = (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError)


@dataclass(frozen=True)
class Relay:
    host: str
    port: int
    timeout_s: float = 30.0   # the row stays locked while we talk to the relay


def relay_from_settings(settings: Settings) -> Relay:
    return Relay(settings.smtp_host, settings.smtp_port)


Transport = Callable[[EmailMessage, Relay], None]


def wire_bytes(message: EmailMessage) -> bytes:
    """The message as it goes to the relay. aiosmtplib would flatten it with email.policy.SMTP,
    whose header folding loses spaces in long non-ASCII subjects, so we flatten it ourselves."""
    return message.as_bytes(policy=_NO_FOLDING.clone(linesep="\r\n"))


class SmtpSession:
    """A Transport that keeps one SMTP session open between emails (a connection, greeting and
    EHLO per email capped the service at about 37 emails/s). Any error closes the session, so
    the next attempt starts clean."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.client: aiosmtplib.SMTP | None = None
        self.relay: Relay | None = None

    def __call__(self, message: EmailMessage, relay: Relay) -> None:
        try:
            self.loop.run_until_complete(self._send(message, relay))
        except BaseException:
            self.loop.run_until_complete(self._close())
            raise

    async def _send(self, message: EmailMessage, relay: Relay) -> None:
        if self.client is None or self.relay != relay or not self.client.is_connected:
            await self._close()
            self.client = aiosmtplib.SMTP(hostname=relay.host, port=relay.port, timeout=relay.timeout_s)
            await self.client.connect()
            self.relay = relay
        refused, _reply = await self.client.sendmail(message["From"], [message["To"]], wire_bytes(message))
        if refused:
            raise aiosmtplib.SMTPException(f"recipients refused: {refused}")

    async def _close(self) -> None:
        client, self.client = self.client, None
        if client is not None and client.is_connected:
            try:
                await client.quit()
            except aiosmtplib.SMTPException:
                client.close()


def retry_delay_s(attempts: int, base_s: float = 1.0, cap_s: float = 600.0) -> float:
    """1, 2, 4, 8 ... seconds after the 1st, 2nd, 3rd, 4th failure, never more than cap_s."""
    return min(cap_s, base_s * 2 ** min(max(attempts - 1, 0), 30))


@dataclass(frozen=True)
class Outcome:
    sent: bool
    attempts: int                  # including this one
    error: str | None = None
    retry_in_s: float | None = None


def attempt_delivery(message: EmailMessage, send: Callable[[EmailMessage], None], attempts_before: int,
                     *, base_s: float = 1.0, cap_s: float = 600.0) -> Outcome:
    """One try: what to record. An SMTP failure becomes a retry, never a skip."""
    attempts = attempts_before + 1
    try:
        send(message)
    except SMTP_FAILURES as exc:
        return Outcome(False, attempts, f"{type(exc).__name__}: {exc}"[:1000], retry_delay_s(attempts, base_s, cap_s))
    return Outcome(True, attempts)


def message_id(notification_id: str, sender: str) -> str:
    domain = sender.rpartition("@")[2] or "salesbus.example"
    return f"<{notification_id}@{domain}>"


# The stdlib folder drops the space between two encoded words when it splits a long non-ASCII
# subject (Vietnamese "Quý khách đã" arrived as "Quý kháchđã"); not folding keeps it one word.
_NO_FOLDING = email.policy.default.clone(max_line_length=998)


def build_message(row: dict[str, Any], *, sender: str, date: datetime) -> EmailMessage:
    """multipart/alternative (plain text, then HTML) with the headers receivers and support use."""
    msg = EmailMessage(policy=_NO_FOLDING)
    msg["From"] = sender
    msg["To"] = row["recipient"]
    msg["Subject"] = row["subject"]
    msg["Date"] = format_datetime(date)
    # the same for every attempt: a receiver can drop the copy a crash may have resent
    msg["Message-ID"] = message_id(row["notification_id"], sender)
    msg["Auto-Submitted"] = "auto-generated"   # RFC 3834: no out-of-office replies to us
    msg["X-Salesbus-Kind"] = row["kind"]
    msg["X-Salesbus-Language"] = row["language"]
    msg["X-Salesbus-Notification-Id"] = row["notification_id"]
    msg.set_content(row["body_text"])
    msg.add_alternative(row["body_html"], subtype="html")
    msg["Content-Language"] = row["language"]   # after the parts: set_content clears Content-* headers
    return msg


class SenderWorker:
    """`worker(ctx)`: delivers due emails until ctx.stopping is set."""

    def __init__(self, *, relay: Callable[[Settings], Relay] = relay_from_settings,
                 transport: Transport | None = None, idle_s: float = 0.5,
                 base_s: float = 1.0, cap_s: float = 600.0):
        self.__name__ = "sender"
        self.relay, self.transport = relay, transport or SmtpSession()
        self.idle_s, self.base_s, self.cap_s = idle_s, base_s, cap_s

    def __call__(self, ctx) -> None:
        db_delay = 0.1
        while not ctx.stopping.is_set():
            try:
                outcome = self.deliver_next(ctx)
                db_delay = 0.1
            except TRANSIENT_DB_ERRORS as exc:
                # the database went away: retried like the consumer does; an email the relay
                # accepted just before is the at-least-once resend described above
                log.warning("notifications sender: database unavailable (%s); retrying in %.1fs", exc, db_delay)
                ctx.stopping.wait(db_delay)
                db_delay = min(db_delay * 2, 5.0)
                continue
            if outcome is None or not outcome.sent:
                ctx.stopping.wait(self.idle_s)   # nothing due, or the relay is struggling

    def deliver_next(self, ctx) -> Outcome | None:
        """Deliver the next due email, if any; returns what happened."""
        with ctx.unit_of_work() as uow:
            row = store.next_due(uow.conn)
            if row is None:
                return None
            message = build_message(row, sender=ctx.settings.smtp_sender, date=uow.now())
            relay = self.relay(ctx.settings)
            outcome = attempt_delivery(message, lambda m: self.transport(m, relay), row["attempts"],
                                       base_s=self.base_s, cap_s=self.cap_s)
            if outcome.sent:
                sent_at = uow.now()
                store.mark_sent(uow.conn, row["notification_id"], attempts=outcome.attempts, sent_at=sent_at)
                uow.emit(NotificationSent(
                    notification_id=row["notification_id"], customer_id=row["customer_id"],
                    order_id=row["order_id"], kind=row["kind"], recipient=row["recipient"],
                    subject=row["subject"], language=row["language"], sent_at=sent_at),
                    event_id=deterministic_id("NotificationSent", row["notification_id"]))
                EMAILS.labels(row["kind"], "sent").inc()
            else:
                store.record_failure(uow.conn, row["notification_id"], attempts=outcome.attempts,
                                     error=outcome.error, retry_in_s=outcome.retry_in_s)
                EMAILS.labels(row["kind"], "retry").inc()
                log.warning("email %s (%s to %s) not accepted by %s:%s, attempt %d, retrying in %.0fs: %s",
                            row["notification_id"], row["kind"], row["recipient"], relay.host, relay.port,
                            outcome.attempts, outcome.retry_in_s, outcome.error)
            return outcome
