"""Talking to the SMTP relay: where it is, what its refusals mean, and the sessions the sender
keeps open to it (sender.py decides what to send and records what happened)."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Sequence

import aiosmtplib

from runtime.config import Settings

# Everything a relay (or the way to it) can do wrong; anything else is a bug (logged and counted,
# the row retried with backoff like a failure for now).
SMTP_FAILURES = (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError)
# 5xx replies about the session, not this message: the same for every email (our sender address,
# EHLO, authentication, the greeting), so they are a configuration problem to fix and retried.
_SESSION_REFUSALS = (aiosmtplib.SMTPSenderRefused, aiosmtplib.SMTPHeloError, aiosmtplib.SMTPAuthenticationError,
                     aiosmtplib.SMTPConnectResponseError)


def permanent_refusal(exc: BaseException) -> int | None:
    """The 5xx code when the relay refused this message for good, None when trying later may work.

    Permanent: a 5xx reply to RCPT (every recipient refused with 5xx) or DATA, or any other 5xx
    reply about the message. For now: connection refused or lost, timeouts, 4xx replies (a full
    mailbox, greylisting), a refusal without a code, and 5xx replies about the session."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        return min(codes) if codes and all(500 <= c < 600 for c in codes) else None
    if isinstance(exc, aiosmtplib.SMTPResponseException) and not isinstance(exc, _SESSION_REFUSALS):
        return exc.code if 500 <= exc.code < 600 else None
    return None


@dataclass(frozen=True)
class Relay:
    host: str
    port: int
    timeout_s: float = 30.0   # the row stays locked while we talk to the relay


def relay_from_settings(settings: Settings) -> Relay:
    return Relay(settings.smtp_host, settings.smtp_port)


@dataclass(frozen=True)
class Envelope:
    """One email as it goes on the wire: envelope sender, recipients, the flattened message."""
    sender: str
    recipients: tuple[str, ...]
    data: bytes


#: what send_all reports for an email it did not try (its lane stopped at a failure, or a stop)
NOT_TRIED = object()


class SmtpSessions:
    """Up to `lanes` SMTP sessions kept open between emails, used at once.

    One session kept open already saved the connection, greeting and EHLO of every email (about
    37 emails/s with them). But each email is still four round trips (MAIL, RCPT, DATA, the
    message) and aiosmtplib does not pipeline, so one session spends most of its time waiting
    for the relay's replies, the more so on a loaded machine (bench/sender_bench.py). Several
    sessions keep several emails in flight. Each lane stops at its first failure, so a relay in
    trouble sees at most one failing attempt per lane per batch; any error closes that lane's
    session, so its next attempt starts clean."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.clients: list[aiosmtplib.SMTP | None] = []
        self.relay: Relay | None = None

    def send_all(self, envelopes: Sequence[Envelope], relay: Relay, lanes: int, stopping=None) -> list:
        """For each envelope, in order: None (the relay took it), the exception it raised, or
        NOT_TRIED. `stopping` (a threading.Event): no new email starts once it is set."""
        if relay != self.relay:
            self.loop.run_until_complete(self.close_all())
            self.relay = relay
        lanes = max(1, min(lanes, len(envelopes)))
        self.clients += [None] * (lanes - len(self.clients))
        results: list = [NOT_TRIED] * len(envelopes)
        queue = iter(range(len(envelopes)))   # shared by the lanes: each takes the next email

        async def lane(n: int) -> None:
            for i in queue:
                if stopping is not None and stopping.is_set():
                    return
                try:
                    await self._send(n, envelopes[i], relay)
                    results[i] = None
                except Exception as exc:  # noqa: BLE001 - reported to the caller, per email
                    results[i] = exc
                    await self._close(n)
                    return

        async def run() -> None:
            await asyncio.gather(*(lane(n) for n in range(lanes)))
        self.loop.run_until_complete(run())
        return results

    async def _send(self, n: int, envelope: Envelope, relay: Relay) -> None:
        client = self.clients[n]
        if client is None or not client.is_connected:
            client = self.clients[n] = aiosmtplib.SMTP(hostname=relay.host, port=relay.port, timeout=relay.timeout_s)
            await client.connect()
        refused, _reply = await client.sendmail(envelope.sender, list(envelope.recipients), envelope.data)
        if refused:   # some, not all, refused: keep their codes so permanent_refusal can read them
            raise aiosmtplib.SMTPRecipientsRefused(
                [aiosmtplib.SMTPRecipientRefused(r.code, r.message, addr) for addr, r in refused.items()])

    async def _close(self, n: int) -> None:
        client, self.clients[n] = self.clients[n], None
        if client is not None and client.is_connected:
            try:
                await client.quit()
            except SMTP_FAILURES:   # a session already broken: drop it
                client.close()

    async def close_all(self) -> None:
        for n in range(len(self.clients)):
            await self._close(n)
