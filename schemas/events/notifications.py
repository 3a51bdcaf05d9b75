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
    notification_id: str = Field(description="unique id of this notification")
    customer_id: str = Field(description="customer (organisation) id; the Kafka key")
    order_id: str | None = Field(
        default=None, description="order the email is about; null for emails about no single order (reminders)")
    kind: NotificationKind = Field(description="which email was sent")
    recipient: str = Field(description="email address it was sent to")
    subject: str = Field(description="subject line as sent")
    language: Language = Field(description="language the email was written in")
    sent_at: UtcDateTime
