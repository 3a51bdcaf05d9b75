"""The sender's SMTP sessions used at once (issue 11: one session spent most of its time waiting
for the relay's four replies per email), against a real SMTP server on loopback (no bus, no database)."""
from __future__ import annotations

import asyncio

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller

from runtime.embedded import free_port
from services.notifications.smtp import NOT_TRIED, Envelope, Relay, SmtpSessions


class SlowRelay:
    """Takes each message after a pause, counting how many it holds at once; refuses RCPT of
    the recipients in `refuse` for now (451)."""

    def __init__(self, refuse=()):
        self.refuse, self.in_flight, self.most_in_flight, self.taken = set(refuse), 0, 0, []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 - aiosmtpd's hook
        if address in self.refuse:
            return "451 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0.05)
        self.in_flight -= 1
        self.taken.extend(envelope.rcpt_tos)
        return "250 OK"


@pytest.fixture
def relay_server():
    servers = []

    def start(handler) -> Relay:
        controller = Controller(handler, hostname="127.0.0.1", port=free_port())
        controller.start()
        servers.append(controller)
        return Relay("127.0.0.1", controller.port, timeout_s=5)
    yield start
    for controller in servers:
        controller.stop()


def envelopes(n: int) -> list[Envelope]:
    return [Envelope("orders@salesbus.example", (f"b{i}@example.com",),
                     f"Subject: {i}\r\nMessage-ID: <{i}@salesbus.example>\r\n\r\nbody {i}\r\n".encode())
            for i in range(n)]


def test_several_sessions_keep_several_emails_in_flight(relay_server):
    handler = SlowRelay()
    relay = relay_server(handler)
    sessions = SmtpSessions()
    results = sessions.send_all(envelopes(8), relay, lanes=4)
    assert results == [None] * 8
    assert sorted(handler.taken) == sorted(f"b{i}@example.com" for i in range(8))
    assert handler.most_in_flight == 4            # one session would hold one at a time
    # the sessions stay open for the next batch
    assert sessions.send_all(envelopes(2), relay, lanes=4) == [None, None]
    sessions.loop.run_until_complete(sessions.close_all())


def test_a_lane_stops_at_its_first_failure_and_the_other_lanes_go_on(relay_server):
    relay = relay_server(SlowRelay(refuse={"b1@example.com"}))
    results = SmtpSessions().send_all(envelopes(6), relay, lanes=2)
    assert isinstance(results[1], aiosmtplib.SMTPRecipientsRefused)
    assert results[:1] + results[2:] == [None] * 5    # the other lane took every other email


def test_a_relay_away_costs_one_failed_attempt_per_lane_and_the_rest_are_not_tried():
    results = SmtpSessions().send_all(envelopes(10), Relay("127.0.0.1", free_port(), timeout_s=2), lanes=4)
    failed = [r for r in results if r is not NOT_TRIED]
    assert len(failed) == 4 and all(isinstance(r, OSError | aiosmtplib.SMTPException) for r in failed)
    assert results.count(NOT_TRIED) == 6
