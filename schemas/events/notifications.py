"""Emails we sent."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.envelope import Event
from schemas.types import ID_BOUNDS, Email, Id, Language, UtcDateTime, text

NotificationKind = Literal["order_confirmation", "shipping_confirmation", "payment_declined",
                           "order_cancelled", "standing_order_failed", "reminder", "invoice",
                           "invoice_overdue", "order_refunded"]


class NotificationSent(Event):
    """An email was delivered to the SMTP relay (once per order and kind)."""
    key_field = "customer_id"
    notification_id: Id = Field(description="unique id of this notification")
    customer_id: Id = Field(description="customer (organisation) id; the Kafka key")
    order_id: str | None = Field(
        default=None, **ID_BOUNDS,
        description="order the email is about; null for emails about no single order (reminders)")
    kind: NotificationKind = Field(description="which email was sent")
    recipient: Email = Field(description="email address it was sent to")
    subject: text(1000) = Field(description="subject line as sent")
    language: Language = Field(description="language the email was written in")
    sent_at: UtcDateTime
