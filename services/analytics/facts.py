"""What analytics keeps of each event: one small JSON fact per order (or standing order) and topic.

Every table is written from exactly one topic and keyed by that topic's Kafka key (the order id
or the standing-order id), so a key's changelog records always sit on one changelog partition
and recovery cannot replay an older value over a newer one.

Writes are idempotent, which is what lets analytics live with at-least-once delivery:
  * order facts keep the FIRST one seen (a redelivery, or an upstream system publishing the
    same order again under a new event id, changes nothing);
  * a standing order keeps its LATEST state by ``changed_at`` (a replay of an older change
    after a newer one does not roll it back); so does a supplier account, by (``changed_at``,
    offset);
  * positions only move forward.
Pure: no faust, no Kafka; the app and the unit tests share it.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from schemas import (CreditNoteIssued, Event, InvoiceIssued, OrderCancelled, OrderConfirmed, OrderPlaced,
                     OrderShipped, PaymentDeclined, PaymentVerified, RecurringOrderDue, StandingOrderChanged,
                     SupplierAccountChanged)
from services.analytics.aggregates import recurrence_of, ts

#: topic -> the table its facts go to
TABLE_OF: dict[str, str] = {
    "OrderPlaced": "placed",
    "PaymentVerified": "verified",
    "PaymentDeclined": "declined",
    "OrderConfirmed": "confirmed",
    "OrderShipped": "shipped",
    "OrderCancelled": "cancelled",
    "StandingOrderChanged": "standing",
    "RecurringOrderDue": "due",
    # receivables (payments): invoices and credit notes as issued, each account's latest state
    "InvoiceIssued": "invoiced",
    "CreditNoteIssued": "credited",
    "SupplierAccountChanged": "accounts",
}
TOPICS: tuple[str, ...] = tuple(TABLE_OF)
TABLES: tuple[str, ...] = tuple(TABLE_OF.values())
Fact = dict[str, Any]


def _amount(d) -> str:
    return format(d, "f")


def _cents(d) -> str:
    # a zero can arrive as 0E-6: book amounts have two places
    return format(Decimal(d).quantize(Decimal("0.01")), "f")


def _lines(lines) -> list[list]:
    # [sku, quantity, unit amount, currency]: compact, and JSON-safe for the changelog
    return [[ln.sku, ln.quantity, _amount(ln.unit_price.amount), ln.unit_price.currency] for ln in lines]


def fact_of(event: Event) -> tuple[str, str, Fact]:
    """(table, key, fact) for one validated event of a consumed topic."""
    match event:
        case OrderPlaced():
            return "placed", event.order_id, {
                "customer_id": event.customer_id, "at": event.placed_at.isoformat(), "channel": event.channel,
                "currency": event.total.currency, "total": _amount(event.total.amount), "lines": _lines(event.lines)}
        case PaymentVerified():
            return "verified", event.order_id, {"at": event.verified_at.isoformat(), "method": event.method}
        case PaymentDeclined():
            return "declined", event.order_id, {"at": event.declined_at.isoformat(), "method": event.method,
                                                "reason": event.reason_code}
        case OrderConfirmed():
            return "confirmed", event.order_id, {
                "customer_id": event.customer_id, "at": event.confirmed_at.isoformat(),
                "currency": event.total.currency, "total": _amount(event.total.amount), "lines": _lines(event.lines)}
        case OrderShipped():
            return "shipped", event.order_id, {"at": event.shipped_at.isoformat(),
                                               "distribution_centre": event.distribution_centre}
        case OrderCancelled():
            return "cancelled", event.order_id, {"at": event.cancelled_at.isoformat(), "reason": event.reason}
        case StandingOrderChanged():
            fact = {
                "customer_id": event.customer_id, "status": event.status, "change": event.change,
                "changed_at": event.changed_at.isoformat(),
                "lines": [[ln.sku, ln.quantity] for ln in event.lines],
                "every": event.interval.every, "unit": event.interval.unit,
                "start_date": event.start_date.isoformat(), "time_zone": event.time_zone,
                "end_date": event.end_date.isoformat() if event.end_date else None,
                "max_occurrences": event.max_occurrences, "skip": sorted(event.skip_occurrences)}
            recurrence_of(fact)  # a schedule that cannot be projected is refused here, not at query time
            return "standing", event.standing_order_id, fact
        case RecurringOrderDue():
            return "due", f"{event.standing_order_id}#{event.occurrence}", {
                "at": event.due_at.isoformat(), "customer_id": event.customer_id,
                "lines": [[ln.sku, ln.quantity] for ln in event.lines]}
        case InvoiceIssued():   # keyed by number: a number is issued once, always for the same customer
            return "invoiced", event.invoice_number, {
                "customer_id": event.customer_id, "at": event.issued_at.isoformat(),
                "currency": event.total.currency, "total": _amount(event.total.amount)}
        case CreditNoteIssued():
            return "credited", event.credit_note_number, {
                "customer_id": event.customer_id, "at": event.issued_at.isoformat(),
                "currency": event.amount.currency, "amount": _amount(event.amount.amount)}
        case SupplierAccountChanged():
            return "accounts", event.customer_id, {
                "changed_at": event.changed_at.isoformat(), "currency": event.currency,
                "open_balance": _cents(event.open_balance),
                "unapplied_credit": _cents(event.unapplied_credit or 0), "on_hold": bool(event.on_hold)}
    raise TypeError(f"analytics keeps no facts of {type(event).__name__}")


def merged(table: str, old: Fact | None, new: Fact) -> Fact | None:
    """The value to store, or None when the stored one stands (so nothing is written)."""
    if old is None:
        return new
    if table == "standing":
        newer = datetime.fromisoformat(new["changed_at"]) >= datetime.fromisoformat(old["changed_at"])
        return new if newer and new != old else None
    if table == "accounts":
        # one transaction can emit two changes at the same instant (a payment, then the release of
        # the hold): the record's offset (the app adds it; one key, one partition) orders them
        if (ts(new["changed_at"]), new.get("offset", -1)) > (ts(old["changed_at"]), old.get("offset", -1)):
            return new
        return None
    return None


def position_key(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


def positions_by_topic(positions: dict[str, int]) -> dict[str, dict[str, int]]:
    """{"OrderPlaced:0": 12} -> {"OrderPlaced": {"0": 12}} (the shape the endpoints show)."""
    out: dict[str, dict[str, int]] = {}
    for key, offset in positions.items():
        topic, _, part = key.rpartition(":")
        out.setdefault(topic, {})[part] = offset
    return {t: dict(sorted(p.items(), key=lambda kv: int(kv[0]))) for t, p in sorted(out.items())}
