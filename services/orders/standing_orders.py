"""Placing standing-order occurrences (RecurringOrderDue) from our own copy of the catalog.

Pricing: every line is priced from the catalog entry in force at the occurrence's due time
(ProductChanged keeps a history in catalog_prices), not from the prices when the standing order
was set up; the order says so in its priced_note.

Exactly once: the occurrence's order id is derived from (standing_order_id, occurrence) and
its OrderPlaced carries a deterministic event id; standing_occurrences remembers each handled
occurrence, so a RecurringOrderDue delivered again (even with a new event id) places nothing new.

Failure policy: an occurrence with an unknown or inactive SKU (or lines priced in different
currencies) is not placed; we emit StandingOrderOccurrenceFailed, and notifications emails the
customer. Each occurrence stands alone: a failed occurrence, or one whose payment is later
declined, does not stop or pause the standing order; the scheduler keeps issuing the next
occurrences, and pausing or cancelling stays the customer's (or salesperson's) decision.
"""
from __future__ import annotations

from decimal import Decimal

from runtime.uow import UnitOfWork
from schemas import (Money, OrderLine, OrderPlaced, ProductChanged, RecurringOrderDue,
                     StandingOrderOccurrenceFailed, deterministic_id)
from services.orders import store


def on_product_changed(event: ProductChanged, uow: UnitOfWork) -> None:
    store.record_product(uow.conn, event)


def occurrence_order_id(standing_order_id: str, occurrence: int) -> str:
    """`ord-<32 hex>`, the one order id shape (docs/api.md; the cart's checkout makes the same),
    derived from the occurrence so that placing it again gives the same order."""
    return "ord-" + deterministic_id(standing_order_id, occurrence).replace("-", "")


def on_recurring_order_due(event: RecurringOrderDue, uow: UnitOfWork) -> None:
    conn, now = uow.conn, uow.now()
    so_id, occurrence = event.standing_order_id, event.occurrence
    if store.occurrence_handled(conn, so_id, occurrence):
        return
    order_id = occurrence_order_id(so_id, occurrence)
    lines, problem = price_lines(conn, event)
    if not store.record_occurrence(conn, so_id, occurrence, order_id, "failed" if problem else "placed",
                                   problem, event.due_at, now):
        return  # another consumer placed it a moment ago
    if problem:
        uow.emit(StandingOrderOccurrenceFailed(
            standing_order_id=so_id, occurrence=occurrence, customer_id=event.customer_id, reason=problem,
            delivery=event.delivery, language=event.language, failed_at=now,
        ), event_id=deterministic_id("StandingOrderOccurrenceFailed", so_id, occurrence))
        return
    total = Money(amount=sum((line.line_total.amount for line in lines), Decimal("0.00")),
                  currency=lines[0].unit_price.currency)
    uow.emit(OrderPlaced(
        order_id=order_id, customer_id=event.customer_id, lines=lines, total=total, delivery=event.delivery,
        payment=event.payment, language=event.language, channel="standing_order", placed_at=now,
        standing_order_id=so_id, occurrence=occurrence,
        priced_note=f"Priced from the catalog on {event.due_at:%Y-%m-%d} (delivery {occurrence} of "
                    f"standing order {so_id}).",
    ), event_id=deterministic_id("OrderPlaced", so_id, occurrence))


def price_lines(conn, event: RecurringOrderDue) -> tuple[list[OrderLine], str | None]:
    """The occurrence's lines at catalog prices on its due date, or why it cannot be placed."""
    lines: list[OrderLine] = []
    problems: list[str] = []
    for standing in event.lines:
        product = store.product_as_of(conn, standing.sku, event.due_at)
        if product is None:
            problems.append(f"product {standing.sku} is not in the catalog")
        elif not product["active"]:
            problems.append(f"product {standing.sku} ({product['name']}) is no longer sold")
        else:
            lines.append(OrderLine(sku=standing.sku, name=product["name"], quantity=standing.quantity,
                                   unit_price=Money(amount=product["unit_price"], currency=product["currency"])))
    currencies = {line.unit_price.currency for line in lines}
    if not event.lines:
        problems.append("the standing order has no lines")
    elif not problems and len(currencies) > 1:
        problems.append(f"the products are priced in different currencies ({', '.join(sorted(currencies))})")
    return lines, "; ".join(problems) or None
