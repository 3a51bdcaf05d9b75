"""Emails we sent."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.envelope import Event
from schemas.types import Language, UtcDateTime

NotificationKind = Literal["order_confirmation", "shipping_confirmation", "payment_declined",
                           "order_cancelled", "standing_order_failed", "reminder"]


class NotificationSent(Event):
    """An email was delivered to the SMTP relay (once per order and kind)."""
    key_field = "customer_id"
    notification_id: str
    customer_id: str
    order_id: str | None = None
    kind: NotificationKind
    recipient: str
    subject: str
    language: Language
    sent_at: UtcDateTime
