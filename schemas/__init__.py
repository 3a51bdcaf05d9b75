"""The public event contract: models, envelope, registry of topics.

    from schemas import OrderPlaced, envelope, REGISTRY
"""
from schemas.envelope import (CloudEvent, Event, InvalidRecord, deterministic_id, envelope,
                              new_event_id, parse_record, to_record)
from schemas.events.catalog import ProductChanged
from schemas.events.crm import ContactLogged, ReminderDue, TaskChanged
from schemas.events.notifications import NotificationSent
from schemas.events.orders import (OrderCancelled, OrderConfirmed, OrderPlaced, OrderShipped,
                                   PaymentDeclined, PaymentVerified)
from schemas.events.payments import (CreditNoteIssued, InvoiceIssued, InvoiceOverdue, OrderRefunded,
                                     PaymentReceived, SupplierAccountChanged)
from schemas.events.scheduling import (RecurringOrderDue, StandingOrderChanged,
                                       StandingOrderOccurrenceFailed, StandingOrderRequested,
                                       TimerCancelled, TimerFired,
                                       TimerRequested)
from schemas.types import Delivery, Money, OrderLine, Payment, StandingLine

ALL_EVENTS: tuple[type[Event], ...] = (
    OrderPlaced, PaymentVerified, PaymentDeclined, OrderConfirmed, OrderShipped, OrderCancelled,
    ProductChanged, SupplierAccountChanged, NotificationSent,
    ContactLogged, TaskChanged, ReminderDue,
    StandingOrderRequested, StandingOrderChanged, RecurringOrderDue, StandingOrderOccurrenceFailed,
    TimerRequested, TimerCancelled, TimerFired,
    InvoiceIssued, PaymentReceived, CreditNoteIssued, OrderRefunded, InvoiceOverdue,
)
#: event type (= topic name) -> model
REGISTRY: dict[str, type[Event]] = {e.event_type(): e for e in ALL_EVENTS}
TOPICS: tuple[str, ...] = tuple(REGISTRY)


def dlq_topic(topic: str) -> str:
    return f"{topic}.DLQ"


__all__ = [n for n in dir() if not n.startswith("_")]
