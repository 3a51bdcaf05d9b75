"""Scaling under load: payments runs with 1, then 3, then 1 consumers in its group while an upstream
system keeps publishing account orders; the group rebalances twice mid-stream. The same oracle as
the broker-fault tier: every order decided once, charged once, confirmed and emailed once, nothing
left in an outbox, nothing lost."""
from __future__ import annotations

import time
from collections import Counter

import pytest
from runtime.embedded import read_mail
from runtime.service import ServiceProcess, load_service
from tests.conftest import wait_until
from tests.e2e.conftest import open_account, running_shop
from tests.kafka_faults.test_broker_faults import QUANTITY, UNIT, Upstream, books, confirmed, flows_on, query

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]
FLOWING = ("payments", "orders", "notifications")


def members(procs: list[ServiceProcess]) -> int:
    """Members of the group holding partitions (Tansu does not answer DescribeGroups)."""
    return sum(1 for p in procs if p._consumer.assignment)


def test_payments_scales_from_one_to_three_consumers_and_back_while_orders_flow(harness, cfg, stack, unique):
    shop = running_shop(harness, "cart", "payments", "orders", "notifications")
    customer = f"scale-{unique}"
    open_account(shop, customer, "1000000.00")
    upstream = Upstream(cfg, customer, f"scale-{unique}", rate=8.0)
    extra: list[ServiceProcess] = []
    steps = []
    upstream.start()
    try:
        flows_on(cfg, upstream.published, more=5)
        group = [harness.procs["payments"]]
        wait_until(lambda: members(group) == 1, timeout=60, message="payments: one member")
        every_partition = group[0]._consumer.assignment
        for _ in range(2):
            proc = ServiceProcess(load_service("payments"), cfg, harness.clock)
            proc.start()
            extra.append(proc)
            group.append(proc)
        began = time.monotonic()
        wait_until(lambda: members(group) == 3, timeout=90, message="payments: three members")
        steps.append(f"1 -> 3 consumers: rebalanced in {time.monotonic() - began:.1f}s")
        flows_on(cfg, upstream.published, more=15)
        began = time.monotonic()
        for proc in extra:
            proc.stop()
        wait_until(lambda: group[0]._consumer.assignment == every_partition, timeout=90,
                   message="payments: one member holding every partition again")
        steps.append(f"3 -> 1 consumers: rebalanced in {time.monotonic() - began:.1f}s")
        flows_on(cfg, upstream.published, more=15)
    finally:
        upstream.finish()
        for proc in extra:
            proc.stop()

    ids = upstream.published
    assert not upstream.errors and upstream.unflushed == 0 and sorted(upstream.acked) == sorted(ids)
    wait_until(lambda: confirmed(cfg, ids) == len(ids), timeout=180, interval=1,
               message=f"all {len(ids)} orders confirmed")

    def mails() -> Counter:
        wanted = {f"{oid}@example.hr" for oid in ids}
        return Counter(m["To"] for m in read_mail(stack.mail.maildir) if m["To"] in wanted)
    wait_until(lambda: len(mails()) == len(ids), timeout=180, interval=1, message="every order emailed")
    wait_until(lambda: sum(query(cfg, s, "SELECT count(*) FROM outbox WHERE published_at IS NULL")[0][0]
                           for s in FLOWING) == 0, timeout=60, message="every outbox row published")
    time.sleep(2)  # a doubled effect would show now

    decisions, charges, confirmations = books(cfg, ids)
    emails = mails()
    print("scaling:", "; ".join(steps), {"orders": len(ids), "decisions": sum(decisions.values()),
                                         "charges": len(charges), "emails": sum(emails.values())})
    assert len(ids) >= 35
    assert decisions == {"verified": len(ids)}, decisions
    assert len(charges) == len(ids) and all(n == 1 and total == UNIT * QUANTITY for _, n, total in charges)
    assert confirmations == (len(ids), len(ids))
    assert set(emails.values()) == {1}
