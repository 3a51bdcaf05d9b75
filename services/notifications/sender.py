"""Delivering queued emails to the SMTP relay (the `sender` worker of the notifications service).

Delivery guarantee. The worker locks a batch of due rows (`FOR UPDATE SKIP LOCKED`, so replicas
never send the same row concurrently), hands their messages to the relay over up to
Settings.email_sessions SMTP sessions at once (smtp.py), and in the SAME transaction marks each
row sent and emits its NotificationSent; one transaction carries up to Settings.email_batch_size
emails (10) and commits once. A crash (or a lost database connection) after the relay
accepted messages but before that commit leaves their rows pending, so those emails are sent
again: at-least-once to the relay, with the same Message-ID (derived from the notification id)
so receivers can deduplicate. The resend window
is therefore at most email_batch_size emails (1 would make it a single SMTP conversation, the
narrowest possible without two-phase commit, which SMTP does not offer, at a commit per email:
the sender's limit). NotificationSent has a deterministic event id, so it is published once per
email whatever happens.

Failures for now never skip an email: connection refused, timeouts, a 4xx reply, a session-level
refusal (our sender, EHLO, authentication: the same for every email) leave the row pending;
`attempts` and `last_error` record what happened, and it is tried again after an exponential
backoff (capped), for up to Settings.email_retry_window_s from its first failure. While the
relay keeps failing, the "smtp relay" stall shows it in /readyz and salesbus_stalled_seconds.

One email must never stop the others (a row taken first again and again, or an exception that
takes the process down, stops every customer's email). An email that can never go out is set
aside for good, in the transaction that holds its row lock: status `failed`, `last_error` the
reason, `failed_at`, counted in salesbus_set_aside_total:
  - the message cannot be built (a recipient the email package does not read as exactly that one
    address, e.g. "a:b@example.com" is a group holding b@example.com; a header with a line break),
    or its NotificationSent would be invalid: checked before the relay sees anything, so an email
    is never sent and then rolled back to be sent again;
  - the relay refuses this message permanently (5xx to RCPT or DATA);
  - it kept failing for now for longer than the retry window ("gave up after N attempts over W").
  - the database refuses for good to record what happened to it (a savepoint per email: the
    batch's other emails stay recorded as sent, and are not sent again).
Each email's bytes are written directly by mime.wire() when its row has the plain shape all of
ours have (half of the sender's time was the stdlib building and flattening them); any other row
is built with the stdlib email package (build_message), which may refuse it (set aside, above).
The worker runs under runtime.containment.guarded_loop: nothing it raises ends the loop. The
relay and the transport are injectable (tests point the worker at a refusing port, or replace
SMTP with a function, which is then called for one email after the other).
"""
from __future__ import annotations

import email
import email.policy
import functools
import logging
import time
from dataclasses import dataclass, replace
from datetime import datetime
from email.headerregistry import HeaderRegistry
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, Callable

import psycopg
from prometheus_client import Counter, Gauge

from runtime.config import Settings
from runtime.containment import LOOP_ERRORS, SET_ASIDE, Fault, Stalls, classify, guarded_loop, reason_of, storable
from schemas import NotificationSent, deterministic_id
from services.notifications import mime, store
from services.notifications.mime import boundary, message_id, plain_header
from services.notifications.smtp import (NOT_TRIED, SMTP_FAILURES, Envelope, Relay, SmtpSessions,  # noqa: F401
                                          permanent_refusal, relay_from_settings)

log = logging.getLogger(__name__)
EMAILS = Counter("salesbus_emails_total", "Emails handed to the SMTP relay, by outcome", ["kind", "outcome"])
PENDING = Gauge("salesbus_emails_pending", "Emails queued and not yet sent (due or waiting for a retry)")
PENDING_AGE = Gauge("salesbus_emails_oldest_pending_seconds", "How long the oldest pending email has waited")
#: how often the sender refreshes the backlog gauges (one indexed count)
BACKLOG_EVERY_S = 5.0
SERVICE = "notifications"
LOOP = "sender"
#: the stall shown while the relay keeps failing (the sender loop itself is flowing)
RELAY_LOOP = "smtp relay"
Transport = Callable[[EmailMessage, Relay], None]


def wire_bytes(message: EmailMessage) -> bytes:
    """The message as it goes to the relay. aiosmtplib would flatten it with email.policy.SMTP,
    whose header folding loses spaces in long non-ASCII subjects, so we flatten it ourselves."""
    return message.as_bytes(policy=_WIRE)


def retry_delay_s(attempts: int, base_s: float = 1.0, cap_s: float = 600.0) -> float:
    """1, 2, 4, 8 ... seconds after the 1st, 2nd, 3rd, 4th failure, never more than cap_s."""
    return min(cap_s, base_s * 2 ** min(max(attempts - 1, 0), 30))


@dataclass(frozen=True)
class Outcome:
    sent: bool
    attempts: int                  # including this one
    error: str | None = None
    retry_in_s: float | None = None
    #: the relay refused this message for good (5xx to RCPT/DATA): trying again cannot help
    permanent: bool = False
    code: int | None = None        # the relay's reply code when it refused for good
    #: the worker set the email aside (status failed): permanent, unbuildable, or out of time
    set_aside: bool = False


def outcome_of(error: BaseException | None, attempts_before: int, *, base_s: float = 1.0,
               cap_s: float = 600.0) -> Outcome:
    """What to record for one try: None (the relay took it), a failure for now (a retry after
    a backoff), or a permanent refusal (permanent_refusal)."""
    attempts = attempts_before + 1
    if error is None:
        return Outcome(True, attempts)
    text = storable(f"{type(error).__name__}: {error}")
    code = permanent_refusal(error)
    if code is not None:
        return Outcome(False, attempts, text, None, permanent=True, code=code)
    return Outcome(False, attempts, text, retry_delay_s(attempts, base_s, cap_s))


def attempt_delivery(message: EmailMessage, send: Callable[[EmailMessage], None], attempts_before: int,
                     *, base_s: float = 1.0, cap_s: float = 600.0) -> Outcome:
    """One try: what to record. An SMTP failure becomes an outcome (outcome_of); anything else
    is not the relay's and propagates."""
    try:
        send(message)
    except SMTP_FAILURES as exc:
        return outcome_of(exc, attempts_before, base_s=base_s, cap_s=cap_s)
    return outcome_of(None, attempts_before)


class _HeaderClasses(HeaderRegistry):
    """The stdlib registry builds a new class with type() for every header it makes (11 per
    email): 27% of building and flattening one, measured. The class depends only on the name."""

    def __init__(self):
        super().__init__()
        self._made: dict[str, type] = {}
        # A header object is immutable and depends only on (name, value): From, MIME-Version and
        # the parts' Content-Type repeat in every email (three Content-Type parses each, 22% of the
        # remaining cost, measured); the values seen once (To, Date, a boundary) just pass through.
        self._parsed = functools.lru_cache(maxsize=256)(super().__call__)

    def __getitem__(self, name: str) -> type:
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = super().__getitem__(name)
        return made

    def __call__(self, name: str, value: str):
        # Parsing a header into a token tree and folding the tree back was 46% of building and
        # flattening an email (measured); for these short printable-ASCII values the bytes come
        # out the same (tests/unit/test_email_headers.py compares them with the stdlib's).
        if name.lower() in _PLAIN_NAMES and plain_header(name, value):
            return _PlainHeader(name, value)
        return self._parsed(name, value)


#: headers we fill (Subject from the row) that need no parse tree when plain (mime.plain_header);
#: addresses (From, To), Content-Type with its parameters, Date and Message-ID always go through
#: the stdlib (its Message-ID parser raises IndexError on "<:@x>": that row must stay refused)
_PLAIN_NAMES = frozenset({"subject", "auto-submitted", "mime-version", "content-transfer-encoding",
                          "content-language", "x-salesbus-kind", "x-salesbus-language", "x-salesbus-notification-id"})


class _PlainHeader(str):
    """A header value the email package keeps and writes as it is: `Name: value`."""
    defects = ()

    def __new__(cls, name: str, value: str):
        self = super().__new__(cls, value)
        self.name = name
        return self

    def fold(self, *, policy) -> str:
        return f"{self.name}: {self}{policy.linesep}"


# The stdlib folder drops the space between two encoded words when it splits a long non-ASCII
# subject (Vietnamese "Quý khách đã" arrived as "Quý kháchđã"); not folding keeps it one word.
_NO_FOLDING = email.policy.default.clone(max_line_length=998, header_factory=_HeaderClasses())
_WIRE = _NO_FOLDING.clone(linesep="\r\n")


def build_message(row: dict[str, Any], *, sender: str, date: datetime) -> EmailMessage:
    """multipart/alternative (plain text, then HTML) with the headers receivers and support use.

    Raises (ValueError and the email package's own errors) when the row cannot make a message
    that goes to its recipient and nobody else: the caller sets such a row aside."""
    msg = EmailMessage(policy=_NO_FOLDING)
    msg["From"] = sender
    msg["To"] = row["recipient"]
    _check_single_mailbox(msg["To"], row["recipient"])
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
    # 128 random bits cannot be guessed into a body: the generator's own pick (a random number, then
    # a fresh regex compiled and run over the whole message) was 12% of building and flattening it
    msg.set_boundary(boundary())
    if row.get("attachment") is not None:   # an invoice's PDF, beside the text and HTML parts
        msg.make_mixed()
        msg.add_attachment(bytes(row["attachment"]), maintype="application", subtype="pdf",
                           filename=row["attachment_name"] or "document.pdf")
    msg["Content-Language"] = row["language"]   # after the parts: set_content clears Content-* headers
    return msg


def _check_single_mailbox(header: Any, recipient: str) -> None:
    """The To header must be exactly `recipient`, one plain address. Our contract's pattern lets
    through strings the email package reads otherwise: "a:b@example.com" is a group named "a"
    holding b@example.com, "a;b@example.com" is the local user "a", "x<y@example.com" is y."""
    addresses = getattr(header, "addresses", ())
    groups = getattr(header, "groups", ())
    if (len(addresses) != 1 or len(groups) != 1 or groups[0].display_name is not None
            or addresses[0].display_name or not addresses[0].domain or addresses[0].addr_spec != recipient):
        raise ValueError(f"recipient {recipient!r} is not one plain email address "
                         f"(the email package reads it as {str(header)!r})")


def _span(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


class SenderWorker:
    """`worker(ctx)`: delivers due emails until ctx.stopping is set, under guarded_loop."""

    def __init__(self, *, relay: Callable[[Settings], Relay] = relay_from_settings,
                 transport: Transport | None = None, idle_s: float = 1.0,
                 base_s: float = 1.0, cap_s: float = 600.0, retry_window_s: float | None = None):
        self.__name__ = "sender"
        self.relay, self.transport = relay, transport or SmtpSessions()
        self.idle_s, self.base_s, self.cap_s = idle_s, base_s, cap_s
        #: None: Settings.email_retry_window_s (tests may set a short one)
        self.retry_window_s = retry_window_s
        self._relay_stalled = False
        self._backlog_at = 0.0
        self._listener: psycopg.Connection | None = None

    def __call__(self, ctx) -> None:
        # A database fault is retried with backoff and shown as the "sender" stall; anything
        # unexpected is logged and counted; the loop (and the process) goes on either way.
        try:
            guarded_loop(SERVICE, LOOP, lambda: self.step(ctx), ctx.stopping, stalls=self._stalls(ctx),
                         idle_s=self.idle_s, wait=lambda seconds: self.wait_for_email(ctx, seconds))
        finally:
            self.close()

    # --- sleeping while idle ---------------------------------------------------------------------------
    # Idle, the sender sleeps on LISTEN until a queueing transaction commits (store.queue's NOTIFY),
    # so an email goes out as soon as it is queued, not at the next poll: it polled every 0.5 s
    # before, which put up to 500 ms on every email (issue 11's p99 target for an email is 500 ms).
    # `idle_s` stays as a safety net: a retry falling due, a missed NOTIFY, a listener lost.

    def listen(self, ctx) -> psycopg.Connection:
        """The sender's own autocommit connection, LISTENing (outside the pool: it is held for good)."""
        if self._listener is None or self._listener.closed:
            # a bounded connect: with the database away, a stop must not wait on it
            self._listener = psycopg.connect(ctx.pool.conninfo, autocommit=True, connect_timeout=5)
            self._listener.execute(f"LISTEN {store.WAKE_CHANNEL}")
        return self._listener

    def wait_for_email(self, ctx, timeout: float) -> None:
        """Return when an email is queued, `timeout` passes, or the service stops (checked every
        0.25 s, so a stop is not held up by the safety net)."""
        deadline = time.monotonic() + timeout
        try:
            listener = self.listen(ctx)
            while not ctx.stopping.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                for _ in listener.notifies(timeout=min(left, 0.25), stop_after=1):
                    return
        except psycopg.Error as exc:
            # the database is away: the next step's fault is what the stall shows; sleep it out
            log.debug("sender: listening for queued emails failed (%s); polling every %.1fs", exc, timeout)
            self.close()
            ctx.stopping.wait(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        if self._listener is not None:
            try:
                self._listener.close()
            except psycopg.Error:
                pass   # a connection already broken: nothing is left to release
            self._listener = None

    @staticmethod
    def _stalls(ctx) -> Stalls:
        stalls = getattr(ctx, "stalls", None)
        if stalls is None:
            stalls = ctx.stalls = Stalls(SERVICE)
        return stalls

    def step(self, ctx) -> bool:
        """Up to email_batch_size emails in one transaction; True when the next may go at once,
        False to wait `idle_s`."""
        stalls = self._stalls(ctx)
        if time.monotonic() - self._backlog_at >= BACKLOG_EVERY_S:
            self._backlog_at = time.monotonic()
            with ctx.unit_of_work() as uow:
                count, age = store.pending_backlog(uow.conn)
            PENDING.set(count)
            PENDING_AGE.set(age)
        outcomes = self.deliver_due(ctx, ctx.settings.email_batch_size)
        if not outcomes:
            if self._relay_stalled:
                # nothing left to retry (sent or set aside): the relay holds nothing up any more
                with ctx.unit_of_work() as uow:
                    if not store.has_pending(uow.conn):
                        self._relay_flowing(stalls)
            return False
        if any(o.sent for o in outcomes):
            self._relay_flowing(stalls)
        # at most one per lane: sent and set-aside emails are done with
        failed = [o for o in outcomes if not (o.sent or o.set_aside)]
        if not failed:
            return True        # the next ones at once
        stalls.retrying(RELAY_LOOP, failed[-1].error or "the relay did not accept the email")
        self._relay_stalled = True
        return False           # the relay is struggling: pause before the next email

    def _relay_flowing(self, stalls: Stalls) -> None:
        if self._relay_stalled:
            stalls.flowing(RELAY_LOOP)
            self._relay_stalled = False

    def deliver_next(self, ctx) -> Outcome | None:
        """Deliver the next due email, if any, in a transaction of its own; returns what happened."""
        outcomes = self.deliver_due(ctx, 1)
        return outcomes[0] if outcomes else None

    def deliver_due(self, ctx, limit: int) -> list[Outcome]:
        """Up to `limit` due emails, all in ONE transaction (one commit: a commit per email capped
        the sender): each is built (or set aside if it cannot be), the built ones are handed to
        the relay over up to Settings.email_sessions sessions at once, and each one's outcome is
        recorded. A lane of sessions stops at the first email the relay did not take (it is
        struggling: the rest wait for the pause); no email starts once the service stops. A fault
        that ends the transaction sends what this batch had sent again (the module's resend window);
        one the database refuses for one email sets that email aside and keeps the rest."""
        outcomes: list[Outcome] = []
        with ctx.unit_of_work() as uow:
            # the batch's rows in one statement (one per email cost ~10% of the sender's time);
            # those left untried are unlocked, untouched, at the commit
            built = []
            for row in store.due(uow.conn, limit):
                ready = self._build(ctx, uow, row)   # no database work unless it sets the row aside
                if isinstance(ready, Outcome):
                    outcomes.append(ready)   # set aside: it never reaches the relay
                else:
                    built.append(ready)
            relay = self.relay(ctx.settings)
            results = self._send_all(ctx, built, relay)
            taken = [(row, announcement) for (row, _, _, announcement), result in zip(built, results) if result is None]
            recorded = self._record_sent_together(uow, taken)
            for (row, _message, _envelope, announcement), result in zip(built, results):
                if result is NOT_TRIED:
                    continue
                if result is None and recorded:
                    outcomes.append(Outcome(True, row["attempts"] + 1))
                    continue
                outcomes.append(self._row_savepoint(
                    uow, row, lambda r=row, a=announcement, e=result: self._record(ctx, uow, r, a, relay, e)))
        return outcomes

    def _record_sent_together(self, uow, taken: list[tuple[dict[str, Any], NotificationSent]]) -> bool:
        """The emails the relay took, marked sent in one statement and announced (a savepoint and
        an UPDATE per email were a quarter of the sender's time). False when the database refuses
        it for good: then each is recorded on its own (_record), so only the one it refuses is set aside."""
        if not taken:
            return False
        try:
            with uow.savepoint():
                sent_at = uow.now()
                store.mark_sent_many(uow.conn, [(row["notification_id"], row["attempts"] + 1) for row, _ in taken],
                                     sent_at=sent_at)
                for row, announcement in taken:
                    uow.emit(announcement.model_copy(update={"sent_at": sent_at}),
                             event_id=deterministic_id("NotificationSent", row["notification_id"]))
        except psycopg.Error as exc:
            if classify(exc, uow.conn) is not Fault.PERMANENT:
                raise   # the database is away: the guard retries the step (the batch resends)
            log.warning("%d sent emails could not be recorded together (%s); recording each on its own",
                        len(taken), reason_of(exc))
            return False
        for row, _ in taken:
            EMAILS.labels(row["kind"], "sent").inc()
        return True

    def _row_savepoint(self, uow, row: dict[str, Any], work: Callable[[], Any]) -> Any:
        """`work` for one row in a savepoint of its own: the database refusing one email's record
        for good must not roll back the batch, or the emails already handed to the relay would be
        sent again on every retry (a poison row's damage widened by the batch size)."""
        try:
            with uow.savepoint():
                return work()
        except psycopg.Error as exc:
            if classify(exc, uow.conn) is not Fault.PERMANENT:
                raise   # the database is away: the guard retries the step (the batch resends)
            return self._set_aside(uow, row, row["attempts"] + 1,
                                   f"its outcome could not be recorded: {reason_of(exc)}", "unrecordable")

    def _build(self, ctx, uow, row: dict[str, Any]):
        """(row, message, envelope, announcement), or the Outcome of setting the row aside."""
        try:
            sender, now = ctx.settings.smtp_sender, uow.now()
            data = mime.wire(row, sender=sender, date=now)   # our emails' usual shape, written directly
            if data is not None:
                message, envelope = None, Envelope(mime.from_value(sender), (row["recipient"],), data)
            else:   # anything else: the stdlib builds it, or refuses it
                message = build_message(row, sender=sender, date=now)
                envelope = Envelope(message["From"], tuple(a.addr_spec for a in message["To"].addresses),
                                    wire_bytes(message))   # build_message checked: exactly one recipient
            # validated before the relay sees anything: an announcement failing after the
            # send would roll the row back to pending and send the email again and again
            announcement = NotificationSent(
                notification_id=row["notification_id"], customer_id=row["customer_id"],
                order_id=row["order_id"], kind=row["kind"], recipient=row["recipient"],
                subject=row["subject"], language=row["language"], sent_at=uow.now())
        except Exception as exc:  # noqa: BLE001 - whatever the row holds, it cannot become an email
            reason = f"the message cannot be built: {reason_of(exc)}"
            return self._row_savepoint(uow, row, lambda: self._set_aside(uow, row, row["attempts"] + 1, reason,
                                                                         type(exc).__name__))
        return row, message, envelope, announcement

    def _send_all(self, ctx, built: list, relay: Relay) -> list:
        """Hand the built emails to the relay: per email None (taken), its exception, or NOT_TRIED."""
        if not built:
            return []
        if isinstance(self.transport, SmtpSessions):
            return self.transport.send_all([envelope for _, _, envelope, _ in built], relay,
                                           ctx.settings.email_sessions, ctx.stopping)
        # an injected transport (a function): one lane, one email after the other
        results: list = [NOT_TRIED] * len(built)
        for i, (_, message, envelope, _) in enumerate(built):
            try:   # the function takes a message: the one mime.wire wrote, as the relay would read it
                if message is None:
                    message = email.message_from_bytes(envelope.data, policy=email.policy.default)
                self.transport(message, relay)
                results[i] = None
            except Exception as exc:  # noqa: BLE001 - reported per email, as a session's lane does
                results[i] = exc
                break
            if ctx.stopping.is_set():
                break
        return results

    def _record(self, ctx, uow, row: dict[str, Any], announcement: NotificationSent, relay: Relay,
                error: BaseException | None) -> Outcome:
        """What the relay did with one locked row, recorded in the caller's transaction."""
        attempts = row["attempts"] + 1
        if error is not None and not isinstance(error, SMTP_FAILURES):
            # not the relay's: a bug, maybe only for this row
            LOOP_ERRORS.labels(SERVICE, LOOP).inc()
            log.error("email %s: unexpected error while sending; retried later", row["notification_id"],
                      exc_info=error)
            outcome = Outcome(False, attempts, storable(f"unexpected {reason_of(error)}"),
                              retry_delay_s(attempts, self.base_s, self.cap_s))
        else:
            outcome = outcome_of(error, row["attempts"], base_s=self.base_s, cap_s=self.cap_s)
        if outcome.sent:
            sent_at = uow.now()
            store.mark_sent(uow.conn, row["notification_id"], attempts=outcome.attempts, sent_at=sent_at)
            uow.emit(announcement.model_copy(update={"sent_at": sent_at}),
                     event_id=deterministic_id("NotificationSent", row["notification_id"]))
            EMAILS.labels(row["kind"], "sent").inc()
            return outcome
        if outcome.permanent:
            return self._set_aside(uow, row, attempts, f"refused by {relay.host}:{relay.port}: {outcome.error}",
                                   f"smtp_{outcome.code}", outcome)
        window_s = self.retry_window_s if self.retry_window_s is not None else ctx.settings.email_retry_window_s
        failing_for_s = row.get("failing_for_s")
        if failing_for_s is not None and failing_for_s >= window_s:
            return self._set_aside(
                uow, row, attempts, f"gave up after {attempts} attempts over {_span(failing_for_s)} "
                                    f"(retry window {_span(window_s)}); last error: {outcome.error}",
                "gave_up", outcome)
        store.record_failure(uow.conn, row["notification_id"], attempts=outcome.attempts,
                             error=outcome.error, retry_in_s=outcome.retry_in_s)
        EMAILS.labels(row["kind"], "retry").inc()
        log.warning("email %s (%s to %s) not accepted by %s:%s, attempt %d, retrying in %.0fs: %s",
                    row["notification_id"], row["kind"], row["recipient"], relay.host, relay.port,
                    outcome.attempts, outcome.retry_in_s, outcome.error)
        return outcome

    def _set_aside(self, uow, row: dict[str, Any], attempts: int, reason: str, reason_class: str,
                   outcome: Outcome | None = None) -> Outcome:
        """Mark the locked row failed, in its own transaction, inside a savepoint: should the
        UPDATE fail, the transaction is still usable and the row is pushed back instead."""
        nid, reason = row["notification_id"], storable(reason)
        try:
            with uow.conn.transaction():
                store.mark_failed(uow.conn, nid, attempts=attempts, reason=reason, failed_at=uow.now())
        except psycopg.Error as exc:
            if classify(exc, uow.conn) is not Fault.PERMANENT:
                raise   # the database is away: the whole step is retried by the guard
            # Could not even mark it: out of the way for cap_s, so it does not hold up the queue.
            LOOP_ERRORS.labels(SERVICE, LOOP).inc()
            log.error("email %s could not be marked failed (%s); retried in %.0fs", nid, reason_of(exc), self.cap_s)
            with uow.conn.transaction():
                store.record_failure(uow.conn, nid, attempts=attempts, error=reason, retry_in_s=self.cap_s)
            return Outcome(False, attempts, reason, self.cap_s, set_aside=True)
        SET_ASIDE.labels(SERVICE, LOOP, reason_class).inc()
        EMAILS.labels(row["kind"], "failed").inc()
        log.error("email %s (%s to %r) set aside as failed after %d attempt(s): %s", nid, row["kind"],
                  row["recipient"], attempts, reason)
        return replace(outcome or Outcome(False, attempts), attempts=attempts, error=reason, retry_in_s=None,
                       set_aside=True)
