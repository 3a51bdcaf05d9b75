"""Helpers shared by the end-to-end tests: they act only through the public HTTP APIs."""
from __future__ import annotations


def delivery(email: str, city: str = "Split", country: str = "HR", postal_code: str = "21000") -> dict:
    return {"recipient": "Goods in", "address_lines": ["Industrial zone 4"], "city": city,
            "postal_code": postal_code, "country": country, "phone": "+385 21 555 0100", "email": email}


def open_account(harness, customer: str, limit: str) -> None:
    """An operator opens the customer's supplier account (EUR, net 30) in payments."""
    with harness.client("payments", "operator", "e2e-operator") as ops:
        r = ops.put(f"/accounts/{customer}", json={"credit_limit": limit, "currency": "EUR",
                                                  "payment_terms_days": 30, "status": "active"})
        assert r.status_code in (200, 201), r.text


def running_shop(harness, *services: str):
    """Start these services (once per session) with the demo catalog seeded by an operator."""
    from demo.seed import seed_catalog

    harness.start(*services)
    with harness.client("cart", "operator", "e2e-operator") as ops:
        seed_catalog(ops)  # idempotent: a second seeding changes nothing
    return harness
