"""A small B2B catalog for the demo: what an electrical wholesaler's trade customers reorder."""
from __future__ import annotations

import httpx

CATALOG: list[dict] = [
    {"sku": "BULB-LED-9W", "name": "LED bulb 9 W E27, warm white (806 lm)",
     "description": "Replaces a 60 W incandescent bulb; 15,000 h rated life. Sold per unit, boxed in tens.",
     "unit_price": {"amount": "1.85", "currency": "EUR"}},
    {"sku": "BULB-LED-14W", "name": "LED bulb 14 W E27, neutral white (1521 lm)",
     "description": "Replaces a 100 W incandescent bulb for stores and warehouses.",
     "unit_price": {"amount": "2.95", "currency": "EUR"}},
    {"sku": "TUBE-T8-1500", "name": "Fluorescent tube T8 58 W, 1500 mm, 840",
     "description": "Cool white triphosphor tube for office and workshop luminaires.",
     "unit_price": {"amount": "3.40", "currency": "EUR"}},
    {"sku": "TUBE-LED-T8-1200", "name": "LED tube T8 18 W, 1200 mm",
     "description": "Retrofit for 36 W fluorescent tubes; starter replacement included.",
     "unit_price": {"amount": "6.90", "currency": "EUR"}},
    {"sku": "CABLE-NYM-3X15-100", "name": "Installation cable NYM-J 3x1.5 mm², 100 m drum",
     "description": "PVC-sheathed copper cable for fixed indoor wiring.",
     "unit_price": {"amount": "64.50", "currency": "EUR"}},
    {"sku": "SWITCH-1G-WHT", "name": "Wall switch, one gang, white",
     "description": "Flush-mounted 10 A / 250 V rocker switch with frame.",
     "unit_price": {"amount": "4.20", "currency": "EUR"}},
    {"sku": "GLOVES-NITRILE-L", "name": "Safety gloves, nitrile coated, size L (pair)",
     "description": "EN 388 cut and abrasion resistant work gloves for installers.",
     "unit_price": {"amount": "2.60", "currency": "EUR"}},
]


def seed_catalog(client: httpx.Client) -> list[dict]:
    """PUT every product with an operator client; returns the products as the API answers them.
    Safe to run again: unchanged products are left as they are."""
    seeded = []
    for product in CATALOG:
        body = {k: v for k, v in product.items() if k != "sku"}
        response = client.put(f"/products/{product['sku']}", json=body)
        response.raise_for_status()
        seeded.append(response.json())
    return seeded
