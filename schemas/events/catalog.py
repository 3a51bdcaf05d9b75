"""Catalog changes, so services that price things (orders, for standing orders) keep their own copy."""
from __future__ import annotations

from pydantic import Field

from schemas.envelope import Event
from schemas.types import BookMoney, Flag, Name, Sku, UtcDateTime, text


class ProductChanged(Event):
    """A catalog product was created or changed (price, name, active flag)."""
    key_field = "sku"
    sku: Sku
    name: Name = Field(description="product name as shown in the catalog")
    description: text(4000) = Field(default="", description="longer product description; empty when there is none")
    unit_price: BookMoney = Field(description="current catalog unit price")
    active: Flag = Field(description="inactive products cannot be ordered")
    changed_at: UtcDateTime
