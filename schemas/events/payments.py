"""Supplier accounts, owned by payments."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.envelope import Event
from schemas.types import Currency, DecimalString, UtcDateTime


class SupplierAccountChanged(Event):
    """A customer's supplier account was opened or its terms changed."""
    key_field = "customer_id"
    customer_id: str = Field(description="customer (organisation) id; the Kafka key")
    credit_limit: DecimalString
    open_balance: DecimalString
    currency: Currency
    payment_terms_days: int = Field(ge=0, le=365, description="net terms, e.g. 30 for net 30")
    status: Literal["active", "suspended"] = Field(description="active accounts can be charged, suspended ones cannot")
    changed_at: UtcDateTime
