"""The store's HTTP API: the catalog here, carts and checkout in carts.py / checkout.py."""
from __future__ import annotations

import re
from decimal import Decimal

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response

from runtime.auth import Principal, authenticate, require
from runtime.http import make_app
from runtime.service import ServiceContext
from schemas import ProductChanged
from schemas.types import Money
from services.cart import carts, checkout, store
from services.cart.models import ProductIn, ProductOut, ProductPage
from services.cart.pricing import whole_cents

SKU = re.compile(r"^[A-Z0-9][A-Z0-9\-]{1,39}$")
MAX_PRICE = Decimal("999999999999.99")  # numeric(14,2)


def create_app(ctx: ServiceContext) -> FastAPI:
    app = make_app("salesbus cart", description="Catalog, carts and checkout of the online store. Every endpoint "
                                                "needs an API key (Authorization: Bearer ...).")
    _catalog_routes(app, ctx)
    app.include_router(carts.router(ctx))
    app.include_router(checkout.router(ctx))
    return app


def product_out(row: dict) -> ProductOut:
    return ProductOut(sku=row["sku"], name=row["name"], description=row["description"],
                      unit_price=Money(amount=row["unit_price"], currency=row["currency"].strip()),
                      active=row["active"], created_at=row["created_at"], updated_at=row["updated_at"])


def _catalog_routes(app: FastAPI, ctx: ServiceContext) -> None:
    @app.get("/products", response_model=ProductPage, tags=["catalog"])
    def list_products(q: str | None = Query(None, max_length=100, description="search in SKU, name, description"),
                      active: bool | None = Query(None, description="staff only: filter on the active flag"),
                      limit: int = Query(50, ge=1, le=200), offset: int = Query(0, ge=0, le=1_000_000),
                      principal: Principal = Depends(authenticate)) -> ProductPage:
        """Products, ordered by SKU. Customers see only products on sale."""
        if principal.role == "customer":
            active = True
        with ctx.pool.connection() as conn:
            rows, count = store.search_products(conn, q=q.strip() if q else None, active=active, limit=limit,
                                                offset=offset)
        return ProductPage(items=[product_out(r) for r in rows], total=count, limit=limit, offset=offset,
                           next_offset=offset + limit if offset + limit < count else None)

    @app.get("/products/{sku}", response_model=ProductOut, tags=["catalog"],
             responses={404: {"description": "no such product"}})
    def get_product(sku: str, principal: Principal = Depends(authenticate)) -> ProductOut:
        with ctx.pool.connection() as conn:
            row = store.get_product(conn, sku)
        if row is None:
            raise HTTPException(404, f"no product with SKU {sku!r}")
        return product_out(row)

    @app.put("/products/{sku}", response_model=ProductOut, tags=["catalog"],
             responses={201: {"description": "created"}, 200: {"description": "updated"}})
    def put_product(sku: str, body: ProductIn, response: Response,
                    principal: Principal = Depends(require("operator"))) -> ProductOut:
        """Create or update a product; every real change is published as ProductChanged."""
        _check_product(sku, body, ctx.settings.supported_currencies())
        price = body.unit_price.amount.quantize(Decimal("0.01"))
        fields = (body.name, body.description, price, body.unit_price.currency, body.active)
        with ctx.unit_of_work() as uow:
            now = uow.now()
            old = store.get_product(uow.conn, sku, lock=True)
            if old is None:
                row = store.insert_product(uow.conn, sku, *fields, now)
                response.status_code = 201
            elif (old["name"], old["description"], old["unit_price"], old["currency"].strip(), old["active"]) != fields:
                row = store.update_product(uow.conn, sku, *fields, now)
            else:
                return product_out(old)  # nothing changed: nothing to announce
            uow.emit(ProductChanged(sku=sku, name=row["name"], description=row["description"],
                                    unit_price=Money(amount=price, currency=body.unit_price.currency),
                                    active=row["active"], changed_at=now))
        return product_out(row)


def _check_product(sku: str, body: ProductIn, supported: frozenset[str]) -> None:
    if not SKU.match(sku):
        raise HTTPException(422, "SKU must be 2-40 characters: capital letters, digits and hyphens, "
                                 "starting with a letter or digit (e.g. BULB-LED-9W)")
    amount, currency = body.unit_price.amount, body.unit_price.currency
    if currency not in supported:
        raise HTTPException(422, f"the store does not sell in {currency} (accepted: {', '.join(sorted(supported))})")
    if not whole_cents(amount):
        raise HTTPException(422, f"unit price {amount} has more than two decimal places")
    if not Decimal(0) < amount <= MAX_PRICE:
        raise HTTPException(422, f"unit price must be greater than zero and at most {MAX_PRICE}")
